"""The simulator's launch, list and run routes: shapes, filters, sorting, validation, auth."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from edges_async.testing import EdgesSimulator, RunScript, SimulatedRun, Workspace

from .conftest import RAW_BASE_URL, raw_http

SIM_SEED = 5
RUN_FIELDS = {
    "id",
    "uid",
    "action_id",
    "action_name",
    "user_uid",
    "workspace_uid",
    "scheduled_run_uid",
    "execution_mode",
    "status",
    "retry_count",
    "last_error",
    "parameters",
    "callback",
    "output_count",
    "postponed_until",
    "started_at",
    "finished_at",
    "synced_at",
    "created_at",
    "updated_at",
}
ERROR_FIELDS = {"error_label", "error_scope", "error_ref", "message", "status_code"}


def scripted(status: str) -> RunScript:
    return RunScript(steps=((status, 0.0),), outputs=0)


async def list_runs(client: httpx.AsyncClient, params: list[tuple[str, str]]) -> list[Any]:
    response = await client.get("/v1/runs", params=tuple(params))
    assert response.status_code == 200, response.text
    runs: list[Any] = response.json()
    return runs


async def test_list_is_newest_first_with_id_breaking_ties(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """Without sort the list is -created_at, and runs created together come -id."""
    first = [sim.add_run(sim_workspace) for _ in range(3)]
    await asyncio.sleep(5)
    later = [sim.add_run(sim_workspace) for _ in range(2)]
    runs = await list_runs(raw_client, [])
    assert [run["uid"] for run in runs] == [run.uid for run in reversed(first + later)]
    assert all(set(run) == RUN_FIELDS for run in runs)


async def test_list_shows_only_the_callers_live_runs(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """Another workspace's runs and runs older than 90 days are left out."""
    mine = sim.add_run(sim_workspace)
    recent = sim.add_run(sim_workspace, age=timedelta(days=89))
    sim.add_run(sim_workspace, age=timedelta(days=91))
    sim.add_run(sim.add_workspace(api_key="key-2"))
    runs = await list_runs(raw_client, [])
    assert [run["uid"] for run in runs] == [mine.uid, recent.uid]


