"""client.runs against the simulator: reading, listing, resuming, cancelling, outputs."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import anyio
import httpx
import pytest

import edges_async as ea
from edges_async.testing import (
    EdgesSimulator,
    NoRateLimit,
    RecordedRequest,
    RunScript,
    Workspace,
)

from .conftest import RUN_UID

ACTION = "linkedin-extract-people"
SCRIPT = RunScript(
    steps=(("CREATED", 0.0), ("QUEUED", 1.0), ("RUNNING", 2.0), ("SUCCEEDED", 10.0)), outputs=8
)
BLOCKING = RunScript(steps=(("CREATED", 0.0), ("RUNNING", 1.0), ("BLOCKED", 2.0)), outputs=0)


async def finished_run(simulator: EdgesSimulator, workspace: Workspace, outputs: int) -> str:
    """The uid of a run of ACTION done with ``outputs`` outputs, once it is done."""
    script = RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", 1.0)), outputs=outputs)
    run = simulator.add_run(workspace, action_name=ACTION, script=script)
    await anyio.sleep(2)
    return run.uid


def runs_requests(simulator: EdgesSimulator) -> list[RecordedRequest]:
    """The requests to ``/v1/runs`` and below, in order."""
    return [request for request in simulator.requests if request.path.startswith("/v1/runs")]


async def test_get_and_status_follow_the_lifecycle(
    client: ea.AsyncClient, simulator: EdgesSimulator
) -> None:
    """get() sees the full run and status() the light shape, as the status advances."""
    run_uid = (await client.actions.run_async(ACTION, inputs=[{"x": 1}])).uid
    first = await client.runs.get(run_uid)
    assert first.status in (ea.RunStatus.CREATED, ea.RunStatus.QUEUED, ea.RunStatus.RUNNING)
    assert first.action_name == ACTION
    assert first.execution_mode is ea.ExecutionMode.ASYNC
    await anyio.sleep(3600)
    done = await client.runs.get(run_uid)
    assert done.is_terminal
    assert done.finished_at is not None
    light = await client.runs.status(run_uid)
    assert light.status == done.status
    assert light.action_name is None
    assert light.output_count is None


async def test_scripted_run_statuses_over_time(
    client: ea.AsyncClient, simulator: EdgesSimulator
) -> None:
    """A scripted run shows each status at its time, with outputs once RUNNING."""
    simulator.script_runs(SCRIPT)
    run_uid = (await client.actions.run_async(ACTION, inputs=[{"x": 1}])).uid
    seen = []
    for _ in range(6):
        seen.append((await client.runs.get(run_uid)).status)
        await anyio.sleep(2.5)
    assert seen[0] is ea.RunStatus.CREATED
    assert ea.RunStatus.RUNNING in seen
    assert seen[-1] is ea.RunStatus.SUCCEEDED
    assert (await client.runs.get(run_uid)).output_count == 8


async def test_unknown_status_from_server_is_kept(
    client: ea.AsyncClient, simulator: EdgesSimulator
) -> None:
    """A status the SDK does not know comes through as a plain string, not terminal."""
    simulator.script_runs(RunScript(steps=(("CREATED", 0.0), ("ARCHIVING", 1.0)), outputs=0))
    run_uid = (await client.actions.run_async(ACTION, inputs=[{"x": 1}])).uid
    await anyio.sleep(5)
    run = await client.runs.status(run_uid)
    assert run.status == "ARCHIVING"
    assert not run.is_terminal


async def test_unknown_and_archived_runs_are_not_found(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """An unknown run and one past the 90-day retention both raise NotFoundError."""
    with pytest.raises(ea.NotFoundError):
        await client.runs.get(RUN_UID)
    old = simulator.add_run(workspace, action_name=ACTION, script=SCRIPT, age=timedelta(days=91))
    recent = simulator.add_run(workspace, action_name=ACTION, script=SCRIPT, age=timedelta(days=89))
    assert (await client.runs.get(recent.uid)).uid == recent.uid
    with pytest.raises(ea.NotFoundError):
        await client.runs.get(old.uid)
    with pytest.raises(ea.NotFoundError):
        await client.runs.status(old.uid)


async def test_another_workspaces_run_is_not_found(
    client: ea.AsyncClient, simulator: EdgesSimulator
) -> None:
    """A run of another workspace is invisible to this key."""
    other = simulator.add_workspace(api_key="someone-else", plan="titanium")
    foreign = simulator.add_run(other, action_name=ACTION, script=SCRIPT)
    with pytest.raises(ea.NotFoundError):
        await client.runs.get(foreign.uid)


async def test_wrong_key_is_an_authentication_error(simulator: EdgesSimulator) -> None:
    """A key the simulator does not know gives AuthenticationError."""
    async with (
        httpx.AsyncClient(transport=simulator.transport()) as http,
        ea.AsyncClient("not-a-key", http_client=http) as client,
    ):
        with pytest.raises(ea.AuthenticationError):
            await client.runs.get(RUN_UID)


async def test_list_pages_through_every_run(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """list() walks all pages with limit/offset and yields each run once."""
    uids = {simulator.add_run(workspace, action_name=ACTION, script=SCRIPT).uid for _ in range(25)}
    listed = [run.uid async for run in client.runs.list(page_size=10)]
    assert sorted(listed) == sorted(uids)
    pages = [dict(r.query) for r in runs_requests(simulator)]
    assert [(p["limit"], p["offset"]) for p in pages] == [("10", "0"), ("10", "10"), ("10", "20")]


async def test_list_max_items_stops_early(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """max_items caps the runs yielded and the last page asks only for what is left."""
    for _ in range(25):
        simulator.add_run(workspace, action_name=ACTION, script=SCRIPT)
    listed = [run async for run in client.runs.list(page_size=10, max_items=12)]
    assert len(listed) == 12
    assert [dict(r.query)["limit"] for r in runs_requests(simulator)] == ["10", "2"]


async def test_list_filters_go_as_repeated_keys(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Several filter values are sent as repeated keys and filter on the server."""
    blocked = simulator.add_run(workspace, action_name=ACTION, script=BLOCKING)
    running = simulator.add_run(workspace, action_name="other-action", script=SCRIPT)
    simulator.add_run(workspace, action_name=ACTION, script=SCRIPT)
    await anyio.sleep(5)
    found = [
        run.uid
        async for run in client.runs.list(
            status=[ea.RunStatus.BLOCKED, "RUNNING"], uid=[blocked.uid, running.uid]
        )
    ]
    assert sorted(found) == sorted([blocked.uid, running.uid])
    query = runs_requests(simulator)[-1].query
    assert [value for key, value in query if key == "status"] == ["BLOCKED", "RUNNING"]
    assert [value for key, value in query if key == "uid"] == [blocked.uid, running.uid]


