"""An even-stream pacer: one caller at a time, at most one every ``interval`` seconds.

The algorithm is virtual scheduling (GCRA with no burst tolerance): the pacer
remembers the earliest moment the next caller may go, ``next_at``. A caller
granted at ``t`` moves it to ``t + interval``; after an idle spell ``next_at``
lies in the past and the next caller goes at once, but credit never piles up,
so no burst ever leaves. Callers queue on a FIFO lock and only the head of the
queue sleeps, so a caller cancelled while queued or sleeping gives its place
to the next one and consumes nothing. ``pause_until`` holds everyone back
(after a 429), and ``interval`` may change at any time (adaptive rate).

Times come from the event loop's clock and sleeps go through the loop, so fake
clocks (looptime) drive it. It is asyncio's own primitives, not anyio's: the
limiter is per asyncio loop anyway, and it runs before every request, where
anyio's lookup of the async backend on each call showed in profiles.
Wake-ups are compared with a small tolerance: a remaining wait of 1e-16 s
would otherwise round to "now" on a fake clock and spin forever.
"""

from __future__ import annotations

import asyncio
import math
from typing import final

__all__ = ["Pacer"]

# Waits shorter than this count as done: float rounding, not time to spend.
# A microsecond, not less: fake clocks (looptime) tick in microseconds.
_TOLERANCE = 1e-6


@final
class Pacer:
    """Lets callers through one at a time, FIFO, no two closer than ``interval`` seconds."""

    __slots__ = ("_granted", "_interval", "_lock", "_next_at", "_paused_until", "_waited")

    def __init__(self, interval: float) -> None:
        self._interval = self._checked(interval)
        self._next_at = -math.inf
        self._paused_until = -math.inf
        self._lock = asyncio.Lock()
        self._granted = 0
        self._waited = 0.0

    @staticmethod
    def _checked(interval: float) -> float:
        if not math.isfinite(interval) or interval < 0:
            raise ValueError(f"interval must be a finite number >= 0, got {interval!r}")
        return interval

    @property
    def interval(self) -> float:
        """Seconds between two grants; changing it applies from the next grant on."""
        return self._interval

    @interval.setter
    def interval(self, interval: float) -> None:
        self._interval = self._checked(interval)

    @property
    def granted(self) -> int:
        """How many callers went through."""
        return self._granted

    @property
    def waited(self) -> float:
        """Seconds callers spent waiting in ``wait``, summed over callers."""
        return self._waited

    @property
    def paused_until(self) -> float:
        """Loop time before which nobody goes (``-inf`` when never paused)."""
        return self._paused_until

    def pause_until(self, when: float) -> None:
        """Hold every caller back until loop time ``when`` (a pause is only ever extended)."""
        self._paused_until = max(self._paused_until, when)

    async def wait(self) -> None:
        """Return when the caller may go; its grant moves the next slot one interval on."""
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        try:
            async with self._lock:
                while True:
                    now = loop.time()
                    ready_at = max(self._next_at, self._paused_until)
                    if now + _TOLERANCE >= ready_at:
                        break
                    await asyncio.sleep(ready_at - now)
                self._next_at = max(now, self._next_at) + self._interval
                self._granted += 1
        finally:
            self._waited += loop.time() - arrived

    def __repr__(self) -> str:
        return (
            f"<Pacer interval={self._interval:.4f}s granted={self._granted} "
            f"waited={self._waited:.2f}s paused_until={self._paused_until:.2f}>"
        )
