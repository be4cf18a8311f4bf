"""The slot book in Redis: its scripts with an injected clock, then RedisBudgets in real time.

The script tests pass ``now`` (Redis time, seconds) so that every slot is
exact; the others run against a real Redis on loopback, in real time, and
short (a few seconds at most).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import re
import signal
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
import redis.asyncio

from edges_async._budget import GroupBudgets
from edges_async._plans import PlanTier
from edges_async._redis_budget import RedisBudgets
from edges_async._redis_coordination import CoordinationError, RedisCoordination
from edges_async._redis_scripts import (
    ADJUST,
    CONFIRM,
    HEARTBEAT,
    RELEASE,
    RESERVE,
    BudgetScripts,
    Reservation,
)

from .redis_processes import run_cell, simulator_process
from .redis_server import RedisServer, free_port

pytestmark = pytest.mark.looptime(False)

KEY = "edges:{ws}:budget:runs"
T0 = 1_000.0


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A client of the session's (emptied) Redis."""
    connection = redis.asyncio.Redis.from_url(redis_url)
    try:
        yield connection
    finally:
        await connection.aclose()


@pytest.fixture
def scripts(client: redis.asyncio.Redis) -> BudgetScripts:
    """The budget scripts registered on ``client``."""
    return BudgetScripts(client)


async def reserve(scripts: BudgetScripts, now: float, *, per_minute: float = 60) -> Reservation:
    return await scripts.reserve(KEY, per_minute=per_minute, headroom=1.0, now=now)


async def confirm(
    scripts: BudgetScripts, reservation: Reservation, now: float, *, per_minute: float = 60
) -> Reservation:
    return await scripts.confirm(KEY, reservation, per_minute=per_minute, headroom=1.0, now=now)


def at(reservation: Reservation) -> float:
    return float(reservation.slot)


# -- the scripts, on an injected clock ------------------------------------------------


async def test_slots_go_first_come_first_served_one_interval_apart(
    scripts: BudgetScripts,
) -> None:
    """Three callers at once get the slot now, then one and two intervals later, in order."""
    got = [await reserve(scripts, T0) for _ in range(3)]
    assert [at(r) for r in got] == [T0, T0 + 1, T0 + 2]
    assert [r.wait for r in got] == [0.0, 1.0, 2.0]
    assert {r.epoch for r in got} == {0}
    assert got[0].pace.rate == 60.0


async def test_no_burst_after_an_idle_spell(scripts: BudgetScripts) -> None:
    """After a long idle spell the next caller goes at once, and the one after waits an interval."""
    await reserve(scripts, T0)
    later = [await reserve(scripts, T0 + 500), await reserve(scripts, T0 + 500)]
    assert [r.wait for r in later] == [0.0, 1.0]


async def test_the_interval_follows_headroom_and_the_tighter_cap(scripts: BudgetScripts) -> None:
    """A plan of 30/min at 95 %: a slot every 60 / 28.5 s."""
    first = await scripts.reserve(KEY, per_minute=30, headroom=0.95, now=T0)
    second = await scripts.reserve(KEY, per_minute=30, headroom=0.95, now=T0)
    assert second.wait == pytest.approx(60 / 28.5, abs=1e-6)
    assert first.pace.rate == pytest.approx(28.5)


async def test_a_caller_on_time_goes_one_early_sleeps_on(scripts: BudgetScripts) -> None:
    """Confirming at the slot goes; confirming before it says how long is left, same slot."""
    await reserve(scripts, T0)
    second = await reserve(scripts, T0)
    early = await confirm(scripts, second, T0 + 0.25)
    assert (early.wait, early.slot, early.epoch) == (0.75, second.slot, second.epoch)
    assert (await confirm(scripts, second, T0 + 1.01)).wait == 0.0


async def test_a_caller_late_by_more_than_an_interval_queues_again(
    scripts: BudgetScripts,
) -> None:
    """Late past one interval (a stalled process) with callers after it: a new slot at the end."""
    await reserve(scripts, T0)
    second = await reserve(scripts, T0)  # T0 + 1
    await reserve(scripts, T0)  # T0 + 2
    late = await confirm(scripts, second, T0 + 2.5)
    assert at(late) == T0 + 3
    assert late.wait == pytest.approx(0.5)


