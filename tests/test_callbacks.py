"""edges_async.callbacks: the receiver's checks, and callbacks ending waits at once (fake time)."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

import edges_async as ea
from edges_async.callbacks import DEFAULT_SECRET_HEADER, CallbackEvent, CallbackReceiver
from edges_async.testing import EdgesSimulator, RunScript, Workspace

from .conftest import ClientFactory

SECRET = "s3cret-s3cret-s3cret"
URL = "https://app.example/edges/callbacks"
_refs = itertools.count()


def callback_body(
    uid: str, status: str, *, ref: str | None = None, results: list[Any] | None = None
) -> dict[str, Any]:
    """A callback body as Edges documents it."""
    return {
        "callback_ref_uid": ref or f"ref-{next(_refs)}",
        "run": {"run_uid": uid, "batch_uid": "b-1", "status": status},
        "input": {"linkedin_profile_url": "https://www.linkedin.com/in/a"},
        "custom_data": {"row": 7},
        "error": None,
        "results": results,
    }


def ending(status: str, at: float) -> RunScript:
    """A run with 3 outputs that ends in ``status`` at ``at`` seconds."""
    return RunScript(steps=(("CREATED", 0.0), ("RUNNING", 1.0), (status, at)), outputs=3)


def status_polls(simulator: EdgesSimulator, uid: str) -> int:
    """How many polls (``/status`` or the ``/runs`` list) asked about ``uid``."""
    return sum(
        1
        for request in simulator.requests
        if request.path.endswith(f"{uid}/status")
        or (request.path == "/v1/runs" and ("uid", uid) in request.query)
    )


async def partial_then_final(edges: httpx.AsyncClient, uid: str, results: list[Any]) -> None:
    """Edges posts a RUNNING callback carrying ``results``, then the final SUCCEEDED one."""
    await edges.post("", json=callback_body(uid, "RUNNING", results=results))
    await edges.post("", json=callback_body(uid, "SUCCEEDED"))


@contextlib.asynccontextmanager
async def posting_to(receiver: CallbackReceiver) -> AsyncIterator[httpx.AsyncClient]:
    """Plays Edges: POSTs to ``receiver`` in process, at ``URL``, with the secret header."""
    transport = httpx.ASGITransport(app=receiver)
    headers = {DEFAULT_SECRET_HEADER: SECRET}
    async with httpx.AsyncClient(transport=transport, base_url=URL, headers=headers) as http:
        yield http


@pytest.fixture
def receiver(client: ea.AsyncClient) -> CallbackReceiver:
    """A receiver handing its callbacks to ``client``."""
    return CallbackReceiver(client, secret=SECRET)


@pytest.fixture
async def edges(receiver: CallbackReceiver) -> AsyncIterator[httpx.AsyncClient]:
    """Plays Edges: POSTs to the receiver in process, with the secret header."""
    async with posting_to(receiver) as http:
        yield http


@dataclass
class Waits:
    """A client waiting for runs of the simulator, and Edges posting their callbacks."""

    client: ea.AsyncClient
    edges: httpx.AsyncClient
    simulator: EdgesSimulator
    workspace: Workspace

    def run_ending(self, status: str, at: float) -> str:
        """The uid of a new run that ends in ``status`` at ``at`` seconds."""
        return self.simulator.add_run(self.workspace, script=ending(status, at)).uid


@pytest.fixture
def waits(
    client: ea.AsyncClient,
    edges: httpx.AsyncClient,
    simulator: EdgesSimulator,
    workspace: Workspace,
) -> Waits:
    """The client, Edges posting to its receiver, and the simulator's workspace."""
    return Waits(client, edges, simulator, workspace)


