"""The budgets of a workspace in this process: one slot book per route group.

:class:`LocalBudgets` implements :class:`~edges_async._budget.GroupBudgets`
on :class:`~edges_async._slot_book.SlotBook`\\ s. ``acquire`` reserves a slot,
sleeps until it on the running loop, checks the slot is still good (no 429
voided it, the caller did not wake too late) and reserves again if not; a
caller cancelled while sleeping gives its slot back.

One ``LocalBudgets`` per workspace serves the whole process: every thread and
event loop whose clock is the process's monotonic clock (asyncio's, uvloop's)
shares its books, whose times they can all compare. A loop on another clock
(a fake clock such as looptime's, in tests) gets budgets of its own: its times
mean nothing to the others. The clock is checked on every use, not once per
loop: looptime runs a test's fixtures in real time and the test itself in
fake time, on the same loop. Entries live as long as some limiter holds them,
and are keyed by the workspace id (a digest), never the API key.

:meth:`LocalBudgets.private` builds budgets outside that registry, sized for
one of several processes: the Redis budget's fallback while Redis is away.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import final

import httpx

from ._backoff import retry_after_seconds
from ._budget import BudgetSnapshot
from ._plans import PlanTier
from ._slot_book import SlotBook

__all__ = ["LocalBudgets", "shares_process_clock"]

logger = logging.getLogger("edges_async")

# Waits shorter than this count as done: float rounding, not time to spend.
# A microsecond, not less: fake clocks (looptime) tick in microseconds.
_TOLERANCE = 1e-6
# A loop whose time is this close to the process's monotonic clock runs on it
# (asyncio's loop.time() is time.monotonic(); uvloop's is the same clock in
# milliseconds). A fake clock starts at 0 and moves by leaps: never this close.
_SAME_CLOCK = 0.25


def shares_process_clock(
    loop: asyncio.AbstractEventLoop, process_clock: Callable[[], float] = time.monotonic
) -> bool:
    """Whether ``loop``'s time is the process's monotonic clock (not a fake one)."""
    return abs(loop.time() - process_clock()) <= _SAME_CLOCK


def _books(plan: PlanTier, headroom: float, share: float) -> dict[str, SlotBook]:
    runs = (plan.requests_per_minute, plan.requests_per_second)
    live = (plan.live_requests_per_minute, plan.live_requests_per_second)
    return {
        "runs": SlotBook(*runs, headroom=headroom, scale=share),
        "live": SlotBook(*live, headroom=headroom, scale=share),
        # Launches and anything else: undocumented; the runs figures are a
        # cautious guess that keeps them from starving the runs budget.
        "other": SlotBook(*runs, headroom=headroom, scale=share),
    }


_Serves = Callable[[asyncio.AbstractEventLoop], bool]


def _everywhere(loop: asyncio.AbstractEventLoop) -> bool:
    return True


@final
class LocalBudgets:
    """A workspace's route-group budgets in this process, for every thread and loop on its clock.

    Get the process's shared budgets with :meth:`for_loop` (what
    ``WorkspaceRateLimiter`` does), or budgets of your own with
    :meth:`private`. ``idle_clock`` tells the time for a :meth:`snapshot`
    taken outside any event loop.
    """

    __slots__ = ("__weakref__", "_books", "_idle_clock", "_serves", "_share", "headroom", "plan")

    def __init__(
        self,
        plan: PlanTier,
        headroom: float,
        *,
        share: float = 1.0,
        idle_clock: Callable[[], float] = time.monotonic,
        serves: _Serves = _everywhere,
    ) -> None:
        self.plan = plan
        self.headroom = headroom
        self._share = share
        self._books = _books(plan, headroom, share)
        self._idle_clock = idle_clock
        self._serves = serves

    @classmethod
    def for_loop(
        cls, workspace: str, plan: PlanTier, headroom: float, loop: asyncio.AbstractEventLoop
    ) -> LocalBudgets:
        """The budgets ``workspace``'s limiters share on ``loop``: the process's, or the loop's.

        The first caller's ``plan`` and ``headroom`` size them; a later caller
        with another plan gets them too, with a warning.
        """
        return _REGISTRY.budgets(workspace, plan, headroom, loop)

    @classmethod
    def private(cls, plan: PlanTier, headroom: float, *, share: float) -> LocalBudgets:
        """Budgets of their own, paced at ``plan x headroom x share``, shared with nobody.

        For one of ``n`` processes spending a plan together without talking
        to each other (``share=1 / n``): the Redis budget falls back on them
        while Redis does not answer. They take the time from whichever loop
        calls them: share them only between loops on one clock (the process's
        monotonic one, or a single fake-clock loop). Change :attr:`share` as
        ``n`` changes.
        """
        return cls(plan, headroom, share=share)

    @property
    def share(self) -> float:
        """The share of the plan these budgets spend (1 for the process's own)."""
        return self._share

    @share.setter
    def share(self, share: float) -> None:
        for book in self._books.values():
            book.scale = share
        self._share = share

    def serves(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether these are still the right budgets for callers on ``loop`` (its clock now)."""
        return self._serves(loop)

    def book(self, group: str) -> SlotBook:
        """The slot book of ``group``."""
        return self._books[group]

    async def acquire(self, group: str) -> None:
        """Return when one request of ``group`` may go: at its slot, on the running loop."""
        book = self._books[group]
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        slot = book.reserve(arrived)
        held = True
        try:
            while True:
                now = loop.time()
                if now + _TOLERANCE < slot.at:
                    await asyncio.sleep(slot.at - now)
                    continue
                if book.admits(slot, now):
                    held = False
                    book.note_grant(now)
                    return
                # A 429 voided it, or we woke too late: give it up, ask again.
                book.release(slot)
                slot = book.reserve(now)
        finally:
            if held:  # cancelled while sleeping: the slot goes to someone else
                book.release(slot)
            book.note_wait(loop.time() - arrived)

    def feedback(self, group: str, response: httpx.Response) -> None:
        """Learn from an answer: pause and slow down on 429, make room for others' traffic."""
        book = self._books[group]
        now = self._now()
        status = response.status_code
        if status == 429:
            left = book.refused(now, retry_after_seconds(response))
            logger.info(  # handled: INFO, like every retry backoff
                "Rate limited (%s): pausing the workspace's %s for %.1f s, pacing at %.1f/min",
                response.headers.get("x-ratelimit-type", "429"),
                response.request.url.path,
                left,
                book.current_rate,
            )
            return
        if response.is_success:
            book.succeeded(now)
        remaining = response.headers.get("x-ratelimit-remaining")
        if remaining is not None:
            book.remaining(remaining, now)

    def snapshot(self, group: str) -> BudgetSnapshot:
        """The group's counters (this process's callers), rate and pause."""
        return self._books[group].snapshot(self._now())

    async def aclose(self) -> None:
        """Nothing to release: the books are plain memory."""

    def _now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return self._idle_clock()

    def __repr__(self) -> str:
        runs = self._books["runs"]
        return (
            f"<LocalBudgets plan={self.plan.value} share={self._share:g} "
            f"runs={runs.current_rate:.1f}/min granted={runs.granted}>"
        )


@final
class _Registry:
    """The process's budgets per workspace, and those of loops on a clock of their own."""

    __slots__ = ("_lock", "_per_loop", "_process", "_process_clock")

    def __init__(self, process_clock: Callable[[], float] = time.monotonic) -> None:
        self._process_clock = process_clock
        self._lock = threading.Lock()
        self._process: weakref.WeakValueDictionary[str, LocalBudgets] = (
            weakref.WeakValueDictionary()
        )
        self._per_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, weakref.WeakValueDictionary[str, LocalBudgets]
        ] = weakref.WeakKeyDictionary()

    def on_process_clock(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether ``loop`` runs on the process's clock now."""
        return shares_process_clock(loop, self._process_clock)

    def _only_on(
        self, loop: asyncio.AbstractEventLoop
    ) -> Callable[[asyncio.AbstractEventLoop], bool]:
        home = weakref.ref(loop)

        def serves(caller: asyncio.AbstractEventLoop) -> bool:
            return caller is home() and not self.on_process_clock(caller)

        return serves

    def budgets(
        self, workspace: str, plan: PlanTier, headroom: float, loop: asyncio.AbstractEventLoop
    ) -> LocalBudgets:
        """``workspace``'s budgets for callers on ``loop``, made on first use."""
        with self._lock:
            if self.on_process_clock(loop):
                table = self._process
                budgets = table.get(workspace)
                if budgets is None:
                    budgets = table[workspace] = LocalBudgets(
                        plan, headroom, idle_clock=self._process_clock, serves=self.on_process_clock
                    )
            else:
                table = self._per_loop.setdefault(loop, weakref.WeakValueDictionary())
                budgets = table.get(workspace)
                if budgets is None:
                    budgets = table[workspace] = LocalBudgets(
                        plan, headroom, idle_clock=loop.time, serves=self._only_on(loop)
                    )
        if budgets.plan is not plan:
            logger.warning(
                "Clients of one workspace disagree on its plan (%s, %s): keeping %s",
                budgets.plan.value,
                plan.value,
                budgets.plan.value,
            )
        return budgets


_REGISTRY = _Registry()