async def test_a_late_caller_holding_the_last_slot_goes_at_once(scripts: BudgetScripts) -> None:
    """Nobody holds a slot after it: the late caller goes now, and the stream goes on from now."""
    await reserve(scripts, T0)
    second = await reserve(scripts, T0)
    assert (await confirm(scripts, second, T0 + 1.5)).wait == 0.0
    assert at(await reserve(scripts, T0 + 1.5)) == T0 + 2.5


async def test_a_busy_caller_late_every_time_is_served_and_the_next_one_keeps_the_gap(
    scripts: BudgetScripts,
) -> None:
    """Trial at 95 %: slots 2.105 s apart, 2 s for the plan. A caller waking 100 ms late
    (a busy process, every time) still goes; the next holder waits until the grants are
    2.053 s apart (half the slack kept), and the one after it is on time again."""
    interval = 60 / 28.5
    gap = (interval + 2.0) / 2

    async def take() -> Reservation:
        return await scripts.reserve(KEY, per_minute=30, headroom=0.95, now=T0)

    async def woke(held: Reservation, now: float) -> Reservation:
        return await scripts.confirm(KEY, held, per_minute=30, headroom=0.95, now=now)

    await take()  # T0, granted at once
    busy, other, third = await take(), await take(), await take()
    assert (await woke(busy, T0 + interval + 0.1)).wait == 0.0
    held = await woke(other, T0 + 2 * interval)
    assert held.slot == other.slot
    assert held.wait == pytest.approx(0.1 + gap - interval, abs=1e-5)
    assert (await woke(held, T0 + interval + 0.1 + gap + 1e-5)).wait == 0.0
    assert (await woke(third, T0 + 3 * interval)).wait == 0.0


async def test_lateness_is_at_least_20_ms(scripts: BudgetScripts) -> None:
    """Titanium's slack is 2.6 ms: a busy loop waking 19 ms late still goes."""
    await scripts.reserve(KEY, per_minute=600, headroom=0.95, now=T0)
    held = await scripts.reserve(KEY, per_minute=600, headroom=0.95, now=T0)
    await scripts.reserve(KEY, per_minute=600, headroom=0.95, now=T0)
    woke = T0 + 60 / 570 + 0.019
    answer = await scripts.confirm(KEY, held, per_minute=600, headroom=0.95, now=woke)
    assert answer.wait == 0.0


async def test_the_last_slot_given_back_rolls_the_stream_back(scripts: BudgetScripts) -> None:
    """A cancelled caller holding the last slot gives it to the next caller."""
    await reserve(scripts, T0)
    second = await reserve(scripts, T0)
    assert await scripts.release(KEY, second, now=T0 + 0.5)
    assert at(await reserve(scripts, T0 + 0.5)) == T0 + 1


async def test_an_earlier_slot_given_back_goes_to_the_next_caller(scripts: BudgetScripts) -> None:
    """A slot given back before the last is kept aside and taken while it is still ahead."""
    await reserve(scripts, T0)
    second = await reserve(scripts, T0)
    await reserve(scripts, T0)  # T0 + 2
    assert await scripts.release(KEY, second, now=T0 + 0.5)
    assert at(await reserve(scripts, T0 + 0.5)) == T0 + 1
    assert at(await reserve(scripts, T0 + 0.5)) == T0 + 3


async def test_a_slot_given_back_too_late_or_void_is_not_kept(scripts: BudgetScripts) -> None:
    """A past slot, or one a 429 voided, is nobody's: the stream goes on as it was."""
    await reserve(scripts, T0)
    second = await reserve(scripts, T0)
    await reserve(scripts, T0)
    assert not await scripts.release(KEY, second, now=T0 + 1.5)
    assert at(await reserve(scripts, T0 + 1.5)) == T0 + 3
    void = await reserve(scripts, T0 + 1.5)
    await scripts.refuse(KEY, pause=1, per_minute=60, headroom=1.0, now=T0 + 1.6)
    assert not await scripts.release(KEY, void, now=T0 + 1.7)


