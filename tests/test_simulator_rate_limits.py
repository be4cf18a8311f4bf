"""The simulator's per-workspace rate limits under each window kind, over fake time."""

from __future__ import annotations

import asyncio
import bisect
import random
from datetime import datetime, timezone

import httpx
import pytest

from edges_async import PlanTier
from edges_async.testing import EdgesSimulator, RunScript, WindowKind, Workspace

from .conftest import raw_http

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
NO_RUN = "00000000-0000-4000-8000-000000000000"


def setup(
    window: WindowKind, plan: str = "trial", *, send_retry_after: bool = True
) -> tuple[EdgesSimulator, Workspace, str]:
    sim = EdgesSimulator(window=window, start_time=START, send_retry_after=send_retry_after)
    workspace = sim.add_workspace(api_key="key-1", plan=plan)
    return sim, workspace, sim.add_run(workspace).uid


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(moment - asyncio.get_running_loop().time())


async def burst(client: httpx.AsyncClient, path: str, count: int) -> list[httpx.Response]:
    return [await client.get(path) for _ in range(count)]


async def paced(client: httpx.AsyncClient, path: str, *, every: float, count: int) -> list[int]:
    """The statuses of ``count`` GETs of ``path``, the n-th (from 1) at ``n * every`` seconds."""
    statuses = []
    for step in range(1, count + 1):
        await sleep_until(every * step)
        statuses.append((await client.get(path)).status_code)
    return statuses


async def test_sliding_minute_refuses_past_the_limit_and_says_when_to_retry() -> None:
    """The 31st request in a minute gets 429 with the documented headers and Retry-After."""
    sim, _, uid = setup(WindowKind.SLIDING_MINUTE)
    async with raw_http(sim, "key-1") as client:
        accepted = await burst(client, f"/v1/runs/{uid}", 30)
        assert [r.status_code for r in accepted] == [200] * 30
        assert [int(r.headers["X-RateLimit-Remaining"]) for r in accepted] == list(
            range(29, -1, -1)
        )
        refused = await client.get(f"/v1/runs/{uid}")
        assert refused.status_code == 429
        assert refused.headers["X-RateLimit-Type"] == "/v1/runs"
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert refused.headers["Retry-After"] == "60"
        body = refused.json()
        assert (body["error_label"], body["status_code"]) == ("STATUS_429", 429)
        assert "30 requests per minute" in body["message"]
        await sleep_until(44.5)
        assert (await client.get(f"/v1/runs/{uid}")).headers["Retry-After"] == "16"
        await sleep_until(60.0)
        assert (await client.get(f"/v1/runs/{uid}")).status_code == 200


async def test_sliding_minute_never_lets_a_minute_span_over_the_limit() -> None:
    """Under random bursts no 60 s span holds more accepted requests than the plan allows."""
    sim, _, uid = setup(WindowKind.SLIDING_MINUTE)
    schedule = random.Random(4)
    accepted: list[float] = []
    loop = asyncio.get_running_loop()
    async with raw_http(sim, "key-1") as client:
        while loop.time() < 600:
            answers = [
                await client.get(f"/v1/runs/{uid}/status") for _ in range(schedule.randint(1, 3))
            ]
            accepted += [loop.time() for answer in answers if answer.status_code == 200]
            await asyncio.sleep(schedule.expovariate(1.0))
    busiest = max(
        bisect.bisect_left(accepted, start + 60) - index for index, start in enumerate(accepted)
    )
    assert busiest == 30
    assert len(accepted) >= 280


