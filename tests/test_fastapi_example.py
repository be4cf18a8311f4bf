"""examples/fastapi_app.py end to end, over real loopback sockets and real time.

The simulator is served by uvicorn on one port (plain HTTP: the client accepts
it for loopback), the example app by uvicorn on another over TLS (a trustme
certificate authority, trusted by the simulator's callback sender), so the
callback URL is a real ``https://`` one, as Edges requires.
"""

from __future__ import annotations

import contextlib
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import trustme

import edges_async as ea
from edges_async.testing import EdgesSimulator, RunScript
from edges_async.testing._server import serve_origin

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))
import fastapi_app

pytestmark = pytest.mark.looptime(False)

API_KEY = "sk-fastapi-example"
SECRET = "example-secret-0123456789"


@contextlib.asynccontextmanager
async def serve_tls(app: Any, ca: trustme.CA) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn over TLS on a free loopback port; yield its origin."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    with cert.private_key_and_cert_chain_pem.tempfile() as pem:
        async with serve_origin(app, certfile=pem) as origin:
            yield origin


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_launch_then_wait_returns_on_the_callback() -> None:
    """POST /runs, then GET /runs/{uid}/wait: it returns as the final callback lands."""
    simulator = EdgesSimulator(seed=6)
    simulator.add_workspace(api_key=API_KEY, plan="titanium")
    steps = (("CREATED", 0.0), ("RUNNING", 0.2), ("SUCCEEDED", 1.0))
    simulator.script_runs(RunScript(steps=steps, outputs=2))
    ca = trustme.CA()
    async with simulator.serve() as base_url:
        client = ea.AsyncClient(API_KEY, plan="titanium", base_url=base_url)
        app = fastapi_app.create_app(client=client, public_url="https://x.invalid", secret=SECRET)
        async with (
            serve_tls(app, ca) as origin,
            # Closed before the app's server stops: no keep-alive connection holds it up.
            httpx.AsyncClient(verify=trusting(ca)) as sender,
            simulator.deliver_callbacks(http_client=sender),
            httpx.AsyncClient(base_url=origin, verify=trusting(ca)) as http,
        ):
            app.state.callback_url = origin + fastapi_app.CALLBACK_PATH
            launched = await http.post(
                "/runs", json={"action": "linkedin-extract-people", "inputs": [{"q": 1}]}
            )
            assert launched.status_code == 201, launched.text
            uid = launched.json()["run_uid"]
            started = anyio.current_time()
            waited = await http.get(f"/runs/{uid}/wait", params={"timeout": 10})
            took = anyio.current_time() - started
            assert waited.status_code == 200, waited.text
            assert waited.json()["done"] is True
            assert waited.json()["run"]["status"] == "SUCCEEDED"
            # A run covered by callbacks is polled every 30 s: the callback (sent
            # 1 s after the launch) is what ended this wait.
            assert took < 5.0

            refused = await http.post(fastapi_app.CALLBACK_PATH, json={})
            assert refused.status_code == 401
            again = await http.get(f"/runs/{uid.upper()}/wait", params={"timeout": 1})
            assert again.status_code == 200  # ended: remembered from the callback
            bad = await http.get("/runs/not-a-uid/wait")
            assert bad.status_code == 422
            pending = await http.post("/runs", json={"action": "slow", "inputs": [{"q": 2}]})
            timed_out = await http.get(
                f"/runs/{pending.json()['run_uid']}/wait", params={"timeout": 0.5}
            )
            assert timed_out.status_code == 202
            assert timed_out.json()["done"] is False
    deliveries = [d for d in simulator.callback_deliveries if d.run_uid == uid]
    assert [(d.status, d.status_code) for d in deliveries] == [("SUCCEEDED", 200)]
    assert client.is_closed  # the app's lifespan closed it