async def test_a_429_pauses_voids_older_slots_and_steps_down_once(scripts: BudgetScripts) -> None:
    """Slots held across a 429 are void: their holders queue again after the pause, slower."""
    await reserve(scripts, T0)
    held = await reserve(scripts, T0)  # T0 + 1
    pace = await scripts.refuse(KEY, pause=10, per_minute=60, headroom=1.0, now=T0 + 0.5)
    assert (pace.rate, pace.paused_for) == (45.0, 10.0)
    again = await confirm(scripts, held, T0 + 1)
    assert again.epoch == held.epoch + 1
    assert at(again) == T0 + 10.5
    assert at(await reserve(scripts, T0 + 1)) == pytest.approx(T0 + 10.5 + 60 / 45)
    # In flight with the first: the pause does not grow, the rate does not step down again.
    same = await scripts.refuse(KEY, pause=5, per_minute=60, headroom=1.0, now=T0 + 0.6)
    assert same.rate == 45.0
    assert (await reserve(scripts, T0 + 1)).epoch == again.epoch


async def test_a_longer_pause_voids_the_slots_again(scripts: BudgetScripts) -> None:
    """A 429 that extends the pause bumps the epoch again, without stepping down twice."""
    await scripts.refuse(KEY, pause=10, per_minute=60, headroom=1.0, now=T0)
    held = await reserve(scripts, T0)
    pace = await scripts.refuse(KEY, pause=20, per_minute=60, headroom=1.0, now=T0 + 1)
    assert pace.rate == 45.0
    assert pace.paused_for == 20.0
    again = await confirm(scripts, held, T0 + 10)
    assert (again.epoch, at(again)) == (held.epoch + 1, T0 + 21)


async def test_a_slot_of_a_lost_book_is_neither_confirmed_nor_given_back(
    scripts: BudgetScripts, client: redis.asyncio.Redis
) -> None:
    """Redis lost its data (a restart without persistence): the new book is another book.

    A slot reserved before the loss is not confirmed by the new, empty hash
    (whose epoch is 0 again), nor given back into it: its holder queues
    behind the new book's callers instead of going with one of them.
    """
    held = [await reserve(scripts, T0) for _ in range(4)]  # T0 .. T0 + 3
    await client.flushall()
    fresh = await reserve(scripts, T0 + 3)
    assert (at(fresh), fresh.wait, fresh.epoch) == (T0 + 3, 0.0, held[3].epoch)
    assert fresh.book != held[3].book
    again = await confirm(scripts, held[3], T0 + 3)
    assert (at(again), again.wait, again.book) == (T0 + 4, 1.0, fresh.book)
    assert not await scripts.release(KEY, held[2], now=T0 + 2.5)
    assert at(await reserve(scripts, T0 + 3)) == T0 + 5


async def test_a_slot_the_book_never_issued_is_not_confirmed(scripts: BudgetScripts) -> None:
    """A slot at or after the book's next free slot was never handed out: it is taken anew."""
    first = await reserve(scripts, T0)  # the next free slot is T0 + 1
    forged = Reservation(5.0, f"{T0 + 5:.6f}", first.epoch, first.book, first.pace)
    assert (await confirm(scripts, forged, T0 + 5)).wait == 0.0
    assert at(await reserve(scripts, T0 + 5)) == T0 + 6  # not T0 + 5 a second time


async def test_successes_recover_the_rate_by_todays_rule(scripts: BudgetScripts) -> None:
    """+0.02 per success up to 90 % of the refused factor, then 5 % per minute."""

    async def adjust(successes: int, now: float) -> float:
        pace = await scripts.adjust(
            KEY,
            successes=successes,
            remaining=None,
            foreign_tolerance=2,
            per_minute=100,
            headroom=1.0,
            now=now,
        )
        return pace.rate

    await scripts.refuse(KEY, pause=1, per_minute=100, headroom=1.0, now=T0)  # factor 0.75
    assert await adjust(3, T0 + 2) == pytest.approx(81)
    assert await adjust(100, T0 + 3) == pytest.approx(90)  # 0.9 x the refused 1.0
    assert await adjust(1, T0 + 63) == pytest.approx(95)  # a minute: +5 %
    assert await adjust(1, T0 + 1000) == pytest.approx(100)