async def test_fixed_minute_resets_on_the_minute() -> None:
    """The fixed window refuses the 31st request of a calendar minute and resets at its end."""
    sim, _, uid = setup(WindowKind.FIXED_MINUTE)  # the first clock reading is at 0
    async with raw_http(sim, "key-1") as client:
        await sleep_until(50.0)
        assert [r.status_code for r in await burst(client, f"/v1/runs/{uid}", 30)] == [200] * 30
        refused = await client.get(f"/v1/runs/{uid}")
        assert (refused.status_code, refused.headers["Retry-After"]) == (429, "10")
        await sleep_until(60.0)
        again = await burst(client, f"/v1/runs/{uid}", 30)
        assert [r.status_code for r in again] == [200] * 30
        assert again[0].headers["X-RateLimit-Remaining"] == "29"
        refused = await client.get(f"/v1/runs/{uid}")
        assert (refused.status_code, refused.headers["Retry-After"]) == (429, "60")


async def test_per_second_bucket_refuses_a_burst_but_passes_an_even_stream() -> None:
    """Two requests at once exceed Trial's 0.5/s; one every 2 s passes all minute long."""
    sim, _, uid = setup(WindowKind.PER_SECOND)
    async with raw_http(sim, "key-1") as client:
        assert (await client.get(f"/v1/runs/{uid}")).status_code == 200
        refused = await client.get(f"/v1/runs/{uid}")
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "2"
        assert "0.5 requests per second" in refused.json()["message"]
        statuses = await paced(client, f"/v1/runs/{uid}", every=2.0, count=30)
        assert statuses == [200] * 30


async def test_per_second_bucket_holds_one_seconds_worth() -> None:
    """Titanium passes a burst of 10 at once, refuses the 11th, and passes 10/s after."""
    sim, _, uid = setup(WindowKind.PER_SECOND, "titanium")
    async with raw_http(sim, "key-1") as client:
        burst_statuses = [r.status_code for r in await burst(client, f"/v1/runs/{uid}", 11)]
        assert burst_statuses == [200] * 10 + [429]
        statuses = await paced(client, f"/v1/runs/{uid}", every=0.1, count=50)
        assert statuses == [200] * 50


async def test_run_routes_share_one_budget_and_name_their_family() -> None:
    """List, get, status and outputs draw on one budget; each 429 names its route family."""
    sim, workspace, uid = setup(WindowKind.SLIDING_MINUTE)
    done = sim.add_run(workspace, script=RunScript(steps=(("SUCCEEDED", 0.0),))).uid
    async with raw_http(sim, "key-1") as client:
        for path in ("/v1/runs", f"/v1/runs/{uid}", f"/v1/runs/{uid}/status"):
            assert [r.status_code for r in await burst(client, path, 8)] == [200] * 8
        outputs = await burst(client, f"/v1/runs/{done}/outputs", 6)
        assert [r.status_code for r in outputs] == [200] * 6
        families = {
            ("GET", "/v1/runs"): "/v1/runs",
            ("GET", f"/v1/runs/{uid}"): "/v1/runs",
            ("GET", f"/v1/runs/{uid}/status"): "/v1/runs/status",
            ("GET", f"/v1/runs/{uid}/outputs"): "/v1/runs/outputs",
            ("POST", f"/v1/runs/{uid}/resume"): "/v1/runs/resume",
            ("POST", f"/v1/runs/{uid}/cancel"): "/v1/runs/cancel",
        }
        for (method, path), family in families.items():
            response = await client.request(method, path)
            assert (path, response.status_code) == (path, 429)
            assert response.headers["X-RateLimit-Type"] == family


async def test_live_actions_have_their_own_budget_and_launches_none() -> None:
    """Live actions keep their 60/min with the runs budget spent; async launches are free."""
    sim, _, uid = setup(WindowKind.SLIDING_MINUTE)
    async with raw_http(sim, "key-1") as client:
        await burst(client, f"/v1/runs/{uid}", 30)
        assert (await client.get(f"/v1/runs/{uid}")).status_code == 429
        live = [
            await client.post("/v1/actions/a/run/live", json={"input": {"n": n}}) for n in range(61)
        ]
        assert [r.status_code for r in live] == [200] * 60 + [429]
        assert live[0].headers["X-RateLimit-Remaining"] == "59"
        assert live[-1].headers["X-RateLimit-Type"] == "/v1/actions/run/live"
        assert "60 requests per minute" in live[-1].json()["message"]
        launches = [
            await client.post("/v1/actions/a/run/async", json={"inputs": [{}]}) for _ in range(40)
        ]
        assert {r.status_code for r in launches} == {200}
        assert "X-RateLimit-Remaining" not in launches[0].headers


