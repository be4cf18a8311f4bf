"""``client.with_options(...)``: one call with other settings, same pool, limiter and poller."""

from __future__ import annotations

import math

import anyio
import httpx
import pytest

import edges_async as ea
from edges_async.testing import EdgesSimulator, RunScript, Workspace

from .conftest import API_KEY, RUN_UID, ClientFactory

RUN_BODY = {"uid": RUN_UID, "status": "RUNNING"}


class Recorder:
    """Answers ``statuses`` in turn (then 200 with a run), keeping each request's timeout."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.timeouts: list[dict[str, float | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.timeouts.append(request.extensions["timeout"])
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status, json=RUN_BODY if status == 200 else {})


def seconds(timeout: float) -> dict[str, float | None]:
    """The ``timeout`` extension httpx sends for ``httpx.Timeout(timeout)``."""
    return dict.fromkeys(("connect", "read", "write", "pool"), timeout)


async def test_the_timeout_applies_to_that_call_only(mock_client: ClientFactory) -> None:
    """The view's requests carry its timeout; the client's, before and after, its own."""
    recorder = Recorder()
    client = mock_client(recorder, timeout=5)
    await client.runs.get(RUN_UID)
    await client.with_options(timeout=120).runs.get(RUN_UID)
    await client.runs.get(RUN_UID)
    assert recorder.timeouts == [seconds(5), seconds(120), seconds(5)]


async def test_an_httpx_timeout_is_taken_as_is(mock_client: ClientFactory) -> None:
    """An ``httpx.Timeout`` works as for the constructor, phases and all."""
    recorder = Recorder()
    client = mock_client(recorder)
    await client.with_options(timeout=httpx.Timeout(10, read=300)).runs.status(RUN_UID)
    assert recorder.timeouts == [{"connect": 10, "read": 300, "write": 10, "pool": 10}]


async def test_max_retries_zero_stops_after_one_attempt(mock_client: ClientFactory) -> None:
    """With max_retries=0 a 503 is raised at once, while the client itself still retries."""
    recorder = Recorder(503, 503, 503, 503)
    client = mock_client(recorder, max_retries=2)
    with pytest.raises(ea.InternalServerError):
        await client.with_options(max_retries=0).runs.get(RUN_UID)
    assert len(recorder.timeouts) == 1
    with pytest.raises(ea.InternalServerError):
        await client.runs.get(RUN_UID)
    assert len(recorder.timeouts) == 4


async def test_options_are_layered(mock_client: ClientFactory) -> None:
    """A view of a view keeps the first one's timeout and adds its own retry count."""
    recorder = Recorder(503, 503)
    client = mock_client(recorder, timeout=5, max_retries=3)
    view = client.with_options(timeout=60).with_options(max_retries=0)
    with pytest.raises(ea.InternalServerError):
        await view.runs.get(RUN_UID)
    assert recorder.timeouts == [seconds(60)]
    await client.with_options(max_retries=1).runs.get(RUN_UID)  # 503, then the run
    assert recorder.timeouts[1:] == [seconds(5), seconds(5)]


async def test_omitted_options_are_the_clients_own(mock_client: ClientFactory) -> None:
    """``with_options()`` with nothing changes nothing."""
    recorder = Recorder(503)
    client = mock_client(recorder, timeout=7, max_retries=1)
    await client.with_options().runs.get(RUN_UID)
    assert recorder.timeouts == [seconds(7), seconds(7)]


async def test_the_limiter_is_shared(simulator: EdgesSimulator, workspace: Workspace) -> None:
    """Requests through a view and through the client count in one budget."""
    uid = simulator.add_run(workspace, script=RunScript(steps=(("SUCCEEDED", 0.0),))).uid
    async with (
        httpx.AsyncClient(transport=simulator.transport()) as http,
        ea.AsyncClient(API_KEY, plan="titanium", http_client=http) as client,
    ):
        view = client.with_options(timeout=60, max_retries=0)
        assert view.limiter is client.limiter
        await view.runs.get(uid)
        await client.runs.get(uid)
        await view.with_options(timeout=1).runs.status(uid)
        assert client.limiter.statistics().requests_sent == 3


