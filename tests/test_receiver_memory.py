"""edges_async.callbacks: the receiver's memory stays bounded in bytes under a flood of callbacks.

Callbacks go straight to the receiver's ASGI entry point (no HTTP client in
between), and ``tracemalloc`` measures what the receiver keeps afterwards.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from edges_async.callbacks import CallbackReceiver

SECRET = "s3cret-s3cret-s3cret"


def run_uid(n: int) -> str:
    """The uid of the ``n``-th run of a test."""
    return f"{n:08x}-1111-4111-8111-111111111111"


def callback(
    n: int,
    run: int,
    status: str,
    *,
    results: list[Any] | None = None,
    ref_length: int = 71,
    **fields: Any,
) -> bytes:
    """A compact callback body, as Edges sends it, whose ``callback_ref_uid`` ends with ``-n``.

    Strings that differ between bodies are over 64 characters, so pydantic's
    process-wide cache of short strings does not count as what the receiver keeps.
    """
    body = {
        "callback_ref_uid": f"{'r' * (ref_length - 7)}-{n:06d}",
        "run": {"run_uid": run_uid(run), "batch_uid": "b-1", "status": status},
        "results": results,
        **fields,
    }
    return json.dumps(body, separators=(",", ":")).encode()


async def deliver(receiver: CallbackReceiver, body: bytes) -> int:
    """POST ``body`` to the receiver as Edges would; the status, checking Retry-After on a 503."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [
            (b"x-edges-callback-secret", SECRET.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    # A fresh copy, as a server reads from its socket: what the receiver keeps is traced.
    messages = [{"type": "http.request", "body": bytes(bytearray(body)), "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await receiver(scope, receive, send)
    status: int = sent[0]["status"]
    if status == 503:
        assert int(dict(sent[0]["headers"])[b"retry-after"]) > 0
    return status


@pytest.fixture
def traced() -> Iterator[None]:
    """Trace allocations for the test."""
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def traced_now() -> int:
    """The bytes allocated and still alive, as tracemalloc counts them."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@pytest.mark.usefixtures("traced")
async def test_a_flood_of_partials_gets_503_past_the_byte_bound_and_keeps_within_it() -> None:
    """Partials past ``max_buffered_bytes`` are refused with Retry-After; what is kept fits it."""
    bound = 256 * 1024
    receiver = CallbackReceiver(secret=SECRET, max_buffered_bytes=bound)
    await deliver(receiver, callback(999_999, 99, "FAILED"))  # warm up the parsing path
    bodies = [
        callback(n, n % 8, "RUNNING", results=[{"n": f"{'n' * 64}{n:06d}", "blob": "x" * 900}])
        for n in range(2_000)
    ]
    size = len(bodies[0])
    assert all(len(body) == size for body in bodies)
    before = traced_now()
    statuses = [await deliver(receiver, body) for body in bodies]
    kept = traced_now() - before

    taken = bound // size
    assert statuses == [200] * taken + [503] * (2_000 - taken)
    assert kept <= bound * 3 // 2  # the bodies, and a little bookkeeping around them
    # A final without results is still taken (it ends waits); one with results is not.
    full_final = callback(5_000, 0, "SUCCEEDED", results=[{"n": "final", "blob": "x" * 900}])
    assert await deliver(receiver, full_final) == 503
    for run in range(8):
        assert await deliver(receiver, callback(5_001 + run, run, "SUCCEEDED")) == 200

    read: list[str] = []
    with anyio.fail_after(60):
        for run in range(8):
            read.extend([result["n"] async for result in receiver.results(run_uid(run))])
    assert sorted(read) == [
        f"{'n' * 64}{n:06d}" for n in range(taken)
    ]  # exactly what was taken, nothing dropped
    # Read, the buffer has room again: Edges' retry of a refused partial is taken.
    assert await deliver(receiver, bodies[taken]) == 200


@pytest.mark.usefixtures("traced")
async def test_final_callbacks_are_always_taken_but_kept_small_past_the_byte_bound() -> None:
    """2,000 finals of 4 KiB are all taken; past the bound each keeps under 1 KiB; none hangs."""
    bound = 64 * 1024
    receiver = CallbackReceiver(secret=SECRET, max_buffered_bytes=bound)
    await deliver(receiver, callback(999_999, 9_999, "FAILED"))  # warm up the parsing path
    custom = {"note": "y" * 4096}
    bodies = [callback(n, n, "SUCCEEDED", custom_data=custom, ref_length=200) for n in range(2_000)]
    before = traced_now()
    statuses = [await deliver(receiver, body) for body in bodies]
    kept = traced_now() - before

    assert statuses == [200] * 2_000
    assert kept <= bound + 2_000 * 1024
    with anyio.fail_after(60):
        first = [event async for event in receiver.events(run_uid(0))]
        last = [event async for event in receiver.events(run_uid(1_999))]
    assert [(event.is_final, event.custom_data) for event in first] == [(True, custom)]
    assert [(event.run_uid, event.is_final) for event in last] == [(run_uid(1_999), True)]
    assert last[0].callback_ref_uid == "r" * 193 + "-001999"
    assert last[0].custom_data is None  # kept small: uid, ref and status only


async def test_unread_final_callbacks_never_crowd_out_partial_results() -> None:
    """Finals nobody reads (``on: "final"`` runs) leave the byte bound to partial results."""
    bound = 64 * 1024
    receiver = CallbackReceiver(secret=SECRET, max_buffered_bytes=bound)
    for n in range(200):  # 200 KiB of finals, three times the bound
        body = callback(n, n, "SUCCEEDED", custom_data={"note": "y" * 1024})
        assert await deliver(receiver, body) == 200
    partials = [
        callback(1_000 + n, 1_000, "RUNNING", results=[{"blob": "x" * 1024}]) for n in range(64)
    ]
    statuses = [await deliver(receiver, body) for body in partials]
    taken = statuses.count(200)
    assert statuses == [200] * taken + [503] * (64 - taken)
    assert (taken + 1) * len(partials[0]) > bound * 7 // 8  # the finals hold an eighth at most
