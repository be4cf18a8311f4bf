"""Which pending runs the poller asks about next, and when: the due-heaps and urgency.

Every pending run has one :class:`RunWatch`, queued in one of two heaps:

- **ready**, by urgency. A new run goes first (``NEW``); a run a final
  callback ended, to fetch in full, goes before everything (``CONFIRM``). A
  polled run is next due after its share of a sweep over every pending run,
  ``sweep * sqrt(1 + age / 60 s)``: runs waited on for long are polled gently
  less often, as a long-running run is less likely to end in the next second
  than a young one. Every request carries the 100 most urgent runs, so with
  100 or fewer pending each request asks about all of them, at the polling
  pace. A run whose callbacks reach the client is due again only after
  ``covered_interval``; runs are keyed by the later of their urgency and the
  time they are due, and the poller waits for the first one due.
- **postponed**, by the loop time they may be polled again: a run whose
  ``postponed_until`` lies ahead (at most ``_MAX_POSTPONE``), or one the API
  did not know yet.

Entries are never removed from a heap: a watch remembers the sequence number
of its live entry (``queued``), and entries with another one are stale.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
from datetime import datetime, timezone
from typing import Any, Final, final

import pydantic

from ._backoff import to_seconds
from ._models import Run
from ._polling_policy import PollingPolicy

__all__ = ["CONFIRM", "MAX_BATCH", "NEW", "PollSchedule", "RunWatch"]

MAX_BATCH: Final = 100  # the runs list endpoint's largest page
NEW: Final = -1e9  # the urgency of a run never polled: ahead of every polled one
CONFIRM: Final = -2e9  # a run a final callback ended, to fetch in full: ahead of everything
_AGE_SCALE = 60.0  # seconds over which a run's polling share starts to shrink
_MAX_POSTPONE = 300.0  # the longest a postponed run goes unpolled
_DATETIME: Final = pydantic.TypeAdapter(datetime)


@final
class RunWatch:
    """The poller's state of one pending run, however many waiters wait for it."""

    __slots__ = (
        "alone",
        "confirming",
        "covered",
        "due_at",
        "followed",
        "item",
        "queued",
        "resumed_at",
        "since",
        "status",
        "uid",
        "waiters",
    )

    def __init__(self, uid: str, since: float) -> None:
        self.uid = uid
        self.since = since  # loop time its wait started
        self.waiters = 0  # waits under way for it
        self.followed = 0  # of them, those that want every status change
        # The latest raw run object: a pydantic Run is built only when the
        # status changes (or someone asks), a third of the memory per run.
        self.item: dict[str, Any] | None = None
        self.status: object = None
        self.alone = False  # missing from a list answer: ask /status about it alone
        self.queued = -1  # the sequence number of its live heap entry, -1 when none
        self.due_at = -math.inf  # loop time before which it is not polled again
        self.covered = False  # its callbacks reach the client: polled as a safety net only
        self.confirming = False  # a final callback ended it: fetch it in full, first
        self.resumed_at = -math.inf  # loop time it was last resumed

    @property
    def seen(self) -> bool:
        """Whether the API has answered with this run yet."""
        return self.item is not None

    def last_state(self) -> Run:
        """The run as last seen (only its uid and any status a callback told when never seen)."""
        if self.item is not None:
            with contextlib.suppress(pydantic.ValidationError):
                return Run.model_validate(self.item)
        return Run(uid=self.uid, status=self.status)

    def __repr__(self) -> str:
        return f"<RunWatch {self.uid} status={self.status!r} waiters={self.waiters}>"


_Entry = tuple[float, int, RunWatch]


