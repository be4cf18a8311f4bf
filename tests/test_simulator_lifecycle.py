"""The simulator's run lifecycles over fake loop time: steps, outputs, resume, cancel."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from edges_async.testing import EdgesSimulator, RunProfile, RunScript, Workspace

from .conftest import LAUNCH_FIELDS, RAW_SIM_START, raw_http

SIM_SEED = 3
STEPS = (("CREATED", 0.0), ("QUEUED", 1.0), ("RUNNING", 2.0), ("SUCCEEDED", 10.0))
TERMINAL = {"SUCCEEDED", "PARTIAL_SUCCEEDED", "FAILED", "STOPPED", "BLOCKED", "INVALID"}


async def launch(client: httpx.AsyncClient, action: str = "linkedin-extract-people") -> str:
    response = await client.post(
        f"/v1/actions/{action}/run/async", json={"inputs": [{"linkedin_profile_url": "x"}]}
    )
    assert response.status_code == 200, response.text
    uid: str = response.json()["run_uid"]
    return uid


async def launch_scripted(sim: EdgesSimulator, client: httpx.AsyncClient, script: RunScript) -> str:
    """Launch a run that follows ``script``; its uid."""
    sim.script_runs(script)
    return await launch(client)


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(moment - asyncio.get_running_loop().time())


async def get_run(client: httpx.AsyncClient, uid: str) -> dict[str, Any]:
    response = await client.get(f"/v1/runs/{uid}")
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


async def test_scripted_run_moves_through_its_steps_on_the_clock(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """A scripted run shows each status from its step's time until the next step."""
    uid = await launch_scripted(sim, raw_client, RunScript(steps=STEPS, outputs=10))
    expected = [
        (0.999, "CREATED"),
        (1.0, "QUEUED"),
        (1.999, "QUEUED"),
        (2.0, "RUNNING"),
        (9.999, "RUNNING"),
        (10.0, "SUCCEEDED"),
        (5000.0, "SUCCEEDED"),
    ]
    for moment, status in expected:
        await sleep_until(moment)
        response = await raw_client.get(f"/v1/runs/{uid}/status")
        assert (moment, response.json()["status"]) == (moment, status)


async def test_launch_answers_the_documented_shape(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient, sim_workspace: Workspace
) -> None:
    """The async launch answers run_id, run_uid, workspace and user uids and CREATED."""
    response = await raw_client.post(
        "/v1/actions/linkedin-extract-people/run/async", json={"inputs": [{}, {}]}
    )
    body = response.json()
    assert set(body) == LAUNCH_FIELDS
    assert body["status"] == "CREATED"
    assert body["workspace_uid"] == sim_workspace.uid
    assert body["user_uid"] == sim_workspace.user_uid
    assert body["action_name"] == "linkedin-extract-people"
    assert sim.get_run(body["run_uid"]).input_count == 2


