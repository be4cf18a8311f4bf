"""``PollingPolicy``: how a client polls the runs it waits for (see :mod:`._polling`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ._backoff import utc_now

__all__ = ["PollingPolicy"]


@dataclass(frozen=True, slots=True)
class PollingPolicy:
    """How a client polls the runs it waits for: ``AsyncClient(polling=PollingPolicy(...))``.

    Args:
        reserve: The share (0 to 0.9) of the workspace's ``/v1/runs`` budget
            polling leaves to other requests, such as output downloads.
        not_found_grace: How long after a wait starts a run the API does not
            know is asked about again before ``NotFoundError`` (a run just
            launched may not be readable at once).
        max_in_flight: Poll requests that may be under way at once (latency
            hiding over slow networks; the budget paces them all the same).
        covered_interval: How often a run whose callbacks reach this client
            (see ``edges_async.callbacks``) is polled all the same: the
            safety net for a callback that never arrives.
        change_feed: Whether, with more than 100 runs pending, the poller
            reads the runs that ended most recently (the runs list filtered
            on the terminal statuses, sorted by ``-updated_at``) instead of
            asking about every run by uid: a run is noticed within about one
            polling interval whatever the number of runs.
        safety_net: While the change feed runs, the share (0.01 to 1) of poll
            requests that still ask about the pending runs by uid: status
            changes for ``on_status_change``, runs the feed did not show.
        feed_saturation: How long the feed may be kept busy by runs this
            client does not wait for (more ending than it can read) before
            the poller asks by uid again for a while.
        wall_clock: The current UTC time, to honour ``postponed_until``.
    """

    reserve: float = 0.2
    not_found_grace: float | timedelta = 30.0
    max_in_flight: int = 4
    covered_interval: float | timedelta = 30.0
    change_feed: bool = True
    safety_net: float = 0.1
    feed_saturation: float | timedelta = 30.0
    wall_clock: Callable[[], datetime] = field(default=utc_now, repr=False, compare=False)

    def __post_init__(self) -> None:
        _share("reserve", self.reserve, 0.0, 0.9)
        _seconds("not_found_grace", self.not_found_grace, allow_zero=True)
        if isinstance(self.max_in_flight, bool) or not (
            isinstance(self.max_in_flight, int) and 1 <= self.max_in_flight <= 64
        ):
            raise ValueError(f"max_in_flight must be 1 to 64, got {self.max_in_flight!r}")
        if not isinstance(self.change_feed, bool):
            raise ValueError(f"change_feed must be True or False, got {self.change_feed!r}")
        _share("safety_net", self.safety_net, 0.01, 1.0)
        _seconds("feed_saturation", self.feed_saturation, allow_zero=False)
        _seconds("covered_interval", self.covered_interval, allow_zero=True)


def _share(name: str, value: object, low: float, high: float) -> None:
    """Refuse ``value`` unless it is a number from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value!r}")


def _seconds(name: str, value: object, *, allow_zero: bool) -> None:
    """Refuse ``value`` unless it is a finite duration (seconds or ``timedelta``)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        seconds = math.nan
    if not (math.isfinite(seconds) and (seconds > 0 or (allow_zero and seconds == 0))):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
