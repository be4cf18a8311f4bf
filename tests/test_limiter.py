"""The per-workspace limiter: even pacing, shared budgets, pauses on 429, statistics."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import email.utils
import math
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import anyio
import httpx
import pytest

import edges_async as ea
from edges_async._budget import BudgetSnapshot
from edges_async._limiter import route_group, workspace_id
from edges_async._local_budgets import LocalBudgets, shares_process_clock
from edges_async._pacer import Pacer
from edges_async.testing import EdgesSimulator, Fault, RunScript, WindowKind

from .conftest import API_KEY, SIM_START

RUNS_URL = "https://api.edges.run/v1/runs/x/status"
LIVE_URL = "https://api.edges.run/v1/actions/linkedin-extract-people/run/live"
DONE = RunScript(steps=(("SUCCEEDED", 0.0),), outputs=0)


def now() -> float:
    return asyncio.get_running_loop().time()


@contextlib.asynccontextmanager
async def sdk_client(
    simulator: EdgesSimulator, api_key: str = API_KEY, **kwargs: object
) -> AsyncIterator[ea.AsyncClient]:
    async with (
        httpx.AsyncClient(transport=simulator.transport()) as http,
        ea.AsyncClient(api_key, http_client=http, max_retries=10, **kwargs) as client,  # type: ignore[call-overload]
    ):
        yield client


async def saturate(client: ea.AsyncClient, run_uid: str, tasks: int, seconds: float) -> None:
    """Keep `tasks` tasks polling one run for `seconds` of loop time."""

    async def poll() -> None:
        while True:
            await client.runs.status(run_uid)

    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as group:
            for _ in range(tasks):
                group.start_soon(poll)


def accepted_times(simulator: EdgesSimulator, since: float = -math.inf) -> list[float]:
    return sorted(r.time for r in simulator.requests if r.status_code == 200 and r.time >= since)


def most_in_any_window(times: list[float], width: float) -> int:
    """The largest number of times falling in any half-open window [t, t + width)."""
    return max(
        (bisect.bisect_left(times, start + width) - index for index, start in enumerate(times)),
        default=0,
    )


# -- the pacer ---------------------------------------------------------------


class PacerCallers:
    """Callers of a 2-second pacer whose first slot is taken; ``granted``: when each went."""

    def __init__(self) -> None:
        self.pacer = Pacer(2.0)
        self.granted: list[float] = []
        self.start = 0.0

    @classmethod
    async def after_a_first_call(cls) -> PacerCallers:
        """The pacer once a first caller took slot 0: the next slot is 2 s from ``start``."""
        callers = cls()
        await callers.pacer.wait()
        callers.start = now()
        return callers

    async def caller(self) -> None:
        """Wait for a slot, then note how long after ``start`` it came."""
        await self.pacer.wait()
        self.granted.append(now() - self.start)


async def test_pacer_spaces_callers_evenly_and_in_order() -> None:
    """Concurrent callers go one interval apart, first come first served."""
    pacer = Pacer(2.0)
    order: list[tuple[int, float]] = []

    async def caller(number: int) -> None:
        await pacer.wait()
        order.append((number, now()))

    start = now()
    async with anyio.create_task_group() as group:
        for number in range(5):
            group.start_soon(caller, number)
            await anyio.lowlevel.checkpoint()
    assert [number for number, _ in order] == [0, 1, 2, 3, 4]
    assert [round(t - start, 6) for _, t in order] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert pacer.granted == 5
    assert pacer.waited == pytest.approx(0 + 2 + 4 + 6 + 8)


async def test_pacer_does_not_bank_credit_while_idle() -> None:
    """After a long idle spell only one caller goes at once: no burst."""
    pacer = Pacer(1.0)
    await pacer.wait()
    await anyio.sleep(100)
    start = now()
    for _ in range(3):
        await pacer.wait()
    assert now() - start == pytest.approx(2.0)


async def test_cancelled_waiter_frees_its_place() -> None:
    """A caller cancelled while queued consumes no slot: the one behind it takes it."""
    callers = await PacerCallers.after_a_first_call()  # the next slot is at +2 s
    async with anyio.create_task_group() as group:
        queued = anyio.CancelScope()

        async def doomed() -> None:
            with queued:
                await callers.pacer.wait()
                callers.granted.append(-1.0)

        group.start_soon(callers.caller)  # sleeps for the +2 s slot at the head
        await anyio.lowlevel.checkpoint()
        group.start_soon(doomed)  # queued for +4 s
        await anyio.lowlevel.checkpoint()
        group.start_soon(callers.caller)  # queued behind it
        await anyio.sleep(0.5)
        queued.cancel()
    assert callers.granted == [pytest.approx(2.0), pytest.approx(4.0)]
    assert callers.pacer.granted == 3


async def test_cancelled_head_of_queue_frees_its_place() -> None:
    """Cancelling the caller that is sleeping for the slot hands the slot on."""
    callers = await PacerCallers.after_a_first_call()
    async with anyio.create_task_group() as group:
        first = anyio.CancelScope()

        async def doomed() -> None:
            with first:
                await callers.caller()

        group.start_soon(doomed)
        await anyio.lowlevel.checkpoint()
        group.start_soon(callers.caller)
        await anyio.sleep(1.0)
        first.cancel()
    assert callers.granted == [pytest.approx(2.0)]


async def test_pause_holds_everyone_back() -> None:
    """pause_until delays every caller, and a pause is only ever extended."""
    pacer = Pacer(0.1)
    start = now()
    pacer.pause_until(start + 30)
    pacer.pause_until(start + 10)
    await pacer.wait()
    assert now() - start == pytest.approx(30)


async def test_interval_change_applies_to_next_grant() -> None:
    """A new interval takes effect from the next grant on."""
    pacer = Pacer(1.0)
    start = now()
    await pacer.wait()
    pacer.interval = 5.0
    await pacer.wait()  # next_at was set with the old interval
    await pacer.wait()
    assert now() - start == pytest.approx(6.0)


async def test_rounding_residue_does_not_spin() -> None:
    """A wait that rounds to nothing on the loop clock returns instead of spinning."""
    pacer = Pacer(2.105263157894737)
    for _ in range(50):
        await pacer.wait()
    assert pacer.granted == 50


def test_pacer_refuses_bad_interval() -> None:
    """A negative or infinite interval is refused."""
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="interval"):
            Pacer(bad)


# -- route groups and identity -----------------------------------------------


@pytest.mark.parametrize(
    ("url", "group"),
    [
        ("https://api.edges.run/v1/runs", "runs"),
        ("https://api.edges.run/v1/runs/abc/outputs?limit=5", "runs"),
        (LIVE_URL, "live"),
        ("https://api.edges.run/v1/actions/x/run/async", "other"),
        ("https://api.edges.run/v1/runsheet", "other"),
    ],
)
def test_route_groups(url: str, group: str) -> None:
    """Runs routes share one budget, live actions another, the rest a third."""
    assert route_group(httpx.URL(url)) == group


def test_workspace_identity_hides_the_key() -> None:
    """The registry key is a digest: stable, distinct per key and base URL, not the key."""
    one = workspace_id(API_KEY, "https://api.edges.run/v1")
    assert one == workspace_id(API_KEY, "https://api.edges.run/v1")
    assert one != workspace_id(API_KEY, "http://127.0.0.1:8765/v1")
    assert one != workspace_id("other", "https://api.edges.run/v1")
    assert API_KEY not in one
    client = ea.AsyncClient(API_KEY)
    assert API_KEY not in repr(client.limiter)


def test_bad_headroom_is_refused() -> None:
    """Headroom must be a fraction in (0, 1]."""
    with pytest.raises(ValueError, match="headroom"):
        ea.WorkspaceRateLimiter(ea.PlanTier.TRIAL, workspace="w", headroom=1.5)


# -- against the server --------------------------------------------------------


@pytest.mark.parametrize("plan", list(ea.PlanTier))
async def test_server_never_sees_more_than_the_plan(plan: ea.PlanTier) -> None:
    """50 saturating tasks for 3 minutes: no 429, no minute over the plan, per-second cap kept."""
    simulator = EdgesSimulator(window=WindowKind.PER_SECOND, start_time=SIM_START)
    workspace = simulator.add_workspace(api_key=API_KEY, plan=plan)
    run = simulator.add_run(workspace, script=DONE)
    async with sdk_client(simulator, plan=plan) as client:
        await saturate(client, run.uid, tasks=50, seconds=180)
    times = accepted_times(simulator)
    assert not [r for r in simulator.requests if r.status_code == 429]
    assert most_in_any_window(times, 60.0) <= plan.requests_per_minute
    assert most_in_any_window(times, 1.0) <= max(1, math.ceil(plan.requests_per_second))
    used = most_in_any_window(times, 60.0) / plan.requests_per_minute
    assert used >= 0.93


async def test_a_429_pauses_every_task_of_the_workspace(simulator: EdgesSimulator) -> None:
    """After one 429 with Retry-After: 20, no task sends anything for 20 s."""
    workspace = simulator.add_workspace(api_key=API_KEY, plan="titanium")
    run = simulator.add_run(workspace, script=DONE)
    simulator.faults.add(
        Fault(path=r"/status$", status=429, headers={"Retry-After": "20"}, times=1)
    )
    async with sdk_client(simulator, plan="titanium") as client:
        await saturate(client, run.uid, tasks=20, seconds=40)
        stats = client.limiter.statistics()
    [refusal] = [r for r in simulator.requests if r.status_code == 429]
    during = [r for r in simulator.requests if refusal.time < r.time < refusal.time + 20]
    assert during == []
    after = [r for r in simulator.requests if r.time >= refusal.time + 20]
    assert len(after) > 100
    assert stats.rate_limited == 1


async def test_a_429_with_an_http_date_retry_after_pauses_until_then(
    simulator: EdgesSimulator,
) -> None:
    """Retry-After as an HTTP date (judged against the response's Date) pauses the workspace."""
    workspace = simulator.add_workspace(api_key=API_KEY, plan="titanium")
    run = simulator.add_run(workspace, script=DONE)
    server_now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    headers = {
        "Date": email.utils.format_datetime(server_now, usegmt=True),
        "Retry-After": email.utils.format_datetime(server_now + timedelta(seconds=25), usegmt=True),
    }
    simulator.faults.add(Fault(path=r"/status$", status=429, headers=headers, times=1))
    async with sdk_client(simulator, plan="titanium") as client:
        await saturate(client, run.uid, tasks=5, seconds=40)
    [refusal] = [r for r in simulator.requests if r.status_code == 429]
    assert [r for r in simulator.requests if refusal.time < r.time < refusal.time + 25] == []
    assert [r for r in simulator.requests if refusal.time + 25 <= r.time < refusal.time + 26]


async def test_a_429_without_retry_after_pauses_a_full_window(simulator: EdgesSimulator) -> None:
    """Without Retry-After, the workspace waits 60 s: any minute window has reset by then."""
    workspace = simulator.add_workspace(api_key=API_KEY, plan="titanium")
    run = simulator.add_run(workspace, script=DONE)
    simulator.faults.add(Fault(path=r"/status$", status=429, times=1))
    async with sdk_client(simulator, plan="titanium") as client:
        await saturate(client, run.uid, tasks=5, seconds=90)
    [refusal] = [r for r in simulator.requests if r.status_code == 429]
    assert [r for r in simulator.requests if refusal.time < r.time < refusal.time + 60] == []


async def test_rate_steps_down_after_429_and_recovers(simulator: EdgesSimulator) -> None:
    """A 429 cuts the pace by a quarter; it returns fast to 90 %, then probes up slowly."""
    workspace = simulator.add_workspace(api_key=API_KEY, plan="silver")
    run = simulator.add_run(workspace, script=DONE)
    simulator.faults.add(Fault(path=r"/status$", status=429, headers={"Retry-After": "1"}))
    async with sdk_client(simulator, plan="silver") as client:
        limiter = client.limiter
        assert isinstance(limiter, ea.WorkspaceRateLimiter)
        full = limiter.statistics().current_rate
        assert full == pytest.approx(150 * 0.95)
        await client.runs.status(run.uid)  # 429, then the retry succeeds (+0.02)
        assert limiter.statistics().current_rate == pytest.approx(full * 0.77)
        for _ in range(20):
            await client.runs.status(run.uid)
        assert limiter.statistics().current_rate == pytest.approx(full * 0.9, rel=0.01)
        await saturate(client, run.uid, tasks=5, seconds=120)
        assert limiter.statistics().current_rate == pytest.approx(full, rel=0.01)
        assert limiter.statistics().rate_limited == 1


async def test_two_clients_of_one_workspace_share_one_budget(simulator: EdgesSimulator) -> None:
    """Two clients with the same key together stay within the plan, with no 429."""
    workspace = simulator.add_workspace(api_key=API_KEY, plan="bronze")
    run = simulator.add_run(workspace, script=DONE)
    async with (
        sdk_client(simulator, plan="bronze") as first,
        sdk_client(simulator, plan="bronze") as second,
    ):
        async with anyio.create_task_group() as group:
            group.start_soon(saturate, first, run.uid, 10, 120.0)
            group.start_soon(saturate, second, run.uid, 10, 120.0)
        stats = first.limiter.statistics()
    times = accepted_times(simulator)
    assert not [r for r in simulator.requests if r.status_code == 429]
    assert most_in_any_window(times, 60.0) <= 60
    assert len(times) == pytest.approx(120 * 0.95, abs=2)
    assert stats.requests_sent == len(simulator.requests)


async def test_two_workspaces_do_not_share(simulator: EdgesSimulator) -> None:
    """Clients of two workspaces each get their own plan's full budget."""
    first = simulator.add_workspace(api_key="key-a", plan="bronze")
    second = simulator.add_workspace(api_key="key-b", plan="bronze")
    run_a = simulator.add_run(first, script=DONE)
    run_b = simulator.add_run(second, script=DONE)
    async with (
        sdk_client(simulator, "key-a", plan="bronze") as client_a,
        sdk_client(simulator, "key-b", plan="bronze") as client_b,
        anyio.create_task_group() as group,
    ):
        group.start_soon(saturate, client_a, run_a.uid, 10, 120.0)
        group.start_soon(saturate, client_b, run_b.uid, 10, 120.0)
    for workspace in (first, second):
        mine = [r for r in simulator.requests if r.workspace_uid == workspace.uid]
        assert len(mine) == pytest.approx(120 * 0.95, abs=2)
        assert all(r.status_code == 200 for r in mine)


async def test_foreign_traffic_seen_in_remaining_slows_us_down(
    simulator: EdgesSimulator,
) -> None:
    """Another process spending the budget shows in X-RateLimit-Remaining; we make room."""
    workspace = simulator.add_workspace(api_key=API_KEY, plan="silver")
    run = simulator.add_run(workspace, script=DONE)
    async with (
        httpx.AsyncClient(
            transport=simulator.transport(),
            base_url="https://api.edges.run",
            headers={"X-API-Key": API_KEY},
        ) as other_process,
        sdk_client(simulator, plan="silver") as client,
    ):
        for _ in range(60):
            await other_process.get(f"/v1/runs/{run.uid}/status")
            await anyio.sleep(0.5)
        await client.runs.status(run.uid)
        stats = client.limiter.statistics()
    assert stats.current_rate < 0.7 * stats.nominal_rate


async def test_statistics_add_up(simulator: EdgesSimulator) -> None:
    """Requests sent match the server's log; waits sum to the queueing time."""
    workspace = simulator.add_workspace(api_key=API_KEY, plan="trial")
    run = simulator.add_run(workspace, script=DONE)
    async with sdk_client(simulator, plan="trial") as client:
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(client.runs.status, run.uid)
        stats = client.limiter.statistics()
    interval = 60 / (30 * 0.95)
    assert stats.requests_sent == 3 == len(simulator.requests)
    assert stats.time_waited == pytest.approx(interval + 2 * interval)
    assert stats.rate_limited == 0
    assert stats.nominal_rate == 30
    assert stats.paused_until is None


# -- the budgets behind the limiter ---------------------------------------------


def runs_request() -> httpx.Request:
    return httpx.Request("GET", RUNS_URL)


async def test_a_cancelled_caller_gives_its_slot_back() -> None:
    """A caller cancelled while sleeping frees its slot: the next caller to ask takes it."""
    limiter = ea.WorkspaceRateLimiter("trial", workspace="cancel-fake-time")
    interval = 60 / (30 * 0.95)
    start = now()
    await limiter.acquire(runs_request())
    granted: list[tuple[str, float]] = []

    async def caller(name: str) -> None:
        await limiter.acquire(runs_request())
        granted.append((name, now() - start))

    async with anyio.create_task_group() as group:
        doomed = anyio.CancelScope()

        async def cancelled() -> None:
            with doomed:
                await caller("cancelled")

        group.start_soon(cancelled)  # slot 1
        await anyio.lowlevel.checkpoint()
        group.start_soon(caller, "queued")  # slot 2
        await anyio.sleep(0.5)
        doomed.cancel()
        await anyio.sleep(0.5)
        group.start_soon(caller, "late")  # takes slot 1, given back
    assert [name for name, _ in granted] == ["late", "queued"]
    assert [moment for _, moment in granted] == pytest.approx([interval, 2 * interval])
    assert limiter.statistics().requests_sent == 3


async def test_a_fake_clock_loop_has_budgets_of_its_own() -> None:
    """looptime's clock is not the process's: its budgets are this loop's alone."""
    loop = asyncio.get_running_loop()
    assert not shares_process_clock(loop)
    budgets = LocalBudgets.for_loop("fake-ws", ea.PlanTier.GOLD, 0.95, loop)
    assert budgets.serves(loop)
    assert LocalBudgets.for_loop("fake-ws", ea.PlanTier.GOLD, 0.95, loop) is budgets


async def test_private_budgets_spend_a_share_of_the_plan() -> None:
    """LocalBudgets.private(share=1/n) paces at plan x headroom / n, shared with nobody."""
    budgets = LocalBudgets.private(ea.PlanTier.TITANIUM, 0.95, share=0.25)
    loop = asyncio.get_running_loop()
    assert budgets is not LocalBudgets.for_loop("private-ws", ea.PlanTier.TITANIUM, 0.95, loop)
    assert budgets.snapshot("runs").current_rate == pytest.approx(600 * 0.95 / 4)
    start = now()
    for _ in range(3):
        await budgets.acquire("runs")
    assert now() - start == pytest.approx(2 * 60 / (600 * 0.95 / 4))
    budgets.share = 0.5
    assert budgets.snapshot("live").current_rate == pytest.approx(1200 * 0.95 / 2)
    assert budgets.snapshot("runs").granted == 3


class RecordingBudgets:
    """A GroupBudgets that lets everything through and notes what it is told."""

    def __init__(self) -> None:
        self.acquired: list[str] = []
        self.answers: list[tuple[str, int]] = []

    async def acquire(self, group: str) -> None:
        self.acquired.append(group)

    def feedback(self, group: str, response: httpx.Response) -> None:
        self.answers.append((group, response.status_code))

    def snapshot(self, group: str) -> BudgetSnapshot:
        granted = self.acquired.count(group)
        return BudgetSnapshot(granted, 0.5, 0, 42.0, 600.0, 7.0 if group == "runs" else None)

    async def aclose(self) -> None:
        """Nothing to close."""


class FakeCoordination:
    """Hands out one RecordingBudgets per call, as a coordination does once per loop."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, ea.PlanTier, float]] = []
        self.budgets = RecordingBudgets()

    def _budgets(self, workspace: str, plan: ea.PlanTier, headroom: float) -> RecordingBudgets:
        self.asked.append((workspace, plan, headroom))
        return self.budgets


async def test_a_coordination_provides_the_budgets() -> None:
    """With a coordination the limiter asks it for the budgets once per loop, and delegates."""
    coordination = FakeCoordination()
    limiter = ea.WorkspaceRateLimiter(
        "titanium", workspace="coordinated", headroom=0.9, coordination=coordination
    )
    assert limiter.current_rate == pytest.approx(600 * 0.9)  # before first use
    await limiter.acquire(runs_request())
    await limiter.acquire(httpx.Request("GET", LIVE_URL))
    limiter.feedback(runs_request(), httpx.Response(429))
    limiter.feedback(runs_request(), None)
    assert coordination.asked == [("coordinated", ea.PlanTier.TITANIUM, 0.9)]
    assert coordination.budgets.acquired == ["runs", "live"]
    assert coordination.budgets.answers == [("runs", 429)]
    stats = limiter.statistics()
    assert (stats.requests_sent, stats.time_waited) == (2, 1.5)
    assert (stats.current_rate, stats.nominal_rate, stats.paused_until) == (42.0, 600.0, 7.0)
    assert limiter.current_rate == 42.0