# -- the receiver's checks -------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "", "s3cret-s3cret-s3creT", SECRET + "x"])
async def test_a_missing_or_wrong_secret_is_401_and_delivers_nothing(
    client: ea.AsyncClient,
    receiver: CallbackReceiver,
    simulator: EdgesSimulator,
    workspace: Workspace,
    secret: str | None,
) -> None:
    """A callback without the right secret header is refused (401) and ends no wait."""
    uid = simulator.add_run(workspace, script=ending("SUCCEEDED", 60.0)).uid
    headers = {} if secret is None else {DEFAULT_SECRET_HEADER: secret}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver)) as http:
        response = await http.post(URL, json=callback_body(uid, "SUCCEEDED"), headers=headers)
    assert response.status_code == 401
    assert SECRET not in response.text
    run = await client.wait_for_run(uid)
    assert anyio.current_time() >= 60.0  # the wait ran to the server's end: nothing delivered
    assert run.action_name is not None


async def test_the_same_callback_delivered_twice_counts_once(
    receiver: CallbackReceiver, edges: httpx.AsyncClient
) -> None:
    """A redelivered callback (same callback_ref_uid) is answered as a duplicate, kept once."""
    uid = "1" * 8 + "-1111-4111-8111-" + "1" * 12
    partial = callback_body(uid, "RUNNING", ref="same", results=[{"n": 1}])
    first = await edges.post("", json=partial)
    again = await edges.post("", json=partial)
    assert (first.status_code, again.status_code) == (200, 200)
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    await edges.post("", json=callback_body(uid, "SUCCEEDED"))
    assert [result async for result in receiver.results(uid)] == [{"n": 1}]


async def test_an_oversized_body_is_refused(client: ea.AsyncClient) -> None:
    """A body over max_body_bytes is refused with 413, with or without a Content-Length."""
    receiver = CallbackReceiver(client, secret=SECRET, max_body_bytes=1000)
    big = callback_body("1" * 8 + "-1111-4111-8111-" + "1" * 12, "RUNNING")
    big["results"] = [{"blob": "x" * 2000}]
    async with posting_to(receiver) as http:
        response = await http.post(URL, json=big)
        assert response.status_code == 413

        # Without a Content-Length, the body is counted as it is read.
        async def chunks() -> AsyncIterator[bytes]:
            data = json.dumps(big).encode()
            for start in range(0, len(data), 256):
                yield data[start : start + 256]

        response = await http.post(URL, content=chunks())
        assert response.status_code == 413


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"run": {"run_uid": "x", "status": "SUCCEEDED"}}',
        b'{"callback_ref_uid": "r"}',
    ],
)
async def test_a_body_that_is_not_a_callback_is_400(edges: httpx.AsyncClient, body: bytes) -> None:
    """A body that is not JSON, or not a callback's shape, is a 400 with a detail."""
    response = await edges.post("", content=body)
    assert response.status_code == 400
    assert "detail" in response.json()


async def test_only_post_is_answered(edges: httpx.AsyncClient) -> None:
    """A GET to the receiver is a 405."""
    response = await edges.get("")
    assert response.status_code == 405


def test_the_receiver_refuses_a_weak_secret_and_never_shows_it() -> None:
    """A secret under 16 characters is a ValueError; a good one never appears in the repr."""
    with pytest.raises(ValueError, match="16 characters"):
        CallbackReceiver(secret="short")
    receiver = CallbackReceiver(secret=SECRET)
    assert SECRET not in repr(receiver)


# -- handing events to waiters ------------------------------------------------------


