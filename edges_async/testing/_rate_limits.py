"""Server-side rate limiting: one budget per workspace and route group.

Edges documents the limits (requests per minute and per second, by plan) but
not the algorithm that enforces them, so the simulator offers three, and a
client must stay under the limit with any of them:

- ``FIXED_MINUTE``: at most ``requests_per_minute`` accepted per calendar
  minute of the clock, the minutes counted from its first reading
  (``[0, 60)``, ``[60, 120)``...). Bursts of twice the limit across a minute
  boundary pass.
- ``SLIDING_MINUTE``: at most ``requests_per_minute`` accepted in any 60 s
  span. A deque keeps the times of the accepted requests of the last minute.
- ``PER_SECOND``: the sliding minute, plus a per-second cap modelled as a token
  bucket of rate ``requests_per_second`` and capacity
  ``max(1, requests_per_second)``: one second's worth. An even stream at the
  plan's rate passes; a burst beyond one second's worth is refused. (The
  real per-second algorithm is undocumented; this is the strictest reading
  of "max requests per second" that still lets a steady client through.)
- ``UNLIMITED``: no limit at all, for measuring everything but rate limiting.

Refused requests consume no budget.
"""

from __future__ import annotations

import collections
import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edges_async._plans import PlanTier

__all__ = ["Decision", "RateLimits", "WindowKind", "retry_after_header"]

# Loop clocks drift by float rounding: a client pacing itself at exactly the
# plan's rate must not be refused for a token short by 1e-15.
_EPSILON = 1e-6
_MINUTE = 60.0


class WindowKind(str, enum.Enum):
    """How the simulator counts requests against a per-minute limit."""

    FIXED_MINUTE = "fixed_minute"
    """At most the limit per calendar minute of the clock."""

    SLIDING_MINUTE = "sliding_minute"
    """At most the limit in any 60-second span."""

    PER_SECOND = "per_second"
    """The sliding minute, plus a one-second token bucket at the per-second rate."""

    UNLIMITED = "unlimited"
    """No limit: every request is accepted (not how Edges behaves; for benchmarks)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The limiter's answer to one request."""

    accepted: bool
    remaining: int
    """Requests left in the minute window, after this one."""
    retry_after: float
    """Seconds until a request would be accepted (0 when accepted)."""
    limit: str
    """The limit that refused the request, in words ("30 requests per minute")."""


def retry_after_header(seconds: float) -> str:
    """The ``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds - _EPSILON)))


def _rate_words(rate: float, unit: str) -> str:
    return f"{rate:g} requests per {unit}"


class _FixedMinute:
    """Counts accepted requests per calendar minute."""

    __slots__ = ("_count", "_per_minute", "_window")

    def __init__(self, per_minute: int) -> None:
        self._per_minute = per_minute
        self._window = -1
        self._count = 0

    def acquire(self, elapsed: float) -> Decision:
        """Accept or refuse a request arriving ``elapsed`` seconds after the clock's origin."""
        window = math.floor(elapsed / _MINUTE)
        if window != self._window:
            self._window, self._count = window, 0
        if self._count >= self._per_minute:
            wait = (window + 1) * _MINUTE - elapsed
            return Decision(False, 0, wait, _rate_words(self._per_minute, "minute"))
        self._count += 1
        return Decision(True, self._per_minute - self._count, 0.0, "")

    def __repr__(self) -> str:
        return f"<fixed minute {self._window}: {self._count}/{self._per_minute}>"


