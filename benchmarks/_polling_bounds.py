"""The two bounds ``bench_polling.py`` measures the client against, computed exactly.

Neither sends a request: they replay when the runs ended against an ideal
request clock (no latency, ``per_minute`` requests a minute, shifted by
``phase`` of an interval).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

__all__ = ["BATCH", "feed_delays", "ideal_delays"]

BATCH = 100  # the most runs one GET /v1/runs answers (limit <= 100)


def ideal_delays(
    finished: Sequence[float], per_minute: float, phase: float = 0.0
) -> tuple[list[float], int]:
    """The ideal round-robin poller's detection delays, and how many requests it sends.

    Check ``k`` happens at ``k * 60 / per_minute`` s (k = 0, 1...) and looks at
    the ``BATCH`` pending runs checked longest ago; a run that has ended by
    then is noticed, the others go to the back of the queue.
    """
    interval = 60.0 / per_minute
    pending = collections.deque(finished)
    delays: list[float] = []
    checks = 0
    while pending:
        now = (checks + phase) * interval
        for _ in range(min(BATCH, len(pending))):
            ended = pending.popleft()
            if ended <= now:
                delays.append(now - ended)
            else:
                pending.append(ended)
        checks += 1
    return delays, checks


def feed_delays(
    waited: Sequence[float], others: Sequence[float], per_minute: float, phase: float = 0.0
) -> tuple[list[float], int, int]:
    """The ideal change feed's delays for ``waited``, its requests, and its backlog's peak.

    Request ``k`` happens at ``k * 60 / per_minute`` s and reports up to
    ``BATCH`` of the runs (waited for or ``others``) that ended by then and
    were not reported yet, oldest first. The backlog is how many such runs
    there were at a request: above ``BATCH``, runs end faster than the feed
    can report them, and some wait more than one interval.
    """
    interval = 60.0 / per_minute
    ends = sorted([(moment, True) for moment in waited] + [(moment, False) for moment in others])
    backlog: collections.deque[tuple[float, bool]] = collections.deque()
    delays: list[float] = []
    position = requests = peak = 0
    while len(delays) < len(waited):
        now = (requests + phase) * interval
        while position < len(ends) and ends[position][0] <= now:
            backlog.append(ends[position])
            position += 1
        peak = max(peak, len(backlog))
        for _ in range(min(BATCH, len(backlog))):
            ended, mine = backlog.popleft()
            if mine:
                delays.append(now - ended)
        requests += 1
    return delays, requests, peak