async def test_a_final_callback_ends_the_wait_at_once_with_the_full_run(
    client: ea.AsyncClient,
    receiver: CallbackReceiver,
    edges: httpx.AsyncClient,
    simulator: EdgesSimulator,
) -> None:
    """A covered run (polled every 30 s) ends at 42 s: the callback ends the wait at once.

    The wait hands out the full run (output_count, timestamps), fetched once
    after the callback, not the callback's skeleton.
    """
    simulator.script_runs(ending("PARTIAL_SUCCEEDED", 42.0))
    run = await client.actions.run_async("a", inputs=[{}], callback=receiver.callback(URL))

    async def deliver_at_the_end() -> None:
        await anyio.sleep(42.0)
        await edges.post("", json=callback_body(run.uid, "PARTIAL_SUCCEEDED"))

    async with anyio.create_task_group() as group:
        group.start_soon(deliver_at_the_end)
        ended = await client.wait_for_run(run.uid)
    assert ended.status is ea.RunStatus.PARTIAL_SUCCEEDED
    assert ended.uid == run.uid
    assert ended.output_count == 3
    assert ended.finished_at is not None
    assert anyio.current_time() == pytest.approx(42.0, abs=0.01)
    assert status_polls(simulator, run.uid) <= 3  # first look, safety net, the fetch


async def test_a_callback_before_the_first_poll(waits: Waits) -> None:
    """A run whose final callback came before anyone waited: one fetch, then the full run."""
    uid = waits.run_ending("FAILED", 5.0)
    await anyio.sleep(5.0)
    await waits.edges.post("", json=callback_body(uid, "FAILED"))
    run = await waits.client.wait_for_run(uid)
    assert run.status is ea.RunStatus.FAILED
    assert run.output_count == 3
    assert status_polls(waits.simulator, uid) == 1
    assert anyio.current_time() == pytest.approx(5.0, abs=0.01)
    assert [r.status for r in await waits.client.wait_for_runs([uid])] == [ea.RunStatus.FAILED]


async def test_a_final_callback_the_api_does_not_show_yet_keeps_polling(waits: Waits) -> None:
    """The fetch after a final callback still shows RUNNING: the API decides, polling goes on."""
    uid = waits.run_ending("SUCCEEDED", 60.0)
    await waits.edges.post("", json=callback_body(uid, "FAILED"))
    run = await waits.client.wait_for_run(uid)
    assert run.status is ea.RunStatus.SUCCEEDED
    assert 60.0 <= anyio.current_time() < 61.0


async def test_a_callback_for_an_unknown_run_is_harmless(waits: Waits) -> None:
    """Callbacks for a run nobody knows are answered 200 and disturb no other wait."""
    stranger = "9" * 8 + "-9999-4999-8999-" + "9" * 12
    for status in ("RUNNING", "SUCCEEDED", "SOMETHING_NEW"):
        response = await waits.edges.post("", json=callback_body(stranger, status))
        assert response.status_code == 200
    uid = waits.run_ending("SUCCEEDED", 3.0)
    run = await waits.client.wait_for_run(uid)
    assert run.status is ea.RunStatus.SUCCEEDED


async def test_status_changes_from_callbacks_reach_on_status_change(waits: Waits) -> None:
    """Callbacks' statuses reach on_status_change; the final one ends the wait at once.

    A partial redelivered right after the final one never turns the status back.
    """
    uid = waits.run_ending("SUCCEEDED", 20.0)
    edges = waits.edges
    seen: list[object] = []

    async def deliver() -> None:
        await anyio.sleep(10)
        await edges.post("", json=callback_body(uid, "RUNNING", results=[{"n": 1}]))
        await anyio.sleep(10)
        await edges.post("", json=callback_body(uid, "SUCCEEDED"))
        await edges.post("", json=callback_body(uid, "RUNNING", results=[{"n": 2}]))

    async with anyio.create_task_group() as group:
        group.start_soon(deliver)
        run = await waits.client.wait_for_run(
            uid, on_status_change=lambda run: seen.append(run.status)
        )
    assert seen[-1] is ea.RunStatus.SUCCEEDED
    assert seen.count(ea.RunStatus.SUCCEEDED) == 1
    assert seen[seen.index(ea.RunStatus.SUCCEEDED) :] == [ea.RunStatus.SUCCEEDED]
    assert run.output_count == 3
    assert anyio.current_time() == pytest.approx(20.0, abs=0.2)