async def test_list_filters_take_repeated_keys(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """status, action_name and uid filters accept several values as repeated keys."""
    succeeded = sim.add_run(sim_workspace, action_name="a", script=scripted("SUCCEEDED"))
    failed = sim.add_run(sim_workspace, action_name="b", script=scripted("FAILED"))
    running = sim.add_run(sim_workspace, action_name="c", script=scripted("RUNNING"))
    by_status = await list_runs(raw_client, [("status", "SUCCEEDED"), ("status", "FAILED")])
    assert {run["uid"] for run in by_status} == {succeeded.uid, failed.uid}
    by_action = await list_runs(raw_client, [("action_name", "b"), ("action_name", "c")])
    assert {run["uid"] for run in by_action} == {failed.uid, running.uid}
    by_uid = await list_runs(raw_client, [("uid", succeeded.uid), ("uid", running.uid.upper())])
    assert {run["uid"] for run in by_uid} == {succeeded.uid, running.uid}
    both = await list_runs(raw_client, [("status", "RUNNING"), ("action_name", "a")])
    assert both == []


async def test_list_filters_by_member_mode_and_ignores_workspace_uid(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """user_uid picks a member's runs, execution_mode picks LIVE, workspace_uid is ignored."""
    other_member = sim.add_api_key(sim_workspace, "key-1b")
    owner_run = sim.add_run(sim_workspace)
    async with raw_http(sim, "key-1b") as member:
        launched = await member.post("/v1/actions/x/run/async", json={"inputs": [{}]})
        await member.post("/v1/actions/x/run/live", json={"input": {}})
    member_runs = await list_runs(raw_client, [("user_uid", other_member)])
    assert launched.json()["run_uid"] in {run["uid"] for run in member_runs}
    assert owner_run.uid not in {run["uid"] for run in member_runs}
    live = await list_runs(raw_client, [("execution_mode", "LIVE")])
    assert [run["execution_mode"] for run in live] == ["LIVE"]
    ignored = await list_runs(raw_client, [("workspace_uid", "not-even-a-uuid")])
    assert len(ignored) == 3
    assert await list_runs(raw_client, [("flow_run_id", "1")]) == []


async def test_list_sorts_by_several_fields(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """sort takes repeated fields, '-' for descending, nulls last when ascending."""
    b_old = sim.add_run(sim_workspace, action_name="b", script=scripted("RUNNING"))
    await asyncio.sleep(1)
    a_run = sim.add_run(sim_workspace, action_name="a", script=scripted("CREATED"))
    b_new = sim.add_run(sim_workspace, action_name="b", script=scripted("RUNNING"))
    runs = await list_runs(raw_client, [("sort", "action_name"), ("sort", "created_at")])
    assert [run["uid"] for run in runs] == [a_run.uid, b_old.uid, b_new.uid]
    runs = await list_runs(raw_client, [("sort", "started_at")])
    assert [run["uid"] for run in runs] == [b_old.uid, b_new.uid, a_run.uid]
    runs = await list_runs(raw_client, [("sort", "-status"), ("sort", "id")])
    assert [run["status"] for run in runs] == ["RUNNING", "RUNNING", "CREATED"]


async def test_offset_paging_is_stable_and_complete(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """Paging by limit and offset over runs created together sees each run once."""
    created = {sim.add_run(sim_workspace).uid for _ in range(25)}
    seen: list[str] = []
    for offset in (0, 10, 20, 30):
        page = await list_runs(raw_client, [("limit", "10"), ("offset", str(offset))])
        seen += [run["uid"] for run in page]
    assert len(seen) == 25
    assert set(seen) == created


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([("limit", "0")], "querystring/limit must be >= 1"),
        ([("limit", "101")], "querystring/limit must be <= 100"),
        ([("limit", "ten")], "querystring/limit must be integer"),
        ([("limit", "5"), ("limit", "6")], "querystring/limit must be integer"),
        ([("offset", "-1")], "querystring/offset must be >= 0"),
        ([("sort", "id")] * 11, "querystring/sort must NOT have more than 10 items"),
        ([("sort", "c" * 129)], "querystring/sort/0 must NOT have more than 128 characters"),
        ([("sort", "id"), ("sort", "+name")], "querystring/sort/1 must name a field"),
        ([("execution_mode", "SYNC")], "querystring/execution_mode/0"),
        ([("uid", "nope")], 'querystring/uid/0 must match format "uuid"'),
        ([("limit", "5\n")], "querystring/limit must be integer"),
        ([("uid", f"{uuid.UUID(int=7)}\n")], 'querystring/uid/0 must match format "uuid"'),
    ],
)
async def test_list_rejects_bad_parameters(
    raw_client: httpx.AsyncClient, params: list[tuple[str, str]], message: str
) -> None:
    """Out-of-range list parameters answer 400 BAD_PARAMETERS with Ajv-style messages."""
    response = await raw_client.get("/v1/runs", params=tuple(params))
    assert response.status_code == 400
    body = response.json()
    assert set(body) == ERROR_FIELDS
    assert body["error_label"] == "BAD_PARAMETERS"
    assert body["message"].startswith(message)


async def test_run_and_status_shapes(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """GET a run answers the full Run object; /status answers the light shape."""
    run = sim.add_run(sim_workspace, parameters={"max_results": 3})
    full = (await raw_client.get(f"/v1/runs/{run.uid}")).json()
    assert set(full) == RUN_FIELDS
    assert (full["id"], full["uid"], full["execution_mode"]) == (run.id, run.uid, "ASYNC")
    assert full["parameters"] == {"max_results": 3}
    assert full["workspace_uid"] == sim_workspace.uid
    assert isinstance(full["action_id"], int)
    light = (await raw_client.get(f"/v1/runs/{run.uid}/status")).json()
    assert set(light) == {
        "id",
        "uid",
        "status",
        "postponed_until",
        "started_at",
        "finished_at",
        "created_at",
        "updated_at",
    }
    assert {key: full[key] for key in light} == light


async def test_unknown_foreign_and_archived_runs_are_not_found(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """Unknown uids, other workspaces' runs and runs past 90 days answer 404."""
    foreign = sim.add_run(sim.add_workspace(api_key="key-2"))
    archived = sim.add_run(sim_workspace, age=timedelta(days=90, seconds=1))
    kept = sim.add_run(sim_workspace, age=timedelta(days=90))
    unknown = "00000000-0000-4000-8000-000000000000"
    for uid in (unknown, foreign.uid, archived.uid):
        for suffix in ("", "/status", "/outputs"):
            response = await raw_client.get(f"/v1/runs/{uid}{suffix}")
            assert (suffix, response.status_code) == (suffix, 404)
            assert response.json()["error_label"] == "NOT_FOUND"
    assert (await raw_client.get(f"/v1/runs/{kept.uid}")).status_code == 200
    await asyncio.sleep(1)
    assert (await raw_client.get(f"/v1/runs/{kept.uid}")).status_code == 404


@pytest.mark.parametrize("run_uid", ["not-a-uuid", f"{uuid.UUID(int=7)}%0A"])
async def test_malformed_run_uid_is_a_bad_request(
    raw_client: httpx.AsyncClient, run_uid: str
) -> None:
    """A run uid that is not a uuid (a trailing newline included) answers 400."""
    response = await raw_client.get(f"/v1/runs/{run_uid}")
    assert response.status_code == 400
    assert response.json()["message"] == 'params/run_uid must match format "uuid"'


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/runs"),
        ("GET", "/v1/runs/00000000-0000-4000-8000-000000000000"),
        ("GET", "/v1/runs/00000000-0000-4000-8000-000000000000/outputs"),
        ("POST", "/v1/runs/00000000-0000-4000-8000-000000000000/cancel"),
        ("POST", "/v1/actions/a/run/async"),
        ("POST", "/v1/actions/a/run/live"),
    ],
)
@pytest.mark.parametrize("api_key", [None, "wrong-key"])
async def test_every_route_needs_a_known_api_key(
    sim: EdgesSimulator, method: str, path: str, api_key: str | None
) -> None:
    """A missing or unknown X-API-Key answers 401 with the JSON error body."""
    sim.add_workspace(api_key="key-1")
    headers = {"X-API-Key": api_key} if api_key is not None else {}
    async with httpx.AsyncClient(transport=sim.transport(), base_url=RAW_BASE_URL) as http:
        response = await http.request(method, path, headers=headers, json={"inputs": [{}]})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == ERROR_FIELDS
    assert response.json()["status_code"] == 401


async def test_unknown_routes_answer_404_json(raw_client: httpx.AsyncClient) -> None:
    """A path or method the API lacks answers 404 with the error body."""
    for method, path in (("GET", "/v1/nothing"), ("DELETE", "/v1/runs"), ("GET", "/v1/runs/")):
        response = await raw_client.request(method, path)
        assert (path, response.status_code) == (path, 404)
        assert response.json()["error_label"] == "NOT_FOUND"


async def test_error_refs_are_unique(raw_client: httpx.AsyncClient) -> None:
    """Each error answer carries its own error_ref."""
    refs = {(await raw_client.get("/v1/nothing")).json()["error_ref"] for _ in range(5)}
    assert len(refs) == 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "body must have required property 'inputs'"),
        ({"inputs": {}}, "body/inputs must be array"),
        ({"inputs": []}, "body/inputs must NOT have fewer than 1 items"),
        ({"inputs": [{}] * 100_001}, "body/inputs must NOT have more than 100000 items"),
        ({"inputs": [{}, "x"]}, "body/inputs/1 must be object"),
        ({"inputs": [{}], "input": {}}, "body must NOT have additional properties (input)"),
        ({"inputs": [{}], "parameters": []}, "body/parameters must be object"),
        ({"inputs": [{}], "identity_mode": "x"}, "body/identity_mode must be equal to one of"),
        ({"inputs": [{}], "identity_ids": ["x"]}, 'body/identity_ids/0 must match format "uuid"'),
        ({"inputs": [{}], "callback": {"url": "http://x.test/"}}, "body/callback/url must be"),
        ({"inputs": [{}], "callback": {}}, "body/callback must have required property 'url'"),
        (
            {"inputs": [{}], "callback": {"url": "https://x.test/", "on": "some"}},
            "body/callback/on must be equal to one of",
        ),
        ([{}], "body must be object"),
    ],
)
async def test_async_launch_validates_its_body(
    raw_client: httpx.AsyncClient, body: Any, message: str
) -> None:
    """Invalid launch bodies answer 400 with the API's message."""
    response = await raw_client.post("/v1/actions/a/run/async", json=body)
    assert response.status_code == 400
    assert response.json()["message"].startswith(message)
    assert response.json()["error_label"] in ("BAD_INPUT", "BAD_PARAMETERS")


