"""The simulator's fault injection, in process, and its request log."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from edges_async.testing import EdgesSimulator, Fault, RecordedRequest, Workspace

from .conftest import RAW_SIM_START, raw_http

SIM_SEED = 2
SIM_PLAN = "trial"


async def test_status_fault_answers_an_edges_error_a_set_number_of_times(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """A status fault answers its status with an Edges error body, `times` times."""
    sim.faults.add(Fault(status=503, times=2))
    statuses = [(await raw_client.get("/v1/runs")).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert len(sim.faults) == 0
    error = (await _faulted(sim, raw_client, Fault(status=424))).json()
    assert set(error) == {"error_label", "error_scope", "error_ref", "message", "status_code"}
    assert (error["status_code"], error["error_label"]) == (424, "GENERIC_ERROR")


async def _faulted(sim: EdgesSimulator, client: httpx.AsyncClient, fault: Fault) -> httpx.Response:
    sim.faults.add(fault)
    return await client.get("/v1/runs")


async def test_status_fault_sends_its_headers(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """A 429 fault can carry Retry-After like the real API."""
    response = await _faulted(sim, raw_client, Fault(status=429, headers={"Retry-After": "3"}))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json()["error_label"] == "STATUS_429"


@pytest.mark.parametrize(
    ("body", "content"),
    [
        ("<html>Bad gateway</html>", b"<html>Bad gateway</html>"),
        (b"\x00\xff", b"\x00\xff"),
        ({"message": "custom"}, b'{"message":"custom"}'),
    ],
)
async def test_status_fault_can_send_a_custom_body(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient, body: Any, content: bytes
) -> None:
    """A fault body is sent raw when str or bytes, as JSON otherwise."""
    response = await _faulted(sim, raw_client, Fault(status=502, body=body))
    assert (response.status_code, response.content) == (502, content)


async def test_malformed_fault_answers_truncated_json(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """A malformed fault answers 200 whose JSON body cannot be parsed."""
    response = await _faulted(sim, raw_client, Fault(malformed=True))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_drop_fault_is_a_remote_protocol_error(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """A dropped connection surfaces as httpx.RemoteProtocolError and is logged without status."""
    sim.faults.add(Fault(drop=True))
    with pytest.raises(httpx.RemoteProtocolError):
        await raw_client.get("/v1/runs")
    assert sim.requests[-1].status_code is None
    assert sim.requests[-1].fault == Fault(drop=True)
    assert (await raw_client.get("/v1/runs")).status_code == 200


async def test_refuse_fault_never_reaches_the_app(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """A refused connection raises httpx.ConnectError and consumes no rate-limit budget."""
    sim.faults.add(Fault(refuse=True, times=None, path="/status$"))
    for _ in range(40):
        with pytest.raises(httpx.ConnectError):
            await raw_client.get("/v1/runs/00000000-0000-4000-8000-000000000000/status")
    response = await raw_client.get("/v1/runs")
    assert response.headers["X-RateLimit-Remaining"] == "29"
    refused = [request for request in sim.requests if request.fault is not None]
    assert len(refused) == 40
    assert {request.status_code for request in refused} == {None}


async def test_delay_fault_slows_the_answer_on_the_loop_clock(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """A delay-only fault answers normally, `delay` seconds of loop time later."""
    sim.faults.add(Fault(delay=timedelta(seconds=12.5)))
    loop = asyncio.get_running_loop()
    began = loop.time()
    response = await raw_client.get("/v1/runs")
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Remaining"] == "29"
    assert loop.time() - began == pytest.approx(12.5)
    assert sim.requests[-1].time == pytest.approx(began)


async def test_delay_combines_with_a_status(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """A delay before a status fault makes a slow failure."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    response = await _faulted(sim, raw_client, Fault(delay=3.0, status=504))
    assert response.status_code == 504
    assert loop.time() - began == pytest.approx(3.0)


