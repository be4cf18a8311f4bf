"""How long to wait before a retry: exponential backoff with jitter, or ``Retry-After``."""

from __future__ import annotations

import contextlib
import email.utils
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx

__all__ = ["Backoff", "retry_after_seconds", "to_seconds", "utc_now"]


def utc_now() -> datetime:
    """The current wall-clock time, UTC: the default of every injectable wall clock."""
    return datetime.now(timezone.utc)


def to_seconds(value: float | timedelta) -> float:
    """A duration given as seconds or as a ``timedelta``, in seconds."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True, slots=True)
class Backoff:
    """How the client waits between retries; ``max_retries`` on the client says how often.

    Without ``Retry-After`` the n-th retry (from 0) waits
    ``min(initial * 2**n, maximum)`` plus up to ``jitter`` seconds at random: the
    vendor's own advice is 2 s, 4 s, 8 s... capped at 60 s. A ``Retry-After``
    header (seconds or an HTTP date) is honoured instead, capped at
    ``max_retry_after``. ``Backoff(initial=0, jitter=0)`` turns waiting off,
    which suits tests. Durations accept seconds or ``timedelta``.
    """

    initial: float | timedelta = 2.0
    maximum: float | timedelta = 60.0
    jitter: float | timedelta = 1.0
    max_retry_after: float | timedelta = 60.0
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)
    wall_clock: Callable[[], datetime] = field(default=utc_now, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("initial", "maximum", "jitter", "max_retry_after"):
            seconds = to_seconds(getattr(self, name))
            if not math.isfinite(seconds) or seconds < 0:
                raise ValueError(f"Backoff.{name} must be a finite number >= 0, got {seconds!r}")

    def delay(self, retry: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first)."""
        if response is not None:
            retry_after = self.retry_after(response)
            if retry_after is not None:
                return retry_after
        exponential = min(to_seconds(self.initial) * 2.0**retry, to_seconds(self.maximum))
        return exponential + self.rng.uniform(0.0, to_seconds(self.jitter))

    def retry_after(self, response: httpx.Response) -> float | None:
        """The wait ``response``'s ``Retry-After`` asks for, capped; ``None`` if unusable."""
        seconds = retry_after_seconds(response, wall_clock=self.wall_clock)
        return None if seconds is None else min(seconds, to_seconds(self.max_retry_after))


def retry_after_seconds(
    response: httpx.Response, *, wall_clock: Callable[[], datetime] = utc_now
) -> float | None:
    """Seconds ``response``'s ``Retry-After`` asks to wait (>= 0); ``None`` if absent or garbage.

    An HTTP date is measured against the response's own ``Date`` header when it
    has one, so a skewed local clock does not matter; else against ``wall_clock``.
    """
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    seconds: float | None
    try:
        seconds = float(value)
    except ValueError:
        # An HTTP date already past means "now" (RFC 9110): clamp it to 0.
        seconds = _seconds_until(value, response.headers.get("date"), wall_clock)
        seconds = None if seconds is None else max(seconds, 0.0)
    # A negative number of seconds is garbage, not "retry now": as if absent.
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _seconds_until(
    http_date: str, date_header: str | None, wall_clock: Callable[[], datetime]
) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    reference = wall_clock()
    if date_header is not None:
        with contextlib.suppress(TypeError, ValueError):
            reference = email.utils.parsedate_to_datetime(date_header)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if reference.tzinfo is None:
        reference = reference.replace(tzinfo=timezone.utc)
    return (when - reference).total_seconds()
