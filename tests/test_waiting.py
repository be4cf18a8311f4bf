"""Waiting for runs: wait_for_run, wait_for_runs and watch_runs against the simulator."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import timedelta

import anyio
import httpx
import pytest

import edges_async as ea
from edges_async.testing import (
    EdgesSimulator,
    Fault,
    RecordedRequest,
    RunScript,
    Workspace,
)

from .conftest import API_KEY, SIM_START, ClientFactory


def ending(status: str | None, at: float, outputs: int = 3) -> RunScript:
    """A run that is CREATED, RUNNING from 1 s, and shows ``status`` at ``at`` seconds."""
    return RunScript(steps=(("CREATED", 0.0), ("RUNNING", 1.0), (status, at)), outputs=outputs)


def polls(simulator: EdgesSimulator) -> list[RecordedRequest]:
    """The requests that asked about runs' statuses."""
    return [
        request
        for request in simulator.requests
        if request.path == "/v1/runs" or request.path.endswith("/status")
    ]


def uids_asked(request: RecordedRequest) -> list[str]:
    """The run uids one poll asked about."""
    if request.path.endswith("/status"):
        return [request.path.split("/")[-2]]
    return [value for name, value in request.query if name == "uid"]


def seed(simulator: EdgesSimulator, workspace: Workspace, *scripts: RunScript) -> list[str]:
    """Seed runs created now with these lifecycles; their uids."""
    return [simulator.add_run(workspace, script=script).uid for script in scripts]


@pytest.fixture
async def trial(simulator: EdgesSimulator) -> AsyncIterator[ea.AsyncClient]:
    """A Trial client on its own workspace of the simulator, with the default limiter."""
    simulator.add_workspace(api_key="sk-trial", plan="trial")
    async with (
        httpx.AsyncClient(transport=simulator.transport()) as http,
        ea.AsyncClient("sk-trial", plan="trial", http_client=http) as client,
    ):
        yield client


@pytest.mark.parametrize("status", sorted(ea.TERMINAL_STATUSES))
async def test_each_terminal_status_ends_the_wait(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace, status: str
) -> None:
    """wait_for_run returns the full run once it shows any of the six terminal statuses."""
    (uid,) = seed(simulator, workspace, ending(status, 20.0))
    run = await client.wait_for_run(uid)
    assert run.status is ea.RunStatus(status)
    assert 20.0 <= anyio.current_time() < 22.0
    assert run.action_name is not None  # the full object, not the light /status shape
    assert run.finished_at is not None