async def test_faults_match_method_and_path_in_order(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """Rules are matched in order, by method and by a regex searched in the path."""
    sim.faults.add(
        Fault(method="post", status=500, times=None),
        Fault(path=r"/runs/[^/]+/status$", status=502, times=None),
        Fault(path=r"/runs", status=503, times=None),
    )
    launch = await raw_client.post("/v1/actions/a/run/async", json={"inputs": [{}]})
    status = await raw_client.get("/v1/runs/00000000-0000-4000-8000-000000000000/status")
    listing = await raw_client.get("/v1/runs")
    other = await raw_client.get("/v1/elsewhere")
    assert [r.status_code for r in (launch, status, listing, other)] == [500, 502, 503, 404]
    sim.faults.clear()
    assert (await raw_client.get("/v1/runs")).status_code == 200


async def test_faults_come_before_auth_and_limits(
    sim: EdgesSimulator, raw_client: httpx.AsyncClient
) -> None:
    """A faulted request gets its fault even without a key, and uses no budget."""
    sim.faults.add(Fault(status=500, times=5))
    for _ in range(5):
        response = await raw_client.get("/v1/runs", headers={"X-API-Key": "unknown"})
        assert response.status_code == 500
        assert "X-RateLimit-Remaining" not in response.headers
    assert (await raw_client.get("/v1/runs")).headers["X-RateLimit-Remaining"] == "29"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs an effect"),
        ({"status": 500, "drop": True}, "at most one"),
        ({"refuse": True, "malformed": True}, "at most one"),
        ({"status": 99}, "HTTP status"),
        ({"status": 500, "times": 0}, "at least 1"),
        ({"delay": -1.0}, "negative"),
    ],
)
def test_fault_rejects_contradictions(kwargs: dict[str, Any], message: str) -> None:
    """A Fault refuses settings it could not apply."""
    with pytest.raises(ValueError, match=message):
        Fault(**kwargs)


async def test_request_log_records_what_was_asked_and_answered(
    sim: EdgesSimulator, sim_workspace: Workspace, raw_client: httpx.AsyncClient
) -> None:
    """Each request is logged with clock time, query pairs, headers, workspace and status."""
    await asyncio.sleep(7)
    await raw_client.get("/v1/runs", params=[("status", "RUNNING"), ("status", "QUEUED")])
    await raw_client.get("/v1/runs", headers={"X-API-Key": "wrong"})
    sim.faults.add(Fault(status=418))
    await raw_client.post("/v1/actions/a/run/async", json={"inputs": [{}]})
    listed, unauthorised, faulted = sim.requests
    assert listed == RecordedRequest(
        time=7.0,
        method="GET",
        path="/v1/runs",
        query=[("status", "RUNNING"), ("status", "QUEUED")],
        headers=listed.headers,
        workspace_uid=sim_workspace.uid,
        status_code=200,
        fault=None,
    )
    assert listed.headers["x-api-key"] == "key-1"
    assert listed.headers["host"] == "api.edges.run"
    assert (unauthorised.status_code, unauthorised.workspace_uid) == (401, None)
    assert (faulted.method, faulted.status_code, faulted.fault) == ("POST", 418, Fault(status=418))
    sim.requests.clear()
    assert sim.requests == []


async def test_request_log_can_be_bounded() -> None:
    """With max_logged_requests, only about the newest that many requests are kept."""
    sim = EdgesSimulator(
        seed=2, start_time=RAW_SIM_START, window="unlimited", max_logged_requests=50
    )
    workspace = sim.add_workspace(api_key="key-1", plan="titanium")
    run = sim.add_run(workspace)
    async with raw_http(sim, "key-1") as http:
        for _ in range(200):
            await http.get(f"/v1/runs/{run.uid}/status")
    assert 50 <= len(sim.requests) <= 55
    assert sim.requests[-1].time >= sim.requests[0].time
    with pytest.raises(ValueError, match="max_logged_requests"):
        EdgesSimulator(max_logged_requests=0)