async def test_waiting_through_a_view_uses_the_clients_poller(
    simulator: EdgesSimulator, workspace: Workspace, client: ea.AsyncClient
) -> None:
    """``wait_for_run``, ``wait_for_runs`` and ``watch_runs`` work on a view."""
    script = RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", 5.0)))
    first, second = (simulator.add_run(workspace, script=script).uid for _ in range(2))
    view = client.with_options(timeout=120, max_retries=0)
    run = await view.wait_for_run(first, timeout=60)
    assert run.status is ea.RunStatus.SUCCEEDED
    assert [run.uid for run in await view.wait_for_runs([second, first])] == [second, first]
    async with view.watch_runs([first]) as runs:
        assert [run.uid async for run in runs] == [first]


async def test_launching_through_a_view(client: ea.AsyncClient) -> None:
    """``actions`` on a view launch runs like the client's."""
    run = await client.with_options(max_retries=0).actions.run_async(
        "linkedin-extract-people", inputs=[{"linkedin_profile_url": "https://x"}]
    )
    assert (await client.runs.get(run.uid)).uid == run.uid


async def test_closing_the_client_closes_its_views(mock_client: ClientFactory) -> None:
    """After ``client.aclose()`` a view (made before or after) refuses every call."""
    client = mock_client(Recorder())
    before = client.with_options(timeout=60)
    await client.aclose()
    after = client.with_options(max_retries=0)
    for view in (before, after):
        assert view.is_closed
        with pytest.raises(ea.ClientClosedError):
            await view.runs.get(RUN_UID)
        with pytest.raises(ea.ClientClosedError):
            await view.wait_for_run(RUN_UID)
        with pytest.raises(ea.ClientClosedError):
            view.watch_runs([RUN_UID])


async def test_closing_the_client_ends_a_views_request_under_way(
    mock_client: ClientFactory,
) -> None:
    """A request under way through a view ends with ClientClosedError when the client closes."""
    never = anyio.Event()

    async def stuck(request: httpx.Request) -> httpx.Response:
        await never.wait()
        raise AssertionError("unreachable")

    client = mock_client(stuck)  # type: ignore[arg-type]  # MockTransport takes async handlers
    view = client.with_options(timeout=httpx.Timeout(None))
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await view.runs.get(RUN_UID)
        except ea.ClientClosedError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        await client.aclose()
    assert len(errors) == 1


async def test_a_view_cannot_be_closed_nor_entered(mock_client: ClientFactory) -> None:
    """``aclose()`` and ``async with`` on a view raise RuntimeError; the client keeps working."""
    client = mock_client(Recorder())
    view = client.with_options(timeout=60)
    with pytest.raises(RuntimeError, match="with_options"):
        await view.aclose()
    with pytest.raises(RuntimeError, match="with_options"):
        async with view:
            pass
    assert not client.is_closed
    assert not view.is_closed
    await view.runs.get(RUN_UID)
    await client.runs.get(RUN_UID)


async def test_a_view_is_an_async_client_that_says_it_is_a_view(
    mock_client: ClientFactory,
) -> None:
    """Same type as the client; its repr says view, with its options, and never the key."""
    client = mock_client(Recorder(), plan="gold")
    view = client.with_options(timeout=120, max_retries=0)
    assert type(view) is ea.AsyncClient
    assert (view.plan, view.base_url) == (client.plan, client.base_url)
    text = repr(view.with_options(max_retries=1))
    assert text.startswith("<AsyncClient view timeout=Timeout(timeout=120.0) max_retries=1 of")
    assert repr(client) in text
    assert API_KEY not in text


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": math.inf},
        {"timeout": math.nan},
        {"timeout": None},
        {"timeout": "30"},
        {"timeout": True},
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"max_retries": None},
        {"max_retries": True},
        {"max_retries": "3"},
    ],
)
async def test_bad_values_raise_as_the_constructor_does(
    mock_client: ClientFactory, options: dict[str, object]
) -> None:
    """Each value the constructor refuses: the same ConfigurationError, before any request."""
    recorder = Recorder()
    client = mock_client(recorder)
    with pytest.raises(ea.ConfigurationError) as from_constructor:
        ea.AsyncClient(API_KEY, **options)  # type: ignore[call-overload]
    with pytest.raises(ea.ConfigurationError) as from_view:
        client.with_options(**options)  # type: ignore[arg-type]
    assert str(from_view.value) == str(from_constructor.value)
    assert recorder.timeouts == []


async def test_options_are_keyword_only(mock_client: ClientFactory) -> None:
    """``with_options(120)`` is a TypeError: which option a number means must be written."""
    client = mock_client(Recorder())
    with pytest.raises(TypeError):
        client.with_options(120)  # type: ignore[call-arg]
