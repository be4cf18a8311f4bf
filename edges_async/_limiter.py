"""Client-side rate limiting: the protocol, and the default per-workspace limiter.

Edges limits every ``/v1/runs`` route with one budget per workspace, and the
per-second caps equal the per-minute rate / 60: the budget can only be spent as
an even stream, as any burst trips the per-second cap. So each route group of a
workspace gets a :class:`~edges_async._pacer.Pacer` letting one request through
every ``60 / (headroom * per_minute)`` seconds, FIFO, never in bursts.

Every ``AsyncClient`` of one workspace (same API key and base URL) in one event
loop shares those pacers: two clients never spend the budget twice. The
registry is keyed by a digest of the key, never the key itself.

Feedback makes it adaptive:

- a 429 pauses the whole group (every task, not just the one refused) for
  ``Retry-After``, or 60 s when absent (the longest any minute window needs to
  reset), and steps the rate down by a quarter. Accepted requests bring it
  back quickly to 90 % of the rate that was refused, then slowly (5 % of the
  plan per minute without a 429): where the refusals come from a limit the
  plan's figures do not show (network jitter against a per-second cap), they
  become rare probes instead of a stream;
- ``X-RateLimit-Remaining`` below what our own traffic explains means someone
  else spends the workspace's budget (another process, another worker): the
  rate shrinks to leave them their share, before any 429.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import math
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, final, runtime_checkable

import anyio
import httpx

from ._backoff import retry_after_seconds
from ._pacer import Pacer
from ._plans import PlanTier

__all__ = [
    "DEFAULT_HEADROOM",
    "LimiterStatistics",
    "NoRateLimit",
    "RateLimiter",
    "ReportsRate",
    "WorkspaceRateLimiter",
    "granted_runs_rate",
    "route_group",
    "workspace_id",
]

logger = logging.getLogger("edges_async")

DEFAULT_HEADROOM = 0.95  # the share of the plan's rate spent: the rest absorbs jitter
_WINDOW = 60.0
_DEFAULT_PAUSE = 60.0
_MAX_PAUSE = 120.0
_STEP_DOWN = 0.75
_MIN_FACTOR = 0.25
_RECOVERY_PER_SUCCESS = 0.02
_SAFE_SHARE_OF_REFUSED = 0.9
_PROBE_PER_SECOND = 0.05 / 60
# Requests by which the server's count may differ from ours (requests in
# flight, clocks): below this, a low Remaining is not foreign traffic.
_FOREIGN_TOLERANCE = 2


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


@runtime_checkable
class ReportsRate(Protocol):
    """A limiter that tells the rate it grants: waiting for runs polls within it.

    Optional beside :class:`RateLimiter`: a limiter without ``current_rate``
    is assumed to grant 95 % of the plan's rate.
    """

    @property
    def current_rate(self) -> float:
        """Requests per minute the workspace's ``/v1/runs`` routes may send now."""
        ...


def granted_runs_rate(limiter: object, plan: PlanTier) -> Callable[[], float]:
    """How to read the requests per minute ``limiter`` grants the ``/v1/runs`` routes now.

    A ``current_rate`` that is not a finite number > 0 (a method, a string,
    zero) counts as absent: 95 % of the plan's rate.
    """
    per_minute = min(plan.requests_per_minute, plan.requests_per_second * 60) * DEFAULT_HEADROOM
    if not isinstance(limiter, ReportsRate):
        return lambda: per_minute

    def reported() -> float:
        rate = limiter.current_rate
        usable = isinstance(rate, (int, float)) and not isinstance(rate, bool)
        return rate if usable and 0 < rate < math.inf else per_minute

    return reported


@final
class NoRateLimit:
    """A limiter that never waits: for tests, benchmarks, or a gateway that limits for you.

    With it only the client's retries after a 429 (honouring ``Retry-After``)
    slow requests down. Exported from ``edges_async.testing``.
    """

    __slots__ = ()

    async def acquire(self, request: httpx.Request) -> None:
        """Let every request go at once."""

    def feedback(self, request: httpx.Request, response: httpx.Response | None) -> None:
        """Ignore every answer."""

    def __repr__(self) -> str:
        return "NoRateLimit()"


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    """A snapshot of a workspace limiter, for all clients sharing it."""

    requests_sent: int
    """Requests let through, retries included."""
    time_waited: float
    """Seconds callers spent waiting for their turn, summed over callers."""
    rate_limited: int
    """429 responses seen."""
    current_rate: float
    """Requests per minute the ``/v1/runs`` routes are paced at now."""
    nominal_rate: float
    """Requests per minute the plan allows on the ``/v1/runs`` routes."""
    paused_until: float | None
    """Loop time until which the ``/v1/runs`` routes are paused after a 429, if they are."""


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


