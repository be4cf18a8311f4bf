"""Where a ``WorkspaceRateLimiter`` keeps its route groups' budgets: this process, or Redis.

A :class:`GroupBudgets` paces the requests of one workspace, per route group
(``"runs"``, ``"live"``, ``"other"``): ``acquire`` returns when a request of
the group may go, ``feedback`` learns from its answer. The process-wide slot
book (every thread and event loop of the process) and the Redis one (every
process using the same Redis) are the same algorithm behind this interface,
so the limiter does not know which one it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, final

import httpx

__all__ = ["BudgetSnapshot", "GroupBudgets"]


@final
@dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    """One route group's budget as this process sees it."""

    granted: int
    """Requests let through by this process, retries included."""
    waited: float
    """Seconds callers of this process spent waiting for their turn, summed."""
    rate_limited: int
    """429 responses this process saw."""
    current_rate: float
    """Requests per minute the group is paced at now, for the whole workspace."""
    nominal_rate: float
    """Requests per minute the plan allows the group."""
    paused_until: float | None
    """Loop time until which the group is paused after a 429, if it is."""


class GroupBudgets(Protocol):
    """The budgets of one workspace's route groups."""

    async def acquire(self, group: str) -> None:
        """Return when one request of ``group`` may go."""
        ...

    def feedback(self, group: str, response: httpx.Response) -> None:
        """Learn from the answer to a request of ``group``; never blocks."""
        ...

    def snapshot(self, group: str) -> BudgetSnapshot:
        """The group's budget as this process sees it now."""
        ...

    async def aclose(self) -> None:
        """Release what the budgets opened; closing twice is harmless."""
        ...