async def test_foreign_traffic_in_remaining_shrinks_the_share(scripts: BudgetScripts) -> None:
    """Remaining below what the coordinated grants explain leaves the rest to the others."""
    for _ in range(10):
        await scripts.reserve(KEY, per_minute=100, headroom=1.0, now=T0)  # 1 granted at once
    own = 1

    async def remaining(value: int) -> float:
        pace = await scripts.adjust(
            KEY,
            successes=0,
            remaining=value,
            foreign_tolerance=2,
            per_minute=100,
            headroom=1.0,
            now=T0 + 1,
        )
        return pace.rate

    assert await remaining(100 - own - 40) == pytest.approx(60)
    assert await remaining(100 - own - 1) == pytest.approx(100)


async def test_unseen_grants_are_our_own_traffic_not_foreign(scripts: BudgetScripts) -> None:
    """Grants the book never counted (Redis was down, or lost its data) are not foreign."""
    await scripts.reserve(KEY, per_minute=100, headroom=1.0, now=T0)  # 1 granted at once
    pace = await scripts.adjust(
        KEY,
        successes=0,
        remaining=100 - 1 - 40,
        foreign_tolerance=2,
        per_minute=100,
        headroom=1.0,
        unseen=40,
        now=T0 + 1,
    )
    assert pace.rate == pytest.approx(100)


async def test_every_field_has_a_default(
    scripts: BudgetScripts, client: redis.asyncio.Redis
) -> None:
    """Missing fields, text, NaN and infinities in the hash: each falls back to its default."""
    await client.hset(
        KEY,
        mapping={"next": "inf", "paused_until": "nan", "factor": "x", "epoch": "-inf", "free": ""},
    )
    got = await reserve(scripts, T0)
    assert (at(got), got.wait, got.epoch, got.pace.rate) == (T0, 0.0, 0, 60.0)
    await client.hset(KEY, mapping={"factor": "7", "share": "-3"})  # clamped to [0.25, 1]
    assert (await reserve(scripts, T0)).pace.rate == 15.0
    await client.delete(KEY)
    await client.hset(KEY, "last_success", "nonsense")
    for script in (scripts.refuse, scripts.adjust):
        assert await _run_any(script)


async def _run_any(script: object) -> bool:
    if script.__name__ == "refuse":  # type: ignore[attr-defined]
        await script(KEY, pause=1, per_minute=60, headroom=1.0, now=T0)  # type: ignore[operator]
    else:
        await script(  # type: ignore[operator]
            KEY,
            successes=1,
            remaining=3,
            foreign_tolerance=2,
            per_minute=60,
            headroom=1.0,
            now=T0,
        )
    return True


async def test_scripts_survive_script_flush(
    scripts: BudgetScripts, client: redis.asyncio.Redis
) -> None:
    """After SCRIPT FLUSH (or a restart) the scripts load again and go on."""
    await reserve(scripts, T0)
    await client.script_flush()
    assert at(await reserve(scripts, T0)) == T0 + 1


def test_scripts_run_in_constant_time() -> None:
    """No loop in any script: each reads and writes a fixed set of fields."""
    for text in (RESERVE, CONFIRM, RELEASE, ADJUST, HEARTBEAT):
        assert not re.search(r"\b(for|while|repeat)\b", text)
        assert "KEYS[2]" not in text


async def test_the_time_is_redis_time(scripts: BudgetScripts, client: redis.asyncio.Redis) -> None:
    """Without an injected now the slot is Redis TIME, not the client's clock."""
    seconds, micros = await client.time()
    got = await scripts.reserve(KEY, per_minute=60, headroom=1.0)
    assert at(got) == pytest.approx(seconds + micros / 1e6, abs=0.5)
    assert got.wait == 0.0


async def test_heartbeats_count_the_live_members(scripts: BudgetScripts) -> None:
    """Members silent for longer than stale_after no longer count."""
    members = "edges:{ws}:members"
    await scripts.heartbeat(members, "a", stale_after=9, ttl=60, now=T0)
    assert await scripts.heartbeat(members, "b", stale_after=9, ttl=60, now=T0 + 5) == 2
    assert await scripts.heartbeat(members, "b", stale_after=9, ttl=60, now=T0 + 10) == 1


# -- RedisBudgets, in real time ------------------------------------------------------


def response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("GET", "https://api.edges.run/v1/runs/x")
    return httpx.Response(status, headers=headers, request=request)


