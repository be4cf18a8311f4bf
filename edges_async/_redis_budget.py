"""A workspace's route-group budgets in Redis, shared by every process that uses it.

:class:`RedisBudgets` implements :class:`~edges_async._budget.GroupBudgets`
on the slot book of ``_redis_scripts`` (one hash per route group):

- ``acquire`` reserves a slot with one script call (Redis ``TIME``, never our
  clock), sleeps on the running loop for the wait it returned, then confirms
  the slot with a second call: the same epoch (no 429 voided it), not paused,
  not woken too late (else it gets a new slot, and a late caller holding the
  last slot goes at once). A caller cancelled while sleeping gives its slot
  back. A grant that needs no wait goes at once, in one call.
- ``feedback`` never blocks: it notes the answer, and a background task (one
  per ``RedisBudgets``, started on first use, cancelled by ``aclose``) applies
  it. A 429 wakes the task at once and holds this process's callers back
  until its pause ends; successes and ``X-RateLimit-Remaining`` are sent in
  batches (every ``_FLUSH`` seconds at most).
- the same task says every ``heartbeat_interval`` that this process is alive
  (the ``members`` set, scored with Redis ``TIME``), and reads how many are.

Every Redis call is bounded by the coordination's ``socket_timeout``, even
on a ``redis=`` client without timeouts of its own: a Redis that stalls is a
Redis that fails. When Redis fails (an error, a timeout) the coordination's
health turns bad and, with ``on_redis_error="degrade"``, callers spend the
process's fallback budget (``plan x headroom / N``, see ``_redis_coordination``)
while the task pings Redis; with ``"wait"`` they wait for it until
``redis_wait_timeout``. Each switch keeps this process's pace: the first
request on the other side goes no sooner than one fallback interval after the
last one, so neither switch bursts; and the two sides never run at once: when
Redis answers again, the callers still waiting in the fallback book leave it
for the shared one (a fallback grant that comes while Redis answers is not
used). A slot of a book Redis lost (a restart without persistence) is never
confirmed by the new one (see ``_redis_scripts``).

Closed (by the coordination: the last client of the loop closed), it is
never handed out again; a caller still inside ``acquire`` goes on with the
budgets the coordination opens anew.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar, final

import anyio
import httpx

from ._backoff import retry_after_seconds
from ._budget import BudgetSnapshot
from ._plans import PlanTier
from ._redis_budget_state import WINDOW as _WINDOW
from ._redis_budget_state import GroupState
from ._redis_calls import bounded, redis_errors
from ._redis_coordination import CoordinationError
from ._redis_scripts import Pace, Reservation

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._local_budgets import LocalBudgets
    from ._redis_coordination import RedisCoordination
    from ._redis_scripts import BudgetScripts

__all__ = ["REDIS_ERRORS", "RedisBudgets"]

logger = logging.getLogger("edges_async")

# What "Redis does not answer" looks like: its own errors, and the socket's.
REDIS_ERRORS = redis_errors()

_DEFAULT_PAUSE = 60.0
_MAX_PAUSE = 120.0
# Requests by which the server's count may differ from ours (requests in
# flight, the two-minute estimate): below this, a low Remaining is not foreign.
_FOREIGN_TOLERANCE = 2
_FLUSH = 0.1  # successes and Remaining are sent at most this late
_MAX_RELEASES = 64  # slots given back waiting for the task, per group
_STALE_HEARTBEATS = 3  # a member silent this many heartbeats is gone
_TOLERANCE = 1e-6

_T = TypeVar("_T")


class _Closed(Exception):
    """The budgets closed under a caller: it goes on with the ones opened anew."""

    def __init__(self, reservation: Reservation | None = None) -> None:
        super().__init__()
        self.reservation = reservation  # a slot it held, to give back


@final
class RedisBudgets:
    """A workspace's budgets in Redis, for the callers of one event loop of this process.

    Made by ``RedisCoordination._budgets``; closed by the coordination (``aclose``).
    """

    __slots__ = (
        "_client",
        "_closed",
        "_coordination",
        "_groups",
        "_headroom",
        "_local_waiters",
        "_loop",
        "_members_key",
        "_plan",
        "_scripts",
        "_unsubscribe",
        "_urgent",
        "_wake",
        "_worker",
        "_workspace",
    )

    def __init__(
        self,
        coordination: RedisCoordination,
        workspace: str,
        plan: PlanTier,
        headroom: float,
        *,
        client: Redis,
        scripts: BudgetScripts,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {headroom!r}")
        self._coordination = coordination
        self._workspace = workspace
        self._plan = plan
        self._headroom = headroom
        self._client = client
        self._scripts = scripts
        self._loop = loop
        runs = (plan.requests_per_minute, plan.requests_per_second)
        live = (plan.live_requests_per_minute, plan.live_requests_per_second)
        self._groups = {
            name: GroupState(name, coordination.key(workspace, "budget", name), *figures, headroom)
            for name, figures in (("runs", runs), ("live", live), ("other", runs))
        }
        self._members_key = coordination.key(workspace, "members")
        self._wake = asyncio.Event()  # news for the task
        self._urgent = asyncio.Event()  # news that must not wait for a batch (a 429)
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        # Callers waiting in the fallback book: Redis answering again sends them back.
        self._local_waiters: set[anyio.CancelScope] = set()
        self._unsubscribe = coordination.on_health_change(self._health_changed)

    @property
    def plan(self) -> PlanTier:
        """The plan the budgets are sized from."""
        return self._plan

    @property
    def headroom(self) -> float:
        """The share of the plan's rate spent."""
        return self._headroom

    @property
    def closed(self) -> bool:
        """Whether ``aclose`` ran: the coordination then hands out new budgets."""
        return self._closed

    # -- acquire ------------------------------------------------------------------

    async def acquire(self, group: str) -> None:
        """Return when one request of ``group`` may go, workspace-wide."""
        state = self._groups[group]
        loop = self._loop
        arrived = loop.time()
        self._start_worker()
        try:
            await self._acquire(state)
        except _Closed as closed:
            await self._reopened(group, closed.reservation)
            return
        finally:
            state.waited += loop.time() - arrived
        state.note_grant(loop.time(), local=state.mode == "local")

    async def _reopened(self, group: str, reservation: Reservation | None) -> None:
        """Closed under the caller: its slot back, and a grant from the budgets opened anew."""
        fresh = self._coordination._budgets(self._workspace, self._plan, self._headroom)
        if isinstance(fresh, RedisBudgets) and reservation is not None:
            fresh._give_back(fresh._groups[group], reservation)
        await fresh.acquire(group)

    async def _acquire(self, state: GroupState) -> None:
        coordination = self._coordination
        health = coordination._health
        deadline: float | None = None
        error: BaseException | None = None
        while True:
            if self._closed:
                raise _Closed
            if health.healthy:
                try:
                    await self._acquire_shared(state)
                    return
                except REDIS_ERRORS as exc:
                    error = exc
                    health.failed(exc)
                    self._wake.set()  # the task pings until Redis answers
            if coordination._mode == "degrade":
                if await self._acquire_local(state):
                    return
                continue  # Redis answers again: the shared book
            now = self._loop.time()
            if deadline is None:
                deadline = now + coordination._wait_timeout
            if now >= deadline:
                raise CoordinationError(
                    f"Redis at {coordination._target} did not answer for "
                    f"{coordination._wait_timeout:g} s (on_redis_error='wait'): "
                    f"the request was not sent."
                ) from error
            await asyncio.sleep(min(coordination._retry_interval, deadline - now))

    async def _acquire_shared(self, state: GroupState) -> None:
        loop = self._loop
        task = asyncio.current_task()
        cancels = _cancelling(task)
        reservation = await self._reserve(state)
        while True:
            if _cancelling(task) > cancels:
                # A cancel redis-py swallowed (asyncio.wait_for on Python 3.11
                # drops one that comes as the socket write ends): honour it.
                self._give_back(state, reservation)
                raise asyncio.CancelledError
            if state.mode == "local":  # a fallback grant came meanwhile: keep its pace
                self._switching(state, "shared")
                if loop.time() + reservation.wait < state.resume_at - _TOLERANCE:
                    self._give_back(state, reservation)
                    reservation = await self._reserve(state)
                    continue
            if reservation.wait <= 0:
                break
            try:
                await asyncio.sleep(reservation.wait)
                await self._sit_out_pause(state)  # a 429 here: Redis has it, or will at once
            except asyncio.CancelledError:
                self._give_back(state, reservation)
                raise
            if self._closed:
                raise _Closed(reservation)
            reservation = await self._bounded(
                self._scripts.confirm(
                    state.key, reservation, per_minute=state.per_minute, headroom=self._headroom
                )
            )
            # Redis answers: the fallback waiters leave the fallback book at once.
            self._coordination._health.answered()
            self._learn(state, reservation.pace)
        state.mode = "shared"

    async def _reserve(self, state: GroupState) -> Reservation:
        """A slot of the shared book, no sooner than this process's pace allows."""
        if state.mode == "local":
            self._switching(state, "shared")
        await self._sit_out_pause(state)
        reservation = await self._bounded(
            self._scripts.reserve(
                state.key,
                per_minute=state.per_minute,
                headroom=self._headroom,
                min_wait=max(0.0, state.resume_at - self._loop.time()),
            )
        )
        self._coordination._health.answered()
        self._learn(state, reservation.pace)
        return reservation

    async def _acquire_local(self, state: GroupState) -> bool:
        """A grant from the fallback book; false if Redis answered meanwhile (go shared then).

        Never both books at once: a caller waiting here leaves as soon as
        Redis answers, and a grant that comes when it does is not used (the
        shared book's first slot is one interval after this process's last
        grant, not alongside the fallback book's next ones).
        """
        fallback = self._fallback()
        if state.mode == "shared":
            self._switching(state, "local", fallback)
        health = self._coordination._health
        with anyio.CancelScope() as scope:
            self._local_waiters.add(scope)
            try:
                await self._sleep_until(state.resume_at)
                await self._sit_out_pause(state)
                if not health.healthy:
                    await fallback.acquire(state.name)
            finally:
                self._local_waiters.discard(scope)
        if scope.cancelled_caught or health.healthy:
            return False
        state.mode = "local"
        return True

    def _health_changed(self, healthy: bool) -> None:
        """A health listener (any thread): Redis answers again, the fallback waiters go shared."""
        if healthy:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.call_soon_threadsafe(self._leave_fallback)

    def _leave_fallback(self) -> None:
        for scope in list(self._local_waiters):
            scope.cancel()

    async def _bounded(self, call: Awaitable[_T]) -> _T:
        """``call``, given up after the coordination's socket timeout (``TimeoutError``).

        Even a ``redis=`` client without timeouts then fails instead of hanging
        when Redis stalls. ``TimeoutError`` is an ``OSError``: a Redis error.
        """
        return await bounded(call, self._coordination.socket_timeout)

    def _switching(
        self, state: GroupState, mode: str, fallback: LocalBudgets | None = None
    ) -> None:
        """Keep this process's pace across a switch: one fallback interval after its last grant."""
        state.mode = mode
        book = (fallback or self._fallback()).book(state.name)
        if mode == "local":  # what we sent through Redis is our own traffic there too
            book.adopt_own(state.recent)
        if state.last_grant is not None:
            state.resume_at = state.last_grant + book.interval

    def _fallback(self) -> LocalBudgets:
        return self._coordination._fallback(self._workspace, self._plan, self._headroom)

    async def _sit_out_pause(self, state: GroupState) -> None:
        await self._sleep_until(state.local_pause_until)

    async def _sleep_until(self, moment: float) -> None:
        left = moment - self._loop.time()
        if left > _TOLERANCE:
            await asyncio.sleep(left)

    def _give_back(self, state: GroupState, reservation: Reservation) -> None:
        if len(state.releases) < _MAX_RELEASES:
            state.releases.append(reservation)
            self._urgent.set()
            self._wake.set()

    def _learn(self, state: GroupState, pace: Pace) -> None:
        if pace.book and pace.book != state.book:
            if state.book is not None:  # Redis lost its data: the new book saw none of ours
                state.unseen = collections.deque(state.recent)
            state.book = pace.book
        state.pace = pace
        if pace.paused_for > 0:
            state.shared_pause_until = self._loop.time() + pace.paused_for

    # -- feedback -----------------------------------------------------------------

    def feedback(self, group: str, response: httpx.Response) -> None:
        """Note an answer for the task to send; a 429 also holds this process back at once."""
        state = self._groups[group]
        now = self._loop.time()
        if response.status_code == 429:
            state.rate_limited += 1
            pause = retry_after_seconds(response)
            pause = _DEFAULT_PAUSE if pause is None else min(pause, _MAX_PAUSE)
            state.local_pause_until = max(state.local_pause_until, now + pause)
            state.pending_until = max(state.pending_until or -math.inf, now + pause)
            self._urgent.set()
            logger.info(  # handled: INFO, like every retry backoff
                "Rate limited (%s): pausing the workspace's %s for %.1f s, in every process",
                response.headers.get("x-ratelimit-type", "429"),
                response.request.url.path,
                pause,
            )
        else:
            if response.is_success:
                state.successes += 1
            header = response.headers.get("x-ratelimit-remaining")
            if header is not None:
                with contextlib.suppress(ValueError):
                    state.remaining = int(header)
        if state.mode == "local" and not self._coordination._health.healthy:
            self._fallback().feedback(group, response)
        self._wake.set()
        self._start_worker()

    def snapshot(self, group: str) -> BudgetSnapshot:
        """The group as this process sees it; the rate is the workspace's."""
        state = self._groups[group]
        now = self._loop.time()
        rate = state.pace.rate
        if state.mode == "local" and not self._coordination._health.healthy:
            fallback = self._fallback()
            rate = fallback.snapshot(group).current_rate / fallback.share
        paused = max(state.local_pause_until, state.shared_pause_until)
        return BudgetSnapshot(
            granted=state.granted,
            waited=state.waited,
            rate_limited=state.rate_limited,
            current_rate=rate,
            nominal_rate=state.per_minute,
            paused_until=paused if paused > now else None,
        )

    # -- the background task --------------------------------------------------------

    def _start_worker(self) -> None:
        if self._closed or (self._worker is not None and not self._worker.done()):
            return
        self._worker = self._loop.create_task(
            self._work(), name=f"edges_async Redis budget {self._workspace}"
        )

    async def _work(self) -> None:
        loop = self._loop
        coordination = self._coordination
        health = coordination._health
        next_beat = loop.time()
        while not self._closed:  # and cancelled: redis-py may swallow a cancel
            try:
                if not health.healthy:
                    await self._bounded(self._client.ping())
                    health.answered()
                if loop.time() >= next_beat:
                    await self._heartbeat()
                    next_beat = loop.time() + coordination._heartbeat_interval
                await self._send()
            except REDIS_ERRORS as exc:
                health.failed(exc)
                await _wait_for(self._urgent, coordination._retry_interval)  # then try again
                continue
            except Exception:
                logger.exception("The Redis budget's task failed; it goes on")
                await asyncio.sleep(coordination._retry_interval)
                continue
            await _wait_for(self._wake, next_beat - loop.time())
            self._wake.clear()
            if not self._urgent.is_set():  # let successes gather, unless a 429 comes
                await _wait_for(self._urgent, _FLUSH)

    async def _heartbeat(self) -> None:
        interval = self._coordination._heartbeat_interval
        members = await self._bounded(
            self._scripts.heartbeat(
                self._members_key,
                self._coordination.process_token,
                stale_after=_STALE_HEARTBEATS * interval,
                ttl=math.ceil(10 * interval),
            )
        )
        self._coordination._health.answered()
        self._coordination._saw_members(self._workspace, members)

    async def _send(self) -> None:
        """Apply what ``feedback`` noted: 429s first, then slots given back, then the rest."""
        self._urgent.clear()
        groups = self._groups.values()
        for state in groups:
            if state.pending_until is not None:
                until, state.pending_until = state.pending_until, None
                # What is left of it: a 429 kept while Redis failed is not paused twice.
                pause = max(0.0, until - self._loop.time())
                try:
                    pace = await self._bounded(
                        self._scripts.refuse(
                            state.key,
                            pause=pause,
                            per_minute=state.per_minute,
                            headroom=self._headroom,
                        )
                    )
                except BaseException:
                    self._keep(state, until=until)
                    raise
                self._learn(state, pace)
        for state in groups:
            releases, state.releases = state.releases, []
            for reservation in releases:
                await self._bounded(self._scripts.release(state.key, reservation))
        for state in groups:
            successes, remaining = state.successes, state.remaining
            unseen = state.unseen_since(self._loop.time() - _WINDOW)
            if not successes and remaining is None and not unseen:
                continue
            state.successes, state.remaining = 0, None
            held, state.unseen = state.unseen, collections.deque()
            try:
                pace = await self._bounded(
                    self._scripts.adjust(
                        state.key,
                        successes=successes,
                        remaining=remaining,
                        foreign_tolerance=_FOREIGN_TOLERANCE,
                        per_minute=state.per_minute,
                        headroom=self._headroom,
                        unseen=unseen,
                    )
                )
            except BaseException:
                self._keep(state, successes=successes, remaining=remaining)
                held.extend(state.unseen)
                state.unseen = held
                raise
            self._learn(state, pace)
        self._coordination._health.answered()

    def _keep(
        self,
        state: GroupState,
        *,
        until: float | None = None,
        successes: int = 0,
        remaining: int | None = None,
    ) -> None:
        """Put back what could not be sent: Redis gets it once it answers again."""
        if until is not None:
            state.pending_until = max(state.pending_until or -math.inf, until)
        state.successes += successes
        if state.remaining is None:
            state.remaining = remaining

    # -- closing --------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop the task and leave the members set; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self._unsubscribe()
        worker, self._worker = self._worker, None
        if worker is not None:
            with anyio.CancelScope(shield=True):
                while not worker.done():  # a cancel redis-py swallowed is sent again
                    worker.cancel()
                    await asyncio.wait({worker}, timeout=0.1)
        if self._coordination._health.healthy:
            with anyio.CancelScope(shield=True), contextlib.suppress(*REDIS_ERRORS):
                await self._bounded(
                    self._client.zrem(self._members_key, self._coordination.process_token)
                )

    def __repr__(self) -> str:
        runs = self._groups["runs"]
        return (
            f"<RedisBudgets plan={self._plan.value} headroom={self._headroom} "
            f"runs={runs.pace.rate:.1f}/min granted={runs.granted} 429s={runs.rate_limited}>"
        )


def _cancelling(task: asyncio.Task[object] | None) -> int:
    """How many cancels ``task`` was sent and has not handled (0 before Python 3.11)."""
    counter = getattr(task, "cancelling", None)
    return int(counter()) if counter is not None else 0


async def _wait_for(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set, ``seconds`` at most.

    ``asyncio.wait``, neither an anyio scope nor ``asyncio.wait_for``: this
    runs in a bare asyncio task, whose ``cancel()`` either may swallow when it
    comes just as the timeout fires.
    """
    if seconds <= 0 or event.is_set():
        return
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()
