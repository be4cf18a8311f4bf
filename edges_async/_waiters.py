"""Fan-out to waiters: each ``wait_for_run(s)`` / ``watch_runs`` hears about its own runs.

A waiter is a :class:`Subscription` to the runs it waits for. :class:`Waiters`
registers it with the poller (``follow``), listens on the client's run events
hub for what the poller saw (:class:`RunChanged`, :class:`RunEnded`,
:class:`RunFailed`) and queues each event for the subscriptions of that run.
When a waiter leaves, it tells the poller it no longer follows its pending
runs; the last one to leave sees the poller task out (``stop_if_idle``), so no
task outlives the waits.

The poller is reached through the narrow :class:`Polling` interface: one that
polls on behalf of several processes can take its place.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Protocol, final

import anyio

from ._exceptions import WaitTimeoutError
from ._models import Run
from ._run_events import RunChanged, RunEnded, RunEvents, RunFailed, WaitEvent

__all__ = ["Polling", "StatusCallback", "Subscription", "Waiters"]

StatusCallback = Callable[[Run], object]
"""Called with a run each time its status changes; may be a coroutine function."""


class Polling(Protocol):
    """What waiters ask of the poller."""

    def follow(self, uids: list[str], wants_changes: bool) -> dict[str, Run]:
        """Poll ``uids`` for one more waiter; the runs seen already, if it ``wants_changes``."""
        ...

    def unfollow(self, uids: Iterable[str], wants_changes: bool) -> None:
        """One waiter of ``uids`` left: stop polling the runs nobody else waits for."""
        ...

    def last_state(self, uid: str) -> Run:
        """The run as last seen (only its uid when never seen)."""
        ...

    async def stop_if_idle(self) -> None:
        """End the polling task if no run is waited for any more."""
        ...


@final
class Subscription:
    """One waiter's view: the runs it still waits for and the events not yet taken."""

    __slots__ = ("events", "pending", "signal", "wants_changes")

    def __init__(self, uids: list[str], wants_changes: bool) -> None:
        self.pending = set(uids)
        self.wants_changes = wants_changes
        self.events: deque[WaitEvent] = deque()
        self.signal = asyncio.Event()

    def push(self, event: WaitEvent) -> None:
        """Queue ``event`` for the waiter."""
        self.events.append(event)
        self.signal.set()

    async def next_event(self) -> WaitEvent:
        """The next event, once there is one."""
        while not self.events:
            self.signal.clear()
            await self.signal.wait()
        return self.events.popleft()

    def __repr__(self) -> str:
        return f"<Subscription pending={len(self.pending)} queued={len(self.events)}>"


@final
class Waiters:
    """Every waiter of one client, by run: hands each the events of the runs it waits for."""

    __slots__ = ("_by_run", "_polling")

    def __init__(self, events: RunEvents, polling: Polling) -> None:
        self._polling = polling
        self._by_run: dict[str, set[Subscription]] = {}
        events.subscribe(RunChanged, self._changed)
        events.subscribe(RunEnded, self._settled)
        events.subscribe(RunFailed, self._settled)

    async def watch(
        self, uids: list[str], deadline: float | None, on_status_change: StatusCallback | None
    ) -> AsyncGenerator[Run, None]:
        """Yield each run of ``uids`` (distinct, canonical) as it ends; see ``watch_runs``.

        ``deadline`` is a loop time; past it, ``WaitTimeoutError`` with the
        runs still pending as last seen.
        """
        if not uids:
            return
        subscription = Subscription(uids, on_status_change is not None)
        try:
            self._subscribe(subscription, uids)
            while subscription.pending:
                event = await self._next_event(subscription, deadline, uids)
                if isinstance(event, RunChanged):
                    assert on_status_change is not None  # only followers get changes
                    outcome = on_status_change(event.run)
                    if inspect.isawaitable(outcome):
                        await outcome
                    continue
                subscription.pending.discard(event.run_uid)
                if isinstance(event, RunFailed):
                    raise event.error
                yield event.run
        finally:
            self._unsubscribe(subscription)
            with anyio.CancelScope(shield=True):
                await self._polling.stop_if_idle()

    async def _next_event(
        self, subscription: Subscription, deadline: float | None, uids: list[str]
    ) -> WaitEvent:
        if deadline is None:
            return await subscription.next_event()
        with anyio.move_on_after(deadline - asyncio.get_running_loop().time()):
            return await subscription.next_event()
        pending = [self._polling.last_state(uid) for uid in uids if uid in subscription.pending]
        raise WaitTimeoutError(
            f"{len(pending)} of {len(uids)} runs still pending at the deadline",
            runs=pending,
        )

    def _subscribe(self, subscription: Subscription, uids: list[str]) -> None:
        for uid in uids:
            self._by_run.setdefault(uid, set()).add(subscription)
        for uid, run in self._polling.follow(uids, subscription.wants_changes).items():
            subscription.push(RunChanged(uid, run))

    def _unsubscribe(self, subscription: Subscription) -> None:
        """Forget the runs this waiter still waited for; the poller follows them no more."""
        left: list[str] = []
        for uid in subscription.pending:
            waiting = self._by_run.get(uid)
            if waiting is None or subscription not in waiting:
                continue  # the run ended or failed: the poller dropped it already
            waiting.discard(subscription)
            if not waiting:
                del self._by_run[uid]
            left.append(uid)
        self._polling.unfollow(left, subscription.wants_changes)

    def _changed(self, event: RunChanged) -> None:
        for subscription in self._by_run.get(event.run_uid, ()):
            if subscription.wants_changes:
                subscription.push(event)

    def _settled(self, event: RunEnded | RunFailed) -> None:
        for subscription in self._by_run.pop(event.run_uid, ()):
            subscription.push(event)

    def __repr__(self) -> str:
        return f"<Waiters runs={len(self._by_run)}>"