@pytest.fixture
async def coordinations(redis_url: str) -> AsyncIterator[list[RedisCoordination]]:
    """Three coordinations of one Redis: three processes' worth of connections."""
    made = [RedisCoordination(redis_url) for _ in range(3)]
    try:
        yield made
    finally:
        for coordination in made:
            await coordination.aclose()


async def grant_times(
    budgets: GroupBudgets, group: str, seconds: float, callers: int
) -> list[float]:
    """The loop times of the grants ``callers`` tasks get from ``budgets`` in ``seconds``."""
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def caller() -> None:
        while True:
            await budgets.acquire(group)
            times.append(loop.time())

    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return times


async def test_three_connections_share_one_budget(coordinations: list[RedisCoordination]) -> None:
    """Three budgets on separate connections, each with eager callers: 9.5/s in total."""
    budgets = [c._budgets("ws", PlanTier.TITANIUM, 0.95) for c in coordinations]
    loop = asyncio.get_running_loop()
    start = loop.time()
    per_budget = await asyncio.gather(*(grant_times(b, "runs", 2.0, 3) for b in budgets))
    times = sorted(t - start for ts in per_budget for t in ts)
    interval = 60 / 570
    assert len(times) <= math.floor(2.0 / interval) + 1
    assert len(times) >= math.floor(2.0 / interval) - 2
    assert all(len(ts) >= 4 for ts in per_budget)  # everyone got a share
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) > interval - 0.03  # never two at once (the loop wakes a little late at most)


async def test_a_429_in_one_process_pauses_the_others(
    coordinations: list[RedisCoordination],
) -> None:
    """Retry-After: 1 seen by one budget holds another one's callers back for a second."""
    first, second = (c._budgets("ws", PlanTier.TITANIUM, 0.95) for c in coordinations[:2])
    await first.acquire("runs")
    await second.acquire("runs")
    loop = asyncio.get_running_loop()
    refused = loop.time()
    first.feedback("runs", response(429, {"retry-after": "1"}))
    await asyncio.sleep(0.05)  # the 429 reaches Redis
    await second.acquire("runs")
    assert loop.time() - refused >= 0.95
    assert second.snapshot("runs").current_rate == pytest.approx(570 * 0.75)
    assert first.snapshot("runs").rate_limited == 1


async def test_a_429_holds_this_process_back_before_redis_has_it(
    coordinations: list[RedisCoordination],
) -> None:
    """The refused process waits out the pause even for a caller that asks right after it."""
    budgets = coordinations[0]._budgets("ws", PlanTier.TITANIUM, 0.95)
    await budgets.acquire("runs")
    loop = asyncio.get_running_loop()
    refused = loop.time()
    budgets.feedback("runs", response(429, {"retry-after": "1"}))
    await budgets.acquire("runs")
    assert loop.time() - refused >= 1.0
    assert budgets.snapshot("runs").paused_until is None


async def test_a_cancelled_caller_gives_its_slot_back(
    coordinations: list[RedisCoordination],
) -> None:
    """A caller cancelled while it sleeps frees its slot: the next caller goes in its place."""
    budgets = coordinations[0]._budgets("ws", PlanTier.BRONZE, 0.95)  # 1.05 s apart
    loop = asyncio.get_running_loop()
    await budgets.acquire("runs")
    waiting = asyncio.create_task(budgets.acquire("runs"))
    await asyncio.sleep(0.2)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await asyncio.sleep(0.1)  # the task gives it back
    asked = loop.time()
    await budgets.acquire("runs")
    assert loop.time() - asked < 0.9  # the freed slot, not one after it (1.05 s later)


async def test_closing_leaves_no_task_behind(redis_url: str) -> None:
    """aclose stops the budget's background task and leaves the members set; twice is fine."""
    coordination = RedisCoordination(redis_url)
    budgets = coordination._budgets("ws", PlanTier.TITANIUM, 0.95)
    await budgets.acquire("runs")
    budgets.feedback("runs", response(200, {"x-ratelimit-remaining": "500"}))
    await asyncio.sleep(0.2)
    members = coordination.key("ws", "members")
    assert await coordination.redis.zcard(members) == 1
    before = {t for t in asyncio.all_tasks() if "Redis budget" in t.get_name()}
    assert before
    await budgets.aclose()
    await budgets.aclose()
    assert all(task.done() for task in before)
    assert await coordination.redis.zcard(members) == 0
    await coordination.aclose()


