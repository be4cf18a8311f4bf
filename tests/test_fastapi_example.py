"""examples/fastapi_app.py: its startup checks, and end to end over real loopback sockets.

End to end, the simulator is served by uvicorn on one port (plain HTTP: the
client accepts it for loopback), the example app by uvicorn on another over
TLS (a trustme certificate authority, trusted by the simulator's callback
sender), so the callback URL is a real ``https://`` one, as Edges requires. A
callback URL may not name a loopback host, so it names ``PUBLIC_HOST``, which
the sender alone maps to 127.0.0.1, as DNS would, checking the certificate
against the name.
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
from edges_async.testing import EdgesSimulator, LoopbackTransport, RunScript
from edges_async.testing._server import serve_origin

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))
import fastapi_app

pytestmark = pytest.mark.looptime(False)

API_KEY = "sk-fastapi-example"
SECRET = "example-secret-0123456789"
PUBLIC_HOST = "app.example.com"
VALID_ENV = {
    "PUBLIC_URL": f"https://{PUBLIC_HOST}",
    "EDGES_CALLBACK_SECRET": SECRET,
    "EDGES_API_KEY": API_KEY,
}
MAKE_A_SECRET = "e.g. from python -c 'import secrets; print(secrets.token_urlsafe(32))'."


# -- startup checks ------------------------------------------------------------


def set_env(monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None]) -> None:
    """A valid environment for ``create_app()``, with ``changes`` (``None`` unsets)."""
    for name in ("EDGES_PLAN", "EDGES_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**VALID_ENV, **changes}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def startup_error(monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None]) -> str:
    """The error ``create_app()`` raises in a valid environment with ``changes``; one line."""
    set_env(monkeypatch, changes)
    with pytest.raises(ea.ConfigurationError) as caught:
        fastapi_app.create_app()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_every_unset_variable_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing set, one line says what each of the three variables must be."""
    message = startup_error(
        monkeypatch, {"PUBLIC_URL": None, "EDGES_CALLBACK_SECRET": None, "EDGES_API_KEY": None}
    )
    assert message == (
        "PUBLIC_URL is not set: it must be the https:// origin Edges can reach this app at, "
        "e.g. https://app.example.com. "
        "EDGES_CALLBACK_SECRET is not set: it must be a random string of 16+ printable "
        f"characters, {MAKE_A_SECRET} "
        "No API key: pass api_key=... or set the EDGES_API_KEY environment variable."
    )


def test_unset_public_url_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset (or blank) PUBLIC_URL is a ConfigurationError naming it, not a KeyError."""
    for unset in (None, "  "):
        message = startup_error(monkeypatch, {"PUBLIC_URL": unset})
        assert message.startswith("PUBLIC_URL is not set: it must be the https:// origin")


@pytest.mark.parametrize(
    "public_url",
    [
        "http://app.example.com",
        "app.example.com",
        "https://",
        "https://app.example.com/?env=prod",
        "https://app.example.com/#edges",
        "https://app.example.com:443x",
    ],
)
def test_a_public_url_that_is_no_https_origin_is_refused_at_startup(
    monkeypatch: pytest.MonkeyPatch, public_url: str
) -> None:
    """A PUBLIC_URL no callback can be sent to fails at startup, not as a 422 at launch."""
    message = startup_error(monkeypatch, {"PUBLIC_URL": public_url})
    assert message == (
        f"PUBLIC_URL must be the https:// origin Edges can reach this app at, got {public_url!r}."
    )


def test_a_public_url_the_callback_check_refuses_gives_its_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An https:// PUBLIC_URL ``ea.Callback`` refuses (a loopback host) fails with its reason."""
    message = startup_error(monkeypatch, {"PUBLIC_URL": "https://127.0.0.1:8443"})
    assert message.startswith(
        "PUBLIC_URL must be the https:// origin Edges can reach this app at, "
        "got 'https://127.0.0.1:8443': callback URL"
    )
    assert "loopback" in message


def test_a_short_secret_is_refused_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret under 16 characters fails at startup with its length, never its value."""
    message = startup_error(monkeypatch, {"EDGES_CALLBACK_SECRET": "hunter2-secret"})
    assert message == (
        "EDGES_CALLBACK_SECRET must be 16+ printable characters, got 14: "
        f"use a random string, {MAKE_A_SECRET}"
    )


def test_a_secret_with_a_line_break_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret read from a file with its trailing newline fails at startup, saying so."""
    message = startup_error(monkeypatch, {"EDGES_CALLBACK_SECRET": SECRET + "\n"})
    assert message.startswith(
        "EDGES_CALLBACK_SECRET must be 16+ printable characters, but it holds a line break"
    )
    assert SECRET not in message


def test_an_unset_api_key_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without EDGES_API_KEY the client's ConfigurationError says which variable to set."""
    message = startup_error(monkeypatch, {"EDGES_API_KEY": None})
    assert message == (
        "No API key: pass api_key=... or set the EDGES_API_KEY environment variable."
    )


def test_a_valid_environment_builds_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything set right: the app is built, its callback URL under PUBLIC_URL."""
    set_env(monkeypatch, {"PUBLIC_URL": f" https://{PUBLIC_HOST}/ "})
    app = fastapi_app.create_app()
    assert app.state.callback_url == f"https://{PUBLIC_HOST}{fastapi_app.CALLBACK_PATH}"
    assert isinstance(app.state.edges, ea.AsyncClient)


# -- end to end ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve_tls(app: Any, ca: trustme.CA) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn over TLS on a free loopback port; yield its origin."""
    cert = ca.issue_cert("127.0.0.1", "localhost", PUBLIC_HOST)
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
        app = fastapi_app.create_app(
            client=client, public_url=f"https://{PUBLIC_HOST}", secret=SECRET
        )
        async with (
            serve_tls(app, ca) as origin,
            # Closed before the app's server stops: no keep-alive connection holds it up.
            httpx.AsyncClient(
                transport=LoopbackTransport(PUBLIC_HOST, verify=trusting(ca))
            ) as sender,
            simulator.deliver_callbacks(http_client=sender),
            httpx.AsyncClient(base_url=origin, verify=trusting(ca)) as http,
        ):
            # The port is known only now: the public name, on the app's loopback port.
            port = httpx.URL(origin).port
            app.state.callback_url = f"https://{PUBLIC_HOST}:{port}{fastapi_app.CALLBACK_PATH}"
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
