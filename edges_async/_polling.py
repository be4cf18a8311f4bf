"""Waiting for runs: one poller per client, spending one polling budget on every pending run.

Every waiter (``wait_for_run``, ``wait_for_runs``, ``watch_runs``) subscribes to
the runs it waits for; the client's single :class:`RunPoller` keeps one
*watch* per pending run, however many waiters share it, and polls them all:

- **Batching.** One ``GET /v1/runs?uid=..&uid=..`` refreshes up to 100 runs;
  the light ``GET /v1/runs/{uid}/status`` serves a run polled on its own.
- **Budget.** Polls are paced at the workspace rate the limiter grants (the
  plan's, less what a 429 or other traffic took) minus ``reserve``, the share
  left for downloads and launches. The budget is never left idle while runs
  are pending and due: each request carries the 100 most urgent runs, so with
  fewer than 100 pending every request refreshes all of them.
- **Urgency.** A new run goes first. A polled run is next due after its share
  of a sweep, ``sweep * sqrt(1 + age / 60 s)``: runs waited on for long are
  polled gently less often, as a long-running run is less likely to end in
  the next second than a young one. A run is due again no sooner than
  ``age / 1200`` after its last poll (every 0.05 s at one minute old, every
  0.5 s at ten): it binds only when few runs share a large budget, which
  then goes unspent rather than asking a long-running run about itself
  eight times a second. ``postponed_until`` holds a run back until then (at
  most ``_MAX_POSTPONE``).
- **Failures.** Transient errors (connection, 429, 5xx: after the HTTP layer's
  own retries) pause polling with backoff and never end a wait; any other
  error ends the waits for the runs concerned. A run the API does not know is
  asked about again, alone, for ``not_found_grace`` after its wait started
  (a run just launched may not be readable yet), then ``NotFoundError``.

The poller's loop is one task, started by the first waiter and ended when the
last one leaves (or the client closes); inside it, ``max_in_flight`` worker
tasks in a task group poll one batch each at a time, and anything the loop
fails on is handed to the waiters concerned.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import itertools
import logging
import math
from collections.abc import AsyncGenerator
from datetime import datetime, timezone
from typing import Any, Final, final

import anyio
import httpx
import pydantic

from ._backoff import Backoff, to_seconds
from ._callback_models import CallbackEvent
from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    BadRequestError,
    EdgesError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    WaitTimeoutError,
)
from ._http import HTTPCore, decode_json, invalid_response, parse_model
from ._limiter import RateLimiter, WorkspaceRateLimiter
from ._memory import remember
from ._models import TERMINAL_STATUSES, Run
from ._pacer import Pacer
from ._params import uid_filter_query
from ._plans import PlanTier
from ._polling_policy import PollingPolicy
from ._watches import CHANGED, DONE, FAILED, Event, RunWatch, StatusCallback, Subscription

__all__ = ["RunPoller"]

logger = logging.getLogger("edges_async")

MAX_BATCH: Final = 100  # the runs list endpoint's largest page
_NEW = -1e9  # the urgency of a run never polled: ahead of every polled one
_CONFIRM = -2e9  # a run a final callback ended, to fetch in full: ahead of everything
_AGE_SCALE = 60.0  # seconds over which a run's polling share starts to shrink
_GAP_PER_AGE = 1 / 1200  # a run is polled again no sooner than this share of its age
_MAX_REMEMBERED = 100_000  # runs remembered as covered by callbacks, or ended by one
_MAX_POSTPONE = 300.0  # the longest a postponed run goes unpolled
_NOT_FOUND_RETRY = 1.0  # seconds between asking again about a run not found yet
_DEFAULT_HEADROOM = 0.95  # as the default limiter, for limiters that do not say
_DATETIME: Final = pydantic.TypeAdapter(datetime)
_FULL_EVERY = 10  # one list poll in this many asks for every run, ended or not
_TERMINAL_VALUES: Final = tuple(sorted(status.value for status in TERMINAL_STATUSES))


def _now() -> float:
    # The loop's clock, as anyio.current_time() but without looking up the
    # async backend on every call (the poller reads it per batch).
    return asyncio.get_running_loop().time()


_Entry = tuple[float, int, RunWatch]


@final
class RunPoller:
    """Polls every run its client's waiters wait for, within one share of the budget."""

    __slots__ = (
        "_backoff",
        "_batching",
        "_core",
        "_covered",
        "_ended",
        "_failures",
        "_limiter",
        "_list_polls",
        "_list_url",
        "_pacer",
        "_plan",
        "_policy",
        "_postponed",
        "_ready",
        "_resume_at",
        "_sequence",
        "_task",
        "_wake",
        "_watches",
    )

    def __init__(
        self,
        core: HTTPCore,
        *,
        plan: PlanTier,
        limiter: RateLimiter,
        policy: PollingPolicy,
        backoff: Backoff,
    ) -> None:
        self._core = core
        self._list_url = core.url("/runs")
        self._list_polls = 0
        self._plan = plan
        self._limiter = limiter
        self._policy = policy
        self._backoff = backoff
        self._watches: dict[str, RunWatch] = {}
        # What callbacks told: runs they cover (polled only as a safety net),
        # and runs that ended, for waits that start after the callback came.
        self._covered: dict[str, None] = {}
        self._ended: dict[str, object] = {}  # uid -> the final status a callback told
        self._ready: list[_Entry] = []  # by urgency: the next batches come from here
        self._postponed: list[_Entry] = []  # by the loop time they may be polled again
        self._sequence = itertools.count()
        self._pacer = Pacer(self._poll_interval())
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._batching = True
        self._failures = 0
        self._resume_at = -math.inf

    # -- the budget ------------------------------------------------------------

    def _poll_interval(self) -> float:
        """Seconds between two polls: the runs budget granted now, less the reserve."""
        if isinstance(self._limiter, WorkspaceRateLimiter):
            # What the limiter grants now: less after a 429 or with others on the workspace.
            per_minute = self._limiter.current_rate
        else:
            per_second_cap = self._plan.requests_per_second * 60
            per_minute = min(self._plan.requests_per_minute, per_second_cap) * _DEFAULT_HEADROOM
        return 60.0 / (per_minute * (1.0 - self._policy.reserve))

    # -- waiters ---------------------------------------------------------------

    async def watch(
        self, uids: list[str], deadline: float | None, on_status_change: StatusCallback | None
    ) -> AsyncGenerator[Run, None]:
        """Yield each run of ``uids`` (distinct, canonical) as it ends; see ``watch_runs``."""
        if not uids:
            return
        subscription = self._subscribe(uids, on_status_change is not None)
        try:
            while subscription.pending:
                kind, uid, payload = await self._next_event(subscription, deadline, uids)
                if kind == CHANGED:
                    assert on_status_change is not None
                    outcome = on_status_change(payload)
                    if inspect.isawaitable(outcome):
                        await outcome
                    continue
                subscription.pending.discard(uid)
                if kind == FAILED:
                    raise payload
                yield payload
        finally:
            stopping = self._unsubscribe(subscription)
            if stopping is not None:
                # The last waiter leaves: it sees the poller out, so no task outlives it.
                stopping.cancel()
                with anyio.CancelScope(shield=True):
                    await asyncio.wait({stopping})

    async def _next_event(
        self, subscription: Subscription, deadline: float | None, uids: list[str]
    ) -> Event:
        if deadline is None:
            return await subscription.next_event()
        with anyio.move_on_after(deadline - _now()):
            return await subscription.next_event()
        pending = [self._last_state(uid) for uid in uids if uid in subscription.pending]
        raise WaitTimeoutError(
            f"{len(pending)} of {len(uids)} runs still pending at the deadline",
            runs=pending,
        )

    def _last_state(self, uid: str) -> Run:
        watch = self._watches.get(uid)
        return watch.last_state() if watch is not None else Run(uid=uid)

    def _subscribe(self, uids: list[str], wants_changes: bool) -> Subscription:
        subscription = Subscription(uids, wants_changes)
        now = _now()
        for uid in uids:
            watch = self._watches.get(uid)
            if watch is None:
                watch = self._watches[uid] = RunWatch(uid, now)
                watch.covered = uid in self._covered
                if uid in self._ended:  # a callback said it ended before anyone waited
                    watch.status = self._ended[uid]
                    self._confirm(watch)
                else:
                    self._enqueue(watch, _NEW + now)
            watch.subscribers.add(subscription)
            watch.followed += wants_changes
            if wants_changes and watch.seen:
                subscription.push((CHANGED, uid, watch.last_state()))
        if self._task is None or self._task.done():
            # Fresh primitives for each run of the loop: they bind to the event
            # loop they are first used in, and a client may outlive one.
            self._wake = asyncio.Event()
            self._pacer = Pacer(self._poll_interval())
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="edges_async run poller"
            )
        self._wake.set()
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> asyncio.Task[None] | None:
        """Forget what only this subscription waited for; the poller task, if it must stop."""
        for uid in subscription.pending:
            watch = self._watches.get(uid)
            if watch is None:
                continue
            watch.subscribers.discard(subscription)
            watch.followed -= subscription.wants_changes
            if not watch.subscribers:
                self._forget(watch)
        if self._watches:
            return None
        task, self._task = self._task, None
        return task

    # -- callbacks ---------------------------------------------------------------

    def cover(self, uid: str) -> None:
        """Note that callbacks for ``uid`` reach this client: poll it only as a safety net."""
        remember(self._covered, uid, None, limit=_MAX_REMEMBERED)
        watch = self._watches.get(uid)
        if watch is not None:
            watch.covered = True

    def take_callback(self, event: CallbackEvent) -> None:
        """Hand a callback's news to the waiters: a final one ends their wait, fetched in full."""
        uid = event.run_uid
        self.cover(uid)
        run = Run(uid=uid, status=event.run.status, batch_uid=event.run.batch_uid)
        if event.is_final:
            remember(self._ended, uid, run.status, limit=_MAX_REMEMBERED)
        watch = self._watches.get(uid)
        if watch is None or (watch.confirming and not event.is_final):
            return  # a partial redelivered after the final one says nothing new
        if run.status != watch.status:
            watch.status = run.status
            for subscription in watch.subscribers:
                if subscription.wants_changes:
                    subscription.push((CHANGED, uid, run))
        if event.is_final:
            self._confirm(watch)

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
        self._enqueue(watch, _CONFIRM + watch.since)
        self._wake.set()

    def forget_end(self, uid: str) -> None:
        """Forget that a callback said ``uid`` ended (it was resumed)."""
        self._ended.pop(uid, None)

    def _forget(self, watch: RunWatch) -> None:
        del self._watches[watch.uid]
        watch.queued = -1

    # -- scheduling ------------------------------------------------------------

    def _enqueue(self, watch: RunWatch, urgency: float, due_at: float = -math.inf) -> None:
        watch.queued = next(self._sequence)
        watch.due_at = due_at
        heapq.heappush(self._ready, (max(urgency, due_at), watch.queued, watch))

    def _postpone(self, watch: RunWatch, until: float) -> None:
        watch.queued = next(self._sequence)
        heapq.heappush(self._postponed, (until, watch.queued, watch))

    def _sweep(self) -> float:
        """Seconds one pass over every pending run takes at the current pace."""
        requests = max(1, math.ceil(len(self._watches) / MAX_BATCH))
        return requests * self._pacer.interval

    def _reschedule(self, watch: RunWatch, now: float, sweep: float) -> None:
        """Queue a polled run again, at its share of a sweep over the pending runs."""
        postponed = self._postponed_for(watch)
        if postponed > 0:
            self._postpone(watch, now + postponed)
            return
        age = now - watch.since
        urgency = now + sweep * math.sqrt(1.0 + age / _AGE_SCALE)
        gap = age * _GAP_PER_AGE
        if watch.covered:
            gap = max(gap, to_seconds(self._policy.covered_interval))
        self._enqueue(watch, urgency, now + gap)

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

    def _ripen(self, now: float) -> None:
        """Move the postponed runs whose time has come to the ready queue."""
        while self._postponed and self._postponed[0][0] <= now:
            _, sequence, watch = heapq.heappop(self._postponed)
            if watch.queued == sequence:
                self._enqueue(watch, _NEW + watch.since)

    def _has_ready(self) -> bool:
        ready = self._ready
        while ready and ready[0][2].queued != ready[0][1]:
            heapq.heappop(ready)  # stale: re-queued since, or no longer waited for
        return bool(ready)

    def _due_at(self) -> float:
        """When the first ready run is due (``inf`` when none is ready).

        Runs are queued by the later of their urgency and the time they are
        due: while runs share the budget tightly, the budget is spent on the
        most urgent; when it is ample, it waits for the first one due.
        """
        return self._ready[0][2].due_at if self._has_ready() else math.inf

    def _take_batch(self) -> list[RunWatch]:
        """The most urgent runs, up to one request's worth; a run to ask alone goes alone."""
        size = MAX_BATCH if self._batching else 1
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

    # -- the loop --------------------------------------------------------------

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
            if batch:
                await self._poll(batch)

    async def _next_batch(self) -> list[RunWatch]:
        """Wait until runs are ready and the budget has room; then the batch to poll."""
        while self._watches:
            now = _now()
            self._ripen(now)
            wake_at = max(self._due_at(), self._resume_at)
            if now >= wake_at:
                self._pacer.interval = self._poll_interval()
                await self._pacer.wait()
                self._ripen(_now())
                return self._take_batch()
            if self._postponed:
                wake_at = min(wake_at, self._postponed[0][0])
            self._wake.clear()
            with anyio.move_on_after(wake_at - now if wake_at < math.inf else math.inf):
                await self._wake.wait()
        return []

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
        finally:
            self._wake.set()  # runs are back in the queue, or the last one ended

    async def _poll_together(self, batch: list[RunWatch]) -> None:
        self._list_polls += 1
        # Most list polls ask only for the runs among the batch that ended: the
        # answer is a few bytes instead of 100 run objects (~57 kB), to send,
        # parse and look through. A full answer is needed for runs never seen
        # (a run missing from it is checked for a 404) and for status-change
        # callbacks; every _FULL_EVERY-th poll is full anyway, which refreshes
        # the last states and postponements and keeps waits correct even on a
        # server that would ignore the status filter.
        full = self._list_polls % _FULL_EVERY == 0 or any(
            not watch.seen or watch.followed for watch in batch
        )
        statuses = () if full else _TERMINAL_VALUES
        uids = [watch.uid for watch in batch]
        query = uid_filter_query(uids, limit=len(batch), statuses=statuses)
        try:
            response = await self._core.get(self._list_url.copy_with(query=query.encode()))
            items = decode_json(response)
            if not isinstance(items, list):
                raise invalid_response(response, "expected a JSON array")
        except BadRequestError as exc:
            # API.md: the repeated-key form of array filters is not confirmed
            # for every route. Polling each run alone still works.
            logger.warning("The runs list refused a uid filter (%s): polling runs one by one", exc)
            self._batching = False
            self._requeue(batch)
            return
        except Exception as exc:
            self._on_error(batch, exc)
            return
        self._failures = 0
        now, sweep = _now(), self._sweep()
        asked = {watch.uid: watch for watch in batch}
        for item in items:
            uid = item.get("uid", item.get("run_uid")) if isinstance(item, dict) else None
            watch = asked.pop(uid.lower(), None) if isinstance(uid, str) else None
            if watch is not None:
                self._observe(watch, item, now, sweep, response, light=False)
        for watch in asked.values():
            if watch.confirming:
                self._unconfirmed(watch)  # the list does not show it ended (yet)
            if full:
                watch.alone = True  # confirm on its own: a 404 says more than silence
                self._enqueue(watch, _NEW + watch.since)
            else:
                self._reschedule(watch, now, sweep)  # still running

    async def _poll_alone(self, watch: RunWatch) -> None:
        try:
            response = await self._core.get(f"/runs/{watch.uid}/status")
            item = decode_json(response)
            if not isinstance(item, dict):
                raise invalid_response(response, "expected a JSON object")
        except NotFoundError as exc:
            grace = to_seconds(self._policy.not_found_grace)
            now = _now()
            if watch.seen or now - watch.since >= grace:
                self._fail(watch, exc)
            elif watch.uid in self._watches:
                self._postpone(watch, now + min(_NOT_FOUND_RETRY, grace))
            return
        except Exception as exc:
            self._on_error([watch], exc)
            return
        self._failures = 0
        watch.alone = False
        now = _now()
        ended = self._observe(watch, item, now, self._sweep(), response, light=True)
        if ended is not None:
            await self._finish_in_full(watch, ended)

    def _observe(
        self,
        watch: RunWatch,
        item: dict[str, Any],
        now: float,
        sweep: float,
        response: httpx.Response,
        *,
        light: bool,
    ) -> Run | None:
        """Take in a fresh run object; the run when a light one shows it ended."""
        if self._watches.get(watch.uid) is not watch:
            return None  # nobody waits for it any more
        status = item.get("status")
        changed = status != watch.status or not watch.seen
        watch.item = item
        if changed or watch.confirming:
            try:
                run = Run.model_validate(item)
            except pydantic.ValidationError as exc:
                error = invalid_response(response, f"unexpected run {watch.uid}", exc)
                self._fail(watch, error)
                return None
            watch.status = status
            if changed:
                for subscription in watch.subscribers:
                    if subscription.wants_changes:
                        subscription.push((CHANGED, watch.uid, run))
            if run.is_terminal:
                if light:
                    return run
                self._done(watch, run)
                return None
            self._unconfirmed(watch)
        self._reschedule(watch, now, sweep)
        return None

    def _unconfirmed(self, watch: RunWatch) -> None:
        """The API does not show yet the end a final callback told: poll the run as usual."""
        if watch.confirming:
            watch.confirming = False
            watch.covered = False

    async def _finish_in_full(self, watch: RunWatch, run: Run) -> None:
        """Hand over the full run object of a run seen ending through ``/status``.

        A malformed answer fails this run's waiters alone; a failed request
        leaves them the ``/status`` view.
        """
        try:
            full = parse_model(Run, await self._core.get(f"/runs/{watch.uid}"))
        except APIResponseValidationError as exc:
            self._fail(watch, exc)
            return
        except (APIStatusError, APIConnectionError) as exc:
            logger.debug("Kept the /status view of ended run %s: %s", watch.uid, exc)
        else:
            if full.is_terminal:
                run = full
        if self._watches.get(watch.uid) is watch:
            self._done(watch, run)

    def _done(self, watch: RunWatch, run: Run) -> None:
        for subscription in watch.subscribers:
            subscription.push((DONE, watch.uid, run))
        self._forget(watch)

    def _fail(self, watch: RunWatch, exc: BaseException) -> None:
        if self._watches.get(watch.uid) is not watch:
            return
        for subscription in watch.subscribers:
            subscription.push((FAILED, watch.uid, exc))
        self._forget(watch)

    def _on_error(self, batch: list[RunWatch], exc: Exception) -> None:
        """Back off and poll again after a transient failure; end the waits after any other."""
        if isinstance(exc, (APIConnectionError, RateLimitError, InternalServerError)) or (
            isinstance(exc, APIStatusError) and exc.status_code == 408
        ):
            delay = self._backoff.delay(min(self._failures, 16))
            self._failures += 1
            self._resume_at = max(self._resume_at, _now() + delay)
            logger.warning("Polling runs failed (%s); polling again in %.1f s", exc, delay)
            self._requeue(batch)
            return
        for watch in batch:
            self._fail(watch, exc)

    def _requeue(self, batch: list[RunWatch]) -> None:
        for watch in batch:
            if self._watches.get(watch.uid) is watch:
                self._enqueue(watch, _NEW + watch.since)

    # -- closing ---------------------------------------------------------------

    async def aclose(self, exc: BaseException) -> None:
        """Stop polling; every waiter still waiting gets ``exc``."""
        for watch in list(self._watches.values()):
            self._fail(watch, exc)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def __repr__(self) -> str:
        return f"<RunPoller pending={len(self._watches)} interval={self._pacer.interval:.3f}s>"


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