async def test_runs_covered_by_callbacks_are_polled_as_a_safety_net_only(
    client: ea.AsyncClient,
    receiver: CallbackReceiver,
    simulator: EdgesSimulator,
) -> None:
    """Launched with the receiver's callback: polled every 30 s, not 7.6 times a second.

    No callback ever comes here, so polling still notices the end.
    """
    simulator.script_runs(ending("SUCCEEDED", 300.0))
    run = await client.actions.run_async("a", inputs=[{}], callback=receiver.callback(URL))
    ended = await client.wait_for_run(run.uid)
    assert ended.status is ea.RunStatus.SUCCEEDED
    assert status_polls(simulator, run.uid) <= 300 / 30 + 2
    assert 300.0 <= anyio.current_time() <= 331.0


async def test_a_launch_with_another_callback_url_is_polled_as_usual(
    client: ea.AsyncClient,
    receiver: CallbackReceiver,
    simulator: EdgesSimulator,
) -> None:
    """A launch whose callback goes to another URL is polled at the usual pace."""
    simulator.script_runs(ending("SUCCEEDED", 30.0))
    callback = {"url": "https://elsewhere.example/hook", "on": "final"}
    run = await client.actions.run_async("a", inputs=[{}], callback=callback)
    await client.wait_for_run(run.uid)
    assert anyio.current_time() <= 30.5


# -- partial results ------------------------------------------------------------------


async def test_partial_results_stream_per_run_and_end_with_the_run(
    receiver: CallbackReceiver, edges: httpx.AsyncClient
) -> None:
    """Results sent before reading are kept; the stream ends after the final callback."""
    uid = "2" * 8 + "-2222-4222-8222-" + "2" * 12
    other = "3" * 8 + "-3333-4333-8333-" + "3" * 12
    await edges.post("", json=callback_body(uid, "RUNNING", results=[{"n": 0}, {"n": 1}]))
    await edges.post("", json=callback_body(other, "RUNNING", results=[{"n": 99}]))
    got: list[int] = []

    async def read() -> None:
        async for result in receiver.results(uid):
            got.append(result["n"])  # noqa: PERF401 - read while the stream is open

    async with anyio.create_task_group() as group:
        group.start_soon(read)
        await anyio.sleep(1)
        assert got == [0, 1]
        await edges.post("", json=callback_body(uid, "RUNNING", results=[{"n": 2}]))
        await edges.post("", json=callback_body(uid, "SUCCEEDED"))
    assert got == [0, 1, 2]
    other_results = receiver.results(other)
    assert await anext(other_results) == {"n": 99}  # kept apart, still waiting for its reader


async def test_events_carry_custom_data_and_input(
    receiver: CallbackReceiver, edges: httpx.AsyncClient
) -> None:
    """Events keep the callback's custom_data and input, and its run's status."""
    uid = "4" * 8 + "-4444-4444-8444-" + "4" * 12
    await partial_then_final(edges, uid, [{"n": 0}])
    events = [event async for event in receiver.events(uid.upper())]
    assert [event.is_final for event in events] == [False, True]
    assert all(isinstance(event, CallbackEvent) for event in events)
    assert events[0].custom_data == {"row": 7}
    assert events[0].input == {"linkedin_profile_url": "https://www.linkedin.com/in/a"}
    assert events[1].run.status is ea.RunStatus.SUCCEEDED


async def test_a_full_results_buffer_answers_503_so_edges_retries(client: ea.AsyncClient) -> None:
    """Results beyond max_buffered_results get a 503 with Retry-After; the retry is taken."""
    receiver = CallbackReceiver(client, secret=SECRET, max_buffered_results=3)
    uid = "5" * 8 + "-5555-4555-8555-" + "5" * 12
    async with posting_to(receiver) as edges:
        body = callback_body(uid, "RUNNING", ref="r1", results=[{"n": 0}, {"n": 1}])
        assert (await edges.post("", json=body)).status_code == 200
        late = callback_body(uid, "RUNNING", ref="r2", results=[{"n": 2}, {"n": 3}])
        refused = await edges.post("", json=late)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"]
        stream = receiver.results(uid)
        assert [await anext(stream), await anext(stream)] == [{"n": 0}, {"n": 1}]
        again = await edges.post("", json=late)  # Edges retries with the same callback_ref_uid
        assert (again.status_code, again.json()["duplicate"]) == (200, False)
        await edges.post("", json=callback_body(uid, "SUCCEEDED"))
        assert [item async for item in stream] == [{"n": 2}, {"n": 3}]