class _SlidingMinute:
    """Keeps the times of the requests accepted in the last 60 s."""

    __slots__ = ("_accepted", "_per_minute")

    def __init__(self, per_minute: int) -> None:
        self._per_minute = per_minute
        self._accepted: collections.deque[float] = collections.deque()

    def check(self, elapsed: float) -> Decision:
        """Whether a request at ``elapsed`` fits, without taking it."""
        accepted = self._accepted
        # A request at t counts in the spans [t, t + 60): drop those at or before now - 60.
        while accepted and accepted[0] <= elapsed - _MINUTE:
            accepted.popleft()
        if len(accepted) >= self._per_minute:
            wait = accepted[0] + _MINUTE - elapsed
            return Decision(False, 0, wait, _rate_words(self._per_minute, "minute"))
        return Decision(True, self._per_minute - len(accepted) - 1, 0.0, "")

    def take(self, elapsed: float) -> None:
        """Count a request accepted at ``elapsed``."""
        self._accepted.append(elapsed)

    def acquire(self, elapsed: float) -> Decision:
        """Accept or refuse a request arriving ``elapsed`` seconds after the clock's origin."""
        decision = self.check(elapsed)
        if decision.accepted:
            self.take(elapsed)
        return decision

    def __repr__(self) -> str:
        return f"<sliding minute: {len(self._accepted)}/{self._per_minute}>"


class _PerSecond:
    """A sliding minute plus a token bucket holding one second's worth of requests."""

    __slots__ = ("_capacity", "_minute", "_rate", "_tokens", "_updated")

    def __init__(self, per_minute: int, per_second: float) -> None:
        self._minute = _SlidingMinute(per_minute)
        self._rate = per_second
        self._capacity = max(1.0, per_second)
        self._tokens = self._capacity
        self._updated: float | None = None

    def acquire(self, elapsed: float) -> Decision:
        """Accept or refuse a request arriving ``elapsed`` seconds after the clock's origin."""
        if self._updated is not None:
            refill = (elapsed - self._updated) * self._rate
            self._tokens = min(self._capacity, self._tokens + refill)
        self._updated = elapsed
        minute = self._minute.check(elapsed)
        bucket_wait = max(0.0, (1.0 - self._tokens) / self._rate)
        if self._tokens < 1.0 - _EPSILON:
            wait = max(bucket_wait, minute.retry_after)
            return Decision(False, 0, wait, _rate_words(self._rate, "second"))
        if not minute.accepted:
            return minute
        self._tokens -= 1.0
        self._minute.take(elapsed)
        return minute

    def __repr__(self) -> str:
        return f"<per second: {self._tokens:.2f}/{self._capacity:g} tokens, {self._minute!r}>"


class _Unlimited:
    """Accepts everything; reports the plan's minute figure as remaining."""

    __slots__ = ("_per_minute",)

    def __init__(self, per_minute: int) -> None:
        self._per_minute = per_minute

    def acquire(self, elapsed: float) -> Decision:
        """Accept or refuse a request arriving ``elapsed`` seconds after the clock's origin."""
        return Decision(accepted=True, remaining=self._per_minute, retry_after=0.0, limit="")

    def __repr__(self) -> str:
        return "_Unlimited()"


_Budget = _FixedMinute | _SlidingMinute | _PerSecond | _Unlimited


class RateLimits:
    """Every workspace's budgets: one for the ``/v1/runs`` routes, one for live actions."""

    __slots__ = ("_budgets", "window")

    def __init__(self, window: WindowKind) -> None:
        self.window = window
        self._budgets: dict[tuple[str, bool], _Budget] = {}

    def acquire(
        self, workspace_uid: str, plan: PlanTier, *, live: bool, elapsed: float
    ) -> Decision:
        """Take one request from a budget at ``elapsed`` seconds of the clock, if it has room."""
        key = (workspace_uid, live)
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = self._new_budget(plan, live=live)
        return budget.acquire(elapsed)

    def _new_budget(self, plan: PlanTier, *, live: bool) -> _Budget:
        per_minute = plan.live_requests_per_minute if live else plan.requests_per_minute
        per_second = plan.live_requests_per_second if live else plan.requests_per_second
        if self.window is WindowKind.FIXED_MINUTE:
            return _FixedMinute(per_minute)
        if self.window is WindowKind.SLIDING_MINUTE:
            return _SlidingMinute(per_minute)
        if self.window is WindowKind.UNLIMITED:
            return _Unlimited(per_minute)
        return _PerSecond(per_minute, per_second)

    def __repr__(self) -> str:
        return f"RateLimits(window={self.window.value!r}, budgets={self._budgets!r})"