async def test_list_sort(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """sort= orders the runs on the server, '-' for descending."""
    created = []
    for _ in range(3):
        created.append(simulator.add_run(workspace, action_name=ACTION, script=SCRIPT).uid)
        await anyio.sleep(1)
    ascending = [run.uid async for run in client.runs.list(sort="created_at")]
    descending = [run.uid async for run in client.runs.list(sort=["-created_at", "id"])]
    assert ascending == created
    assert descending == created[::-1]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"page_size": 0},
        {"page_size": 101},
        {"max_items": -1},
        {"sort": [f"f{i}" for i in range(11)]},
        {"sort": "x" * 129},
        {"sort": "-"},
        {"status": []},
        {"uid": [""]},
        {"action_name": [None]},
    ],
)
async def test_list_refuses_bad_arguments_before_any_request(
    client: ea.AsyncClient, simulator: EdgesSimulator, kwargs: dict[str, Any]
) -> None:
    """Bad list arguments raise ValueError at call time and send nothing."""
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        client.runs.list(**kwargs)
    assert simulator.requests == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"uid": "not-a-uuid"},
        {"uid": [RUN_UID, "123"]},
        {"uid": RUN_UID + "\n"},
        {"uid": [RUN_UID + "0"]},
        {"uid": 42},
        {"user_uid": "../etc/passwd"},
        {"user_uid": [RUN_UID + "\n"]},
    ],
)
async def test_list_refuses_malformed_uid_filters_before_any_request(
    client: ea.AsyncClient, simulator: EdgesSimulator, kwargs: dict[str, Any]
) -> None:
    """A uid or user_uid filter that is not a UUID raises ValueError and sends nothing."""
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"^{name} .*UUID"):
        client.runs.list(**kwargs)
    assert simulator.requests == []


