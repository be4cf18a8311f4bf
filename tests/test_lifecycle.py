"""The client's life: closing ends what is queued, watchers stop polling, event loops, trio."""

from __future__ import annotations

import asyncio

import anyio
import httpx
import pytest

import edges_async as ea
from edges_async.testing import EdgesSimulator, NoRateLimit, RunScript, Workspace

from .conftest import API_KEY, RUN_UID

RUN_BODY = {"uid": RUN_UID, "status": "RUNNING"}


async def test_closing_ends_requests_queued_on_the_limiter_at_once() -> None:
    """Queued requests end with ClientClosedError at close, and none is sent afterwards."""
    sent: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(anyio.current_time())
        return httpx.Response(200, json=RUN_BODY)

    outcomes: list[object] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = ea.AsyncClient(API_KEY, plan="trial", http_client=http)  # one request per 2.1 s

        async def get() -> None:
            try:
                outcomes.append(await client.runs.get(RUN_UID))
            except ea.ClientClosedError as exc:
                outcomes.append((exc, anyio.current_time()))

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(get)
            await anyio.sleep(1.0)
            await client.aclose()
        await anyio.sleep(120)  # the user's http client is still open: nothing may use it
    assert sent == [0.0]
    closed = [outcome for outcome in outcomes if isinstance(outcome, tuple)]
    assert len(closed) == 4
    assert all(at == pytest.approx(1.0) for _, at in closed)


async def test_a_request_after_close_is_refused_before_the_limiter(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """After close, a request fails at once, typed, without waiting for a turn."""
    async with httpx.AsyncClient(transport=simulator.transport()) as http:
        client = ea.AsyncClient(API_KEY, plan="trial", http_client=http)
        await client.aclose()
        with pytest.raises(ea.ClientClosedError):
            await client.runs.get(RUN_UID)
    assert anyio.current_time() == 0.0
    assert simulator.requests == []


async def test_leaving_an_async_with_watch_stops_polling_at_once(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """The async-with form: polling stops when the block is left, break or not."""
    script = RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", 5.0)))
    long = RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", 3600.0)))
    first = simulator.add_run(workspace, script=script).uid
    rest = [simulator.add_run(workspace, script=long).uid for _ in range(3)]
    async with client.watch_runs([first, *rest]) as runs:
        async for run in runs:
            assert run.uid == first
            break
        kept = runs  # still referenced: without the block, it would go on polling
    polls_at_exit = len(simulator.requests)
    await anyio.sleep(300)
    assert len(simulator.requests) == polls_at_exit
    assert kept is runs


async def test_a_watcher_kept_in_a_variable_stops_on_aclose(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """The plain form's aclose() is typed and visible, and stops polling."""
    long = RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", 3600.0)))
    uids = [simulator.add_run(workspace, script=long).uid for _ in range(2)]
    watcher: ea.RunWatcher = client.watch_runs(uids, timeout=7200)
    with anyio.move_on_after(10):
        async for _ in watcher:
            pass
    await watcher.aclose()
    before = len(simulator.requests)
    await anyio.sleep(300)
    assert len(simulator.requests) == before


@pytest.mark.looptime(False)
def test_a_client_with_its_own_pool_is_refused_from_a_second_event_loop() -> None:
    """Its connections died with the first loop: a typed error at once, not a raw RuntimeError."""
    client = ea.AsyncClient(
        API_KEY, base_url="http://127.0.0.1:9/v1", limiter=NoRateLimit(), max_retries=0
    )

    async def get() -> None:
        await client.runs.get(RUN_UID)

    with pytest.raises(ea.APIConnectionError):  # nobody listens on port 9: binds the first loop
        asyncio.run(get())
    with pytest.raises(ea.EventLoopError, match=r"another event loop \(ended"):
        asyncio.run(get())
    with pytest.raises(ea.EventLoopError):
        asyncio.run(client.aclose())
    assert client.is_closed


@pytest.mark.looptime(False)
def test_a_client_used_from_two_running_loops_is_refused_at_once() -> None:
    """A second loop while the first still runs (another thread): EventLoopError, no request."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=RUN_BODY)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = ea.AsyncClient(API_KEY, http_client=http, limiter=NoRateLimit())
    first_loop = asyncio.new_event_loop()
    try:
        first_loop.run_until_complete(client.runs.get(RUN_UID))

        async def from_another_loop() -> None:
            await client.runs.get(RUN_UID)

        with pytest.raises(ea.EventLoopError, match="another event loop"):
            asyncio.run(from_another_loop())
    finally:
        first_loop.close()
    assert len(sent) == 1


@pytest.mark.looptime(False)
def test_trio_is_refused_at_once_with_a_clear_error() -> None:
    """edges_async is asyncio-native: under trio it says so before anything else."""

    async def main() -> None:
        async with ea.AsyncClient(API_KEY):
            pass

    with pytest.raises(ea.EventLoopError, match="asyncio only, not on trio"):
        anyio.run(main, backend="trio")