async def test_budgets_are_one_object_per_loop_and_workspace(redis_url: str) -> None:
    """The same workspace gets the same budgets in a loop; another workspace others."""
    coordination = RedisCoordination(redis_url)
    first = coordination._budgets("ws", PlanTier.GOLD, 0.95)
    assert coordination._budgets("ws", PlanTier.GOLD, 0.95) is first
    assert coordination._budgets("other", PlanTier.GOLD, 0.95) is not first
    assert isinstance(first, RedisBudgets)
    await coordination.aclose()


# -- Redis failing ----------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, to kill and start again."""
    server = RedisServer()
    with server.running():
        yield server


async def test_degrades_to_a_share_of_the_plan_and_comes_back(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis killed: no error, each of two processes paces at half the plan; back: shared again."""
    caplog.set_level(logging.INFO, logger="edges_async")
    first, second = (
        RedisCoordination(own_redis.url, heartbeat_interval=0.2, retry_interval=0.1)
        for _ in range(2)
    )
    budgets = [c._budgets("ws", PlanTier.TITANIUM, 0.95) for c in (first, second)]
    try:
        for b in budgets:
            await b.acquire("runs")
        await asyncio.sleep(0.3)  # heartbeats: two members
        assert first._processes("ws") == 2

        own_redis.stop(kill=True)
        degraded = await grant_times(budgets[0], "runs", 2.0, 3)
        # 570/min shared by 2: one every 0.21 s in this process.
        assert 7 <= len(degraded) <= 11
        assert not first.healthy
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2  # once per coordination (a process each), not per request
        assert all("does not answer" in w.getMessage() for w in warnings)

        own_redis.start()
        await asyncio.sleep(0.5)  # the task's ping finds it
        assert first.healthy
        shared = await grant_times(budgets[0], "runs", 1.0, 3)
        assert len(shared) >= 8  # the whole workspace's pace: one every 0.105 s
        assert budgets[0].snapshot("runs").current_rate == pytest.approx(570)
        infos = [r for r in caplog.records if "answers again" in r.getMessage()]
        assert len(infos) == 2
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    finally:
        for c in (first, second):
            await c.aclose()


async def test_no_burst_when_redis_comes_back_without_its_data(own_redis: RedisServer) -> None:
    """Redis restarted empty while callers queue in the fallback book: never two streams at once.

    Callers queued in this process's fallback book go back to the shared book
    when Redis answers (they do not drain the fallback book beside it), and
    the new book confirms no slot of the lost one: no second of the run sees
    more grants than the plan's per-second cap (10/s, paced at 9.5/s).
    """
    coordination = RedisCoordination(
        own_redis.url, expected_processes=1, heartbeat_interval=0.2, retry_interval=0.1
    )
    budgets = coordination._budgets("ws", PlanTier.TITANIUM, 0.95)
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def caller() -> None:
        while True:
            await budgets.acquire("runs")
            times.append(loop.time())
            await asyncio.sleep(0.05)  # the request

    tasks = [asyncio.create_task(caller()) for _ in range(30)]
    try:
        await asyncio.sleep(1.0)
        own_redis.stop(kill=True)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(own_redis.start)  # no persistence: an empty Redis
        back = loop.time()
        await asyncio.sleep(2.5)
        assert coordination.healthy
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await coordination.aclose()
    worst = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert worst <= 11
    assert len([t for t in times if back <= t < back + 2.0]) >= 8  # and it goes on


async def test_a_given_client_without_timeouts_degrades_when_redis_stalls(
    own_redis: RedisServer,
) -> None:
    """redis=<client> without socket timeouts, Redis stalled (SIGSTOP): requests degrade, no hang.

    Every Redis call of the budget is bounded by the coordination's
    ``socket_timeout``, whatever the client's own settings.
    """
    client = redis.asyncio.Redis.from_url(own_redis.url)  # redis-py's default: no timeout
    coordination = RedisCoordination(redis=client, socket_timeout=0.3, retry_interval=0.1)
    assert coordination.socket_timeout == 0.3
    budgets = coordination._budgets("ws", PlanTier.TITANIUM, 0.95)
    process = own_redis.process
    assert process is not None
    try:
        await budgets.acquire("runs")
        process.send_signal(signal.SIGSTOP)
        try:
            with anyio.fail_after(3):
                await budgets.acquire("runs")
                await budgets.acquire("runs")
            assert not coordination.healthy
        finally:
            process.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.5)  # the task's ping finds it again
        assert coordination.healthy
    finally:
        with anyio.fail_after(3):
            await coordination.aclose()
        await client.aclose()


async def test_degraded_without_any_count_assumes_alone_and_warns_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis never answered, nothing tells N: the whole plan, and a warning saying so, once."""
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    coordination = RedisCoordination(f"redis://127.0.0.1:{free_port()}/0", retry_interval=0.1)
    budgets = coordination._budgets("ws", PlanTier.TITANIUM, 0.95)
    try:
        times = await grant_times(budgets, "runs", 1.0, 2)
        assert 8 <= len(times) <= 11
        alone = [r for r in caplog.records if "as if it were alone" in r.getMessage()]
        assert len(alone) == 1
    finally:
        await coordination.aclose()


async def test_degraded_uses_web_concurrency_and_expected_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """N is the largest figure known: WEB_CONCURRENCY=2, expected_processes=4 -> a quarter."""
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    coordination = RedisCoordination(
        f"redis://127.0.0.1:{free_port()}/0", expected_processes=4, retry_interval=0.1
    )
    budgets = coordination._budgets("ws", PlanTier.TITANIUM, 0.95)
    try:
        times = await grant_times(budgets, "runs", 1.0, 2)
        assert 2 <= len(times) <= 3  # one every 0.42 s
        assert budgets.snapshot("runs").current_rate == pytest.approx(570)
    finally:
        await coordination.aclose()


async def test_wait_mode_raises_after_its_deadline(caplog: pytest.LogCaptureFixture) -> None:
    """on_redis_error='wait': no request goes; after redis_wait_timeout, CoordinationError."""
    coordination = RedisCoordination(
        f"redis://:s3cret-pass@127.0.0.1:{free_port()}/0",
        on_redis_error="wait",
        redis_wait_timeout=0.5,
        retry_interval=0.1,
    )
    budgets = coordination._budgets("ws", PlanTier.TITANIUM, 0.95)
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        with pytest.raises(CoordinationError, match=r"did not answer for 0\.5 s") as caught:
            await budgets.acquire("runs")
        assert 0.5 <= loop.time() - start < 2.0
        assert "s3cret-pass" not in str(caught.value)
        assert "s3cret-pass" not in caplog.text
        assert budgets.snapshot("runs").granted == 0
    finally:
        await coordination.aclose()


async def test_wait_mode_goes_on_when_redis_comes_back(own_redis: RedisServer) -> None:
    """A request waiting for Redis goes once it answers, within its deadline."""
    coordination = RedisCoordination(
        own_redis.url, on_redis_error="wait", redis_wait_timeout=10, retry_interval=0.1
    )
    budgets = coordination._budgets("ws", PlanTier.TITANIUM, 0.95)
    try:
        await budgets.acquire("runs")
        own_redis.stop(kill=True)
        waiting = asyncio.create_task(budgets.acquire("runs"))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        own_redis.start()
        await asyncio.wait_for(waiting, 5)
        assert coordination.healthy
    finally:
        await coordination.aclose()


# -- real processes ---------------------------------------------------------------


@pytest.mark.timeout(150)
def test_real_processes_share_one_budget_where_per_process_limiters_draw_429s(
    redis_url: str,
) -> None:
    """Three processes on Titanium against a per-second cap: coordinated, no 429 near the plan.

    The same three processes with today's per-process limiter spend three
    times the plan and are refused.
    """
    cells = {}
    for coordinated in (True, False):
        with simulator_process("titanium", "per_second") as base_url:
            cells[coordinated] = run_cell(
                3,
                base_url=base_url,
                redis_url=redis_url if coordinated else None,
                plan="titanium",
                per_second=PlanTier.TITANIUM.requests_per_second,
                seconds=8.0,
            )
    shared = cells[True]
    assert shared.refused == 0
    assert shared.share_of_plan >= 0.85  # 0.95 on an idle machine (headroom)
    assert all(share > 0.15 for share in shared.process_shares)
    assert sum(r.errors for r in shared.results) == 0
    assert cells[False].refused > 0
