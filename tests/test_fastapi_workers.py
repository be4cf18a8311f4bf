"""examples/fastapi_app.py under ``uvicorn --workers 4`` with ``EDGES_REDIS_URL``: for real.

Four worker processes, a real Redis, the simulator on loopback posting real
callbacks over TLS. Runs are launched through some workers, waited for
through others, their callbacks land on whichever worker the kernel hands
the connection to: every wait ends as the run does, every callback is taken
once, and one worker polls for all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import redis
import trustme

from edges_async.testing import EdgesSimulator, LoopbackTransport, RunScript

from .redis_server import free_port
from .test_fastapi_example import API_KEY, PUBLIC_HOST, SECRET, trusting

pytestmark = pytest.mark.looptime(False)

EXAMPLES = Path(__file__).parent.parent / "examples"
WORKERS = 4
RUNS = 8


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def app_port() -> int:
    return free_port()


def start_workers(
    ca: trustme.CA, port: int, base_url: str, redis_url: str, tmp_path: Path
) -> subprocess.Popen[bytes]:
    """``uvicorn fastapi_app:app --workers 4`` over TLS on ``port``, configured by environment."""
    cert = ca.issue_cert("127.0.0.1", PUBLIC_HOST)
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    env = {
        **os.environ,
        "EDGES_API_KEY": API_KEY,
        "EDGES_PLAN": "titanium",
        "EDGES_BASE_URL": base_url,
        "EDGES_CALLBACK_SECRET": SECRET,
        "PUBLIC_URL": f"https://{PUBLIC_HOST}:{port}",
        "EDGES_REDIS_URL": redis_url,
    }
    command = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--app-dir", str(EXAMPLES)]
    command += ["--workers", str(WORKERS), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--ssl-keyfile", str(tmp_path / "key.pem")]
    command += ["--ssl-certfile", str(tmp_path / "cert.pem"), "--log-level", "warning"]
    return subprocess.Popen(command, env=env)


@pytest.fixture
def stopped_at_the_end() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_four_workers_share_waits_callbacks_and_one_poller(
    ca: trustme.CA,
    app_port: int,
    redis_url: str,
    tmp_path: Path,
    stopped_at_the_end: list[subprocess.Popen[bytes]],
) -> None:
    """8 runs launched, waited for and called back across 4 workers: all end, once each."""
    simulator = EdgesSimulator(seed=14)
    simulator.add_workspace(api_key=API_KEY, plan="titanium")
    steps = (("CREATED", 0.0), ("RUNNING", 0.5), ("SUCCEEDED", 3.0))
    simulator.script_runs(*(RunScript(steps=steps, outputs=1) for _ in range(RUNS)))
    origin = f"https://127.0.0.1:{app_port}"
    async with simulator.serve() as base_url:
        stopped_at_the_end.append(start_workers(ca, app_port, base_url, redis_url, tmp_path))
        async with (
            httpx.AsyncClient(
                transport=LoopbackTransport(PUBLIC_HOST, verify=trusting(ca))
            ) as sender,
            simulator.deliver_callbacks(http_client=sender),
        ):
            deadline = time.monotonic() + 30
            while True:  # the workers start (imports, TLS): a few seconds
                try:
                    async with httpx.AsyncClient(verify=trusting(ca)) as probe:
                        await probe.get(f"{origin}/ready")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the workers did not start"
                    await anyio.sleep(0.2)

            async def fresh_connection(method: str, path: str, **kwargs: object) -> httpx.Response:
                # One connection per request: the kernel spreads them over the workers.
                async with httpx.AsyncClient(base_url=origin, verify=trusting(ca)) as http:
                    return await http.request(method, path, **kwargs)  # type: ignore[arg-type]

            uids = []
            for number in range(RUNS):
                body = {"action": "linkedin-extract-people", "inputs": [{"q": number}]}
                launched = await fresh_connection("POST", "/runs", json=body)
                assert launched.status_code == 201, launched.text
                uids.append(launched.json()["run_uid"])
            waited: dict[str, httpx.Response] = {}
            started = anyio.current_time()

            async def wait(uid: str) -> None:
                waited[uid] = await fresh_connection(
                    "GET", f"/runs/{uid}/wait", params={"timeout": 20}, timeout=30
                )

            async with anyio.create_task_group() as group:
                for uid in uids:
                    group.start_soon(wait, uid)
            took = anyio.current_time() - started
            late = await fresh_connection("GET", f"/runs/{uids[0]}/wait", params={"timeout": 5})
    for uid in uids:
        assert waited[uid].status_code == 200, waited[uid].text
        assert waited[uid].json()["run"]["status"] == "SUCCEEDED"
    assert took < 10
    assert late.status_code == 200  # ended: read from Redis, at once
    deliveries = [(d.run_uid, d.status_code) for d in simulator.callback_deliveries]
    assert sorted(deliveries) == sorted((uid, 200) for uid in uids)  # each taken once
    events_key = f"edges:{{{_workspace(base_url)}}}:events"
    stream: list[tuple[bytes, dict[bytes, bytes]]] = redis.Redis.from_url(redis_url).xrange(
        events_key
    )  # type: ignore[assignment]
    kinds = [fields[b"k"] for _, fields in stream]
    assert kinds.count(b"callback") == RUNS
    ended = [fields[b"u"].decode() for _, fields in stream if fields[b"k"] == b"ended"]
    assert sorted(set(ended)) == sorted(uids)
    # One poller at a time: an end is told once, twice when the lease changed hands
    # (a leader whose last waiter left steps down) before it was written.
    assert len(ended) <= RUNS + 2
    assert not [r for r in simulator.requests if r.status_code == 429]


def _workspace(base_url: str) -> str:
    from edges_async._limiter import workspace_id

    return workspace_id(API_KEY, base_url)
