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
        wall_clock: The current UTC time, to honour ``postponed_until``.
    """

    reserve: float = 0.2
    not_found_grace: float | timedelta = 30.0
    max_in_flight: int = 4
    covered_interval: float | timedelta = 30.0
    wall_clock: Callable[[], datetime] = field(default=utc_now, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.reserve <= 0.9:
            raise ValueError(f"reserve must be between 0 and 0.9, got {self.reserve!r}")
        grace = to_seconds(self.not_found_grace)
        if not math.isfinite(grace) or grace < 0:
            raise ValueError(f"not_found_grace must be a finite number >= 0, got {grace!r}")
        if isinstance(self.max_in_flight, bool) or not 1 <= self.max_in_flight <= 64:
            raise ValueError(f"max_in_flight must be 1 to 64, got {self.max_in_flight!r}")
        covered = to_seconds(self.covered_interval)
        if not math.isfinite(covered) or covered < 0:
            raise ValueError(f"covered_interval must be a finite number >= 0, got {covered!r}")
