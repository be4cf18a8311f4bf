"""Sending callbacks: one task that POSTs each due callback at its time on the clock.

While ``sim.deliver_callbacks()`` runs, a scheduler task sleeps until the
earliest due callback in the outbox (:mod:`._callback_plans`), or until a new
run joins it, and hands each due run to a delivery task of its own. That task
sends the run's callbacks one after another, so a run's callbacks arrive in
order (no partial after the final), while a run whose receiver fails and is
being retried holds back no other run. At most :data:`MAX_CONCURRENT` POSTs
are in flight at once.

A failed attempt (an answer outside 2xx, a transport error, or no answer
within :data:`ATTEMPT_TIMEOUT` seconds) is retried after each of the retry
delays in turn, with the same body and ``callback_ref_uid``, then given up.
A cancelled run gets nothing more, retries included.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import httpx

from edges_async._backoff import to_seconds

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from anyio.abc import TaskGroup

    from ._callback_plans import CallbackOutbox, CallbackPlan, DueCallback
    from ._clock import SimClock

__all__ = ["ATTEMPT_TIMEOUT", "MAX_CONCURRENT", "CallbackDelivery", "CallbackSender"]

#: Seconds one delivery attempt may take before it counts as failed.
ATTEMPT_TIMEOUT = 10.0
#: The most callback POSTs in flight at once.
MAX_CONCURRENT = 64


@dataclass(frozen=True, slots=True)
class CallbackDelivery:
    """One attempt at delivering a callback, as logged in ``sim.callback_deliveries``."""

    time: float
    """The simulator's clock when the POST started."""
    run_uid: str
    callback_ref_uid: str
    """The body's de-duplication key: the same on every attempt of one callback."""
    url: str
    status: str
    """The ``run.status`` the body reported (``RUNNING`` for partial results)."""
    attempt: int
    """1 for the first attempt, 2 for the first retry, and so on."""
    status_code: int | None
    """The receiver's answer; ``None`` when none came."""
    error: str | None
    """Why no answer came (the transport error, or the timeout); ``None`` when one did."""

    @property
    def delivered(self) -> bool:
        """Whether the receiver answered with a 2xx status."""
        return self.status_code is not None and 200 <= self.status_code < 300


def _retry_delay(delay: float | timedelta) -> float:
    seconds = to_seconds(delay)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"callback retry delays must be finite and >= 0, got {delay!r}")
    return seconds


class CallbackSender:
    """Delivers the outbox's callbacks over HTTP and logs every attempt."""

    __slots__ = ("_active", "_clock", "_outbox", "_retry_delays", "_wake", "deliveries")

    def __init__(
        self,
        outbox: CallbackOutbox,
        clock: SimClock,
        retry_delays: Sequence[float | timedelta],
    ) -> None:
        self._outbox = outbox
        self._clock = clock
        self._retry_delays = tuple(_retry_delay(delay) for delay in retry_delays)
        self._active = False
        self._wake: anyio.Event | None = None
        self.deliveries: list[CallbackDelivery] = []

    @contextlib.asynccontextmanager
    async def deliver(self, http_client: httpx.AsyncClient | None) -> AsyncIterator[None]:
        """Send due callbacks while the block runs (see ``EdgesSimulator.deliver_callbacks``)."""
        if self._active:
            raise RuntimeError("callbacks are already being delivered (one block at a time)")
        self._active = True
        self._outbox.on_due_changed = self._poke
        try:
            async with contextlib.AsyncExitStack() as stack:
                http = http_client
                if http is None:
                    limits = httpx.Limits(
                        max_connections=MAX_CONCURRENT, max_keepalive_connections=MAX_CONCURRENT
                    )
                    http = await stack.enter_async_context(
                        httpx.AsyncClient(timeout=ATTEMPT_TIMEOUT, limits=limits)
                    )
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self._schedule, http, tasks)
                    try:
                        yield
                    finally:
                        tasks.cancel_scope.cancel()
        finally:
            self._outbox.on_due_changed = None
            self._wake = None
            self._active = False

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _schedule(self, http: httpx.AsyncClient, tasks: TaskGroup) -> None:
        """Hand each run whose callback is due to a delivery task; sleep till the next is due."""
        limiter = anyio.CapacityLimiter(MAX_CONCURRENT)
        while True:
            self._wake = wake = anyio.Event()
            now = self._clock.now()
            for plan in self._outbox.pop_due(now):
                tasks.start_soon(self._deliver_run, plan, http, limiter)
            due = self._outbox.next_due()
            if due is None:
                await wake.wait()
            else:
                # Sleep to the exact due time (no polling tick): a new run wakes us early.
                with anyio.move_on_after(due - now):
                    await wake.wait()

    async def _deliver_run(
        self, plan: CallbackPlan, http: httpx.AsyncClient, limiter: anyio.CapacityLimiter
    ) -> None:
        """Send a run's callbacks in order, while they are due; then put it back in line."""
        try:
            while not plan.finished:
                upcoming = plan.upcoming
                assert upcoming is not None
                if upcoming.due > self._clock.now():
                    break
                await self._deliver_one(plan, upcoming, http, limiter)
                plan.done()
        finally:
            # Also on cancellation: an interrupted callback is sent again by the next block.
            self._outbox.push(plan)

    async def _deliver_one(
        self,
        plan: CallbackPlan,
        upcoming: DueCallback,
        http: httpx.AsyncClient,
        limiter: anyio.CapacityLimiter,
    ) -> None:
        """Attempt one callback, retrying after each delay, until it is delivered or given up."""
        body = plan.body()
        for attempt, delay in enumerate((0.0, *self._retry_delays), start=1):
            if delay:
                await anyio.sleep(delay)
            if plan.run.cancelled_at is not None:
                return
            async with limiter:
                started = self._clock.now()
                status_code, error = await self._post(http, plan, body)
            self.deliveries.append(
                CallbackDelivery(
                    time=started,
                    run_uid=plan.run.uid,
                    callback_ref_uid=upcoming.callback_ref_uid,
                    url=plan.url,
                    status=upcoming.status,
                    attempt=attempt,
                    status_code=status_code,
                    error=error,
                )
            )
            if status_code is not None and 200 <= status_code < 300:
                return

    async def _post(
        self, http: httpx.AsyncClient, plan: CallbackPlan, body: bytes
    ) -> tuple[int | None, str | None]:
        try:
            with anyio.fail_after(ATTEMPT_TIMEOUT):
                response = await http.post(plan.url, content=body, headers=plan.headers)
        except TimeoutError:
            return None, f"no answer within {ATTEMPT_TIMEOUT:g} s"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return response.status_code, None

    def __repr__(self) -> str:
        return (
            f"CallbackSender(active={self._active}, waiting={len(self._outbox)}, "
            f"attempts={len(self.deliveries)})"
        )
