"""The simulator's clock: seconds from a callable, mapped onto wall time."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

__all__ = ["SimClock"]


class SimClock:
    """The simulator's clock: seconds from a callable, mapped onto wall time.

    The first reading is the origin: it maps to ``start_time``, and the fixed
    rate-limit windows count minutes from it. Nothing reads the clock before the
    first request or seeded run, so a simulator can be built outside an event loop.
    """

    __slots__ = ("_origin", "_read", "start_time")

    def __init__(self, read: Callable[[], float], start_time: datetime) -> None:
        self._read = read
        self._origin: float | None = None
        self.start_time = start_time

    def now(self) -> float:
        """The clock's current reading."""
        moment = self._read()
        if self._origin is None:
            self._origin = moment
        return moment

    def elapsed(self, moment: float) -> float:
        """Seconds from the first reading to ``moment``."""
        if self._origin is None:
            self.now()
        assert self._origin is not None
        return moment - self._origin

    def wall(self, moment: float) -> datetime:
        """The wall-clock time (aware, UTC) of a clock reading."""
        return self.start_time + timedelta(seconds=self.elapsed(moment))

    def __repr__(self) -> str:
        return f"SimClock(origin={self._origin!r}, start_time={self.start_time.isoformat()})"
