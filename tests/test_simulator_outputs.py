"""The simulator's outputs route: cursor pagination, offset fallback, growth, big runs."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from edges_async.testing import EdgesSimulator, RunScript, SimulatedRun, Workspace

SIM_SEED = 9
DONE = (("SUCCEEDED", 0.0),)


def finished_run(sim: EdgesSimulator, workspace: Workspace, outputs: int) -> SimulatedRun:
    return sim.add_run(workspace, script=RunScript(steps=DONE, outputs=outputs))


async def page_through(
    client: httpx.AsyncClient, url: str
) -> tuple[list[dict[str, Any]], list[httpx.Response]]:
    items: list[dict[str, Any]] = []
    responses = []
    next_url: str | None = url
    while next_url is not None:
        response = await client.get(next_url)
        assert response.status_code == 200, response.text
        responses.append(response)
        items += response.json()
        next_url = response.headers.get("X-Pagination-Next")
    return items, responses


async def test_cursor_pages_cover_every_output_once(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """Following X-Pagination-Next gives each output once, in order; the last page has none."""
    run = finished_run(sim, sim_workspace, 1234)
    items, responses = await page_through(raw_client, f"/v1/runs/{run.uid}/outputs?limit=500")
    assert [item["index"] for item in items] == list(range(1234))
    assert [len(response.json()) for response in responses] == [500, 500, 234]
    assert "X-Pagination-Next" not in responses[-1].headers


async def test_next_page_header_is_a_full_url(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """X-Pagination-Next holds scheme, host, path, limit and cursor."""
    run = finished_run(sim, sim_workspace, 30)
    response = await raw_client.get(f"/v1/runs/{run.uid}/outputs", params={"limit": 7})
    parts = urlsplit(response.headers["X-Pagination-Next"])
    assert (parts.scheme, parts.netloc) == ("https", "api.edges.run")
    assert parts.path == f"/v1/runs/{run.uid}/outputs"
    query = parse_qs(parts.query)
    assert query["limit"] == ["7"]
    assert len(query["cursor"]) == 1
    assert set(query) == {"limit", "cursor"}


async def test_default_page_size_is_100(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """Without limit a page holds 100 outputs."""
    run = finished_run(sim, sim_workspace, 150)
    response = await raw_client.get(f"/v1/runs/{run.uid}/outputs")
    assert len(response.json()) == 100
    assert "limit=100" in response.headers["X-Pagination-Next"]


async def test_outputs_are_deterministic_linkedin_records(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """The same output comes back identical whatever the page size; runs differ."""
    run, other = finished_run(sim, sim_workspace, 50), finished_run(sim, sim_workspace, 50)
    small, _ = await page_through(raw_client, f"/v1/runs/{run.uid}/outputs?limit=3")
    large, _ = await page_through(raw_client, f"/v1/runs/{run.uid}/outputs?limit=500")
    assert small == large
    first = large[0]
    assert first["linkedin_profile_url"].startswith("https://www.linkedin.com/in/")
    assert {"index", "full_name", "headline", "company_name"} <= set(first)
    others = (await raw_client.get(f"/v1/runs/{other.uid}/outputs?limit=50")).json()
    assert others != large


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "querystring/limit must be >= 1"),
        ("limit=501", "querystring/limit must be <= 500"),
        ("limit=x", "querystring/limit must be integer"),
        ("offset=-3", "querystring/offset must be >= 0"),
        ("cursor=garbage", "querystring/cursor is not valid"),
        ("cursor=AAAAAAAAAAEAAAAAAAAB9KT-li4BhEym", "querystring/cursor is not valid"),
    ],
)
async def test_bad_paging_parameters_are_refused(
    sim: EdgesSimulator,
    sim_workspace: Workspace,
    raw_client: httpx.AsyncClient,
    query: str,
    message: str,
) -> None:
    """Out-of-range limits, negative offsets and forged cursors answer 400."""
    run = finished_run(sim, sim_workspace, 10)
    response = await raw_client.get(f"/v1/runs/{run.uid}/outputs?{query}")
    assert response.status_code == 400
    assert response.json()["message"].startswith(message)


async def test_a_cursor_of_another_run_is_refused(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """A genuine cursor used on a different run answers 400."""
    run, other = finished_run(sim, sim_workspace, 10), finished_run(sim, sim_workspace, 10)
    first = await raw_client.get(f"/v1/runs/{run.uid}/outputs", params={"limit": 2})
    cursor = parse_qs(urlsplit(first.headers["X-Pagination-Next"]).query)["cursor"][0]
    response = await raw_client.get(f"/v1/runs/{other.uid}/outputs", params={"cursor": cursor})
    assert response.status_code == 400
    assert "another run" in response.json()["message"]


async def test_offset_switches_to_offset_pagination(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """With the deprecated offset the page is [offset, offset + limit) and has no next link."""
    run = finished_run(sim, sim_workspace, 100)
    response = await raw_client.get(f"/v1/runs/{run.uid}/outputs?offset=40&limit=25")
    assert [item["index"] for item in response.json()] == list(range(40, 65))
    assert "X-Pagination-Next" not in response.headers
    beyond = await raw_client.get(f"/v1/runs/{run.uid}/outputs?offset=100")
    assert (beyond.status_code, beyond.json()) == (200, [])
    tail = await raw_client.get(f"/v1/runs/{run.uid}/outputs?offset=90&limit=50")
    assert len(tail.json()) == 10


async def test_live_runs_have_no_outputs_route(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """Asking for a LIVE run's outputs answers 400 with a clear message."""
    run = sim.add_run(sim_workspace, execution_mode="LIVE", script=RunScript(steps=DONE, outputs=2))
    response = await raw_client.get(f"/v1/runs/{run.uid}/outputs")
    assert response.status_code == 400
    assert "LIVE" in response.json()["message"]


async def test_a_cursor_stays_valid_while_the_run_grows(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """A running run's last page has no next link; the same cursor later continues."""
    steps = (("RUNNING", 0.0), ("SUCCEEDED", 100.0))
    run = sim.add_run(sim_workspace, script=RunScript(steps=steps, outputs=1000))
    await asyncio.sleep(25)  # 250 visible
    first = await raw_client.get(f"/v1/runs/{run.uid}/outputs?limit=200")
    assert len(first.json()) == 200
    next_url = first.headers["X-Pagination-Next"]
    second = await raw_client.get(next_url)
    assert [item["index"] for item in second.json()] == list(range(200, 250))
    assert "X-Pagination-Next" not in second.headers
    await asyncio.sleep(75)  # all 1000 visible
    resumed, _ = await page_through(raw_client, next_url)
    assert [item["index"] for item in resumed] == list(range(200, 1000))


async def test_a_million_outputs_page_fast_from_the_far_end(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """The last pages of a 1,000,000-output run come quickly and in flat memory."""
    run = finished_run(sim, sim_workspace, 1_000_000)
    cursor = sim.cursor_for(run, 998_500)
    tracemalloc.start()
    began = time.perf_counter()
    items, responses = await page_through(
        raw_client, f"/v1/runs/{run.uid}/outputs?limit=500&cursor={cursor}"
    )
    elapsed = time.perf_counter() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [item["index"] for item in items] == list(range(998_500, 1_000_000))
    assert len(responses) == 3
    assert elapsed < 2.0
    assert peak < 20 * 1024 * 1024
    assert (await raw_client.get(f"/v1/runs/{run.uid}")).json()["output_count"] == 1_000_000
