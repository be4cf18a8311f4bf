"""Waiting across processes: one leader polls for all, every process hears its runs end.

Each client here has its own ``RedisCoordination`` (its own Redis connection
and process token): to Redis they are separate processes. They share one
simulator in-process and one real Redis, in real time (short runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest

import edges_async as ea
from edges_async._redis_keys import SharedTiming
from edges_async._run_events import RunResumed
from edges_async._shared_polling import SharedPolling
from edges_async.callbacks import DEFAULT_SECRET_HEADER, CallbackReceiver
from edges_async.testing import EdgesSimulator, NoRateLimit, RunScript, Workspace

from .conftest import API_KEY
from .redis_server import RedisServer
from .test_callbacks import SECRET, callback_body, status_polls

pytestmark = pytest.mark.looptime(False)

# Quick to notice and refresh; the lease as long as the default, so that a
# renewal late on a loaded machine never lets a second process lead.
FAST = SharedTiming(lease=10.0, lease_try=0.2, interest=4.0, refresh=1.0, sync=0.3, retry=0.2)


def ending(status: str, at: float) -> RunScript:
    return RunScript(steps=(("RUNNING", 0.0), (status, at)), outputs=2)


class Processes:
    """Clients standing for processes: each its own coordination, all on one simulator."""

    def __init__(self, simulator: EdgesSimulator, redis_url: str, stack: contextlib.AsyncExitStack):
        self.simulator = simulator
        self.redis_url = redis_url
        self.stack = stack
        self.sent: Counter[str] = Counter()  # requests by process name
        self.feed_reads: Counter[str] = Counter()  # change feed requests by process name

    async def start(self, name: str, **kwargs: Any) -> ea.AsyncClient:
        """A client named ``name`` (its requests counted under that name), opened."""

        async def count(request: httpx.Request) -> None:
            self.sent[name] += 1
            if b"sort=-updated_at" in request.url.query:
                self.feed_reads[name] += 1

        http = await self.stack.enter_async_context(
            httpx.AsyncClient(
                transport=self.simulator.transport(), event_hooks={"request": [count]}
            )
        )
        coordination = ea.RedisCoordination(self.redis_url)
        client: ea.AsyncClient = ea.AsyncClient(
            API_KEY,
            http_client=http,
            coordination=coordination,
            limiter=kwargs.pop("limiter", NoRateLimit()),
            **kwargs,
        )
        assert isinstance(client._poller, SharedPolling)
        client._poller._timing = FAST
        await self.stack.enter_async_context(client)
        return client


@pytest.fixture
async def processes(
    simulator: EdgesSimulator, workspace: Workspace, redis_url: str
) -> AsyncIterator[Processes]:
    async with contextlib.AsyncExitStack() as stack:
        yield Processes(simulator, redis_url, stack)


def run_ending(simulator: EdgesSimulator, workspace: Workspace, status: str, at: float) -> str:
    return simulator.add_run(workspace, script=ending(status, at)).uid


def polls(simulator: EdgesSimulator) -> int:
    return sum(1 for r in simulator.requests if r.path.startswith("/v1/runs"))


async def test_one_process_polls_for_all_and_each_hears_its_runs(
    processes: Processes, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Three processes wait for overlapping runs: each gets its own, one of them polls."""
    uids = [run_ending(simulator, workspace, "SUCCEEDED", 0.5 + i * 0.2) for i in range(4)]
    a, b, c = [await processes.start(name) for name in "abc"]
    got: dict[str, list[str]] = {}

    async def wait(name: str, client: ea.AsyncClient, wanted: list[str]) -> None:
        runs = await client.wait_for_runs(wanted, timeout=10)
        got[name] = [run.uid for run in runs]
        assert all(run.status is ea.RunStatus.SUCCEEDED for run in runs)
        assert all(run.output_count == 2 for run in runs)  # the full run, not a skeleton

    async with anyio.create_task_group() as group:
        group.start_soon(wait, "a", a, uids[:2])
        group.start_soon(wait, "b", b, uids[1:])
        group.start_soon(wait, "c", c, uids)
    assert got == {"a": uids[:2], "b": uids[1:], "c": uids}
    pollers = [name for name, sent in processes.sent.items() if sent]
    assert len(pollers) == 1, processes.sent