def workspace_id(api_key: str, base_url: str) -> str:
    """A stable identifier of a workspace that does not reveal its key."""
    digest = hashlib.blake2b(f"{base_url}\0{api_key}".encode(), digest_size=12)
    return digest.hexdigest()


class _RouteBudget:
    """One route group's pacing for one workspace, adapted by the answers it gets."""

    __slots__ = (
        "_factor",
        "_headroom",
        "_last_success",
        "_own",
        "_pacer",
        "_per_minute",
        "_refused_at",
        "_share",
        "rate_limited",
    )

    def __init__(self, per_minute: float, per_second: float, headroom: float) -> None:
        # The even stream must respect both caps: whichever is tighter.
        self._per_minute = min(per_minute, per_second * 60)
        self._headroom = headroom
        self._factor = 1.0  # steps down on 429s, recovers on successes
        self._refused_at = 1.0  # the factor of the latest 429
        self._last_success: float | None = None
        self._share = 1.0  # shrinks while others spend the same budget
        self._own: collections.deque[float] = collections.deque()
        self._pacer = Pacer(self._interval())
        self.rate_limited = 0

    def _interval(self) -> float:
        return _WINDOW / self.current_rate

    @property
    def current_rate(self) -> float:
        """Requests per minute allowed now."""
        return self._per_minute * self._headroom * min(self._factor, self._share)

    @property
    def nominal_rate(self) -> float:
        """Requests per minute the plan allows this group."""
        return self._per_minute

    @property
    def pacer(self) -> Pacer:
        """The pacer callers wait on."""
        return self._pacer

    async def acquire(self) -> None:
        await self._pacer.wait()
        now = anyio.current_time()
        self._own.append(now)
        self._forget_before(now - _WINDOW)

    def _forget_before(self, moment: float) -> None:
        while self._own and self._own[0] < moment:
            self._own.popleft()

    def feedback(self, response: httpx.Response) -> None:
        now = anyio.current_time()
        if response.status_code == 429:
            self._on_refusal(response, now)
        elif response.is_success:
            self._recover(now)
        remaining = response.headers.get("x-ratelimit-remaining")
        if remaining is not None and response.status_code != 429:
            self._on_remaining(remaining, now)
        self._pacer.interval = self._interval()

    def _recover(self, now: float) -> None:
        safe = _SAFE_SHARE_OF_REFUSED * self._refused_at
        if self._factor < safe:
            self._factor = min(safe, self._factor + _RECOVERY_PER_SUCCESS)
        elif self._last_success is not None:
            probe = _PROBE_PER_SECOND * (now - self._last_success)
            self._factor = min(1.0, self._factor + probe)
        self._last_success = now

    def _on_refusal(self, response: httpx.Response, now: float) -> None:
        self.rate_limited += 1
        already_paused = self._pacer.paused_until > now
        pause = retry_after_seconds(response)
        pause = _DEFAULT_PAUSE if pause is None else min(pause, _MAX_PAUSE)
        self._pacer.pause_until(now + pause)
        if not already_paused:  # the requests in flight with this one say nothing new
            self._refused_at = self._factor
            self._factor = max(_MIN_FACTOR, self._factor * _STEP_DOWN)
        logger.info(  # handled: INFO, like every retry backoff
            "Rate limited (%s): pausing the workspace's %s for %.1f s, pacing at %.1f/min",
            response.headers.get("x-ratelimit-type", "429"),
            response.request.url.path,
            self._pacer.paused_until - now,
            self.current_rate,
        )

    def _on_remaining(self, header: str, now: float) -> None:
        try:
            remaining = int(header)
        except ValueError:
            return
        self._forget_before(now - _WINDOW)
        explained = self._per_minute - len(self._own)
        foreign = explained - remaining
        if foreign > _FOREIGN_TOLERANCE:
            self._share = max(_MIN_FACTOR, (self._per_minute - foreign) / self._per_minute)
        else:
            self._share = 1.0


@final
class _WorkspaceBudgets:
    """The budgets of one workspace in one event loop, shared by its clients."""

    __slots__ = ("__weakref__", "groups", "plan")

    def __init__(self, plan: PlanTier, headroom: float) -> None:
        self.plan = plan
        runs = (plan.requests_per_minute, plan.requests_per_second)
        live = (plan.live_requests_per_minute, plan.live_requests_per_second)
        self.groups = {
            "runs": _RouteBudget(*runs, headroom),
            "live": _RouteBudget(*live, headroom),
            # Launches and anything else: undocumented; the runs figures are a
            # cautious guess that keeps them from starving the runs budget.
            "other": _RouteBudget(*runs, headroom),
        }


