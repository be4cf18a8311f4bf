"""The slot book: one route group's budget as a stream of reserved moments.

A caller reserves the next free slot and sleeps until it on its own event
loop; the book itself never sleeps, never reads a clock (every method takes
``now``) and guards its state with a :class:`threading.Lock`, so the callers
of every thread and event loop of a process can share one book, and the Redis
budget can run the same algorithm behind a script.

Reserving (virtual scheduling with no burst tolerance)::

    interval = 60 / current_rate
    slot     = max(next, now, paused_until)
    next     = slot + interval

Slots go out in the order callers ask (FIFO) one interval apart, and a slot is
never earlier than ``now``: after an idle spell the next caller goes at once,
but no credit piles up, so no burst ever leaves.

The caller then checks its slot is still good when it wakes (:meth:`admits`):

- the *epoch* has not moved: a 429 pauses the group, steps the rate down and
  bumps the epoch, so sleepers holding slots of the old stream ask again;
- it did not wake too late: a request sent long after its slot would come
  right before the holder of the next one, closer than the plan allows. Late
  by more than half the slack between our spacing and the plan's (at least
  20 ms), the caller gives its slot up and reserves again.

A caller cancelled while sleeping gives its slot back (:meth:`release`): the
last slot reserved rolls ``next`` back; an earlier one is kept aside and the
next caller takes it while it is still in the future.

Answers adapt the rate (:meth:`refused`, :meth:`succeeded`, :meth:`remaining`):

- a 429 pauses the group for ``Retry-After`` (60 s when absent: the longest
  any minute window needs to reset; at most 120 s) and steps the rate down
  by a quarter, once per pause (the requests in flight with the refused one
  say nothing new). Accepted requests bring it back quickly to 90 % of the
  rate that was refused, then slowly (5 % of the plan per minute without a
  429): where refusals come from a limit the plan's figures do not show,
  they become rare probes instead of a stream;
- ``X-RateLimit-Remaining`` below what our own traffic explains means someone
  else spends the budget: our share shrinks to leave them room, before any 429.
"""

from __future__ import annotations

import collections
import collections.abc
import heapq
import math
import threading
from dataclasses import dataclass
from typing import final

from ._budget import BudgetSnapshot

__all__ = ["Slot", "SlotBook"]

_WINDOW = 60.0
_DEFAULT_PAUSE = 60.0
_MAX_PAUSE = 120.0
_STEP_DOWN = 0.75
_MIN_FACTOR = 0.25
_RECOVERY_PER_SUCCESS = 0.02
_SAFE_SHARE_OF_REFUSED = 0.9
_PROBE_PER_SECOND = 0.05 / 60
# Requests by which the server's count may differ from ours (requests in
# flight, clocks): below this, a low Remaining is not foreign traffic.
_FOREIGN_TOLERANCE = 2
# A slot woken this much after its moment still goes, whatever the slack: a
# busy loop or a thread waiting for the GIL wakes a few milliseconds late, and
# only plans whose per-second cap holds a single request (intervals of a
# second and more, where half the slack is larger) are hurt by a late request.
_MIN_LATENESS = 0.02


@final
@dataclass(frozen=True, slots=True)
class Slot:
    """A reserved moment: the caller may send at ``at`` if the book is still in ``epoch``."""

    at: float
    epoch: int