async def test_unknown_statuses_keep_waiting(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """A status the SDK does not know (or none at all) is not an end: waiting goes on."""
    script = RunScript(
        steps=(("pending", 0.0), (None, 5.0), ("ARCHIVING", 10.0), ("SUCCEEDED", 30.0))
    )
    (uid,) = seed(simulator, workspace, script)
    seen: list[object] = []
    run = await client.wait_for_run(uid, on_status_change=lambda run: seen.append(run.status))
    assert run.status is ea.RunStatus.SUCCEEDED
    assert seen == ["pending", None, "ARCHIVING", ea.RunStatus.SUCCEEDED]
    assert anyio.current_time() >= 30.0


async def test_the_deadline_raises_with_the_last_state_of_pending_runs(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """timeout is one deadline for the whole wait; the error lists every run still pending."""
    quick, slow, stuck = seed(
        simulator,
        workspace,
        ending("SUCCEEDED", 5.0),
        ending("SUCCEEDED", 500.0),
        RunScript(steps=(("CREATED", 0.0), ("ARCHIVING", 2.0))),
    )
    with pytest.raises(ea.WaitTimeoutError) as caught:
        await client.wait_for_runs([quick, slow, stuck], timeout=timedelta(seconds=60))
    assert anyio.current_time() == pytest.approx(60.0, abs=0.01)
    assert isinstance(caught.value, TimeoutError)
    last = {run.uid: run.status for run in caught.value.runs}
    assert last == {slow: ea.RunStatus.RUNNING, stuck: "ARCHIVING"}


async def test_a_deadline_before_the_first_poll_still_names_every_run(
    trial: ea.AsyncClient, simulator: EdgesSimulator
) -> None:
    """Runs the deadline caught before any poll are reported by uid, status unknown."""
    workspace = simulator.workspaces[-1]
    uids = seed(simulator, workspace, *[ending("SUCCEEDED", 900.0)] * 300)
    with pytest.raises(ea.WaitTimeoutError) as caught:
        await trial.wait_for_runs(uids, timeout=1.0)
    assert sorted(run.uid for run in caught.value.runs) == sorted(uids)
    assert any(run.status is None for run in caught.value.runs)


async def test_wait_for_runs_returns_in_the_order_given(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Results come back in the order of the uids given, duplicates included."""
    uids = seed(simulator, workspace, *(ending("SUCCEEDED", at) for at in (40.0, 10.0, 25.0)))
    runs = await client.wait_for_runs([uids[0], uids[1], uids[2], uids[1]])
    assert [run.uid for run in runs] == [uids[0], uids[1], uids[2], uids[1]]
    assert await client.wait_for_runs([]) == []


async def test_watch_runs_yields_in_completion_order(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """watch_runs hands each run over as it ends, promptly, first finished first."""
    ends = [40.0, 10.0, 25.0, 70.0]
    uids = seed(simulator, workspace, *(ending("FAILED", at) for at in ends))
    order, delays = [], []
    async for run in client.watch_runs(uids):
        order.append(run.uid)
        delays.append(anyio.current_time() - ends[uids.index(run.uid)])
    assert order == [uids[1], uids[2], uids[0], uids[3]]
    assert max(delays) < 1.0  # Titanium: a poll every ~0.13 s
    assert all(run.is_terminal for run in await client.wait_for_runs(uids))


async def test_many_waiters_on_one_run_share_one_poll_stream(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """100 waiters of one run cost what one waiter costs: each poll serves them all."""
    alone, shared = seed(simulator, workspace, ending("SUCCEEDED", 30.0), ending("SUCCEEDED", 90.0))
    await client.wait_for_run(alone)
    one_waiter = len(polls(simulator))
    simulator.requests.clear()

    results: list[ea.Run] = []

    async def waiter() -> None:
        results.append(await client.wait_for_run(shared))

    async with anyio.create_task_group() as group:
        for _ in range(100):
            group.start_soon(waiter)
    assert len(results) == 100
    assert {run.status for run in results} == {ea.RunStatus.SUCCEEDED}
    stream = polls(simulator)
    assert {uid for request in stream for uid in uids_asked(request)} == {shared}
    # Three times as long as the lone waiter's run, so about three times its polls.
    assert len(stream) <= 3 * one_waiter + 3
    times = [request.time for request in stream]
    assert min(later - earlier for earlier, later in itertools.pairwise(times)) > 0.1


def uid_polling_client(simulator: EdgesSimulator) -> ea.AsyncClient:
    """A client on the workspace's plan that asks about every run by uid (no change feed)."""
    http = httpx.AsyncClient(transport=simulator.transport())
    polling = ea.PollingPolicy(change_feed=False)
    return ea.AsyncClient(API_KEY, plan="titanium", http_client=http, polling=polling)


async def test_250_runs_are_polled_in_batches_of_at_most_100(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Without the change feed, many runs are refreshed by lists of at most 100 uids each."""
    uids = seed(simulator, workspace, *(ending("SUCCEEDED", 5.0 + i % 50) for i in range(250)))
    async with uid_polling_client(simulator) as client:
        runs = await client.wait_for_runs(uids)
    assert [run.uid for run in runs] == uids
    batches = [uids_asked(request) for request in polls(simulator)]
    assert max(len(batch) for batch in batches) == 100
    # The first three requests reach every run (the third fills up with runs seen once).
    assert {uid for batch in batches[:3] for uid in batch} == set(uids)
    assert all(len(set(batch)) == len(batch) for batch in batches)


async def test_the_server_never_sees_more_than_the_budget(
    trial: ea.AsyncClient, simulator: EdgesSimulator
) -> None:
    """1,000 runs on Trial (30/min): no 429, and no minute with more than 30 requests."""
    workspace = simulator.workspaces[-1]
    uids = seed(simulator, workspace, *(ending("SUCCEEDED", 30.0 + 2 * i) for i in range(1000)))
    runs = await trial.wait_for_runs(uids)
    assert all(run.status is ea.RunStatus.SUCCEEDED for run in runs)
    answered = [request for request in simulator.requests if request.workspace_uid]
    assert all(request.status_code == 200 for request in answered)
    times = [request.time for request in answered]
    assert max(sum(1 for t in times if start <= t < start + 60) for start in times) <= 30
    # And the budget is not left idle: about 0.95 * 0.8 * 30 = 22.8 requests a minute.
    minutes = (times[-1] - times[0]) / 60
    assert len(times) / minutes > 20


async def test_a_long_running_run_is_polled_at_the_budgets_pace_to_its_end(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Alone on Titanium, a run is polled at the budget's pace, old or young: its end seen at once.

    (Polling an old run gently less often left most of an ample budget unspent
    and noticed ends up to a second late: three times what the budget allows.)
    """
    (uid,) = seed(simulator, workspace, ending("SUCCEEDED", 1200.0))
    run = await client.wait_for_run(uid)
    assert run.status is ea.RunStatus.SUCCEEDED
    times = [request.time for request in polls(simulator)]
    for start in (0.0, 600.0, 1140.0):
        window = [t for t in times if start <= t < start + 60]
        assert 7.0 * 60 <= len(window) <= 7.7 * 60  # 600 * 0.95 * 0.8 / 60 = 7.6 a second
    assert 1200.0 <= anyio.current_time() <= 1200.0 + 0.2


async def test_reserve_leaves_room_for_other_requests(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Polling takes (1 - reserve) of the budget: outputs downloads still go at their pace."""
    uids = seed(simulator, workspace, *(ending("SUCCEEDED", 600.0) for _ in range(500)))
    reader = seed(simulator, workspace, ending("SUCCEEDED", 1.0, outputs=200))[0]
    polling = ea.PollingPolicy(reserve=0.5)
    async with (
        httpx.AsyncClient(transport=simulator.transport()) as http,
        ea.AsyncClient(API_KEY, plan="titanium", http_client=http, polling=polling) as client,
    ):
        await anyio.sleep(2)
        async with anyio.create_task_group() as group:
            group.start_soon(client.wait_for_runs, uids)
            await anyio.sleep(10)
            started = anyio.current_time()
            count = 0
            async for _ in client.runs.outputs(reader, page_size=1):
                count += 1
            took = anyio.current_time() - started
            group.cancel_scope.cancel()
    assert count == 200
    # Titanium paces at 9.5/s; polling may take 4.75 of them, so the pages get >= 4.75/s.
    assert took < 200 / 4.5


async def test_a_run_not_found_just_after_launch_is_asked_again(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """404s within the grace period (a run not readable yet) do not end the wait."""
    (uid,) = seed(simulator, workspace, ending("SUCCEEDED", 20.0))
    simulator.faults.add(Fault(path=f"/runs/{uid}/status$", status=404, times=5))
    run = await client.wait_for_run(uid)
    assert run.status is ea.RunStatus.SUCCEEDED
    assert sum(request.status_code == 404 for request in simulator.requests) == 5


async def test_a_run_missing_after_the_grace_period_raises_not_found(
    client: ea.AsyncClient,
) -> None:
    """A run the API never knows ends the wait with NotFoundError once the grace is over."""
    unknown = "0b7b6c1e-1111-4222-8333-444455556666"
    with pytest.raises(ea.NotFoundError):
        await client.wait_for_run(unknown)
    assert 30.0 <= anyio.current_time() <= 32.0


async def test_a_missing_run_in_a_batch_fails_alone(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """In watch_runs, the run nobody knows raises NotFoundError; the others are delivered first."""
    uids = seed(simulator, workspace, ending("SUCCEEDED", 5.0), ending("STOPPED", 10.0))
    unknown = "0b7b6c1e-1111-4222-8333-444455556666"
    got: list[str] = []

    async def watch() -> None:
        async for run in client.watch_runs([*uids, unknown]):
            got.append(run.uid)  # noqa: PERF401 (the runs before the error are the point)

    with pytest.raises(ea.NotFoundError):
        await watch()
    assert got == uids


async def test_cancelling_one_waiter_disturbs_no_other_and_leaves_no_task(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """A cancelled waiter leaves; the others still get their runs; then no task remains."""
    first, second = seed(simulator, workspace, ending("SUCCEEDED", 50.0), ending("FAILED", 80.0))
    mine = asyncio.current_task()
    cancelled = asyncio.create_task(client.wait_for_runs([first, second]))
    survivor = asyncio.create_task(client.wait_for_run(first))
    await anyio.sleep(10)
    cancelled.cancel()
    await anyio.sleep(0.5)
    assert not survivor.done()
    assert (await survivor).status is ea.RunStatus.SUCCEEDED
    assert anyio.current_time() < 51.0
    assert asyncio.all_tasks() == {mine}
    # The run nobody waits for any more is no longer polled.
    late = [request for request in polls(simulator) if request.time > 51.0]
    assert late == []


async def test_leaving_watch_runs_early_stops_polling(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Breaking out of watch_runs (and closing it) stops polling the rest."""
    uids = seed(simulator, workspace, ending("SUCCEEDED", 5.0), ending("SUCCEEDED", 500.0))
    watched = client.watch_runs(uids)
    async for run in watched:
        assert run.uid == uids[0]
        break
    await watched.aclose()
    before = len(polls(simulator))
    await anyio.sleep(60)
    assert len(polls(simulator)) == before


async def test_postponed_runs_are_not_polled_before_their_time(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """A run postponed (LIMIT_REACHED) for 2 minutes is left alone until then."""
    script = RunScript(
        steps=(("CREATED", 0.0), ("SCHEDULED", 1.0), ("RUNNING", 120.0), ("SUCCEEDED", 130.0)),
        postponed_until=timedelta(seconds=120),
    )
    (uid,) = seed(simulator, workspace, script)
    polling = ea.PollingPolicy(
        wall_clock=lambda: SIM_START + timedelta(seconds=anyio.current_time())
    )
    async with (
        httpx.AsyncClient(transport=simulator.transport()) as http,
        ea.AsyncClient(API_KEY, plan="titanium", http_client=http, polling=polling) as client,
    ):
        run = await client.wait_for_run(uid)
    assert run.status is ea.RunStatus.SUCCEEDED
    times = [request.time for request in polls(simulator)]
    assert times[0] < 1.0
    assert not [t for t in times if 1.0 < t < 119.0]


async def test_transient_failures_do_not_end_the_wait(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """503s and dropped connections past the retries pause polling; the wait goes on."""
    (uid,) = seed(simulator, workspace, ending("SUCCEEDED", 20.0))
    simulator.faults.add(
        Fault(path="/status$", status=503, times=6), Fault(path="/status$", drop=True, times=6)
    )
    run = await client.wait_for_run(uid, timeout=600)
    assert run.status is ea.RunStatus.SUCCEEDED


async def test_an_authentication_error_ends_the_wait(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """A 401 is no reason to keep polling: the waiters get AuthenticationError."""
    uids = seed(simulator, workspace, ending("SUCCEEDED", 20.0), ending("SUCCEEDED", 20.0))
    simulator.faults.add(Fault(path="^/v1/runs$", status=401, times=None))
    with pytest.raises(ea.AuthenticationError):
        await client.wait_for_runs(uids)


async def test_a_refused_uid_filter_falls_back_to_one_run_at_a_time(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """If the list endpoint refused repeated uid keys (400), each run is polled alone."""
    uids = seed(simulator, workspace, ending("SUCCEEDED", 5.0), ending("BLOCKED", 8.0))
    simulator.faults.add(Fault(path="^/v1/runs$", status=400, times=None))
    runs = await client.wait_for_runs(uids)
    assert [run.status for run in runs] == [ea.RunStatus.SUCCEEDED, ea.RunStatus.BLOCKED]
    assert any(request.path.endswith("/status") for request in polls(simulator))


async def test_status_changes_reach_the_callback_once_each(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """on_status_change (plain or async) sees each change of each run once, in order."""
    uids = seed(
        simulator,
        workspace,
        RunScript(steps=(("CREATED", 0.0), ("QUEUED", 3.0), ("RUNNING", 6.0), ("SUCCEEDED", 9.0))),
        ending("FAILED", 4.0),
    )
    seen: list[tuple[str, object]] = []

    async def record(run: ea.Run) -> None:
        seen.append((run.uid, run.status))

    await client.wait_for_runs(uids, on_status_change=record)
    assert [status for uid, status in seen if uid == uids[0]] == [
        ea.RunStatus.CREATED,
        ea.RunStatus.QUEUED,
        ea.RunStatus.RUNNING,
        ea.RunStatus.SUCCEEDED,
    ]
    assert [status for uid, status in seen if uid == uids[1]] == [
        ea.RunStatus.CREATED,
        ea.RunStatus.RUNNING,
        ea.RunStatus.FAILED,
    ]


async def test_closing_the_client_ends_every_wait(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """aclose() wakes every waiter with ClientClosedError; waiting afterwards is refused."""
    (uid,) = seed(simulator, workspace, ending("SUCCEEDED", 100.0))
    waiter = asyncio.create_task(client.wait_for_run(uid))
    await anyio.sleep(5)
    await client.aclose()
    with pytest.raises(ea.ClientClosedError):
        await waiter
    with pytest.raises(ea.ClientClosedError):
        await client.wait_for_run(uid)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.wait_for_run("not-a-uid"), ValueError),
        (lambda c: c.wait_for_runs("4c3a5f0e-9d1b-4a8e-8a52-6b1f0c2d7e11"), TypeError),
        (lambda c: c.wait_for_runs([None]), ValueError),
        (lambda c: c.wait_for_run("4c3a5f0e-9d1b-4a8e-8a52-6b1f0c2d7e11", timeout=0), ValueError),
        (lambda c: c.wait_for_run("4c3a5f0e-9d1b-4a8e-8a52-6b1f0c2d7e11", timeout=-1), ValueError),
        (lambda c: c.wait_for_run("4c3a5f0e-9d1b-4a8e-8a52-6b1f0c2d7e11", timeout="1"), TypeError),
    ],
)
async def test_bad_arguments_are_refused_before_any_request(
    mock_client: object, call: object, error: type[Exception]
) -> None:
    """A malformed uid, a lone string for a list, or a bad timeout: a typed error, no request."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    client = mock_client(handler)  # type: ignore[operator]
    with pytest.raises(error):
        await call(client)  # type: ignore[operator]
    with pytest.raises(error):
        client.watch_runs(["x"]) if error is ValueError else client.watch_runs("x")
    assert sent == []


def test_polling_policy_refuses_nonsense() -> None:
    """PollingPolicy checks its settings when built."""
    for kwargs in (
        {"reserve": 1.0},
        {"reserve": -0.1},
        {"not_found_grace": -1},
        {"max_in_flight": 0},
    ):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            ea.PollingPolicy(**kwargs)


def test_one_client_can_wait_in_two_event_loops_in_turn(simulator: EdgesSimulator) -> None:
    """The poller's primitives are made per run of its loop: a second asyncio.run works too."""
    workspace = simulator.add_workspace(api_key="sk-loops", plan="gold")
    http = httpx.AsyncClient(transport=simulator.transport())
    client = ea.AsyncClient("sk-loops", plan="gold", http_client=http)

    async def wait_for_a_finished_run() -> ea.Run:
        (uid,) = seed(simulator, workspace, RunScript(steps=(("SUCCEEDED", 0.0),)))
        return await client.wait_for_run(uid)

    assert asyncio.run(wait_for_a_finished_run()).status is ea.RunStatus.SUCCEEDED
    assert asyncio.run(wait_for_a_finished_run()).status is ea.RunStatus.SUCCEEDED
    asyncio.run(client.aclose())


async def test_list_polls_ask_only_for_ended_runs_once_every_run_was_seen(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """After the first sweep, 9 uid polls in 10 filter on the terminal statuses: tiny answers."""
    uids = seed(simulator, workspace, *(ending("SUCCEEDED", 60.0 + i % 7) for i in range(150)))
    async with uid_polling_client(simulator) as client:
        await client.wait_for_runs(uids)
    lists = [request for request in polls(simulator) if request.path == "/v1/runs"]
    filtered = [request for request in lists if any(name == "status" for name, _ in request.query)]
    assert all(not any(n == "status" for n, _ in request.query) for request in lists[:2])
    assert {value for request in filtered for name, value in request.query if name == "status"} == {
        status.value for status in ea.TERMINAL_STATUSES
    }
    assert 0.85 < len(filtered) / len(lists) <= 0.9


async def test_status_callbacks_need_every_poll_in_full(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """With on_status_change, no poll filters on status: every change must be seen."""
    uids = seed(simulator, workspace, *(ending("SUCCEEDED", 20.0) for _ in range(3)))
    changes: list[object] = []
    await client.wait_for_runs(uids, on_status_change=lambda run: changes.append(run.status))
    assert not any(name == "status" for request in polls(simulator) for name, _ in request.query)
    assert changes.count(ea.RunStatus.RUNNING) == 3


async def test_a_garbled_full_run_fails_that_runs_waiters_alone(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """A 200 cut short for one run's full GET: its waiter gets a typed error, the other its run."""
    simulator.faults.add(Fault(path="^/v1/runs$", status=400, times=None))  # runs polled alone
    garbled, fine = seed(simulator, workspace, ending("SUCCEEDED", 5.0), ending("FAILED", 9.0))
    simulator.faults.add(Fault(method="GET", path=f"/runs/{garbled}$", malformed=True, times=None))
    outcomes: dict[str, object] = {}

    async def wait(uid: str) -> None:
        try:
            outcomes[uid] = await client.wait_for_run(uid)
        except Exception as exc:
            outcomes[uid] = exc

    async with anyio.create_task_group() as group:
        group.start_soon(wait, garbled)
        group.start_soon(wait, fine)
    assert isinstance(outcomes[garbled], ea.APIResponseValidationError)
    other = outcomes[fine]
    assert isinstance(other, ea.Run)
    assert other.status is ea.RunStatus.FAILED


async def test_a_bug_in_polling_reaches_waiters_typed_never_as_a_group(
    client: ea.AsyncClient,
    simulator: EdgesSimulator,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unexpected failure inside the poller ends the waits with an EdgesError, not a group."""
    (uid,) = seed(simulator, workspace, ending("SUCCEEDED", 5.0))

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("edges_async._poll_requests.uid_filter_query", broken)
    monkeypatch.setattr("edges_async._polling.RunPoller._poll_alone", broken)
    with pytest.raises(ea.EdgesError, match="ZeroDivisionError"):
        await client.wait_for_runs([uid])
    with pytest.raises(ea.EdgesError, match="ZeroDivisionError"):
        async for _ in client.watch_runs([uid]):
            pass


class _Refused(Exception):
    """A custom limiter's own refusal."""


class _OwnLimiter:
    """A custom limiter: refuses ``refuse_path`` with its own error; ``current_rate`` as given."""

    def __init__(self, refuse_path: str | None = None, current_rate: object = None) -> None:
        self.refuse_path = refuse_path
        if current_rate is not None:
            self.current_rate = current_rate

    async def acquire(self, request: httpx.Request) -> None:
        if self.refuse_path is not None and request.url.path.endswith(self.refuse_path):
            raise _Refused(f"no budget for {self.refuse_path}")

    def feedback(self, request: httpx.Request, response: httpx.Response | None) -> None:
        pass


def _ended_run(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"uid": RUN_UID, "status": "SUCCEEDED", "output_count": 2})


RUN_UID = "4c3a5f0e-9d1b-4a8e-8a52-6b1f0c2d7e11"


async def test_a_custom_limiters_own_error_reaches_the_waiter_as_it_is(
    mock_client: ClientFactory,
) -> None:
    """What a custom limiter raises while polling ends the wait as that very exception."""
    client = mock_client(_ended_run, limiter=_OwnLimiter(refuse_path="/status"))
    with pytest.raises(_Refused, match="no budget"):
        await client.wait_for_run(RUN_UID, timeout=30)


async def test_a_failed_full_fetch_that_is_not_a_request_error_fails_the_wait(
    mock_client: ClientFactory,
) -> None:
    """Only a failed request keeps the ``/status`` view of an ended run; anything else fails."""

    class Exhausted(ea.EdgesError):
        """The limiter's own EdgesError."""

    class OwnEdgesLimiter(_OwnLimiter):
        async def acquire(self, request: httpx.Request) -> None:
            if request.url.path.endswith(RUN_UID):  # the full fetch, not /status
                raise Exhausted("no budget for full fetches")

    client = mock_client(_ended_run, limiter=OwnEdgesLimiter())
    with pytest.raises(Exhausted):
        await client.wait_for_run(RUN_UID, timeout=30)


@pytest.mark.parametrize("current_rate", [0, -5.0, "fast", float("nan"), True])
async def test_a_custom_limiters_unusable_current_rate_is_ignored(
    mock_client: ClientFactory, current_rate: object
) -> None:
    """A ``current_rate`` that is no rate (zero, negative, not a number) paces as if absent."""
    client = mock_client(_ended_run, limiter=_OwnLimiter(current_rate=current_rate))
    for _ in range(2):  # and nothing is left behind that breaks the next wait
        run = await client.wait_for_run(RUN_UID, timeout=30)
        assert run.status is ea.RunStatus.SUCCEEDED


async def test_a_custom_limiters_current_rate_paces_polling(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """A custom limiter reporting 6 requests a minute gets polls 12.5 s apart (a 20 % reserve)."""
    (uid,) = seed(simulator, workspace, ending("SUCCEEDED", 60.0))
    async with (
        httpx.AsyncClient(transport=simulator.transport()) as http,
        ea.AsyncClient(
            API_KEY, plan="titanium", http_client=http, limiter=_OwnLimiter(current_rate=6.0)
        ) as client,
    ):
        await client.wait_for_run(uid, timeout=600)
    times = [request.time for request in polls(simulator)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) >= 3
    assert min(gaps) >= 12.5 - 1e-3