async def test_the_leader_reads_the_change_feed_once_for_every_process(
    processes: Processes, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Three processes wait for 80 runs each: 240 watched, so one leader reads the feed for all."""
    uids = [
        run_ending(simulator, workspace, "SUCCEEDED", 1.0 + (i % 40) * 0.05) for i in range(240)
    ]
    clients = [await processes.start(name, plan="titanium") for name in "abc"]
    got: dict[int, list[ea.Run]] = {}

    async def wait(index: int) -> None:
        got[index] = await clients[index].wait_for_runs(uids[index::3], timeout=20)

    async with anyio.create_task_group() as group:
        for index in range(3):
            group.start_soon(wait, index)
    for index in range(3):
        assert [run.uid for run in got[index]] == uids[index::3]
        assert all(
            run.status is ea.RunStatus.SUCCEEDED and run.output_count == 2 for run in got[index]
        )
    readers = [name for name, reads in processes.feed_reads.items() if reads]
    assert len(readers) == 1, processes.feed_reads  # alone, no process waits for over 100
    assert [name for name, sent in processes.sent.items() if sent] == readers


async def test_a_wait_that_starts_after_the_run_ended_returns_without_a_request(
    processes: Processes, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """The leader keeps ended runs a day: a late waiter in another process reads it there."""
    uid = run_ending(simulator, workspace, "FAILED", 0.2)
    first = await processes.start("first")
    assert (await first.wait_for_run(uid, timeout=10)).status is ea.RunStatus.FAILED
    late = await processes.start("late")
    with anyio.fail_after(2):
        run = await late.wait_for_run(uid)
    assert run.status is ea.RunStatus.FAILED
    assert run.output_count == 2
    assert processes.sent["late"] == 0


async def test_status_changes_reach_followers_in_every_process_once(
    processes: Processes, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """``on_status_change`` in two processes: the same statuses, each once, in both."""
    script = RunScript(steps=(("QUEUED", 0.0), ("RUNNING", 0.6), ("SUCCEEDED", 1.2)), outputs=1)
    uid = simulator.add_run(workspace, script=script).uid
    seen: dict[str, list[str]] = {"a": [], "b": []}
    a, b = await processes.start("a"), await processes.start("b")

    def recorder(name: str) -> Callable[[ea.Run], None]:
        return lambda run: seen[name].append(str(run.status))

    async with anyio.create_task_group() as group:
        group.start_soon(lambda: a.wait_for_run(uid, timeout=10, on_status_change=recorder("a")))
        group.start_soon(lambda: b.wait_for_run(uid, timeout=10, on_status_change=recorder("b")))
    assert seen["a"] == seen["b"]
    assert seen["a"][0] == "QUEUED"
    assert seen["a"][-1] == "SUCCEEDED"
    assert len(seen["a"]) == len(set(seen["a"]))


async def test_when_the_leader_leaves_another_process_takes_over(
    processes: Processes, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """The polling process closes mid-wait: the other one polls on, its wait ends."""
    uid = run_ending(simulator, workspace, "SUCCEEDED", 2.0)
    leader = await processes.start("leader")
    other = await processes.start("other")
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: leader.wait_for_run(uid, timeout=10))
        await anyio.sleep(0.5)
        assert processes.sent["leader"] > 0
        assert processes.sent["other"] == 0
        group.cancel_scope.cancel()
    await leader.aclose()
    with anyio.fail_after(6):
        run = await other.wait_for_run(uid)
    assert run.status is ea.RunStatus.SUCCEEDED
    assert processes.sent["other"] > 0


async def test_a_failed_wait_reaches_every_process_with_its_type(
    processes: Processes, simulator: EdgesSimulator
) -> None:
    """A run the API never knew: NotFoundError in both processes, from the leader's 404s."""
    policy = ea.PollingPolicy(not_found_grace=0.5)
    a = await processes.start("a", polling=policy)
    b = await processes.start("b", polling=policy)
    missing = "0b6e4f1c-2a3d-4e5f-8a9b-0c1d2e3f4a5b"
    errors: list[ea.NotFoundError] = []

    async def wait(client: ea.AsyncClient) -> None:
        with pytest.raises(ea.NotFoundError) as caught:
            await client.wait_for_run(missing, timeout=10)
        errors.append(caught.value)

    async with anyio.create_task_group() as group:
        group.start_soon(wait, a)
        group.start_soon(wait, b)
    assert [error.status_code for error in errors] == [404, 404]
    assert all(API_KEY not in repr(vars(error)) for error in errors)
    assert len([name for name, sent in processes.sent.items() if sent]) == 1


async def test_closing_a_client_fails_its_own_waits_only(
    processes: Processes, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """A client closed mid-wait: its waiter gets ClientClosedError, the other process waits on."""
    uid = run_ending(simulator, workspace, "SUCCEEDED", 1.0)
    a, b = await processes.start("a"), await processes.start("b")
    outcome: dict[str, object] = {}

    async def wait(name: str, client: ea.AsyncClient) -> None:
        try:
            outcome[name] = (await client.wait_for_run(uid, timeout=10)).status
        except ea.ClientClosedError as exc:
            outcome[name] = exc

    async with anyio.create_task_group() as group:
        group.start_soon(wait, "a", a)
        group.start_soon(wait, "b", b)
        await anyio.sleep(0.3)
        await a.aclose()
    assert isinstance(outcome["a"], ea.ClientClosedError)
    assert outcome["b"] is ea.RunStatus.SUCCEEDED


async def test_redis_down_each_process_polls_its_own_waits_then_hands_back(
    simulator: EdgesSimulator, workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis killed mid-wait: the waits end all the same (polled here), logged once; then shared."""
    caplog.set_level(logging.INFO, "edges_async")
    server = RedisServer()
    server.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            procs = Processes(simulator, server.url, stack)
            a, b = await procs.start("a"), await procs.start("b")
            early = run_ending(simulator, workspace, "SUCCEEDED", 1.5)
            async with anyio.create_task_group() as group:
                group.start_soon(lambda: a.wait_for_run(early, timeout=10))
                group.start_soon(lambda: b.wait_for_run(early, timeout=10))
                await anyio.sleep(0.5)
                server.stop(kill=True)
            failing = [r for r in caplog.records if "Redis failed" in r.getMessage()]
            assert 1 <= len(failing) <= 2  # once per process at most
            server.start()
            later = run_ending(simulator, workspace, "SUCCEEDED", 1.0)
            before = dict(procs.sent)
            await anyio.sleep(1.0)  # both see Redis again
            async with anyio.create_task_group() as group:
                group.start_soon(lambda: a.wait_for_run(later, timeout=10))
                group.start_soon(lambda: b.wait_for_run(later, timeout=10))
            pollers = [name for name in "ab" if procs.sent[name] > before.get(name, 0)]
            assert len(pollers) == 1, procs.sent
    finally:
        server.stop()


async def test_a_callback_taken_by_one_process_reaches_a_waiter_in_another(
    processes: Processes, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Worker a takes a final callback; b, waiting, hears its status within a moment.

    The API still shows the run RUNNING (its end is a minute away), so only
    the callback, through the stream and the leader, can tell b; the leader
    then fetches the run to confirm, and polling goes on since the API
    disagrees (the API decides).
    """
    uid = run_ending(simulator, workspace, "SUCCEEDED", 60.0)
    a = await processes.start("a")
    b = await processes.start("b")
    receiver = CallbackReceiver(a, secret=SECRET)
    heard: list[tuple[str, float]] = []
    edges = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=receiver),
        base_url="https://app.example/edges/callbacks",
        headers={DEFAULT_SECRET_HEADER: SECRET},
    )

    def changed(run: ea.Run) -> None:
        heard.append((str(run.status), anyio.current_time()))

    async def wait() -> None:
        with pytest.raises(ea.WaitTimeoutError):
            await b.wait_for_run(uid, timeout=2, on_status_change=changed)

    async with edges, anyio.create_task_group() as group:
        group.start_soon(wait)
        await anyio.sleep(0.5)
        sent_at = anyio.current_time()
        body = callback_body(uid, "SUCCEEDED", ref="ref-once")
        answers = [await edges.post("", json=body) for _ in range(2)]
    assert [answer.json()["duplicate"] for answer in answers] == [False, True]
    assert [status for status, _ in heard] == ["RUNNING", "SUCCEEDED"]
    assert heard[1][1] - sent_at < 0.5


async def test_a_callback_delivered_to_two_workers_counts_once(
    processes: Processes, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Edges redelivers to another worker: the second one answers 200 as a duplicate."""
    uid = run_ending(simulator, workspace, "SUCCEEDED", 5.0)
    answers = []
    for name in "ab":
        receiver = CallbackReceiver(await processes.start(name), secret=SECRET)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=receiver), base_url="https://app.example/cb"
        ) as edges:
            body = callback_body(uid, "RUNNING", ref="ref-shared")
            answer = await edges.post("", json=body, headers={DEFAULT_SECRET_HEADER: SECRET})
        answers.append(answer.json()["duplicate"])
    assert answers == [False, True]


async def test_an_end_missing_from_the_stream_is_found_in_the_kept_run(
    processes: Processes, simulator: EdgesSimulator, workspace: Workspace, redis_url: str
) -> None:
    """Stream entries trimmed away: the next refresh reads ``run:<uid>`` and ends the wait."""
    import redis.asyncio

    uid = run_ending(simulator, workspace, "STOPPED", 60.0)
    client = await processes.start("only")
    assert isinstance(client._poller, SharedPolling)
    keys = client._poller._keys
    raw = redis.asyncio.Redis.from_url(redis_url)
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: client.wait_for_run(uid, timeout=5))
        await anyio.sleep(0.3)
        # What a leader elsewhere wrote, and a trim took from the stream before we read it.
        await raw.set(keys.run(uid), ea.Run(uid=uid, status="STOPPED").model_dump_json())
    await raw.aclose()
    assert processes.sent["only"] <= 3  # it ended by the kept run, not by polling


async def test_two_clients_of_one_coordination_do_not_both_lead(
    simulator: EdgesSimulator, workspace: Workspace, redis_url: str
) -> None:
    """One RedisCoordination shared by two clients: one polls, each status is told once."""
    uid = run_ending(simulator, workspace, "SUCCEEDED", 1.0)
    coordination = ea.RedisCoordination(redis_url)
    sent: Counter[str] = Counter()
    seen: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for name in "ab":

            async def count(request: httpx.Request, name: str = name) -> None:
                sent[name] += 1

            http = await stack.enter_async_context(
                httpx.AsyncClient(transport=simulator.transport(), event_hooks={"request": [count]})
            )
            client = ea.AsyncClient(
                API_KEY, http_client=http, coordination=coordination, limiter=NoRateLimit()
            )
            assert isinstance(client._poller, SharedPolling)
            client._poller._timing = FAST
            clients.append(await stack.enter_async_context(client))

        async def wait(client: ea.AsyncClient) -> None:
            def changed(run: ea.Run) -> None:
                seen.append(str(run.status))

            await client.wait_for_run(uid, timeout=10, on_status_change=changed)

        async with anyio.create_task_group() as group:
            for client in clients:
                group.start_soon(wait, client)
    assert len([name for name in sent if sent[name]]) == 1, sent
    assert set(Counter(seen).values()) == {2}  # each status once per waiter


async def test_a_new_leader_does_not_tell_a_status_again_and_late_followers_get_it(
    processes: Processes, simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """The leader leaves; its successor's first poll repeats no status; a late follower
    gets the status the first leader saw, at once."""
    script = RunScript(steps=(("QUEUED", 0.0), ("RUNNING", 0.3), ("SUCCEEDED", 3.0)), outputs=1)
    uid = simulator.add_run(workspace, script=script).uid
    leader = await processes.start("leader")
    follower = await processes.start("follower")
    late = await processes.start("late")
    seen: dict[str, list[str]] = {"follower": [], "late": []}

    def recorder(name: str) -> Callable[[ea.Run], None]:
        return lambda run: seen[name].append(str(run.status))

    async def lead() -> None:
        with pytest.raises(ea.ClientClosedError):
            await leader.wait_for_run(uid, timeout=10)

    async with anyio.create_task_group() as group:
        group.start_soon(lead)
        await anyio.sleep(0.1)
        group.start_soon(
            lambda: follower.wait_for_run(uid, timeout=10, on_status_change=recorder("follower"))
        )
        await anyio.sleep(1.0)  # the leader saw RUNNING
        group.start_soon(
            lambda: late.wait_for_run(uid, timeout=10, on_status_change=recorder("late"))
        )
        await anyio.sleep(0.5)
        # The last status the leader saw, without a poll of its own.
        assert seen["late"] == seen["follower"][-1:]
        await leader.aclose()  # another process takes over
    for statuses in seen.values():
        assert len(statuses) == len(set(statuses))  # the successor repeated nothing
        assert statuses[-1] == "SUCCEEDED"
    assert seen["follower"][-len(seen["late"]) :] == seen["late"]
    assert processes.sent["follower"] + processes.sent["late"] > 0  # the successor polled


async def test_damaged_entries_and_kept_runs_end_no_wait(
    processes: Processes, simulator: EdgesSimulator, workspace: Workspace, redis_url: str
) -> None:
    """A foreign entry the reader cannot read, and garbage under run:<uid>, are skipped."""
    import redis.asyncio

    uid = run_ending(simulator, workspace, "SUCCEEDED", 1.0)
    client = await processes.start("a")
    assert isinstance(client._poller, SharedPolling)
    keys = client._poller._keys
    raw = redis.asyncio.Redis.from_url(redis_url)
    await raw.set(keys.run(uid), b"{not json")
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: client.wait_for_run(uid, timeout=10))
        await anyio.sleep(0.3)
        other = "0b6e4f1c-2a3d-4e5f-8a9b-0c1d2e3f4a5b"
        await raw.xadd(keys.events, {"k": "failed", "u": other, "e": "[]"})
        await raw.xadd(keys.events, {"k": "ended", "u": uid, "r": "[1, 2]"})
        await raw.xadd(keys.events, {"x": "y"})
    await raw.aclose()
    assert (await client.wait_for_run(uid, timeout=1)).status is ea.RunStatus.SUCCEEDED


async def test_a_run_whose_callbacks_a_worker_takes_is_polled_as_a_safety_net_only(
    processes: Processes, simulator: EdgesSimulator
) -> None:
    """Launched by a with a callback its receiver takes, waited for by b: the leader polls
    it as rarely as a lone client would; a run without callbacks is polled all along."""
    a = await processes.start("a")
    b = await processes.start("b")
    receiver = CallbackReceiver(a, secret=SECRET)
    simulator.script_runs(ending("SUCCEEDED", 60.0), ending("SUCCEEDED", 60.0))
    covered = await a.actions.run_async(
        "a", inputs=[{}], callback=receiver.callback("https://app.example/edges/callbacks")
    )
    with pytest.raises(ea.WaitTimeoutError):
        await b.wait_for_run(covered.uid, timeout=3)
    # The first look only (the safety net comes after 30 s).
    assert status_polls(simulator, covered.uid) == 1
    plain = await a.actions.run_async("a", inputs=[{}])
    with pytest.raises(ea.WaitTimeoutError):
        await b.wait_for_run(plain.uid, timeout=3)
    assert status_polls(simulator, plain.uid) >= 2  # polled on


async def test_a_callback_claimed_by_a_worker_that_died_is_taken_by_the_next_delivery(
    processes: Processes,
    simulator: EdgesSimulator,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A claims a callback and dies before keeping it: B answers 503 meanwhile, then takes
    the redelivery once the claim lapses (never a 200 "duplicate" for a callback nobody kept)."""
    monkeypatch.setattr("edges_async._callback_claims.PENDING_SECONDS", 1)
    uid = run_ending(simulator, workspace, "SUCCEEDED", 60.0)
    a, b = await processes.start("a"), await processes.start("b")
    body = callback_body(uid, "RUNNING", ref="ref-orphaned")
    assert isinstance(a._poller, SharedPolling)
    ref = hashlib.blake2b(b"ref-orphaned", digest_size=16).digest()
    assert await a._poller.claim(ref) == "ours"  # ... and A dies here
    receiver = CallbackReceiver(b, secret=SECRET)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=receiver),
        base_url="https://app.example/cb",
        headers={DEFAULT_SECRET_HEADER: SECRET},
    ) as edges:
        busy = await edges.post("", json=body)
        await anyio.sleep(1.2)
        taken = await edges.post("", json=body)
        again = await edges.post("", json=body)
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "5"
    assert taken.json() == {"ok": True, "duplicate": False}
    assert again.json() == {"ok": True, "duplicate": True}


async def test_news_after_the_client_closed_starts_no_task(processes: Processes) -> None:
    """A callback or resume reaching a closed client's shared polling leaves no task behind."""
    client = await processes.start("a")
    poller = client._poller
    assert isinstance(poller, SharedPolling)
    await client.aclose()
    poller._queue(RunResumed("0b6e4f1c-2a3d-4e5f-8a9b-0c1d2e3f4a5b"))
    assert poller._task is None
    assert [t for t in asyncio.all_tasks() if "shared run polling" in t.get_name()] == []