# One registry per event loop: pacers sleep on their loop and cannot be shared
# across loops. Entries live as long as some limiter holds them.
_registry: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, weakref.WeakValueDictionary[str, _WorkspaceBudgets]
] = weakref.WeakKeyDictionary()


def _shared_budgets(workspace: str, plan: PlanTier, headroom: float) -> _WorkspaceBudgets:
    loop = asyncio.get_running_loop()
    per_loop = _registry.setdefault(loop, weakref.WeakValueDictionary())
    budgets = per_loop.get(workspace)
    if budgets is None:
        budgets = per_loop[workspace] = _WorkspaceBudgets(plan, headroom)
    elif budgets.plan is not plan:
        logger.warning(
            "Clients of one workspace disagree on its plan (%s, %s): keeping %s",
            budgets.plan.value,
            plan.value,
            budgets.plan.value,
        )
    return budgets


@final
class WorkspaceRateLimiter:
    """The default limiter: spends a workspace's plan budget evenly, shared by its clients.

    Every limiter created with the same ``workspace`` shares one budget per
    route group within an event loop (``AsyncClient`` passes a digest of its API
    key and base URL). ``headroom`` is the share of the plan's rate used: the
    rest absorbs network jitter. The budget is created on first use, inside
    the running loop.

    >>> limiter = WorkspaceRateLimiter(PlanTier.SILVER, workspace="team-a")
    >>> async with AsyncClient(key, plan="silver", limiter=limiter) as client: ...
    >>> limiter.statistics().requests_sent
    """

    __slots__ = ("_budgets", "_headroom", "_loop", "_plan", "_workspace")

    def __init__(
        self, plan: PlanTier | str, *, workspace: str, headroom: float = DEFAULT_HEADROOM
    ) -> None:
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {headroom!r}")
        self._plan = PlanTier(plan)
        self._workspace = workspace
        self._headroom = headroom
        self._loop: asyncio.AbstractEventLoop | None = None
        self._budgets: _WorkspaceBudgets | None = None

    @property
    def plan(self) -> PlanTier:
        """The plan the budget is sized from."""
        return self._plan

    @property
    def headroom(self) -> float:
        """The share of the plan's rate this limiter aims to use."""
        return self._headroom

    @property
    def current_rate(self) -> float:
        """Requests per minute the workspace's ``/v1/runs`` routes are paced at now."""
        if self._budgets is None:
            return float(self._plan.requests_per_minute) * self._headroom
        return self._budgets.groups["runs"].current_rate

    def _current(self) -> _WorkspaceBudgets:
        loop = asyncio.get_running_loop()
        if self._budgets is None or self._loop is not loop:
            self._budgets = _shared_budgets(self._workspace, self._plan, self._headroom)
            self._loop = loop
        return self._budgets

    async def acquire(self, request: httpx.Request) -> None:
        """Wait for the request's route group to have room for it."""
        await self._current().groups[route_group(request.url)].acquire()

    def feedback(self, request: httpx.Request, response: httpx.Response | None) -> None:
        """Adapt to a response: pause and slow down on 429, make room for others' traffic."""
        if response is not None:
            self._current().groups[route_group(request.url)].feedback(response)

    def statistics(self) -> LimiterStatistics:
        """A snapshot of the workspace's budgets (all clients sharing them)."""
        if self._budgets is None:
            runs_nominal = float(self._plan.requests_per_minute)
            return LimiterStatistics(0, 0.0, 0, runs_nominal * self._headroom, runs_nominal, None)
        groups = self._budgets.groups.values()
        runs = self._budgets.groups["runs"]
        paused = runs.pacer.paused_until
        return LimiterStatistics(
            requests_sent=sum(group.pacer.granted for group in groups),
            time_waited=sum(group.pacer.waited for group in groups),
            rate_limited=sum(group.rate_limited for group in groups),
            current_rate=runs.current_rate,
            nominal_rate=runs.nominal_rate,
            paused_until=paused if self._loop is not None and paused > self._loop.time() else None,
        )

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"<WorkspaceRateLimiter plan={self._plan.value} headroom={self._headroom} "
            f"rate={stats.current_rate:.1f}/min sent={stats.requests_sent} "
            f"429s={stats.rate_limited}>"
        )
