"""Shared fixtures: a client over httpx.MockTransport, simulators, and a clean environment.

``simulator``/``workspace``/``client`` put the SDK's ``ea.AsyncClient`` in front
of a simulator; ``sim``/``sim_workspace``/``raw_client`` are plain httpx, for
testing the simulator itself (a module may set ``SIM_SEED`` and ``SIM_PLAN``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timezone
from typing import Any, Protocol

import httpx
import pytest

import edges_async as ea
from edges_async.testing import EdgesSimulator, NoRateLimit, Workspace

from .redis_server import RedisServer

API_KEY = "sk-test-0123456789abcdef"
RUN_UID = "4c3a5f0e-9d1b-4a8e-8a52-6b1f0c2d7e11"
SIM_START = datetime(2026, 11, 1, 9, 0, 0, tzinfo=timezone.utc)
# The raw-HTTP tests of the simulator itself (fixtures sim, sim_workspace, raw_client).
RAW_API_KEY = "key-1"
RAW_SIM_START = datetime(2025, 1, 1, tzinfo=timezone.utc)
RAW_BASE_URL = "https://api.edges.run"
# The documented shape of a launch response (POST /v1/actions/{slug}/run/async).
LAUNCH_RESPONSE = {
    "run_id": 10,
    "run_uid": RUN_UID,
    "workspace_uid": "w",
    "user_uid": "u",
    "action_name": "linkedin-extract-people",
    "status": "CREATED",
    "postponed_until": None,
    "created_at": "2026-11-20T10:00:00Z",
    "updated_at": "2026-11-20T10:00:00Z",
}
LAUNCH_FIELDS = frozenset(LAUNCH_RESPONSE)

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that keeps every request and answers with a fixed response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(
            self.response.status_code, headers=self.response.headers, content=self.response.content
        )


def raw_http(simulator: EdgesSimulator, api_key: str) -> httpx.AsyncClient:
    """Plain httpx to the simulator in-process, as ``api_key``: for testing the simulator itself."""
    return httpx.AsyncClient(
        transport=simulator.transport(), base_url=RAW_BASE_URL, headers={"X-API-Key": api_key}
    )


class ClientFactory(Protocol):
    def __call__(self, handler: Handler, **kwargs: Any) -> ea.AsyncClient: ...


@pytest.fixture(autouse=True)
def _no_implicit_event_loop(request: pytest.FixtureRequest) -> None:
    """Stop looptime from making (and leaking) an event loop for a synchronous test.

    looptime asks the loop policy for the current loop before every test; with
    none set, the policy makes one that nobody closes.
    """
    if not inspect.iscoroutinefunction(request.function):
        asyncio.set_event_loop(None)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own EDGES_* variables out of every test."""
    for name in ("EDGES_API_KEY", "EDGES_PLAN", "EDGES_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def mock_client() -> AsyncIterator[ClientFactory]:
    """Build clients whose requests a handler answers; all are closed after the test."""
    async with contextlib.AsyncExitStack() as stack:

        def factory(handler: Handler, **kwargs: Any) -> ea.AsyncClient:
            http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
            stack.push_async_callback(http.aclose)
            kwargs.setdefault("api_key", API_KEY)
            kwargs.setdefault("limiter", NoRateLimit())
            kwargs.setdefault("backoff", ea.Backoff(jitter=0))
            client = ea.AsyncClient(http_client=http, **kwargs)
            stack.push_async_callback(client.aclose)
            return client

        yield factory


@pytest.fixture
def simulator() -> EdgesSimulator:
    """A simulator starting on a fixed date, seeded."""
    return EdgesSimulator(start_time=SIM_START, seed=1)


@pytest.fixture
def workspace(simulator: EdgesSimulator) -> Workspace:
    """The simulator's Titanium workspace whose key is API_KEY."""
    return simulator.add_workspace(api_key=API_KEY, plan="titanium")


@pytest.fixture
async def client(simulator: EdgesSimulator, workspace: Workspace) -> AsyncIterator[ea.AsyncClient]:
    """A Titanium client talking to the simulator in-process."""
    async with (
        httpx.AsyncClient(transport=simulator.transport()) as http,
        ea.AsyncClient(API_KEY, plan="titanium", http_client=http) as sdk_client,
    ):
        yield sdk_client


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> EdgesSimulator:
    """A simulator for raw-HTTP tests of the simulator, starting on RAW_SIM_START.

    Seeded with the test module's ``SIM_SEED`` (default 0).
    """
    return EdgesSimulator(seed=getattr(request.module, "SIM_SEED", 0), start_time=RAW_SIM_START)


@pytest.fixture
def sim_workspace(request: pytest.FixtureRequest, sim: EdgesSimulator) -> Workspace:
    """The workspace of ``sim``, key RAW_API_KEY, on the module's ``SIM_PLAN`` (titanium)."""
    return sim.add_workspace(
        api_key=RAW_API_KEY, plan=getattr(request.module, "SIM_PLAN", "titanium")
    )


@pytest.fixture
async def raw_client(
    sim: EdgesSimulator, sim_workspace: Workspace
) -> AsyncIterator[httpx.AsyncClient]:
    """Plain httpx to ``sim`` in process, as ``sim_workspace``: no SDK in between."""
    async with raw_http(sim, RAW_API_KEY) as http:
        yield http


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real Redis for the session (started here; a missing binary fails the tests)."""
    with RedisServer().running() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied before the test."""
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=5) as conn:
        conn.sendall(b"FLUSHALL\r\n")
        assert conn.recv(64).startswith(b"+OK")
    return redis_server.url
