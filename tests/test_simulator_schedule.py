"""The simulator's schedule route: validation, and runs SCHEDULED until they start (fake time)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from edges_async.testing import EdgesSimulator, RunScript, Workspace

from .conftest import API_KEY, LAUNCH_FIELDS, SIM_START, raw_http

# SIM_START is Sunday 2026-11-01 09:00 UTC (18:00 in Tokyo, 10:00 in Paris).
SCHEDULE = "/v1/actions/linkedin-extract-people/run/schedule"
STEPS = (("CREATED", 0.0), ("RUNNING", 2.0), ("SUCCEEDED", 10.0))
TERMINAL = {"SUCCEEDED", "PARTIAL_SUCCEEDED", "FAILED", "STOPPED", "BLOCKED", "INVALID"}
ERROR_FIELDS = {"error_label", "error_scope", "error_ref", "message", "status_code"}


async def schedule(simulator: EdgesSimulator, **fields: Any) -> httpx.Response:
    """POST a schedule body of one input plus ``fields``."""
    async with raw_http(simulator, API_KEY) as http:
        return await http.post(SCHEDULE, json={"inputs": [{"q": 1}], **fields})


async def status_at(simulator: EdgesSimulator, uid: str, moment: float) -> dict[str, Any]:
    """The run's /status answer at loop time ``moment``."""
    await asyncio.sleep(moment - asyncio.get_running_loop().time())
    async with raw_http(simulator, API_KEY) as http:
        body: dict[str, Any] = (await http.get(f"/v1/runs/{uid}/status")).json()
    return body


async def test_a_cron_run_is_scheduled_until_the_next_occurrence_then_runs_its_script(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """cron "30 9 * * *" at 09:00 UTC: SCHEDULED for 30 minutes, then the script, shifted."""
    simulator.script_runs(RunScript(steps=STEPS, outputs=3))
    response = await schedule(simulator, cron="30 9 * * *")
    assert response.status_code == 200, response.text
    launched = response.json()
    assert set(launched) == LAUNCH_FIELDS
    assert launched["status"] == "SCHEDULED"
    assert launched["created_at"] == "2026-11-01T09:00:00.000Z"
    uid = launched["run_uid"]
    timeline = [
        (1799.999, "SCHEDULED"),
        (1800.0, "CREATED"),
        (1802.0, "RUNNING"),
        (1810.0, "SUCCEEDED"),
    ]
    for moment, status in timeline:
        assert (moment, (await status_at(simulator, uid, moment))["status"]) == (moment, status)
    done = await status_at(simulator, uid, 1900.0)
    assert done["started_at"] == "2026-11-01T09:30:02.000Z"
    assert done["finished_at"] == "2026-11-01T09:30:10.000Z"
    run = simulator.get_run(uid)
    assert (run.execution_mode, run.output_count) == ("ASYNC", 3)


@pytest.mark.parametrize(
    ("zone", "seconds"),
    [("Asia/Tokyo", 7200.0), ("UTC", 11 * 3600.0), (None, 11 * 3600.0)],
    ids=["tokyo", "utc", "default-utc"],
)
async def test_the_cron_is_read_in_its_timezone(
    simulator: EdgesSimulator, workspace: Workspace, zone: str | None, seconds: float
) -> None:
    """cron "0 20 * * *" is 20:00 in its timezone (default UTC): 2 h away in Tokyo, 11 h in UTC."""
    simulator.script_runs(RunScript(steps=STEPS))
    fields: dict[str, Any] = {"cron": "0 20 * * *"}
    if zone is not None:
        fields["timezone"] = zone
    uid = (await schedule(simulator, **fields)).json()["run_uid"]
    assert (await status_at(simulator, uid, seconds - 0.001))["status"] == "SCHEDULED"
    assert (await status_at(simulator, uid, seconds))["status"] == "CREATED"


@pytest.mark.parametrize(
    "schedule_at",
    ["2026-11-01T09:05:00Z", "2026-11-01T09:05:00", "2026-11-01T10:05:00+01:00"],
    ids=["z", "naive-is-utc", "offset"],
)
async def test_a_schedule_at_run_starts_at_that_moment(
    simulator: EdgesSimulator, workspace: Workspace, schedule_at: str
) -> None:
    """schedule_at (Z, naive as UTC, or with an offset) 5 minutes ahead: SCHEDULED for 300 s."""
    simulator.script_runs(RunScript(steps=STEPS))
    response = await schedule(simulator, schedule_at=schedule_at)
    assert response.json()["status"] == "SCHEDULED"
    uid = response.json()["run_uid"]
    assert (await status_at(simulator, uid, 299.999))["status"] == "SCHEDULED"
    assert (await status_at(simulator, uid, 300.0))["status"] == "CREATED"
    assert (await status_at(simulator, uid, 310.0))["status"] == "SUCCEEDED"


async def test_a_random_lifecycle_is_shifted_to_the_start_too(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Without a script the run is SCHEDULED until its start, then CREATED, then ends."""
    uid = (await schedule(simulator, schedule_at="2026-11-01T09:10:00Z")).json()["run_uid"]
    assert (await status_at(simulator, uid, 599.0))["status"] == "SCHEDULED"
    assert (await status_at(simulator, uid, 600.0))["status"] == "CREATED"
    final = await status_at(simulator, uid, 600.0 + 3 * 3600)
    assert final["status"] in TERMINAL


async def test_a_past_schedule_at_starts_the_run_at_once(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """A schedule_at already gone by starts the run at once: no SCHEDULED phase."""
    simulator.script_runs(RunScript(steps=STEPS))
    response = await schedule(simulator, schedule_at="2026-10-31T09:00:00Z")
    assert response.json()["status"] == "CREATED"


async def test_a_scheduled_run_can_be_cancelled_before_it_starts(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """POST /cancel on a SCHEDULED run stops it for good."""
    uid = (await schedule(simulator, cron="0 12 * * *")).json()["run_uid"]
    await asyncio.sleep(60)
    async with raw_http(simulator, API_KEY) as http:
        assert (await http.post(f"/v1/runs/{uid}/cancel")).status_code == 200
    assert (await status_at(simulator, uid, 86_400.0))["status"] == "STOPPED"


async def test_a_scheduled_run_sends_its_callback_when_it_ends(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """A schedule's callback goes out at the shifted terminal moment, with the first input."""
    simulator.script_runs(RunScript(steps=STEPS, outputs=1))
    callback = {"url": "https://hooks.example.com/edges", "on": "final"}
    response = await schedule(simulator, schedule_at="2026-11-01T09:01:00Z", callback=callback)
    uid = response.json()["run_uid"]
    seen: list[tuple[float, dict[str, Any]]] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append((asyncio.get_running_loop().time(), json.loads(request.content)))
        return httpx.Response(204)

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(record)) as hooks,
        simulator.deliver_callbacks(hooks),
    ):
        await asyncio.sleep(200)
    [(moment, body)] = seen
    assert moment == 70.0
    assert body["run"]["run_uid"] == uid
    assert body["run"]["status"] == "SUCCEEDED"
    assert body["input"] == {"q": 1}


