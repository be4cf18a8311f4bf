"""What waiting shares between waiters and the poller: per-run watches and per-waiter subscriptions.

A :class:`RunWatch` is the poller's state of one pending run, however many
waiters wait for it; a :class:`Subscription` is one waiter's view, the runs it
still waits for and the events the poller handed it (a status change, the run
ended, or an error that ends the wait for that run).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Callable
from typing import Any, final

import pydantic

from ._models import Run

__all__ = ["CHANGED", "DONE", "FAILED", "Event", "RunWatch", "StatusCallback", "Subscription"]

StatusCallback = Callable[[Run], object]
"""Called with a run each time its status changes; may be a coroutine function."""

# Events handed from the poller to a subscription.
CHANGED, DONE, FAILED = "changed", "done", "failed"
Event = tuple[str, str, Any]


@final
class Subscription:
    """One waiter's view: the runs it still waits for and the events not yet taken."""

    __slots__ = ("events", "pending", "signal", "wants_changes")

    def __init__(self, uids: list[str], wants_changes: bool) -> None:
        self.pending = set(uids)
        self.wants_changes = wants_changes
        self.events: deque[Event] = deque()
        self.signal = asyncio.Event()

    def push(self, event: Event) -> None:
        self.events.append(event)
        self.signal.set()

    async def next_event(self) -> Event:
        while not self.events:
            self.signal.clear()
            await self.signal.wait()
        return self.events.popleft()


@final
class RunWatch:
    """The poller's state of one pending run, shared by every waiter of that run."""

    __slots__ = (
        "alone",
        "confirming",
        "covered",
        "due_at",
        "followed",
        "item",
        "queued",
        "since",
        "status",
        "subscribers",
        "uid",
    )

    def __init__(self, uid: str, since: float) -> None:
        self.uid = uid
        self.since = since  # loop time its wait started
        self.subscribers: set[Subscription] = set()
        # The latest raw run object: a pydantic Run is built only when the
        # status changes (or someone asks), a third of the memory per run.
        self.item: dict[str, Any] | None = None
        self.status: object = None
        self.alone = False  # missing from a list answer: ask /status about it alone
        self.followed = 0  # subscribers that want every status change
        self.queued = -1  # the sequence number of its live heap entry, -1 when none
        self.due_at = -math.inf  # loop time before which it is not polled again
        self.covered = False  # its callbacks reach the client: polled as a safety net only
        self.confirming = False  # a final callback ended it: fetch it in full, first

    @property
    def seen(self) -> bool:
        """Whether the API has answered with this run yet."""
        return self.item is not None

    def last_state(self) -> Run:
        """The run as last seen (only its uid when never seen)."""
        if self.item is not None:
            with contextlib.suppress(pydantic.ValidationError):
                return Run.model_validate(self.item)
        return Run(uid=self.uid, status=self.status)

    def __repr__(self) -> str:
        return f"<RunWatch {self.uid} status={self.status!r} waiters={len(self.subscribers)}>"