async def test_refused_requests_consume_no_budget() -> None:
    """Requests refused with 429 do not delay the next minute's budget."""
    sim, _, uid = setup(WindowKind.SLIDING_MINUTE)
    async with raw_http(sim, "key-1") as client:
        await burst(client, f"/v1/runs/{uid}", 30)
        for moment in range(10, 60, 5):
            await sleep_until(moment)
            assert (await client.get(f"/v1/runs/{uid}")).status_code == 429
        await sleep_until(60.0)
        assert [r.status_code for r in await burst(client, f"/v1/runs/{uid}", 30)] == [200] * 30


async def test_every_limited_answer_carries_remaining() -> None:
    """Accepted answers of limited routes, errors included, carry X-RateLimit-Remaining."""
    sim, _, uid = setup(WindowKind.SLIDING_MINUTE)
    async with raw_http(sim, "key-1") as client:
        answers = [
            await client.get(f"/v1/runs/{uid}"),
            await client.get(f"/v1/runs/{NO_RUN}"),
            await client.get("/v1/runs", params={"limit": 1000}),
            await client.get("/v1/runs/bad-uid/status"),
            await client.post(f"/v1/runs/{uid}/resume"),
        ]
    assert [r.status_code for r in answers] == [200, 404, 400, 400, 422]
    assert [r.headers["X-RateLimit-Remaining"] for r in answers] == ["29", "28", "27", "26", "25"]


async def test_retry_after_is_optional() -> None:
    """With send_retry_after=False a 429 carries the limit headers but no Retry-After."""
    sim, _, uid = setup(WindowKind.SLIDING_MINUTE, send_retry_after=False)
    async with raw_http(sim, "key-1") as client:
        await burst(client, f"/v1/runs/{uid}", 30)
        refused = await client.get(f"/v1/runs/{uid}")
    assert refused.status_code == 429
    assert "Retry-After" not in refused.headers
    assert refused.headers["X-RateLimit-Type"] == "/v1/runs"


async def test_budgets_are_per_workspace_and_auth_comes_first() -> None:
    """Each workspace has its own budget; a bad key gets 401 even when a budget is spent."""
    sim, _, uid = setup(WindowKind.SLIDING_MINUTE)
    other = sim.add_workspace(api_key="key-2")
    other_uid = sim.add_run(other).uid
    async with raw_http(sim, "key-1") as client, raw_http(sim, "key-2") as second:
        await burst(client, f"/v1/runs/{uid}", 31)
        responses = await burst(second, f"/v1/runs/{other_uid}", 30)
        assert [r.status_code for r in responses] == [200] * 30
        assert (await client.get("/v1/runs", headers={"X-API-Key": "nope"})).status_code == 401


@pytest.mark.parametrize("plan", [PlanTier.BRONZE, PlanTier.GOLD, PlanTier.TITANIUM])
async def test_the_plan_sets_the_limit(plan: PlanTier) -> None:
    """A burst is cut at the plan's requests per minute."""
    sim, _, uid = setup(WindowKind.SLIDING_MINUTE, plan.value)
    async with raw_http(sim, "key-1") as client:
        responses = await burst(client, f"/v1/runs/{uid}/status", plan.requests_per_minute + 1)
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * plan.requests_per_minute + [429]


async def test_unlimited_window_accepts_every_request() -> None:
    """WindowKind.UNLIMITED accepts a burst far past the plan and still reports Remaining."""
    sim, _, uid = setup(WindowKind.UNLIMITED)
    async with raw_http(sim, "key-1") as client:
        answers = await burst(client, f"/v1/runs/{uid}", 200)
    assert {r.status_code for r in answers} == {200}
    assert {r.headers["X-RateLimit-Remaining"] for r in answers} == {"30"}
