"""``PollingPolicy``: how a client polls the runs it waits for (see :mod:`._polling`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ._backoff import to_seconds, utc_now

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
    feed_saturation: float | timedelta = 120.0
    wall_clock: Callable[[], datetime] = field(default=utc_now, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.reserve <= 0.9:
            raise ValueError(f"reserve must be between 0 and 0.9, got {self.reserve!r}")
        grace = to_seconds(self.not_found_grace)
        if not math.isfinite(grace) or grace < 0:
            raise ValueError(f"not_found_grace must be a finite number >= 0, got {grace!r}")
        if isinstance(self.max_in_flight, bool) or not 1 <= self.max_in_flight <= 64:
            raise ValueError(f"max_in_flight must be 1 to 64, got {self.max_in_flight!r}")
        if not isinstance(self.change_feed, bool):
            raise ValueError(f"change_feed must be True or False, got {self.change_feed!r}")
        if isinstance(self.safety_net, bool) or not 0.01 <= self.safety_net <= 1:
            raise ValueError(f"safety_net must be between 0.01 and 1, got {self.safety_net!r}")
        saturation = to_seconds(self.feed_saturation)
        if not math.isfinite(saturation) or saturation <= 0:
            raise ValueError(f"feed_saturation must be a finite number > 0, got {saturation!r}")
        covered = to_seconds(self.covered_interval)
        if not math.isfinite(covered) or covered < 0:
            raise ValueError(f"covered_interval must be a finite number >= 0, got {covered!r}")
