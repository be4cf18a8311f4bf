"""Run a coroutine on an asyncio event loop whose clock is fake, outside pytest.

The loop's clock starts at 0 and never follows the wall clock: whenever no
callback is ready and no I/O is pending, it jumps straight to the next
scheduled timer. Ten simulated minutes of ``asyncio.sleep`` then take only the
CPU time of the work done in them. Everything that reads the loop clock
(``loop.time()``, ``anyio.current_time()``, aiolimiter, the simulator) sees
the fake time.

It is looptime's idea, cut down to what a benchmark needs: no real-time
stepping for threads or sockets (a benchmark on fake time must not use them;
an in-process ASGI transport does not), and a loop left with nothing
scheduled is a deadlock, reported as an error instead of hanging.

One concession to real clocks: a timer never falls due less than a
microsecond after it is set. On a real clock time always passes between
arming a timer and firing it; on an exact fake clock, code that re-arms a
timer for "now plus a float rounding error" (aiolimiter's leaky bucket does,
its level a hair above full) would fire it at the same instant forever.
"""

from __future__ import annotations

import asyncio
import contextvars
import selectors
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from typing_extensions import TypeVarTuple, Unpack

    _Ts = TypeVarTuple("_Ts")

__all__ = ["run_in_fake_time"]

T = TypeVar("T")

# The smallest delay of a timer, in seconds (as looptime's default resolution).
_RESOLUTION = 1e-6


class _FakeClock:
    """The loop's time: seconds that move only when the selector says so."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0


class _FastForwardSelector(selectors.DefaultSelector):
    """A selector that, instead of waiting for a timer, moves the fake clock to it.

    asyncio asks the selector to wait exactly until its earliest timer when
    nothing is ready to run: that is the moment to jump. Real I/O (the loop's
    own self-pipe included) is still polled, without waiting.
    """

    def __init__(self, clock: _FakeClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Poll I/O; if none is ready, advance the clock by ``timeout`` instead of sleeping."""
        ready = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:
            raise RuntimeError(
                "fake-time deadlock: no timer is scheduled and nothing is ready to run"
            )
        self._clock.now += timeout
        return []


class _FakeTimeEventLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is the fake clock."""

    def __init__(self) -> None:
        self._fake_clock = _FakeClock()
        super().__init__(_FastForwardSelector(self._fake_clock))

    def time(self) -> float:
        """The fake clock's reading, in seconds from the loop's creation."""
        return self._fake_clock.now

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[_Ts]], object],
        *args: Unpack[_Ts],
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        """Schedule ``callback`` at ``when``, but never sooner than one resolution from now."""
        earliest = self._fake_clock.now + _RESOLUTION
        return super().call_at(max(when, earliest), callback, *args, context=context)


def run_in_fake_time(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` to completion on a fresh fake-time loop, then close the loop.

    The coroutine must leave no task behind: a task still pending when it
    returns is cancelled and reported as ``RuntimeError``.
    """
    loop = _FakeTimeEventLoop()
    try:
        result = loop.run_until_complete(main())
        orphans = asyncio.all_tasks(loop)
        if orphans:
            for task in orphans:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*orphans, return_exceptions=True))
            raise RuntimeError(f"{len(orphans)} task(s) outlived the benchmark: {orphans!r}")
        loop.run_until_complete(loop.shutdown_asyncgens())
        return result
    finally:
        loop.close()