async def test_a_late_partial_after_an_unread_final_is_read_before_it(
    receiver: CallbackReceiver, edges: httpx.AsyncClient
) -> None:
    """A partial redelivered after a final nobody read yet comes first, and the stream ends."""
    uid = "7" * 8 + "-7777-4777-8777-" + "7" * 12
    await edges.post("", json=callback_body(uid, "SUCCEEDED"))
    late = await edges.post("", json=callback_body(uid, "RUNNING", results=[{"n": 1}]))
    assert late.status_code == 200
    with anyio.fail_after(60):
        events = [event async for event in receiver.events(uid)]
    assert [(event.is_final, event.results) for event in events] == [
        (False, [{"n": 1}]),
        (True, None),
    ]


async def test_a_late_partial_behind_buffered_ones_is_not_dropped(
    receiver: CallbackReceiver, edges: httpx.AsyncClient
) -> None:
    """Partial, final, then a late partial, all before reading: every result is read."""
    uid = "7" * 8 + "-7777-4777-8777-" + "7" * 11 + "8"
    await edges.post("", json=callback_body(uid, "RUNNING", results=[{"n": 0}]))
    await edges.post("", json=callback_body(uid, "PARTIAL_SUCCEEDED", results=[{"n": 1}]))
    await edges.post("", json=callback_body(uid, "RUNNING", results=[{"n": 2}]))
    with anyio.fail_after(60):
        events = [event async for event in receiver.events(uid)]
    assert [event.results for event in events] == [[{"n": 0}], [{"n": 2}], [{"n": 1}]]
    assert [event.is_final for event in events] == [False, False, True]


async def test_a_late_partial_while_the_final_is_being_read_waits_for_the_next_reader(
    receiver: CallbackReceiver, edges: httpx.AsyncClient
) -> None:
    """A partial arriving once a reader holds the final goes to the next reader, which ends."""
    uid = "7" * 8 + "-7777-4777-8777-" + "7" * 11 + "9"
    await edges.post("", json=callback_body(uid, "SUCCEEDED", results=[{"n": 0}]))
    stream = receiver.events(uid)
    assert (await anext(stream)).is_final
    await edges.post("", json=callback_body(uid, "RUNNING", results=[{"n": 1}]))
    assert [event async for event in stream] == []  # it ended with the final
    with anyio.fail_after(60):
        assert [result async for result in receiver.results(uid)] == [{"n": 1}]


async def test_a_late_partial_after_the_final_was_read_goes_to_the_next_reader(
    receiver: CallbackReceiver, edges: httpx.AsyncClient
) -> None:
    """Read to the end, then a redelivered partial: the next call yields it and ends."""
    uid = "8" * 8 + "-8888-4888-8888-" + "8" * 12
    await partial_then_final(edges, uid, [{"n": 0}])
    assert [result async for result in receiver.results(uid)] == [{"n": 0}]
    late = await edges.post("", json=callback_body(uid, "RUNNING", results=[{"n": 1}]))
    assert (late.status_code, late.json()["duplicate"]) == (200, False)
    with anyio.fail_after(60):
        assert [result async for result in receiver.results(uid)] == [{"n": 1}]
        assert [result async for result in receiver.results(uid)] == []