@final
class SlotBook:
    """One route group's budget: reserve a slot, sleep until it, check it, send.

    ``per_minute`` and ``per_second`` are the plan's caps (the even stream
    respects the tighter); the book paces at ``per_minute * headroom * scale``,
    times the adaptive factor and the share left by foreign traffic. ``scale``
    sizes a book for one of several processes sharing a plan (``1 / n``).

    >>> book = SlotBook(60, 1, headroom=1.0)
    >>> book.reserve(now=10.0), book.reserve(now=10.0)
    (Slot(at=10.0, epoch=0), Slot(at=11.0, epoch=0))
    """

    __slots__ = (
        "_epoch",
        "_factor",
        "_freed",
        "_granted",
        "_headroom",
        "_last_at",
        "_last_success",
        "_lock",
        "_next",
        "_own",
        "_paused_until",
        "_per_minute",
        "_rate_limited",
        "_refused_at",
        "_scale",
        "_share",
        "_waited",
    )

    def __init__(
        self, per_minute: float, per_second: float, *, headroom: float, scale: float = 1.0
    ) -> None:
        self._per_minute = min(per_minute, per_second * 60)
        if not self._per_minute > 0 or not math.isfinite(self._per_minute):
            raise ValueError(f"a slot book needs a finite rate > 0, got {self._per_minute!r}")
        self._headroom = _fraction("headroom", headroom)
        self._scale = _fraction("scale", scale)
        self._lock = threading.Lock()
        self._next = -math.inf  # the next free slot of the stream
        self._last_at: float | None = None  # the latest slot the stream gave, while it is the last
        self._freed: list[float] = []  # a heap of slots given back before the last one
        self._paused_until = -math.inf
        self._epoch = 0
        self._factor = 1.0  # steps down on 429s, recovers on successes
        self._refused_at = 1.0  # the factor of the latest 429
        self._last_success: float | None = None
        self._share = 1.0  # shrinks while others spend the same budget
        self._own: collections.deque[float] = collections.deque()  # our grants, last minute
        self._granted = 0
        self._waited = 0.0
        self._rate_limited = 0

    # -- what the book paces at ---------------------------------------------------

    @property
    def nominal_rate(self) -> float:
        """Requests per minute the plan allows this group."""
        return self._per_minute

    @property
    def current_rate(self) -> float:
        """Requests per minute the book paces at now."""
        return self._per_minute * self._headroom * self._scale * min(self._factor, self._share)

    @property
    def interval(self) -> float:
        """Seconds between two slots at the current rate."""
        return _WINDOW / self.current_rate

    @property
    def scale(self) -> float:
        """The share of the plan this book is sized for (1 unless split between processes)."""
        return self._scale

    @scale.setter
    def scale(self, scale: float) -> None:
        with self._lock:
            self._scale = _fraction("scale", scale)

    @property
    def paused_until(self) -> float:
        """The moment before which no slot is given (``-inf`` when never paused)."""
        return self._paused_until

    @property
    def epoch(self) -> int:
        """Bumped by every 429 that starts or extends a pause: older slots are void."""
        return self._epoch

    @property
    def lateness(self) -> float:
        """Seconds after its moment a slot may still be used."""
        slack = self.interval - _WINDOW / self._per_minute
        return max(_MIN_LATENESS, slack / 2)

    # -- counters (this book's callers) -------------------------------------------

    @property
    def granted(self) -> int:
        """Requests let through (see :meth:`note_grant`)."""
        return self._granted

    @property
    def waited(self) -> float:
        """Seconds callers spent waiting for their slots, summed (see :meth:`note_wait`)."""
        return self._waited

    @property
    def rate_limited(self) -> int:
        """429 answers seen (see :meth:`refused`)."""
        return self._rate_limited

    # -- slots --------------------------------------------------------------------

    def reserve(self, now: float) -> Slot:
        """The next free slot: a given-back one still in the future, else the stream's next."""
        with self._lock:
            freed = self._freed
            while freed and freed[0] < now:
                heapq.heappop(freed)  # past: nobody can use it any more
            if freed:
                return Slot(heapq.heappop(freed), self._epoch)
            at = max(self._next, now, self._paused_until)
            self._next = at + self.interval
            self._last_at = at
            return Slot(at, self._epoch)

    def admits(self, slot: Slot, now: float) -> bool:
        """Whether a caller woken at ``now`` may use ``slot``: same epoch, not paused, not late."""
        with self._lock:
            return (
                slot.epoch == self._epoch
                and now >= self._paused_until
                and now <= slot.at + self.lateness
            )

    def release(self, slot: Slot) -> None:
        """Give ``slot`` back unused, so that another caller can take it."""
        with self._lock:
            if slot.epoch != self._epoch:
                return  # a void slot: the stream restarted after a pause
            if slot.at == self._last_at:
                self._next = slot.at
                self._last_at = None  # the slot before it is not known
            else:
                heapq.heappush(self._freed, slot.at)

    def note_grant(self, now: float) -> None:
        """Count a request let through at ``now`` (it is also our own traffic for Remaining)."""
        with self._lock:
            self._granted += 1
            self._own.append(now)
            self._forget_before(now - _WINDOW)

    def adopt_own(self, moments: collections.abc.Iterable[float]) -> None:
        """Take ``moments`` (ascending) as our own traffic of the last minute.

        For a book that starts spending where another left off (the Redis
        budget's fallback): the requests sent through the other one are ours too.
        """
        with self._lock:
            self._own = collections.deque(moments)

    def note_wait(self, seconds: float) -> None:
        """Add the time one caller spent in acquire."""
        with self._lock:
            self._waited += seconds

    # -- answers ------------------------------------------------------------------

    def refused(self, now: float, pause: float | None) -> float:
        """A 429 at ``now`` asking to wait ``pause`` s (``None``: absent): pause, step down.

        Returns the seconds left in the pause.
        """
        pause = _DEFAULT_PAUSE if pause is None else min(max(pause, 0.0), _MAX_PAUSE)
        with self._lock:
            self._rate_limited += 1
            already_paused = self._paused_until > now
            until = now + pause
            if until > self._paused_until:
                self._paused_until = until
                self._restart_stream()
            if not already_paused:  # the requests in flight with this one say nothing new
                self._refused_at = self._factor
                self._factor = max(_MIN_FACTOR, self._factor * _STEP_DOWN)
            return self._paused_until - now

    def _restart_stream(self) -> None:
        self._epoch += 1
        self._next = -math.inf
        self._last_at = None
        self._freed.clear()

    def succeeded(self, now: float) -> None:
        """An accepted request at ``now``: recover the rate a 429 took."""
        with self._lock:
            safe = _SAFE_SHARE_OF_REFUSED * self._refused_at
            if self._factor < safe:
                self._factor = min(safe, self._factor + _RECOVERY_PER_SUCCESS)
            elif self._last_success is not None:
                probe = _PROBE_PER_SECOND * (now - self._last_success)
                self._factor = min(1.0, self._factor + probe)
            self._last_success = now

    def remaining(self, header: str, now: float) -> None:
        """``X-RateLimit-Remaining`` at ``now``: make room for traffic that is not ours."""
        try:
            remaining = int(header)
        except ValueError:
            return
        with self._lock:
            self._forget_before(now - _WINDOW)
            # A book sized for one of n processes: the others' (1 - 1/n) of
            # the plan is theirs, not foreign.
            others = self._per_minute * (1 - self._scale)
            explained = self._per_minute - len(self._own) - others
            foreign = explained - remaining
            if foreign > _FOREIGN_TOLERANCE:
                self._share = max(_MIN_FACTOR, (self._per_minute - foreign) / self._per_minute)
            else:
                self._share = 1.0

    def _forget_before(self, moment: float) -> None:
        own = self._own
        while own and own[0] < moment:
            own.popleft()

    def snapshot(self, now: float) -> BudgetSnapshot:
        """The book's counters and rate, and its pause if it lasts beyond ``now``."""
        with self._lock:
            paused = self._paused_until
            return BudgetSnapshot(
                granted=self._granted,
                waited=self._waited,
                rate_limited=self._rate_limited,
                current_rate=self.current_rate,
                nominal_rate=self._per_minute,
                paused_until=paused if paused > now else None,
            )

    def __repr__(self) -> str:
        return (
            f"<SlotBook rate={self.current_rate:.1f}/{self._per_minute:g} per min "
            f"next={self._next:.3f} epoch={self._epoch} granted={self._granted} "
            f"429s={self._rate_limited}>"
        )


def _fraction(name: str, value: float) -> float:
    if not 0 < value <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return value
