"""Client-side rate limiting: the protocol, and the default per-workspace limiter.

Edges limits every ``/v1/runs`` route with one budget per workspace, and the
per-second caps equal the per-minute rate / 60: the budget can only be spent as
an even stream, as any burst trips the per-second cap. So each route group of a
workspace gets a slot book (:mod:`edges_async._slot_book`) letting one request
through every ``60 / (headroom * per_minute)`` seconds, FIFO, never in bursts.

Every ``AsyncClient`` of one workspace (same API key and base URL) in the
process shares those books, whatever its thread and event loop: two clients
never spend the budget twice (:mod:`edges_async._local_budgets`). The
registry is keyed by a digest of the key, never the key itself. With a
coordination (``RedisCoordination``) the books live in Redis instead, shared
by every process using it; the limiter only sees the
:class:`~edges_async._budget.GroupBudgets` interface either way.

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
import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, final, runtime_checkable

import httpx

from ._budget import GroupBudgets
from ._local_budgets import LocalBudgets
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

DEFAULT_HEADROOM = 0.95  # the share of the plan's rate spent: the rest absorbs jitter


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
    """A snapshot of a workspace limiter, for all clients sharing it (see ``statistics``)."""

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


_GROUPS = ("runs", "live", "other")  # "runs" first: statistics read its rate
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


class _ProvidesBudgets(Protocol):
    """A coordination (``RedisCoordination``): where a workspace's budgets are shared."""

    def _budgets(self, workspace: str, plan: PlanTier, headroom: float) -> GroupBudgets:
        """The budgets of ``workspace`` for the running loop (the same object each time)."""
        ...


def _closed(budgets: GroupBudgets) -> bool:
    return bool(getattr(budgets, "closed", False))


@final
class WorkspaceRateLimiter:
    """The default limiter: spends a workspace's plan budget evenly, shared by its clients.

    Every limiter created with the same ``workspace`` shares one budget per
    route group across the process, whatever thread and event loop it runs
    in (``AsyncClient`` passes a digest of its API key and base URL). With a
    ``coordination`` (``RedisCoordination``), the budget is shared by every
    process using it. ``headroom`` is the share of the plan's rate used: the
    rest absorbs network jitter. The budget is obtained on first use, inside
    the running loop.

    >>> limiter = WorkspaceRateLimiter(PlanTier.SILVER, workspace="team-a")
    >>> async with AsyncClient(key, plan="silver", limiter=limiter) as client: ...
    >>> limiter.statistics().requests_sent
    """

    __slots__ = ("_budgets", "_coordination", "_headroom", "_local", "_loop", "_plan", "_workspace")

    def __init__(
        self,
        plan: PlanTier | str,
        *,
        workspace: str,
        headroom: float = DEFAULT_HEADROOM,
        coordination: _ProvidesBudgets | None = None,
    ) -> None:
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {headroom!r}")
        self._plan = PlanTier(plan)
        self._workspace = workspace
        self._headroom = headroom
        self._coordination = coordination
        self._loop: asyncio.AbstractEventLoop | None = None
        self._local: LocalBudgets | None = None
        self._budgets: GroupBudgets | None = None

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
        return self._budgets.snapshot("runs").current_rate

    def _current(self) -> GroupBudgets:
        loop = asyncio.get_running_loop()
        if self._coordination is not None:
            # Closed (its loop's last client closed): never used again, ask anew.
            if self._budgets is None or self._loop is not loop or _closed(self._budgets):
                self._budgets = self._coordination._budgets(
                    self._workspace, self._plan, self._headroom
                )
                self._loop = loop
            return self._budgets
        local = self._local
        if local is None or not local.serves(loop):  # a new loop, or its clock changed
            local = LocalBudgets.for_loop(self._workspace, self._plan, self._headroom, loop)
            self._local = self._budgets = local
        return local

    async def acquire(self, request: httpx.Request) -> None:
        """Wait for the request's route group to have room for it."""
        await self._current().acquire(route_group(request.url))

    def feedback(self, request: httpx.Request, response: httpx.Response | None) -> None:
        """Adapt to a response: pause and slow down on 429, make room for others' traffic."""
        if response is not None:
            self._current().feedback(route_group(request.url), response)

    def statistics(self) -> LimiterStatistics:
        """A snapshot of the workspace's budgets, summed over the route groups.

        Without coordination, the counts are those of every client of the
        workspace in this process. With one, the counts are this process's,
        while the rate and the pause are the workspace's.
        """
        if self._budgets is None:
            runs_nominal = float(self._plan.requests_per_minute)
            return LimiterStatistics(0, 0.0, 0, runs_nominal * self._headroom, runs_nominal, None)
        groups = [self._budgets.snapshot(group) for group in _GROUPS]
        runs = groups[0]
        return LimiterStatistics(
            requests_sent=sum(group.granted for group in groups),
            time_waited=sum(group.waited for group in groups),
            rate_limited=sum(group.rate_limited for group in groups),
            current_rate=runs.current_rate,
            nominal_rate=runs.nominal_rate,
            paused_until=runs.paused_until,
        )

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"<WorkspaceRateLimiter plan={self._plan.value} headroom={self._headroom} "
            f"rate={stats.current_rate:.1f}/min sent={stats.requests_sent} "
            f"429s={stats.rate_limited}>"
        )