async def test_async_launch_rejects_invalid_json(raw_client: httpx.AsyncClient) -> None:
    """A body that is not JSON answers 400."""
    response = await raw_client.post("/v1/actions/a/run/async", content=b"{not json")
    assert response.status_code == 400
    assert "JSON" in response.json()["message"]


async def test_async_launch_keeps_its_options(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """A full launch body is accepted; the run keeps parameters and shows callback.url."""
    callback = {"url": "https://hooks.test/e", "headers": {"X-Token": "t"}, "on": "all"}
    body = {
        "inputs": [{"linkedin_profile_url": "https://www.linkedin.com/in/x/"}] * 100_000,
        "parameters": {"max_results": 2},
        "identity_mode": "managed",
        "identity_ids": ["00000000-0000-4000-8000-000000000001"],
        "callback": callback,
    }
    response = await raw_client.post("/v1/actions/linkedin-extract-people/run/async", json=body)
    assert response.status_code == 200
    uid = response.json()["run_uid"]
    run = (await raw_client.get(f"/v1/runs/{uid}")).json()
    assert run["callback"] == {"url": "https://hooks.test/e"}
    assert run["parameters"] == {"max_results": 2}
    assert sim.get_run(uid).callback == callback
    assert sim.get_run(uid).input_count == 100_000


async def test_live_action_answers_results_and_records_a_live_run(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """A live action answers a few results, the same for the same input, and lists a LIVE run."""
    body = {"input": {"linkedin_profile_url": "https://www.linkedin.com/in/ada/"}}
    first = await raw_client.post("/v1/actions/linkedin-extract-people/run/live", json=body)
    again = await raw_client.post("/v1/actions/linkedin-extract-people/run/live", json=body)
    assert first.status_code == 200
    results = first.json()
    assert 1 <= len(results) <= 3
    assert results == again.json()
    assert [item["index"] for item in results] == list(range(len(results)))
    runs = await list_runs(raw_client, [("execution_mode", "LIVE")])
    assert len(runs) == 2
    assert {(run["status"], run["output_count"]) for run in runs} == {("SUCCEEDED", len(results))}
    assert runs[0]["started_at"] == runs[0]["finished_at"] is not None
    capped = await raw_client.post(
        "/v1/actions/a/run/live", json={**body, "parameters": {"max_results": 0}}
    )
    assert capped.json() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": [{}]}, "body must NOT have additional properties (inputs)"),
        ({}, "body must have required property 'input'"),
        ({"input": [1]}, "body/input must be object"),
    ],
)
async def test_live_action_validates_its_body(
    raw_client: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    """A live body with inputs, or without one input object, answers 400."""
    response = await raw_client.post("/v1/actions/a/run/live", json=body)
    assert response.status_code == 400
    assert response.json()["message"] == message


async def test_add_runs_end_at_seeded_moments_within_the_span(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """add_runs seeds runs, created now, that all end within the span, as the seed says."""
    runs = sim.add_runs(sim_workspace, 40, ending_between=(10, timedelta(seconds=20)))
    assert len({run.uid for run in runs}) == 40
    offsets = [(end[0] - run.created, end[1]) for run in runs if (end := run.first_terminal())]
    assert len(offsets) == 40
    assert all(10 <= offset <= 20 for offset, _ in offsets)
    await asyncio.sleep(5)
    listed = await list_runs(raw_client, [("limit", "100")])
    assert {run["status"] for run in listed} == {"RUNNING"}
    await asyncio.sleep(15)
    listed = await list_runs(raw_client, [("limit", "100")])
    assert {run["uid"] for run in listed} == {run.uid for run in runs}
    assert all(run["finished_at"] is not None for run in listed)
    again = EdgesSimulator(seed=SIM_SEED)
    same = again.add_runs(again.add_workspace(api_key="k"), 40, ending_between=(10, 20))
    again_offsets = [(e[0] - run.created, e[1]) for run in same if (e := run.first_terminal())]
    assert [status for _, status in again_offsets] == [status for _, status in offsets]
    assert [offset for offset, _ in again_offsets] == pytest.approx([o for o, _ in offsets])
    with pytest.raises(ValueError, match="ending_between"):
        sim.add_runs(sim_workspace, 1, ending_between=(20, 10))


def _listed_by_snapshots(
    sim: EdgesSimulator, params: list[tuple[str, str]], now: float
) -> list[str]:
    """The uids a list answers, worked out the obvious way: snapshot and sort every run."""
    rows = [(run, run.snapshot(now)) for run in sim.runs]
    statuses = {value for name, value in params if name == "status"}
    uids = {value for name, value in params if name == "uid"}
    rows = [
        (run, snap)
        for run, snap in rows
        if (not statuses or snap.status in statuses) and (not uids or run.uid in uids)
    ]

    def value(name: str, run: SimulatedRun, snap: Any) -> Any:
        if name in ("created_at", "id"):
            return run.created if name == "created_at" else run.id
        return getattr(snap, {"updated_at": "updated", "finished_at": "finished"}.get(name, name))

    order = [given for key, given in params if key == "sort"] or ["-created_at"]
    for field in reversed([*order, "-id"]):
        name = field.removeprefix("-")
        keyed = [((value(name, *row) is None, value(name, *row) or 0), row) for row in rows]
        keyed.sort(key=lambda pair: pair[0], reverse=field[0] == "-")
        rows = [row for _, row in keyed]
    params_of = dict(params)
    offset, limit = int(params_of.get("offset", "0")), int(params_of.get("limit", "10"))
    return [run.uid for run, _ in rows[offset : offset + limit]]


async def test_list_answers_what_snapshotting_every_run_gives(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """The list's shortcuts (status off the timeline, a heap for the page) change no answer."""
    runs = sim.add_runs(sim_workspace, 50, ending_between=(0, 60))
    tied = sim.add_runs(sim_workspace, 5, ending_between=(30, 30))
    blocked = sim.add_run(sim_workspace, script=RunScript((("RUNNING", 0), ("BLOCKED", 5))))
    long = sim.add_run(sim_workspace, script=RunScript((("RUNNING", 0), ("SUCCEEDED", 500))))
    terminal = [("status", s) for s in ("SUCCEEDED", "FAILED", "BLOCKED", "STOPPED", "INVALID")]
    feed = [*terminal, ("status", "PARTIAL_SUCCEEDED"), ("sort", "-updated_at")]
    queries = [
        [*feed, ("limit", "7")],
        [*feed, ("limit", "7"), ("offset", "5")],
        [*feed, ("limit", "100"), ("offset", "40")],
        [("limit", "100")],
        [("sort", "created_at"), ("sort", "-updated_at"), ("limit", "100")],
        [*terminal, ("sort", "finished_at"), ("sort", "-status"), ("limit", "100")],
        [*terminal, *(("uid", run.uid) for run in [*runs[::3], *tied, long]), ("limit", "100")],
    ]
    for moment in (0, 10, 25, 45, 90):
        await asyncio.sleep(moment - asyncio.get_running_loop().time())
        if moment == 10:
            assert (await raw_client.post(f"/v1/runs/{blocked.uid}/resume")).status_code == 200
        if moment == 25:
            assert (await raw_client.post(f"/v1/runs/{long.uid}/cancel")).status_code == 200
        for params in queries:
            answer = await list_runs(raw_client, params)
            expected = _listed_by_snapshots(sim, params, asyncio.get_running_loop().time())
            assert [run["uid"] for run in answer] == expected, (moment, params)
