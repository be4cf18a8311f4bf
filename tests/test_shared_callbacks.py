"""Callback streams across processes: a callback taken by one receiver is read in any process.

Each client has its own ``RedisCoordination`` (to Redis, a process of its
own) and its own ``CallbackReceiver``; Edges' deliveries are POSTed to one of
them, readers read from another. Real Redis, real time, short.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import redis.asyncio

import edges_async as ea
from edges_async._shared_polling import SharedPolling
from edges_async._shared_run_streams import StreamTiming
from edges_async.callbacks import CallbackReceiver
from edges_async.testing import EdgesSimulator, Workspace

from .redis_server import RedisServer
from .test_callbacks import SECRET, callback_body, posting_to
from .test_shared_polling import Processes

pytestmark = pytest.mark.looptime(False)


@pytest.fixture
async def processes(
    simulator: EdgesSimulator, workspace: Workspace, redis_url: str
) -> AsyncIterator[Processes]:
    async with contextlib.AsyncExitStack() as stack:
        yield Processes(simulator, redis_url, stack)


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Any]:
    """A plain Redis client, to look at what the receivers keep."""
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def new_uid() -> str:
    return str(uuid.uuid4())


def partial(uid: str, *numbers: int, ref: str | None = None) -> dict[str, Any]:
    return callback_body(uid, "RUNNING", ref=ref, results=[{"n": n} for n in numbers])


def final(uid: str, *numbers: int, status: str = "SUCCEEDED") -> dict[str, Any]:
    return callback_body(uid, status, results=[{"n": n} for n in numbers] or None)


async def receivers(processes: Processes, *names: str, **kwargs: Any) -> list[CallbackReceiver]:
    """A receiver per named process (each its own client and coordination)."""
    return [
        CallbackReceiver(await processes.start(name), secret=SECRET, **kwargs) for name in names
    ]


def callback_keys(client: ea.AsyncClient, rest: str) -> str:
    """The key ``edges:{<workspace>}:callbacks:<rest>`` of ``client``'s workspace."""
    assert isinstance(client._poller, SharedPolling)
    return client._poller._keys.callbacks(rest)


async def test_partials_taken_by_one_process_are_read_in_another(
    processes: Processes,
) -> None:
    """Partials land on a; a reader on b gets them in order, waiting for later ones, then ends."""
    receiver_a, receiver_b = await receivers(processes, "a", "b")
    uid = new_uid()
    got: list[int] = []

    async def read() -> None:
        async for result in receiver_b.results(uid):
            got.append(result["n"])  # noqa: PERF401 - read while the stream is open

    with anyio.fail_after(10):
        async with posting_to(receiver_a) as edges, anyio.create_task_group() as group:
            assert (await edges.post("", json=partial(uid, 0, 1))).status_code == 200
            group.start_soon(read)
            await anyio.sleep(0.3)
            assert got == [0, 1]
            await edges.post("", json=partial(uid, 2))
            await edges.post("", json=final(uid, 3))
    assert got == [0, 1, 2, 3]


async def test_two_readers_in_turn_in_two_processes_read_each_result_once(
    processes: Processes,
) -> None:
    """A reader on b leaves mid-event; one on a goes on from there. Two at once: RuntimeError."""
    receiver_a, receiver_b = await receivers(processes, "a", "b")
    uid = new_uid()
    async with posting_to(receiver_a) as edges:
        await edges.post("", json=partial(uid, 0, 1, 2))
        await edges.post("", json=partial(uid, 3))
        await edges.post("", json=final(uid, 4))
    first: list[int] = []
    with anyio.fail_after(10):
        async for result in receiver_b.results(uid):
            first.append(result["n"])
            if len(first) == 1:
                with pytest.raises(RuntimeError, match="already being read"):
                    await anext(receiver_a.results(uid))
            if len(first) == 2:
                break
        rest = [result["n"] async for result in receiver_a.results(uid)]
    assert first == [0, 1]
    assert rest == [2, 3, 4]


async def test_a_full_workspace_buffer_answers_503_and_gives_the_claim_back(
    processes: Processes,
) -> None:
    """Results held for the workspace count against every receiver's bound; a refusal is retried."""
    (receiver_a,) = await receivers(processes, "a", max_buffered_results=3)
    (receiver_b,) = await receivers(processes, "b")
    uid = new_uid()
    late = partial(uid, 2, 3, ref="ref-late")
    async with posting_to(receiver_a) as edges_a, posting_to(receiver_b) as edges_b:
        assert (await edges_b.post("", json=partial(uid, 0, 1))).status_code == 200
        refused = await edges_a.post("", json=late)  # 2 held by b + 2 > a's 3
        assert refused.status_code == 503
        assert refused.headers["Retry-After"]
        stream = receiver_b.results(uid)
        with anyio.fail_after(10):
            assert [await anext(stream), await anext(stream)] == [{"n": 0}, {"n": 1}]
            await anyio.sleep(0.2)  # the read is acknowledged in the background
            again = await edges_a.post("", json=late)  # Edges' redelivery, same callback_ref_uid
            assert (again.status_code, again.json()["duplicate"]) == (200, False)
            await edges_a.post("", json=final(uid))
            assert [result async for result in stream] == [{"n": 2}, {"n": 3}]