async def test_scheduling_draws_on_no_rate_limit_budget() -> None:
    """Like async launches, schedule calls are not rate limited (a Trial plan, 40 calls at once)."""
    sim = EdgesSimulator(start_time=SIM_START, seed=1)
    sim.add_workspace(api_key=API_KEY, plan="trial")
    responses = [await schedule(sim, cron="0 * * * *") for _ in range(40)]
    assert {response.status_code for response in responses} == {200}
    assert all("X-RateLimit-Remaining" not in response.headers for response in responses)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "body must have required property 'cron' or 'schedule_at'"),
        (
            {"cron": "0 9 * * *", "schedule_at": "2026-11-02T09:00:00Z"},
            "body must NOT have both 'cron' and 'schedule_at'",
        ),
        ({"cron": "61 * * * *"}, "body/cron is not a valid cron expression (Bad minute)"),
        ({"cron": "0 0 30 2 *"}, "body/cron is not a valid cron expression"),
        ({"cron": "* * * *"}, "body/cron must be a 5-field cron expression"),
        ({"cron": "0 * * * * *"}, "body/cron must be a 5-field cron expression"),
        ({"cron": 5}, "body/cron must be string"),
        (
            {"cron": "0 9 * * *", "timezone": "Mars/Olympus_Mons"},
            "body/timezone must be an IANA time zone name",
        ),
        ({"cron": "0 9 * * *", "timezone": "../etc/passwd"}, "body/timezone must be an IANA"),
        ({"cron": "0 9 * * *", "timezone": 1}, "body/timezone must be string"),
        ({"schedule_at": "tomorrow"}, 'body/schedule_at must match format "date-time"'),
        ({"schedule_at": 1767225600}, "body/schedule_at must be string"),
        (
            {"schedule_at": "2026-11-02T09:00:00Z", "timezone": "UTC"},
            "body/timezone goes with 'cron' only",
        ),
        ({"cron": "0 9 * * *", "every": "day"}, "body must NOT have additional properties (every)"),
        (
            {"cron": "0 9 * * *", "callback": {"url": "http://hooks.example.com"}},
            "body/callback/url must be an HTTPS URL",
        ),
    ],
)
async def test_bad_schedule_bodies_answer_400_and_create_nothing(
    simulator: EdgesSimulator, workspace: Workspace, fields: dict[str, Any], message: str
) -> None:
    """A bad cron, timezone or schedule_at, both or neither: 400 with the Edges error body."""
    response = await schedule(simulator, **fields)
    assert response.status_code == 400
    body = response.json()
    assert set(body) == ERROR_FIELDS
    assert (body["status_code"], body["error_label"]) == (400, "BAD_PARAMETERS")
    assert body["message"].startswith(message)
    assert simulator.runs == []


async def test_a_schedule_body_still_needs_inputs(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """The async part of the body is validated as for an async launch."""
    async with raw_http(simulator, API_KEY) as http:
        response = await http.post(SCHEDULE, json={"cron": "0 9 * * *"})
    assert response.status_code == 400
    assert response.json()["message"] == "body must have required property 'inputs'"
    assert simulator.runs == []