@final
class PollSchedule:
    """The ready and postponed heaps of pending runs, and the rules that fill them."""

    __slots__ = ("_policy", "_postponed", "_ready", "_sequence")

    def __init__(self, policy: PollingPolicy) -> None:
        self._policy = policy
        self._ready: list[_Entry] = []  # by urgency: the next batches come from here
        self._postponed: list[_Entry] = []  # by the loop time they may be polled again
        self._sequence = itertools.count()

    def enqueue(self, watch: RunWatch, urgency: float, due_at: float = -math.inf) -> None:
        """Queue ``watch`` as ready, at ``urgency``, not to be polled before ``due_at``."""
        watch.queued = next(self._sequence)
        watch.due_at = due_at
        heapq.heappush(self._ready, (max(urgency, due_at), watch.queued, watch))

    def postpone(self, watch: RunWatch, until: float) -> None:
        """Hold ``watch`` back until the loop time ``until``."""
        watch.queued = next(self._sequence)
        heapq.heappush(self._postponed, (until, watch.queued, watch))

    @staticmethod
    def drop(watch: RunWatch) -> None:
        """Take ``watch`` out of the schedule (its entries go stale)."""
        watch.queued = -1

    def reschedule(self, watch: RunWatch, now: float, sweep: float) -> None:
        """Queue a polled run again, at its share of a sweep over the pending runs."""
        postponed = self._postponed_for(watch)
        if postponed > 0:
            self.postpone(watch, now + postponed)
            return
        age = now - watch.since
        urgency = now + sweep * math.sqrt(1.0 + age / _AGE_SCALE)
        gap = to_seconds(self._policy.covered_interval) if watch.covered else 0.0
        self.enqueue(watch, urgency, now + gap)

    def _postponed_for(self, watch: RunWatch) -> float:
        """Seconds the API asks us to wait before the run can change (0 if none)."""
        raw = watch.item.get("postponed_until") if watch.item is not None else None
        if not raw:
            return 0.0
        try:
            until = _DATETIME.validate_python(raw)
        except pydantic.ValidationError:
            return 0.0
        if until.tzinfo is None:
            until = until.replace(tzinfo=timezone.utc)
        seconds = (until - self._policy.wall_clock()).total_seconds()
        return min(max(seconds, 0.0), _MAX_POSTPONE)

    def ripen(self, now: float) -> None:
        """Move the postponed runs whose time has come to the ready queue."""
        while self._postponed and self._postponed[0][0] <= now:
            _, sequence, watch = heapq.heappop(self._postponed)
            if watch.queued == sequence:
                self.enqueue(watch, NEW + watch.since)

    def next_wake(self, now: float, not_before: float) -> float:
        """When to poll next: ``now`` or earlier when a ready run is due.

        Else the loop time a ready run falls due (not before ``not_before``) or
        a postponed one ripens, whichever comes first; ``inf`` when none will.
        """
        self.ripen(now)
        wake_at = max(self._due_at(), not_before)
        if wake_at > now and self._postponed:
            wake_at = min(wake_at, self._postponed[0][0])
        return wake_at

    def first_due(self, now: float) -> RunWatch | None:
        """The most urgent ready run, if it is due at ``now``."""
        self.ripen(now)
        return self._ready[0][2] if self._due_at() <= now else None

    def _due_at(self) -> float:
        """When the first ready run is due (``inf`` when none is ready)."""
        ready = self._ready
        while ready and ready[0][2].queued != ready[0][1]:
            heapq.heappop(ready)  # stale: re-queued since, or no longer waited for
        return ready[0][2].due_at if ready else math.inf

    def take_batch(self, size: int) -> list[RunWatch]:
        """The most urgent runs, up to ``size``; a run to ask alone goes alone."""
        batch: list[RunWatch] = []
        put_back: list[_Entry] = []
        while self._ready and len(batch) < size:
            entry = heapq.heappop(self._ready)
            watch = entry[2]
            if watch.queued != entry[1]:
                continue
            if watch.alone and batch:
                put_back.append(entry)
                continue
            watch.queued = -1
            batch.append(watch)
            if watch.alone:
                break
        for entry in put_back:
            heapq.heappush(self._ready, entry)
        return batch

    def __repr__(self) -> str:
        return f"<PollSchedule ready={len(self._ready)} postponed={len(self._postponed)}>"
