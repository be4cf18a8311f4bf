"""The simulator's live actions: scripted result counts, pages by X-Pagination-Next, cursors."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from edges_async.testing import EdgesSimulator, Workspace

from .conftest import API_KEY, SIM_START, raw_http

ACTION = "linkedin-extract-people"
LIVE = f"/v1/actions/{ACTION}/run/live"
BODY: dict[str, Any] = {"input": {"linkedin_profile_url": "https://www.linkedin.com/in/ada"}}
ERROR_FIELDS = {"error_label", "error_scope", "error_ref", "message", "status_code"}


async def all_pages(
    http: httpx.AsyncClient, body: dict[str, Any], path: str = LIVE
) -> list[httpx.Response]:
    """POST ``body``, then the same body to each X-Pagination-Next URL; every response."""
    responses = [await http.post(path, json=body)]
    while "X-Pagination-Next" in responses[-1].headers:
        responses.append(await http.post(responses[-1].headers["X-Pagination-Next"], json=body))
        assert len(responses) < 100
    return responses


async def test_250_results_come_in_three_pages_linked_by_full_urls(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """250 results at 100 a page: 100, 100, 50, each next page a full URL, the last without one."""
    simulator.script_live(ACTION, 250)
    async with raw_http(simulator, API_KEY) as http:
        pages = await all_pages(http, BODY)
    assert [response.status_code for response in pages] == [200, 200, 200]
    assert [len(response.json()) for response in pages] == [100, 100, 50]
    items = [item for response in pages for item in response.json()]
    assert [item["index"] for item in items] == list(range(250))
    for response in pages[:2]:
        next_url = urlsplit(response.headers["X-Pagination-Next"])
        assert (next_url.scheme, next_url.netloc, next_url.path) == ("https", "api.edges.run", LIVE)
        assert set(parse_qs(next_url.query)) == {"cursor"}
    assert "X-Pagination-Next" not in pages[-1].headers
    live_runs = [run for run in simulator.runs if run.execution_mode == "LIVE"]
    assert [run.output_count for run in live_runs] == [250]


async def test_every_page_counts_against_the_live_rate_limit() -> None:
    """The first and the next pages each take one request from the live budget."""
    sim = EdgesSimulator(start_time=SIM_START, seed=1)
    sim.add_workspace(api_key=API_KEY, plan="trial")
    sim.script_live(ACTION, 250)
    async with raw_http(sim, API_KEY) as http:
        pages = await all_pages(http, BODY)
    assert [response.headers["X-RateLimit-Remaining"] for response in pages] == ["59", "58", "57"]
    assert [request.path for request in sim.requests] == [LIVE] * 3


async def test_a_cursor_answers_only_the_same_body_on_the_same_action(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """A next-page URL POSTed with another body, or for another action, answers 400."""
    simulator.script_live(ACTION, 250)
    simulator.script_live("other-action", 250)
    async with raw_http(simulator, API_KEY) as http:
        first = await http.post(LIVE, json=BODY)
        next_url = first.headers["X-Pagination-Next"]
        other_body = {"input": {"linkedin_profile_url": "https://www.linkedin.com/in/alan"}}
        wrong_body = await http.post(next_url, json=other_body)
        with_parameters = await http.post(next_url, json={**BODY, "parameters": {"x": 1}})
        elsewhere = next_url.replace(ACTION, "other-action")
        wrong_action = await http.post(elsewhere, json=BODY)
        forged = await http.post(f"{LIVE}?cursor=AAAA", json=BODY)
        reordered = {"input": dict(reversed(list(BODY["input"].items())))}
        same = await http.post(next_url, json=reordered)
    for response in (wrong_body, with_parameters, wrong_action):
        assert response.status_code == 400
        assert set(response.json()) == ERROR_FIELDS
        assert response.json()["message"] == (
            "querystring/cursor is not valid: cursor belongs to another request: "
            "POST the same body to the X-Pagination-Next URL"
        )
    assert forged.status_code == 400
    assert forged.json()["message"] == "querystring/cursor is not valid: cursor is not valid"
    assert [item["index"] for item in same.json()] == list(range(100, 200))
    assert len([run for run in simulator.runs if run.execution_mode == "LIVE"]) == 1


async def test_a_live_cursor_expires_after_24_hours(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """A next-page URL works for 24 hours, then answers 400."""
    simulator.script_live(ACTION, 150)
    async with raw_http(simulator, API_KEY) as http:
        next_url = (await http.post(LIVE, json=BODY)).headers["X-Pagination-Next"]
        await asyncio.sleep(24 * 3600)
        assert (await http.post(next_url, json=BODY)).status_code == 200
        await asyncio.sleep(1)
        expired = await http.post(next_url, json=BODY)
    assert expired.status_code == 400
    assert "expired" in expired.json()["message"]


async def test_page_size_and_max_results_shape_the_pages() -> None:
    """live_page_size sets the page; parameters.max_results caps a scripted count."""
    sim = EdgesSimulator(start_time=SIM_START, seed=1, live_page_size=10)
    sim.add_workspace(api_key=API_KEY, plan="titanium")
    sim.script_live(ACTION, 25)
    async with raw_http(sim, API_KEY) as http:
        pages = await all_pages(http, BODY)
        capped = await all_pages(http, {**BODY, "parameters": {"max_results": 12}})
    assert [len(response.json()) for response in pages] == [10, 10, 5]
    assert [len(response.json()) for response in capped] == [10, 2]


async def test_unscripted_actions_answer_one_to_three_results_on_one_page(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Without script_live an action answers 1 to 3 results and no next page."""
    simulator.script_live("other-action", 500)
    async with raw_http(simulator, API_KEY) as http:
        responses = [await http.post(LIVE, json={"input": {"n": n}}) for n in range(10)]
    assert {len(response.json()) for response in responses} <= {1, 2, 3}
    assert all("X-Pagination-Next" not in response.headers for response in responses)


def test_script_live_and_live_page_size_refuse_nonsense() -> None:
    """A negative result count or a page size below 1 is a ValueError."""
    with pytest.raises(ValueError, match="live_page_size"):
        EdgesSimulator(live_page_size=0)
    with pytest.raises(ValueError, match="negative"):
        EdgesSimulator().script_live(ACTION, -1)