async def test_outputs_appear_linearly_while_running(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """output_count grows linearly from RUNNING to the terminal step, then holds."""
    uid = await launch_scripted(sim, raw_client, RunScript(steps=STEPS, outputs=100))
    counts = []
    for moment in (1.5, 2.0, 6.0, 9.99, 10.0, 60.0):
        await sleep_until(moment)
        counts.append((await get_run(raw_client, uid))["output_count"])
    assert counts == [0, 0, 50, 99, 100, 100]


async def test_timestamps_follow_the_steps(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """started_at is set once RUNNING, finished_at once terminal, updated_at at each change."""
    uid = await launch_scripted(sim, raw_client, RunScript(steps=STEPS, outputs=1))
    await sleep_until(1.5)
    queued = await get_run(raw_client, uid)
    assert queued["created_at"] == "2025-01-01T00:00:00.000Z"
    assert queued["updated_at"] == "2025-01-01T00:00:01.000Z"
    assert (queued["started_at"], queued["finished_at"]) == (None, None)
    await sleep_until(5.0)
    running = await get_run(raw_client, uid)
    assert running["started_at"] == "2025-01-01T00:00:02.000Z"
    assert running["finished_at"] is None
    await sleep_until(12.0)
    done = await get_run(raw_client, uid)
    assert done["finished_at"] == done["updated_at"] == "2025-01-01T00:00:10.000Z"
    assert done["started_at"] == "2025-01-01T00:00:02.000Z"


async def test_wall_time_is_start_time_plus_elapsed_clock(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """Runs launched later carry later wall-clock times, offset from start_time."""
    await launch(raw_client)
    await sleep_until(90.5)
    uid = await launch(raw_client)
    assert (await get_run(raw_client, uid))["created_at"] == "2025-01-01T00:01:30.500Z"


async def test_unknown_and_odd_statuses_are_emitted_verbatim(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """A script can make the API emit lowercase, unknown and null statuses."""
    sim.script_runs(RunScript(steps=(("pending", 0.0), ("ARCHIVING", 1.0), (None, 2.0))))
    response = await raw_client.post("/v1/actions/a/run/async", json={"inputs": [{}]})
    assert response.json()["status"] == "pending"
    uid = response.json()["run_uid"]
    await sleep_until(1.0)
    assert (await get_run(raw_client, uid))["status"] == "ARCHIVING"
    await sleep_until(2.0)
    assert (await get_run(raw_client, uid))["status"] is None


async def test_failed_run_carries_last_error_once_failed(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """A FAILED run shows a last_error from its failure on; a scripted error passes through."""
    failed = (("CREATED", 0.0), ("RUNNING", 1.0), ("FAILED", 3.0))
    custom = {"label": "BAD_INPUT", "message": "not a company page", "params": {"x": 1}}
    sim.script_runs(
        RunScript(steps=failed, outputs=0),
        RunScript(steps=(("CREATED", 0.0), ("BLOCKED", 2.0)), last_error=custom),
    )
    failing, blocked = await launch(raw_client), await launch(raw_client)
    await sleep_until(1.5)
    assert (await get_run(raw_client, failing))["last_error"] is None
    await sleep_until(3.0)
    error = (await get_run(raw_client, failing))["last_error"]
    assert error["label"] == "NO_RESULT"
    assert set(error) == {"label", "message", "params"}
    assert (await get_run(raw_client, blocked))["last_error"] == custom


async def test_script_queue_is_fifo_and_may_target_one_action(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """Scripts go to launches in order; an action's own scripts come before generic ones."""
    sim.script_runs(RunScript(steps=(("FIRST", 0.0),)), RunScript(steps=(("SECOND", 0.0),)))
    sim.script_runs(RunScript(steps=(("SPECIAL", 0.0),)), action="special-action")
    statuses = []
    for action in ("special-action", "other", "special-action", "other"):
        uid = await launch(raw_client, action)
        statuses.append((await get_run(raw_client, uid))["status"])
    assert statuses == ["SPECIAL", "FIRST", "SECOND", "CREATED"]


async def test_random_lifecycles_are_reproducible_from_the_seed() -> None:
    """Two simulators with the same seed give the same runs; another seed differs."""

    async def outcome(seed: int) -> list[tuple[str, Any, int]]:
        sim = EdgesSimulator(seed=seed, start_time=RAW_SIM_START)
        sim.add_workspace(api_key="k", plan="titanium")
        async with raw_http(sim, "k") as http:
            uids = [await launch(http) for _ in range(8)]
            await asyncio.sleep(4000)
            runs = [await get_run(http, uid) for uid in uids]
        return [(run["uid"], run["status"], run["output_count"]) for run in runs]

    first, again, other = await outcome(5), await outcome(5), await outcome(6)
    assert first == again
    assert [uid for uid, _, _ in first] != [uid for uid, _, _ in other]
    assert {status for _, status, _ in first} <= TERMINAL


async def test_random_lifecycles_have_sensible_timing_and_mix(sim: EdgesSimulator) -> None:
    """Random runs queue within seconds, mostly succeed, and all end within the cap."""
    workspace = sim.add_workspace(api_key="mix", plan="trial")
    runs = [sim.add_run(workspace) for _ in range(300)]
    await asyncio.sleep(0.05)
    assert {run.status for run in runs} == {"CREATED"}
    await asyncio.sleep(3.6)
    assert not {run.status for run in runs} & {"CREATED", "QUEUED"}
    await asyncio.sleep(1800)
    statuses = Counter(run.status for run in runs)
    assert set(statuses) <= TERMINAL
    assert 0.7 <= statuses["SUCCEEDED"] / len(runs) <= 0.9
    assert len(statuses) >= 4
    assert all(run.output_count == 0 for run in runs if run.status in ("FAILED", "INVALID"))


async def test_run_profile_changes_random_lifecycles(sim: EdgesSimulator) -> None:
    """A RunProfile's weights and output range shape the random runs."""
    profile = RunProfile(terminal_weights={"PARTIAL_SUCCEEDED": 1.0}, outputs_per_input=(2, 2))
    custom = EdgesSimulator(seed=1, run_profile=profile)
    workspace = custom.add_workspace(api_key="p")
    runs = [custom.add_run(workspace, inputs=[{}] * 50) for _ in range(20)]
    await asyncio.sleep(3600)
    assert {run.status for run in runs} == {"PARTIAL_SUCCEEDED"}
    assert all(20 <= run.output_count <= 90 for run in runs)


async def test_resume_takes_a_blocked_run_to_succeeded(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """Resuming a BLOCKED run makes it SCHEDULED, then QUEUED, RUNNING and SUCCEEDED."""
    blocked = (("CREATED", 0.0), ("RUNNING", 1.0), ("BLOCKED", 3.0))
    error = {"label": "BAD_INPUT", "message": "m", "params": {}}
    uid = await launch_scripted(
        sim, raw_client, RunScript(steps=blocked, outputs=5, resume_outputs=5, last_error=error)
    )
    await sleep_until(3.0)
    resumed = await raw_client.post(f"/v1/runs/{uid}/resume")
    assert resumed.status_code == 200
    body = resumed.json()
    assert (body["status"], body["finished_at"], body["last_error"]) == ("SCHEDULED", None, None)
    timeline = []
    for moment in (4.0, 5.0, 8.0):
        await sleep_until(moment)
        run = await get_run(raw_client, uid)
        timeline.append((run["status"], run["output_count"]))
    assert timeline == [("QUEUED", 5), ("RUNNING", 5), ("SUCCEEDED", 10)]
    assert run["finished_at"] == "2025-01-01T00:00:08.000Z"


@pytest.mark.parametrize("moment", [1.5, 20.0], ids=["running", "succeeded"])
async def test_resume_refuses_a_run_that_is_not_blocked(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient, moment: float
) -> None:
    """Resuming a run that is not BLOCKED answers 422 and changes nothing."""
    uid = await launch_scripted(
        sim, raw_client, RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", 10.0)))
    )
    await sleep_until(moment)
    before = await get_run(raw_client, uid)
    response = await raw_client.post(f"/v1/runs/{uid}/resume")
    assert response.status_code == 422
    assert "BLOCKED" in response.json()["message"]
    assert response.json()["status_code"] == 422
    assert await get_run(raw_client, uid) == before


async def test_cancel_stops_a_running_run_and_freezes_its_outputs(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """Cancelling makes a run STOPPED at once, with the outputs visible then, for good."""
    uid = await launch_scripted(sim, raw_client, RunScript(steps=STEPS, outputs=100))
    await sleep_until(6.0)
    response = await raw_client.post(f"/v1/runs/{uid}/cancel")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["output_count"]) == ("STOPPED", 50)
    await sleep_until(100.0)
    run = await get_run(raw_client, uid)
    assert (run["status"], run["output_count"]) == ("STOPPED", 50)
    assert run["finished_at"] == run["updated_at"] == "2025-01-01T00:00:06.000Z"


async def test_cancel_refuses_finished_and_live_runs(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """Cancelling a terminal run answers 422; cancelling a LIVE run answers 400."""
    sim.script_runs(RunScript(steps=(("SUCCEEDED", 0.0),)))
    finished = await launch(raw_client)
    refused = await raw_client.post(f"/v1/runs/{finished}/cancel")
    assert refused.status_code == 422
    assert "SUCCEEDED" in refused.json()["message"]
    await raw_client.post("/v1/actions/a/run/live", json={"input": {"q": 1}})
    live = next(run for run in sim.runs if run.execution_mode == "LIVE")
    response = await raw_client.post(f"/v1/runs/{live.uid}/cancel")
    assert response.status_code == 400
    assert "LIVE" in response.json()["message"]


async def test_postponed_until_comes_from_the_script(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """postponed_until is shown as given, a timedelta counting from the run's creation."""
    moment = datetime(2025, 2, 1, 12, 0, tzinfo=timezone.utc)
    sim.script_runs(
        RunScript(postponed_until=timedelta(minutes=5)), RunScript(postponed_until=moment)
    )
    relative, absolute = await launch(raw_client), await launch(raw_client)
    assert (await get_run(raw_client, relative))["postponed_until"] == "2025-01-01T00:05:00.000Z"
    assert (await get_run(raw_client, absolute))["postponed_until"] == "2025-02-01T12:00:00.000Z"


async def test_seeded_run_reads_like_the_api(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """A run seeded with add_run follows the clock and matches what the API answers."""
    workspace = sim.workspaces[0]
    run = sim.add_run(workspace, script=RunScript(steps=STEPS, outputs=8), inputs=[{}, {}])
    assert (run.status, run.output_count, run.input_count) == ("CREATED", 0, 2)
    await sleep_until(10.0)
    assert (run.status, run.output_count) == ("SUCCEEDED", 8)
    assert await get_run(raw_client, run.uid) == run.as_dict()
    assert run.created_at == RAW_SIM_START


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": ()}, "at least one step"),
        ({"steps": (("QUEUED", 1.0),)}, "at 0 seconds"),
        ({"steps": (("CREATED", 0.0), ("RUNNING", 5.0), ("SUCCEEDED", 4.0))}, "time order"),
        ({"outputs": -1}, "negative"),
    ],
)
def test_run_script_rejects_impossible_lifecycles(kwargs: dict[str, Any], message: str) -> None:
    """RunScript refuses lifecycles the simulator could not play."""
    with pytest.raises(ValueError, match=message):
        RunScript(**kwargs)