async def test_list_sends_uid_filters_in_canonical_form(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Upper-case uids and uuid.UUID values go on the wire as lower-case UUIDs."""
    run = simulator.add_run(workspace, action_name=ACTION, script=SCRIPT)
    found = [
        found.uid async for found in client.runs.list(uid=[run.uid.upper(), uuid.UUID(RUN_UID)])
    ]
    assert found == [run.uid]
    query = runs_requests(simulator)[-1].query
    assert [value for key, value in query if key == "uid"] == [run.uid, RUN_UID]
    [_ async for _ in client.runs.list(user_uid=RUN_UID.upper())]
    query = runs_requests(simulator)[-1].query
    assert [value for key, value in query if key == "user_uid"] == [RUN_UID]


@pytest.mark.parametrize(
    "bad_uid", ["", "123", "not-a-uuid", RUN_UID + "0", "../etc/passwd", RUN_UID + "\n"]
)
async def test_malformed_run_uid_is_refused_before_any_request(
    client: ea.AsyncClient, simulator: EdgesSimulator, bad_uid: str
) -> None:
    """Every runs method refuses a malformed uid without sending anything."""
    for method in (client.runs.get, client.runs.status, client.runs.resume, client.runs.cancel):
        with pytest.raises(ValueError, match="UUID"):
            await method(bad_uid)
    assert simulator.requests == []


async def test_resume_a_blocked_run(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """A BLOCKED run resumes to SCHEDULED and then runs to the end."""
    run = simulator.add_run(workspace, action_name=ACTION, script=BLOCKING)
    await anyio.sleep(3)
    assert (await client.runs.status(run.uid)).status is ea.RunStatus.BLOCKED
    resumed = await client.runs.resume(run.uid)
    assert resumed.status is ea.RunStatus.SCHEDULED
    await anyio.sleep(600)
    assert (await client.runs.status(run.uid)).is_terminal


async def test_resume_a_running_run_is_refused(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Resuming a run that is not BLOCKED raises UnprocessableEntityError."""
    run = simulator.add_run(workspace, action_name=ACTION, script=SCRIPT)
    with pytest.raises(ea.UnprocessableEntityError):
        await client.runs.resume(run.uid)


async def test_cancel_stops_a_run_and_refuses_a_finished_one(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """cancel() makes a running run STOPPED; cancelling it again is refused."""
    run = simulator.add_run(workspace, action_name=ACTION, script=SCRIPT)
    await anyio.sleep(5)
    stopped = await client.runs.cancel(run.uid)
    assert stopped.status is ea.RunStatus.STOPPED
    await anyio.sleep(60)
    assert (await client.runs.get(run.uid)).status is ea.RunStatus.STOPPED
    with pytest.raises(ea.UnprocessableEntityError):
        await client.runs.cancel(run.uid)


async def test_outputs_are_read_exactly_once(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """All outputs of a finished run arrive once each, in order, page by page."""
    run_uid = await finished_run(simulator, workspace, 1234)
    indices = [item["index"] async for item in client.runs.outputs(run_uid, page_size=500)]
    assert indices == list(range(1234))
    outputs_requests = [r for r in simulator.requests if r.path.endswith("/outputs")]
    assert len(outputs_requests) == 3


async def test_output_pages_resume_from_a_cursor(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """A saved next_cursor resumes right after its page."""
    run_uid = await finished_run(simulator, workspace, 25)
    pages = client.runs.output_pages(run_uid, page_size=10)
    first = await anext(pages)
    await pages.aclose()
    assert first.next_cursor is not None
    rest = [item["index"] async for item in client.runs.outputs(run_uid, cursor=first.next_cursor)]
    assert [item["index"] for item in first.items] + rest == list(range(25))


async def test_outputs_of_a_live_run_are_refused(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """The API refuses outputs of LIVE runs; the SDK raises BadRequestError."""
    run = simulator.add_run(workspace, action_name=ACTION, script=SCRIPT, execution_mode="LIVE")
    with pytest.raises(ea.BadRequestError):
        [item async for item in client.runs.outputs(run.uid)]


async def test_429s_from_the_server_are_retried_after_retry_after(
    simulator: EdgesSimulator,
) -> None:
    """Without a client limiter, server 429s are waited out with Retry-After, none lost."""

    trial = simulator.add_workspace(api_key="trial-key", plan="trial")
    run = simulator.add_run(trial, action_name=ACTION, script=SCRIPT)
    async with (
        httpx.AsyncClient(transport=simulator.transport()) as http,
        ea.AsyncClient("trial-key", http_client=http, limiter=NoRateLimit(), max_retries=10) as c,
    ):
        results = []

        async def get() -> None:
            results.append(await c.runs.status(run.uid))

        async with anyio.create_task_group() as group:
            for _ in range(40):
                group.start_soon(get)
    assert len(results) == 40
    assert any(request.status_code == 429 for request in simulator.requests)
