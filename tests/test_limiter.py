"""The default limiter spaces requests evenly at a share of the plan's rate."""

from __future__ import annotations

import asyncio
import itertools

import anyio
import httpx
import pytest

import edges_async as ea
from edges_async._limiter import route_group

RUNS_URL = "https://api.edges.run/v1/runs/x/status"
LIVE_URL = "https://api.edges.run/v1/actions/linkedin-extract-people/run/live"


@pytest.mark.parametrize(
    ("url", "group"),
    [
        ("https://api.edges.run/v1/runs", "runs"),
        ("https://api.edges.run/v1/runs/abc/outputs?limit=5", "runs"),
        (LIVE_URL, "live"),
        ("https://api.edges.run/v1/actions/x/run/async", "other"),
        ("https://api.edges.run/v1/runsheet", "other"),
    ],
)
def test_route_groups(url: str, group: str) -> None:
    """Runs routes share one budget, live actions another, the rest a third."""
    assert route_group(httpx.URL(url)) == group


@pytest.mark.parametrize("plan", list(ea.PlanTier))
async def test_requests_are_spaced_evenly_under_the_plan_rate(plan: ea.PlanTier) -> None:
    """Twenty concurrent acquisitions leave one every 60 / (0.95 * rpm) seconds, no burst."""
    limiter = ea.PlanRateLimiter(plan)
    loop = asyncio.get_running_loop()
    start = loop.time()
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire(httpx.Request("GET", RUNS_URL))
        times.append(loop.time() - start)

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(one)
    interval = 60 / (0.95 * plan.requests_per_minute)
    times.sort()
    assert times[0] == pytest.approx(0, abs=1e-6)
    for earlier, later in itertools.pairwise(times):
        assert later - earlier == pytest.approx(interval, rel=0.01)


async def test_live_budget_is_separate_from_runs_budget() -> None:
    """A live launch does not wait behind runs requests."""
    limiter = ea.PlanRateLimiter(ea.PlanTier.TRIAL)
    loop = asyncio.get_running_loop()
    for _ in range(3):
        await limiter.acquire(httpx.Request("GET", RUNS_URL))
    before = loop.time()
    await limiter.acquire(httpx.Request("POST", LIVE_URL))
    assert loop.time() == pytest.approx(before)


def test_bad_headroom_is_refused() -> None:
    """Headroom must be a fraction in (0, 1]."""
    with pytest.raises(ValueError, match="headroom"):
        ea.PlanRateLimiter(ea.PlanTier.TRIAL, headroom=1.5)