async def test_reading_a_run_whose_final_was_read_ends_at_once(
    receiver: CallbackReceiver, edges: httpx.AsyncClient
) -> None:
    """A second reader of a finished run gets nothing and does not wait."""
    uid = "8" * 8 + "-8888-4888-8888-" + "8" * 11 + "9"
    await edges.post("", json=callback_body(uid, "FAILED"))
    assert [event.is_final async for event in receiver.events(uid)] == [True]
    with anyio.fail_after(60):
        assert [event async for event in receiver.events(uid)] == []
    assert anyio.current_time() < 1.0


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "64"])
def test_the_buffer_bound_in_bytes_is_checked(value: object) -> None:
    """``max_buffered_bytes`` must be an integer >= 1, like the other limits."""
    with pytest.raises(ValueError, match="max_buffered_bytes"):
        CallbackReceiver(secret=SECRET, max_buffered_bytes=value)  # type: ignore[arg-type]


# -- FastAPI ------------------------------------------------------------------------------


async def test_the_receiver_as_a_fastapi_router(receiver: CallbackReceiver) -> None:
    """receiver.router() mounted in FastAPI checks the secret and answers POST only."""
    app = FastAPI()
    app.include_router(receiver.router("/hooks/edges"))
    uid = "6" * 8 + "-6666-4666-8666-" + "6" * 12
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://app.example") as http:
        ok = await http.post(
            "/hooks/edges",
            json=callback_body(uid, "SUCCEEDED"),
            headers={DEFAULT_SECRET_HEADER: SECRET},
        )
        refused = await http.post("/hooks/edges", json=callback_body(uid, "SUCCEEDED"))
        wrong_method = await http.get("/hooks/edges")
    assert (ok.status_code, refused.status_code, wrong_method.status_code) == (200, 401, 405)
    assert [event.run_uid async for event in receiver.events(uid)] == [uid]


async def test_resuming_a_run_forgets_the_end_a_callback_told(waits: Waits) -> None:
    """A BLOCKED callback, then resume: the next wait polls the run again, not the old end."""
    uid = waits.run_ending("BLOCKED", 5.0)
    await anyio.sleep(6)
    await waits.edges.post("", json=callback_body(uid, "BLOCKED"))
    assert (await waits.client.wait_for_run(uid)).status is ea.RunStatus.BLOCKED
    await waits.client.runs.resume(uid)
    run = await waits.client.wait_for_run(uid)
    assert run.status is ea.RunStatus.SUCCEEDED  # the resumed run's own end, polled
    assert run.action_name is not None


async def test_a_final_callback_the_list_does_not_show_then_status_shows_still_ends(
    mock_client: ClientFactory,
) -> None:
    """The confirm poll's list leaves the run out; /status then shows it ended: the wait ends.

    The callback's status must not pass for what the API said: the poller once
    took SUCCEEDED from /status as "no change" after the callback told it, and
    polled that ended run forever.
    """
    uid = "4c3a5f0e-9d1b-4a8e-8a52-6b1f0c2d7e11"
    ended = anyio.Event()
    lists = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal lists
        if request.url.path.endswith("/runs"):
            lists += 1
            return httpx.Response(200, json=[])  # the list leaves the run out
        status = "SUCCEEDED" if ended.is_set() else "RUNNING"
        return httpx.Response(200, json={"uid": uid, "status": status, "output_count": 2})

    client = mock_client(handler)
    receiver = CallbackReceiver(client, secret=SECRET)

    async def deliver() -> None:
        await anyio.sleep(5.0)
        ended.set()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=receiver), base_url=URL
        ) as edges:
            answer = await edges.post(
                "",
                json=callback_body(uid, "SUCCEEDED"),
                headers={DEFAULT_SECRET_HEADER: SECRET},
            )
            assert answer.status_code == 200

    async with anyio.create_task_group() as group:
        group.start_soon(deliver)
        run = await client.wait_for_run(uid, timeout=120)
    assert run.status is ea.RunStatus.SUCCEEDED
    assert lists >= 1  # the confirm went through the list, which left the run out
    assert anyio.current_time() < 60
