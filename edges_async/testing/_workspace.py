"""``Workspace``: a simulated Edges workspace, its plan and its members' API keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edges_async._plans import PlanTier

__all__ = ["Workspace"]


class Workspace:
    """A simulated Edges workspace: its uid, plan and members' API keys.

    Each API key is one member (a ``user_uid``); runs launched with a key
    belong to that member. The first key's member owns runs seeded with
    :meth:`EdgesSimulator.add_run`.
    """

    __slots__ = ("_members", "plan", "uid")

    def __init__(self, uid: str, plan: PlanTier) -> None:
        self.uid = uid
        self.plan = plan
        self._members: dict[str, str] = {}

    @property
    def api_keys(self) -> tuple[str, ...]:
        """The API keys that authenticate as this workspace."""
        return tuple(self._members)

    @property
    def user_uid(self) -> str:
        """The uid of the workspace's first member (its first API key)."""
        return next(iter(self._members.values()))

    def user_uid_for(self, api_key: str) -> str:
        """The uid of the member an API key belongs to (``KeyError`` if none)."""
        return self._members[api_key]

    def _add_member(self, api_key: str, user_uid: str) -> None:
        self._members[api_key] = user_uid

    def __repr__(self) -> str:
        return f"Workspace(uid={self.uid!r}, plan={self.plan.value!r}, keys={len(self._members)})"
