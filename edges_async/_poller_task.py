"""The poller's task: started when a run is waited for, stopped when none is.

The whole lifecycle is here. :meth:`PollerTask.start` runs the poller's loop
in a new task unless one runs already, and wakes it; :meth:`PollerTask.stop`
cancels it and waits for it to end, shielded, so that no task outlives the
waits (the last waiter, or the client closing, sees it out). The wake event
and the pacer are made afresh at each start: asyncio primitives bind to the
loop they are first used in, and a client may outlive one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, final

import anyio

from ._pacer import Pacer

__all__ = ["PollerTask"]


@final
class _Started:
    """What one start of the loop made: its task, what wakes it, what paces it."""

    __slots__ = ("pacer", "task", "wake")

    def __init__(self, interval: float, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.wake = asyncio.Event()
        self.pacer = Pacer(interval)
        self.task = asyncio.get_running_loop().create_task(loop(), name="edges_async run poller")


@final
class PollerTask:
    """The running poller loop, the event that wakes it, and the pacer it polls at."""

    __slots__ = ("_interval", "_started")

    def __init__(self, interval: Callable[[], float]) -> None:
        self._interval = interval  # seconds between two polls, as granted now
        self._started: _Started | None = None

    @property
    def pacer(self) -> Pacer:
        """Paces the polls of the running loop."""
        return self._running().pacer

    @property
    def wake(self) -> asyncio.Event:
        """Set when runs became ready, or a poll ended: the running loop looks again."""
        return self._running().wake

    @property
    def interval(self) -> float:
        """Seconds between two polls: the pacer's while the loop runs."""
        return self._started.pacer.interval if self._started else self._interval()

    def _running(self) -> _Started:
        if self._started is None:
            raise RuntimeError("The run poller's loop is not running")
        return self._started

    def start(self, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``loop()`` in a new task unless one runs already; wake it either way."""
        if self._started is None or self._started.task.done():
            self._started = _Started(self._interval(), loop)
        self._started.wake.set()

    def nudge(self) -> None:
        """Wake the loop, if it runs."""
        if self._started is not None:
            self._started.wake.set()

    async def stop(self) -> None:
        """Cancel the loop's task and wait for it to end (shielded)."""
        started, self._started = self._started, None
        if started is None:
            return
        started.task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.wait({started.task})

    def __repr__(self) -> str:
        running = self._started is not None and not self._started.task.done()
        return f"<PollerTask running={running} interval={self.interval:.3f}s>"
