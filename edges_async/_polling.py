"""Waiting for runs: one poller per client, spending one polling budget on every pending run.

Waiters (see :mod:`._waiters`) tell the client's single :class:`RunPoller`
which runs they wait for; it keeps one :class:`RunWatch` per pending run,
however many waiters share it, polls them all, and publishes what it sees on
the client's run events hub (a new status, the run ended, or the wait for it
cannot go on):

- **Batching.** One request refreshes up to 100 runs (:mod:`._poll_requests`).
- **Budget.** Polls are paced at the workspace rate the limiter grants (the
  plan's, less what a 429 or other traffic took) minus ``reserve``, the share
  left for downloads and launches. The budget is never left idle while runs
  are pending and due: each request carries the 100 most urgent runs, so with
  fewer than 100 pending every request refreshes all of them.
- **Urgency.** New runs first, then each at its share of a sweep, gently less
  often as it ages (:mod:`._poll_schedule`).
- **Change feed.** With more than 100 runs pending, most requests read the
  runs that ended most recently instead (:mod:`._feed_reader`), which finds
  an ended run within about one polling interval whatever their number; the
  uid requests go on as a safety net, with ``safety_net`` of the requests.
- **Callbacks.** A run whose callbacks reach the client is polled only as a
  safety net (:mod:`._callback_ledger`). A final callback ends its wait: the
  run is fetched in full in the next poll, ahead of every other run.
- **Failures.** Transient errors (connection, 429, 5xx: after the HTTP layer's
  own retries) pause polling with backoff and never end a wait; any other
  error ends the waits for the runs concerned. A run the API does not know is
  asked about again, alone, for ``not_found_grace`` after its wait started
  (a run just launched may not be readable yet), then ``NotFoundError``.

The poller task runs while some run is waited for (:mod:`._poller_task`
holds its lifecycle: started by ``follow``, ended by ``stop_if_idle`` or
``aclose``). Inside it,
``max_in_flight`` worker tasks in a task group poll one batch each at a time,
and anything the loop fails on is handed to the waiters concerned.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any, final

import anyio
import httpx

from ._backoff import Backoff, to_seconds
from ._callback_ledger import CallbackLedger
from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    BadRequestError,
    EdgesError,
    NotFoundError,
)
from ._feed_reader import FeedReader
from ._http import HTTPCore
from ._memory import remember
from ._models import TERMINAL_STATUSES, Run
from ._poll_requests import PollRequests, is_transient, parse_run
from ._poll_schedule import CONFIRM, MAX_BATCH, NEW, PollSchedule, RunWatch
from ._poller_task import PollerTask
from ._polling_policy import PollingPolicy
from ._run_events import (
    CallbackReceived,
    RunChanged,
    RunEnded,
    RunEvents,
    RunFailed,
    RunLaunched,
    RunResumed,
)
from ._run_feed import FeedRow, feed_time

__all__ = ["RunPoller"]

logger = logging.getLogger("edges_async")

_REMEMBERED = 20_000  # runs lately ended (their feed rows count as ours) or resumed, each
_NOT_FOUND_RETRY = 1.0  # the least seconds between asking again about a run not found yet


def _now() -> float:
    # The loop's clock, as anyio.current_time() but without looking up the
    # async backend on every call (the poller reads it per batch).
    return asyncio.get_running_loop().time()


@final
class RunPoller:
    """Polls every run its client's waiters wait for, within one share of the budget."""

    __slots__ = (
        "_backoff",
        "_batching",
        "_ended",
        "_events",
        "_failures",
        "_feed",
        "_granted_rate",
        "_ledger",
        "_policy",
        "_requests",
        "_resume_at",
        "_resumes",
        "_schedule",
        "_task",
        "_watches",
        "every_change",
    )

    def __init__(
        self,
        core: HTTPCore,
        *,
        events: RunEvents,
        granted_rate: Callable[[], float],
        policy: PollingPolicy,
        backoff: Backoff,
    ) -> None:
        self._requests = PollRequests(core)
        self._events = events
        self._granted_rate = granted_rate  # requests per minute the runs routes get now
        self._policy = policy
        self._backoff = backoff
        self._watches: dict[str, RunWatch] = {}
        self._schedule = PollSchedule(policy)
        self._task = PollerTask(self._poll_interval)
        self._feed = FeedReader(self._requests, policy)
        self._ended: dict[str, None] = {}  # runs lately ended here: the feed's rows of ours
        self._resumes: dict[str, float] = {}  # loop times runs were lately resumed
        self.every_change = False
        """Whether each status change is told, followed or not (a leader tells other processes)."""
        self._batching = True  # whether the runs list takes a uid filter
        self._failures = 0  # transient failures in a row
        self._resume_at = -math.inf  # loop time polling may resume at after them
        self._ledger = CallbackLedger(events)
        events.subscribe(RunLaunched, self._launched)
        events.subscribe(CallbackReceived, self._callback)
        events.subscribe(RunResumed, self._resumed)

    def _poll_interval(self) -> float:
        """Seconds between two polls: the runs budget granted now, less the reserve."""
        return 60.0 / (self._granted_rate() * (1.0 - self._policy.reserve))

    # -- waiters (the Polling interface of ._waiters) ----------------------------

    def follow(self, uids: list[str], wants_changes: bool) -> dict[str, Run]:
        """Poll ``uids`` for one more waiter; the runs seen already, if it ``wants_changes``."""
        now = _now()
        seen: dict[str, Run] = {}
        for uid in uids:
            watch = self._watches.get(uid)
            if watch is None:
                watch = self._watches[uid] = RunWatch(uid, now)
                watch.resumed_at = self._resumes.get(uid, -math.inf)
                watch.covered = self._ledger.covers(uid)
                if uid in self._ledger.ended:  # a callback said it ended before anyone waited
                    watch.status = self._ledger.ended[uid]
                    self._confirm(watch)
                else:
                    self._schedule.enqueue(watch, NEW + now)
            watch.waiters += 1
            watch.followed += wants_changes
            if wants_changes and watch.seen:
                seen[uid] = watch.last_state()
        self._start()
        return seen

    def unfollow(self, uids: Iterable[str], wants_changes: bool) -> None:
        """One waiter of ``uids`` left: stop polling the runs nobody else waits for."""
        for uid in uids:
            watch = self._watches.get(uid)
            if watch is None:
                continue
            watch.waiters -= 1
            watch.followed -= wants_changes
            if watch.waiters <= 0:
                self._forget(watch)

    def last_state(self, uid: str) -> Run:
        """The run as last seen (only its uid when never seen)."""
        watch = self._watches.get(uid)
        return watch.last_state() if watch is not None else Run(uid=uid)

    # -- the task's lifecycle (see ._poller_task) ---------------------------------

    def _start(self) -> None:
        self._task.start(self._run)

    async def stop_if_idle(self) -> None:
        """End the poller task when no run is waited for: the last waiter sees it out."""
        if not self._watches:
            await self._task.stop()

    async def aclose(self, error: EdgesError) -> None:
        """Stop polling; every waiter still waiting gets ``error``."""
        for watch in list(self._watches.values()):
            self._fail(watch, error)
        await self._task.stop()

    # -- callbacks ---------------------------------------------------------------------

    def _launched(self, event: RunLaunched) -> None:
        """A run launched with callbacks that reach the client is polled as a safety net only."""
        uid = self._ledger.launched(event)
        if uid is not None and (watch := self._watches.get(uid)) is not None:
            watch.covered = True

    def _callback(self, received: CallbackReceived) -> None:
        """A callback's news: a final one ends the waits, with the run fetched in full."""
        event = received.event
        uid = event.run_uid
        self._ledger.took(event)
        watch = self._watches.get(uid)
        if watch is None:
            return
        watch.covered = True
        if watch.confirming and not event.is_final:
            return  # a partial redelivered after the final one says nothing new
        if event.run.status != watch.status:
            watch.status = event.run.status
            run = Run(uid=uid, status=event.run.status, batch_uid=event.run.batch_uid)
            self._events.publish(RunChanged(uid, run))
        if event.is_final:
            self._confirm(watch)

    def _resumed(self, event: RunResumed) -> None:
        """A resumed run is not over, whatever a feed page read before says."""
        now = _now()
        remember(self._resumes, event.run_uid, now, limit=_REMEMBERED)
        if (watch := self._watches.get(event.run_uid)) is not None:
            watch.resumed_at = now

    def _confirm(self, watch: RunWatch) -> None:
        """Fetch, first of all, a run a final callback ended.

        A callback carries the run's status, not the run: waiters get the full
        run, so it is fetched once, in the next poll (ahead of every other
        run, with up to 99 more). The fetch is a poll like any other, paced
        within the polling budget: callbacks never cost more requests than
        polling would, and the runs whose callbacks land within one polling
        interval share one request.
        """
        watch.confirming = True
        self._schedule.enqueue(watch, CONFIRM + watch.since)
        self._task.nudge()

    def _unconfirmed(self, watch: RunWatch) -> None:
        """The API does not show yet the end a final callback told: poll the run as usual."""
        if watch.confirming:
            watch.confirming = False
            watch.covered = False

    # -- the loop ------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            # max_in_flight workers, each polling one batch at a time: requests
            # overlap on slow networks, and no task is spawned per request.
            async with anyio.create_task_group() as workers:
                for _ in range(self._policy.max_in_flight):
                    workers.start_soon(self._work)
        except Exception as exc:  # a bug, not an API answer: no waiter may hang on it
            logger.exception("The run poller failed")
            for watch in list(self._watches.values()):
                self._fail(watch, _typed(exc))

    async def _work(self) -> None:
        while self._watches:
            batch = await self._next_batch()
            if batch is None:
                await self._read_feed()
            elif batch:
                await self._poll(batch)

    async def _next_batch(self) -> list[RunWatch] | None:
        """Wait until runs are due and the budget has room; the batch (``None``: read the feed)."""
        while self._watches:
            now = _now()
            wake_at = self._schedule.next_wake(now, self._resume_at)
            if self._feeding(now):
                wake_at = min(wake_at, max(now, self._resume_at))  # the feed reads at the pace
            if now >= wake_at:
                pacer = self._task.pacer
                pacer.interval = self._poll_interval()
                await pacer.wait()
                now = _now()
                if now < self._resume_at:
                    continue  # a failure while this worker waited its turn: back off
                if self._feeding(now):
                    first = self._schedule.first_due(now)
                    # While the feed pages back (more than a page ended), every
                    # request is its own but for callbacks' confirmations.
                    net = first is not None and (
                        first.confirming or (not self._feed.paging and self._feed.net_turn())
                    )
                    if not net:
                        if not self._feed.busy:
                            return None
                        if first is None:
                            continue  # the feed is under way and no run is due
                self._schedule.ripen(now)
                return self._schedule.take_batch(MAX_BATCH if self._batching else 1)
            wake = self._task.wake
            wake.clear()
            with anyio.move_on_after(wake_at - now if wake_at < math.inf else math.inf):
                await wake.wait()
        return []

    def _feeding(self, now: float) -> bool:
        return self._feed.in_use(len(self._watches), now)

    async def _read_feed(self) -> None:
        """Read one feed page; hand each new row of a run waited for to its waiters."""
        sent = _now()
        try:
            read = await self._feed.read(sent)
        except Exception as exc:
            if is_transient(exc):
                self._on_error([], exc)
            else:  # e.g. a 400 for the sort: the list cannot serve as a feed
                self._feed.fall_back(_now(), f"{type(exc).__name__}: {exc}")
            return
        finally:
            self._task.nudge()
        if read is None:
            return
        self._failures = 0
        rows, response = read
        own = ended = 0
        for row in rows:
            watch = self._watches.get(row.uid)
            if watch is None:
                own += row.uid in self._ended  # read again: a page overlap, a shift
                continue
            own += 1
            if watch.resumed_at >= sent or _stale(watch, row):
                continue  # the run went on after this row was written
            run = self._take_in(watch, row.item, response)
            if run is not None and run.is_terminal:
                self._done(watch, run)
                ended += 1
        self._feed.found(by_feed=True, ended=ended)
        self._feed.tally(own, len(rows) - own, _now())

    async def _poll(self, batch: list[RunWatch]) -> None:
        try:
            if len(batch) == 1 and not (batch[0].confirming and self._batching):
                await self._poll_alone(batch[0])
            else:
                await self._poll_together(batch)
        except Exception as exc:  # a bug, not an API answer: it ends this batch's waits only
            logger.exception("Polling %d runs failed unexpectedly", len(batch))
            for watch in batch:
                self._fail(watch, _typed(exc))
        except BaseException:
            # Cancelled (the loop stops): runs still waited for go back to the
            # schedule, for the loop a new waiter may have started meanwhile.
            self._requeue(batch)
            raise
        finally:
            self._task.nudge()  # runs are back in the queue, or the last one ended

    async def _poll_together(self, batch: list[RunWatch]) -> None:
        need_full = any(not watch.seen or watch.followed for watch in batch)
        try:
            answer = await self._requests.list_runs(
                [watch.uid for watch in batch], need_full=need_full
            )
        except BadRequestError as exc:
            # Whether array filters take the repeated-key form is not documented
            # for every route: if this one refuses it, each run is polled alone.
            logger.warning("The runs list refused a uid filter (%s): polling runs one by one", exc)
            self._batching = False
            self._feed.batch = 1  # one run a request: the feed pays off above one run
            self._requeue(batch)
            return
        except Exception as exc:  # a custom transport or limiter may raise its own
            self._on_error(batch, exc)
            return
        self._failures = 0
        now, sweep = _now(), self._sweep()
        asked = {watch.uid: watch for watch in batch}
        ended = 0
        for uid, item in answer.items.items():  # in the answer's order
            watch = asked.pop(uid, None)
            if watch is None:
                continue
            run = self._take_in(watch, item, answer.response)
            if run is not None and run.is_terminal:
                self._done(watch, run)
                ended += 1
            elif self._is_current(watch):
                self._schedule.reschedule(watch, now, sweep)
        if self._feeding(now):
            self._feed.found(by_feed=False, ended=ended)
        for watch in asked.values():
            if not self._is_current(watch):
                continue  # ended meanwhile (the feed, a callback)
            if watch.confirming:
                self._unconfirmed(watch)  # the list does not show it ended (yet)
            if answer.full:
                watch.alone = True  # confirm on its own: a 404 says more than silence
                self._schedule.enqueue(watch, NEW + watch.since)
            else:
                self._schedule.reschedule(watch, now, sweep)  # still running

    async def _poll_alone(self, watch: RunWatch) -> None:
        try:
            item, response = await self._requests.status(watch.uid)
        except NotFoundError as exc:
            grace = to_seconds(self._policy.not_found_grace)
            now = _now()
            if watch.seen or now - watch.since >= grace:
                self._fail(watch, exc)
            elif self._is_current(watch):
                # Not sooner than every other poll: asked alone, it would take
                # every request on a plan that polls less than once a second.
                retry = max(_NOT_FOUND_RETRY, 2 * self._task.interval)
                self._schedule.postpone(watch, now + min(retry, grace))
            return
        except Exception as exc:
            self._on_error([watch], exc)
            return
        self._failures = 0
        watch.alone = False
        run = self._take_in(watch, item, response)
        if run is not None and run.is_terminal:
            await self._finish_in_full(watch, run)
        elif self._is_current(watch):
            self._schedule.reschedule(watch, _now(), self._sweep())

    def _take_in(
        self, watch: RunWatch, item: dict[str, Any], response: httpx.Response
    ) -> Run | None:
        """Record a fresh run object; the run, parsed, when its status changed or it is confirming.

        A status change is published; a malformed run fails its waiters (and
        gives ``None``). A confirming run that did not end goes back to plain
        polling.
        """
        if not self._is_current(watch):
            return None  # nobody waits for it any more
        status = item.get("status")
        # A first sighting is news, unless a callback told this status already.
        first = not watch.seen
        changed = status != watch.status or (first and watch.status is None)
        watch.item = item
        # A terminal status always counts: watch.status may hold what a
        # callback told, and the API showing the same end is no "no change".
        ending = watch.confirming or status in TERMINAL_STATUSES
        if not (changed or ending):
            return None
        if not (first or ending or watch.followed or self.every_change):
            # A later change nobody follows: no run object to build (the first
            # sighting is parsed all the same: a malformed run fails at once).
            watch.status = status
            return None
        try:
            run = parse_run(watch.uid, item, response)
        except APIResponseValidationError as exc:
            self._fail(watch, exc)
            return None
        watch.status = status
        if changed:
            self._events.publish(RunChanged(watch.uid, run))
        if not run.is_terminal:
            self._unconfirmed(watch)
        return run

    async def _finish_in_full(self, watch: RunWatch, run: Run) -> None:
        """Hand over the full run object of a run seen ending through ``/status``.

        A malformed answer fails this run's waiters alone; a failed request
        leaves them the ``/status`` view.
        """
        try:
            full = await self._requests.full_run(watch.uid)
        except APIResponseValidationError as exc:
            self._fail(watch, exc)
            return
        except (APIStatusError, APIConnectionError) as exc:
            logger.debug("Kept the /status view of ended run %s: %s", watch.uid, exc)
        else:
            if full.is_terminal:
                run = full
        if self._is_current(watch):
            self._done(watch, run)

    # -- bookkeeping ---------------------------------------------------------------

    def _is_current(self, watch: RunWatch) -> bool:
        """Whether someone still waits for the run ``watch`` tracks."""
        return self._watches.get(watch.uid) is watch

    def _sweep(self) -> float:
        """Seconds one pass over every pending run takes at the current pace."""
        # At the whole polling rate even while the feed takes most requests:
        # the safety net then finds every run overdue and asks about the ones
        # asked about longest ago first, whatever its share (which changes).
        requests = max(1, math.ceil(len(self._watches) / MAX_BATCH))
        return requests * self._task.interval

    def _done(self, watch: RunWatch, run: Run) -> None:
        self._forget(watch)
        remember(self._ended, watch.uid, None, limit=_REMEMBERED)
        self._events.publish(RunEnded(watch.uid, run))

    def _fail(self, watch: RunWatch, error: Exception) -> None:
        if self._is_current(watch):
            self._forget(watch)
            self._events.publish(RunFailed(watch.uid, error))

    def _forget(self, watch: RunWatch) -> None:
        del self._watches[watch.uid]
        self._schedule.drop(watch)

    def _on_error(self, batch: list[RunWatch], error: Exception) -> None:
        """Back off and poll again after a transient failure; end the waits after any other."""
        if not is_transient(error):
            for watch in batch:
                self._fail(watch, error)
            return
        delay = self._backoff.delay(min(self._failures, 16))
        self._failures += 1
        self._resume_at = max(self._resume_at, _now() + delay)
        logger.warning("Polling runs failed (%s); polling again in %.1f s", error, delay)
        self._requeue(batch)

    def _requeue(self, batch: list[RunWatch]) -> None:
        for watch in batch:
            if self._is_current(watch):
                self._schedule.enqueue(watch, NEW + watch.since)

    def __repr__(self) -> str:
        return f"<RunPoller pending={len(self._watches)} {self._task!r}>"


def _stale(watch: RunWatch, row: FeedRow) -> bool:
    """Whether the poller knows a state of the run at least as recent as ``row``."""
    if watch.item is None:
        return False
    seen = feed_time(watch.item.get("updated_at"))
    return seen is not None and seen >= row.updated


def _typed(exc: BaseException) -> EdgesError:
    """An unexpected failure as the ``EdgesError`` waiters get (never an ``ExceptionGroup``)."""
    leaf = exc
    # An exception group (anyio's task group raises them; the name is a
    # builtin only from Python 3.11): its first leaf tells what went wrong.
    while isinstance(inner := getattr(leaf, "exceptions", None), tuple) and inner:
        leaf = inner[0]
    if isinstance(leaf, EdgesError):
        return leaf
    error = EdgesError(f"Polling failed unexpectedly: {type(leaf).__name__}: {leaf}")
    error.__cause__ = leaf
    return error