async def test_a_late_partial_after_an_unread_final_is_read_before_it(
    processes: Processes,
) -> None:
    """The final lands on a, a redelivered partial on b: a reader on c gets the partial first."""
    receiver_a, receiver_b, receiver_c = await receivers(processes, "a", "b", "c")
    uid = new_uid()
    async with posting_to(receiver_a) as edges_a, posting_to(receiver_b) as edges_b:
        await edges_a.post("", json=final(uid))
        assert (await edges_b.post("", json=partial(uid, 1))).status_code == 200
    with anyio.fail_after(10):
        events = [event async for event in receiver_c.events(uid)]
    assert [(event.is_final, event.results) for event in events] == [
        (False, [{"n": 1}]),
        (True, None),
    ]


async def test_a_reader_of_a_run_read_to_its_end_ends_at_once_in_any_process(
    processes: Processes,
) -> None:
    """Read to its end on b: a reader on a ends at once; a later partial is read once, then ends."""
    receiver_a, receiver_b = await receivers(processes, "a", "b")
    uid = new_uid()
    async with posting_to(receiver_a) as edges:
        await edges.post("", json=final(uid, status="FAILED"))
        with anyio.fail_after(10):
            assert [event.is_final async for event in receiver_b.events(uid)] == [True]
        await anyio.sleep(0.2)  # b lets go of the run in the background
        with anyio.fail_after(1):
            assert [event async for event in receiver_a.events(uid)] == []
        await edges.post("", json=partial(uid, 7))
        with anyio.fail_after(5):
            assert [result async for result in receiver_b.results(uid)] == [{"n": 7}]
            await anyio.sleep(0.2)
            assert [result async for result in receiver_a.results(uid)] == []


async def test_redis_holds_nothing_of_a_run_once_read(processes: Processes, raw: Any) -> None:
    """Held in Redis until read; then only the end marker (expiring) and zero totals remain."""
    receiver_a, receiver_b = await receivers(processes, "a", "b")
    client = await processes.start("looker")
    uid = new_uid()
    async with posting_to(receiver_a) as edges:
        await edges.post("", json=partial(uid, 0, 1))
        await edges.post("", json=partial(uid, 2))
        await edges.post("", json=final(uid, 3))
    assert await raw.xlen(callback_keys(client, uid)) == 2
    assert await raw.xlen(callback_keys(client, f"{uid}:finals")) == 1
    held = await raw.hgetall(callback_keys(client, "buffered"))
    assert int(held[b"results"]) == 4
    assert int(held[b"bytes"]) > 0
    with anyio.fail_after(10):
        assert len([result async for result in receiver_b.results(uid)]) == 4
    await anyio.sleep(0.3)  # the reader's last acknowledgement and release
    keys = sorted([key.decode() async for key in raw.scan_iter(match="edges:*:callbacks:*")])
    ended = callback_keys(client, f"{uid}:ended")
    assert keys == sorted([callback_keys(client, "buffered"), ended])
    assert 0 < await raw.ttl(ended) <= 86_400
    held = await raw.hgetall(callback_keys(client, "buffered"))
    assert held.keys() >= {b"bytes", b"results"}
    assert {int(value) for value in held.values()} == {0}


async def test_unread_callbacks_nobody_touches_lapse_and_free_the_bound(
    processes: Processes, raw: Any
) -> None:
    """A run left unread past the time kept is dropped by the next callback any process takes."""
    (receiver,) = await receivers(processes, "a", max_buffered_results=3)
    receiver._shared_streams._timing = StreamTiming(keep=1.0)  # type: ignore[union-attr]
    client = await processes.start("looker")
    forgotten, uid = new_uid(), new_uid()
    async with posting_to(receiver) as edges:
        assert (await edges.post("", json=partial(forgotten, 0, 1, 2))).status_code == 200
        assert await raw.xlen(callback_keys(client, forgotten)) == 1
        assert (await edges.post("", json=partial(uid, 0))).status_code == 503  # full
        await anyio.sleep(2.1)
        assert (await edges.post("", json=partial(uid, 0))).status_code == 200
    assert not await raw.exists(callback_keys(client, forgotten))
    held = await raw.hgetall(callback_keys(client, "buffered"))
    assert int(held[b"results"]) == 1


async def test_with_redis_down_callbacks_stay_in_the_process_for_its_readers(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Redis killed: a takes a partial (200, not 500) and its reader reads it; then Redis again."""
    server = RedisServer()
    server.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            procs = Processes(simulator, server.url, stack)
            receiver_a, receiver_b = await receivers(procs, "a", "b")
            uid = new_uid()
            server.stop(kill=True)
            async with posting_to(receiver_a) as edges_a:
                assert (await edges_a.post("", json=partial(uid, 0))).status_code == 200
            stream = receiver_a.results(uid)
            with anyio.fail_after(10):
                assert await anext(stream) == {"n": 0}
                server.start()
                async with posting_to(receiver_b) as edges_b:
                    assert (await edges_b.post("", json=partial(uid, 1))).status_code == 200
                    assert (await edges_b.post("", json=final(uid, 2))).status_code == 200
                assert [result async for result in stream] == [{"n": 1}, {"n": 2}]
    finally:
        server.stop()
