"""The simulator on a real loopback socket: sim.serve() and python -m edges_async.testing."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx
import pytest

from edges_async.testing import EdgesSimulator, Fault, RunScript

pytestmark = pytest.mark.looptime(False)


async def test_serve_answers_over_loopback_and_shuts_down() -> None:
    """sim.serve() yields a loopback base URL that serves the API until the block ends."""
    sim = EdgesSimulator(seed=1)
    workspace = sim.add_workspace(api_key="key-1", plan="titanium")
    run = sim.add_run(workspace, script=RunScript(steps=(("SUCCEEDED", 0.0),), outputs=12))
    async with sim.serve() as base_url:
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/v1", base_url)
        assert match is not None
        async with httpx.AsyncClient(base_url=base_url, headers={"X-API-Key": "key-1"}) as http:
            assert (await http.get(f"/runs/{run.uid}")).json()["output_count"] == 12
            first = await http.get(f"/runs/{run.uid}/outputs", params={"limit": 5})
            next_url = first.headers["X-Pagination-Next"]
            assert next_url.startswith(f"http://127.0.0.1:{match.group(1)}/v1/runs/{run.uid}/")
            items = first.json()
            while next_url:
                page = await http.get(next_url)
                items += page.json()
                next_url = page.headers.get("X-Pagination-Next", "")
            assert [item["index"] for item in items] == list(range(12))
    assert sim.requests[0].workspace_uid == workspace.uid
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"{base_url}/runs")


@pytest.mark.parametrize("fault", [Fault(drop=True), Fault(refuse=True)], ids=["drop", "refuse"])
async def test_dropped_connection_over_uvicorn_is_a_remote_protocol_error(fault: Fault) -> None:
    """Over a socket a drop (and a refuse, which a server can only drop) cuts the response."""
    sim = EdgesSimulator()
    sim.add_workspace(api_key="key-1")
    sim.faults.add(fault)
    async with (
        sim.serve() as base_url,
        httpx.AsyncClient(base_url=base_url, headers={"X-API-Key": "key-1"}) as http,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get("/runs")
        assert (await http.get("/runs")).status_code == 200
    assert [request.status_code for request in sim.requests] == [None, 200]


SERVING = {  # the two commands that serve the simulator, asked for the same server
    "python -m edges_async.testing": [
        *("-m", "edges_async.testing", "--port", "0", "--plan", "gold"),
        *("--api-key", "k-1", "--window", "fixed_minute"),
    ],
    "edges simulator": [
        *("-m", "edges_async.cli", "--api-key", "k-1", "simulator"),
        *("--port", "0", "--plan", "gold", "--window", "fixed"),
    ],
}


@pytest.mark.parametrize("arguments", SERVING.values(), ids=SERVING)
def test_command_line_serves_until_ctrl_c(arguments: list[str]) -> None:
    """The command prints its URL, key, plan and window, serves, and stops on SIGINT."""
    process = subprocess.Popen(
        [sys.executable, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        found = re.search(r"(http://127\.0\.0\.1:\d+/v1)", process.stdout.readline())
        assert found is not None
        assert "API key: k-1  (plan gold, window fixed_minute)" in process.stdout.readline()
        response = httpx.get(f"{found.group(1)}/runs", headers={"X-API-Key": "k-1"})
        assert (response.status_code, response.json()) == (200, [])
        assert response.headers["X-RateLimit-Remaining"] == "149"
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=20)
        assert process.returncode == 0
        assert "stopped" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_listening_socket_is_tcp_so_asyncio_turns_nagle_off() -> None:
    """The bound socket says it is TCP, so accepted connections get TCP_NODELAY.

    Without it every loopback response waited ~40 ms on Nagle and delayed ACKs.
    """
    import socket

    from edges_async.testing._server import _bind

    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
