"""One route group's budget as one process sees it, beside the shared book in Redis.

What :class:`~._redis_budget.RedisBudgets` keeps per group: its counters for
``statistics()``, the latest pace the script reported, where the latest grant
came from (the shared book or the local fallback), the 429 pause not sent yet,
and this process's grants of the last minute, the ones the shared book never
counted among them (to tell it, so that they are not taken for foreign
traffic).
"""

from __future__ import annotations

import collections
import math
from typing import final

from ._redis_scripts import Pace, Reservation

__all__ = ["WINDOW", "GroupState"]

WINDOW = 60.0  # the minute our own traffic is counted over


@final
class GroupState:
    """One route group as this process sees it: counters, the latest pace, what to send."""

    __slots__ = (
        "book",
        "granted",
        "key",
        "last_grant",
        "local_pause_until",
        "mode",
        "name",
        "pace",
        "pending_until",
        "per_minute",
        "rate_limited",
        "recent",
        "releases",
        "remaining",
        "resume_at",
        "shared_pause_until",
        "successes",
        "unseen",
        "waited",
    )

    def __init__(self, name: str, key: str, per_minute: float, per_second: float, headroom: float):
        self.name = name
        self.key = key
        self.per_minute = min(per_minute, per_second * 60)  # the even stream's tighter cap
        self.pace = Pace(self.per_minute * headroom, 0.0)
        self.granted = 0
        self.waited = 0.0
        self.rate_limited = 0
        self.last_grant: float | None = None
        self.mode: str | None = None  # "shared" or "local": where the latest grant came from
        self.resume_at = -math.inf  # no grant before it (a switch keeps the pace)
        self.local_pause_until = -math.inf  # a 429 this process saw
        self.shared_pause_until = -math.inf  # the pause Redis reported
        self.pending_until: float | None = None  # a 429's pause, not yet sent (loop time)
        self.successes = 0
        self.remaining: int | None = None
        self.releases: list[Reservation] = []
        self.recent: collections.deque[float] = collections.deque()  # our grants, last minute
        # Grants of the last minute the shared book never counted (fallback
        # ones; all of them when Redis lost its data), to send it.
        self.unseen: collections.deque[float] = collections.deque()
        self.book: str | None = None  # the id of the shared book last seen

    def note_grant(self, now: float, *, local: bool) -> None:
        """A grant at ``now``; ``local``: from the fallback book (Redis does not know it)."""
        self.granted += 1
        self.last_grant = now
        self.recent.append(now)
        if local:
            self.unseen.append(now)
        _forget_before(self.recent, now - WINDOW)

    def unseen_since(self, moment: float) -> int:
        """How many grants since ``moment`` the shared book has not counted."""
        _forget_before(self.unseen, moment)
        return len(self.unseen)


def _forget_before(moments: collections.deque[float], moment: float) -> None:
    while moments and moments[0] < moment:
        moments.popleft()
