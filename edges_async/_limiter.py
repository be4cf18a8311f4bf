"""Client-side rate limiting: the protocol every limiter follows, and the plan-sized default."""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

import httpx
from aiolimiter import AsyncLimiter

from ._plans import PlanTier

__all__ = ["PlanRateLimiter", "RateLimiter", "route_group"]


@runtime_checkable
class RateLimiter(Protocol):
    """What the client asks of a rate limiter; pass your own as ``AsyncClient(limiter=...)``.

    ``acquire`` is awaited before every HTTP attempt, retries included, and
    returns when the request may go. ``feedback`` is called after every attempt
    with its response, or ``None`` when no response arrived.
    """

    async def acquire(self, request: httpx.Request) -> None:
        """Wait until ``request`` may be sent."""
        ...

    def feedback(self, request: httpx.Request, response: httpx.Response | None) -> None:
        """Learn from the outcome of ``request`` (headers such as ``X-RateLimit-Remaining``)."""
        ...


_LIVE_PATH = re.compile(r"/actions/[^/]+/run/live/?$")
_RUNS_PATH = re.compile(r"/runs(/|$)")


def route_group(url: httpx.URL) -> str:
    """The rate-limit budget a URL draws on: ``"runs"``, ``"live"`` or ``"other"``."""
    path = url.path
    if _LIVE_PATH.search(path):
        return "live"
    if _RUNS_PATH.search(path):
        return "runs"
    return "other"


class PlanRateLimiter:
    """Spaces requests evenly at a share of the plan's documented rate, one budget per route group.

    The per-second caps equal the per-minute rate / 60, so the only safe shape
    is an even stream: each group lets one request through every
    ``60 / (headroom * per_minute)`` seconds and never bursts.
    """

    __slots__ = ("_headroom", "_limiters", "_plan")

    def __init__(self, plan: PlanTier, *, headroom: float = 0.95) -> None:
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {headroom!r}")
        self._plan = plan
        self._headroom = headroom
        # Built on first use, inside the running loop: aiolimiter binds to a loop.
        self._limiters: dict[str, AsyncLimiter] = {}

    def _per_minute(self, group: str) -> float:
        if group == "live":
            return self._plan.live_requests_per_minute
        # Anything that is neither a runs route nor a live action (launches...)
        # is undocumented: the runs budget is a cautious guess.
        return self._plan.requests_per_minute

    async def acquire(self, request: httpx.Request) -> None:
        """Wait for the next slot of the request's route group."""
        group = route_group(request.url)
        limiter = self._limiters.get(group)
        if limiter is None:
            interval = 60.0 / (self._headroom * self._per_minute(group))
            limiter = self._limiters[group] = AsyncLimiter(1, interval)
        await limiter.acquire()

    def feedback(self, request: httpx.Request, response: httpx.Response | None) -> None:
        """Nothing to learn yet: this limiter keeps a fixed pace."""

    def __repr__(self) -> str:
        return f"<PlanRateLimiter plan={self._plan.value} headroom={self._headroom}>"
