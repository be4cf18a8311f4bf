"""One budget per process: threads with event loops of their own share it (real time, short)."""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import anyio.to_thread
import pytest

import edges_async as ea
from edges_async._limiter import DEFAULT_HEADROOM
from edges_async._local_budgets import LocalBudgets, shares_process_clock
from edges_async.testing import EdgesSimulator, WindowKind

from .test_limiter import DONE, accepted_times

pytestmark = pytest.mark.looptime(False)

T = TypeVar("T")
LoopClass = Callable[[], asyncio.AbstractEventLoop]
PLAN = ea.PlanTier.TITANIUM
HEADROOM = 0.4  # Titanium's runs at 40 %: one slot every 0.25 s, roomy for thread wake-ups
INTERVAL = 60 / (PLAN.requests_per_minute * HEADROOM)
JITTER = 0.06  # how late a thread's loop may wake on a busy machine


def in_thread(
    main: Callable[[], Awaitable[T]], loop_class: LoopClass = asyncio.SelectorEventLoop
) -> T:
    """Run ``main()`` to completion on a fresh event loop in this (worker) thread."""
    loop = loop_class()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


async def threaded(
    main: Callable[[], Awaitable[T]], loop_class: LoopClass = asyncio.SelectorEventLoop
) -> T:
    """Run ``main()`` on an event loop of its own in another thread; await its result."""
    return await anyio.to_thread.run_sync(in_thread, main, loop_class)


def here() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def budgets_here(workspace: str) -> LocalBudgets:
    """The workspace's local budgets for the running loop."""
    return LocalBudgets.for_loop(workspace, PLAN, HEADROOM, here())


class Grants:
    """Who went when, on the process's clock, from any thread."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    async def take(self, budgets: LocalBudgets, name: str) -> None:
        await budgets.acquire("runs")
        with self._lock:
            self.times.append((name, time.monotonic()))

    def names(self) -> list[str]:
        return [name for name, _ in sorted(self.times, key=lambda grant: grant[1])]

    def gaps(self) -> list[float]:
        moments = sorted(moment for _, moment in self.times)
        return [later - earlier for earlier, later in itertools.pairwise(moments)]


async def test_two_threads_with_clients_of_one_workspace_stay_within_the_plan() -> None:
    """Two threads, each a loop and a client, polling one server: no 429, the plan's rate."""
    simulator = EdgesSimulator(window=WindowKind.PER_SECOND)
    api_key = "threads-key"
    workspace = simulator.add_workspace(api_key=api_key, plan=PLAN)
    run = simulator.add_run(workspace, script=DONE)
    seconds = 3.0

    async with simulator.serve() as base_url:

        async def poll() -> tuple[int, ea.LimiterStatistics]:
            answered = 0

            async def poller() -> None:
                nonlocal answered
                while True:
                    await client.runs.status(run.uid)
                    answered += 1

            async with ea.AsyncClient(api_key, plan=PLAN, base_url=base_url) as client:
                with anyio.move_on_after(seconds):
                    async with anyio.create_task_group() as group:
                        for _ in range(5):
                            group.start_soon(poller)
                assert isinstance(client.limiter, ea.WorkspaceRateLimiter)
                return answered, client.limiter.statistics()

        results: list[tuple[int, ea.LimiterStatistics]] = []

        async def one_thread() -> None:
            results.append(await threaded(poll))

        async with anyio.create_task_group() as group:
            group.start_soon(one_thread)
            group.start_soon(one_thread)

    assert [r.status_code for r in simulator.requests if r.status_code != 200] == []
    times = accepted_times(simulator)
    span = times[-1] - times[0]
    assert len(times) <= PLAN.requests_per_second * span + 1
    paced = PLAN.requests_per_minute * DEFAULT_HEADROOM / 60
    assert len(times) >= 0.8 * paced * seconds
    answered = [count for count, _ in results]
    assert min(answered) >= 0.25 * sum(answered)  # both threads got their turns
    assert max(stats.requests_sent for _, stats in results) == len(simulator.requests)


async def test_loops_of_the_process_share_one_budgets_object() -> None:
    """Every loop on the process's clock gets the same budgets; the registry holds them weakly."""
    mine = budgets_here("shared-ws")
    assert shares_process_clock(here())

    async def theirs() -> LocalBudgets:
        return budgets_here("shared-ws")

    assert await threaded(theirs) is mine
    assert budgets_here("another-ws") is not mine
    gone = weakref.ref(mine)
    del mine
    await asyncio.sleep(0)  # the thread's answer leaves the loop's queue
    gc.collect()
    assert gone() is None  # nobody held it: forgotten, not kept forever


class OffsetClockLoop(asyncio.SelectorEventLoop):
    """A loop whose clock is not the process's (as a fake clock is not)."""

    def time(self) -> float:
        return super().time() + 1_000_000.0


async def test_a_loop_on_another_clock_gets_budgets_of_its_own() -> None:
    """Times of a loop on another clock cannot be compared with ours: separate budgets."""
    mine = budgets_here("clock-ws")

    async def theirs() -> tuple[LocalBudgets, bool, bool, bool]:
        budgets = budgets_here("clock-ws")
        await budgets.acquire("runs")  # sleeps on its own clock: goes at once
        return budgets, shares_process_clock(here()), budgets.serves(here()), mine.serves(here())

    budgets, shared_clock, serves_own, ours_serves = await threaded(theirs, OffsetClockLoop)
    assert budgets is not mine
    assert not shared_clock
    assert serves_own
    assert not ours_serves
    assert not budgets.serves(here())
    assert mine.serves(here())


async def test_a_waiter_cancelled_in_another_loop_gives_its_slot_back() -> None:
    """A thread's caller cancelled while sleeping frees its slot: ours takes it, one interval on."""
    budgets = budgets_here("cancel-ws")
    await budgets.acquire("runs")
    start = time.monotonic()

    async def doomed() -> bool:
        with anyio.move_on_after(INTERVAL / 3) as scope:
            await budgets_here("cancel-ws").acquire("runs")  # the slot one interval on
        return scope.cancelled_caught

    assert await threaded(doomed)
    await budgets.acquire("runs")
    assert time.monotonic() - start == pytest.approx(INTERVAL, abs=JITTER)
    assert budgets.snapshot("runs").granted == 2


async def test_callers_of_two_loops_go_in_the_order_they_asked() -> None:
    """FIFO across loops: ours, theirs, ours again, one interval apart."""
    budgets = budgets_here("fifo-ws")
    await budgets.acquire("runs")  # the next slot is one interval away
    grants = Grants()
    asked = threading.Event()

    async def theirs() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(grants.take, budgets_here("fifo-ws"), "theirs")
            await asyncio.sleep(0)  # it has reserved and sleeps
            asked.set()

    async with anyio.create_task_group() as group:
        group.start_soon(grants.take, budgets, "ours 1")
        await asyncio.sleep(0)
        group.start_soon(threaded, theirs)
        await anyio.to_thread.run_sync(asked.wait)
        group.start_soon(grants.take, budgets, "ours 2")
    assert grants.names() == ["ours 1", "theirs", "ours 2"]
    assert grants.gaps() == [pytest.approx(INTERVAL, abs=JITTER)] * 2


async def test_no_burst_after_idle_across_loops() -> None:
    """After an idle spell, callers of two loops asking at once still go one interval apart."""
    budgets = budgets_here("idle-ws")
    await budgets.acquire("runs")
    await anyio.sleep(3 * INTERVAL)
    grants = Grants()

    async def theirs() -> None:
        async with anyio.create_task_group() as group:
            for number in range(3):
                group.start_soon(grants.take, budgets_here("idle-ws"), f"theirs {number}")

    async with anyio.create_task_group() as group:
        group.start_soon(threaded, theirs)
        for number in range(3):
            group.start_soon(grants.take, budgets, f"ours {number}")
    assert len(grants.times) == 6
    assert min(grants.gaps()) >= INTERVAL - JITTER
