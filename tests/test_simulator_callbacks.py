"""The simulator's callbacks: bodies, timing, chunks, retries, cancels and order, in fake time.

Callbacks go to an in-process Starlette receiver over ``httpx.ASGITransport``,
so fake loop time (looptime) drives the sender; one test uses real loopback
sockets and real time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edges_async.testing import CallbackDelivery, EdgesSimulator, RunScript, Workspace
from edges_async.testing._server import serve_app

from .conftest import API_KEY, SIM_START, raw_http

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

HOOK = "https://hooks.example.com/edges"
STEPS = (("CREATED", 0.0), ("RUNNING", 2.0), ("SUCCEEDED", 12.0))


@dataclass(frozen=True)
class Hit:
    """One POST the receiver got."""

    time: float
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class Receiver:
    """A Starlette app that records callbacks and answers each path from a queue of statuses.

    A path's queue empty (or absent), it answers 200; ``delay`` makes every answer late.
    """

    def __init__(
        self, answers: Mapping[str, Sequence[int]] | None = None, *, delay: float = 0.0
    ) -> None:
        self.hits: list[Hit] = []
        self.arrived = anyio.Event()
        self._answers = {path: deque(codes) for path, codes in (answers or {}).items()}
        self._delay = delay
        self.app = Starlette(routes=[Route("/{path:path}", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        self.hits.append(
            Hit(anyio.current_time(), request.url.path, dict(request.headers), await request.json())
        )
        self.arrived.set()
        if self._delay:
            await anyio.sleep(self._delay)
        queue = self._answers.get(request.url.path)
        return Response(status_code=queue.popleft() if queue else 200)

    def client(self) -> httpx.AsyncClient:
        """An httpx client whose requests this app answers in process."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app))

    def bodies(self, run_uid: str | None = None) -> list[dict[str, Any]]:
        """The bodies received, of one run if given."""
        return [
            hit.body
            for hit in self.hits
            if run_uid is None or hit.body["run"]["run_uid"] == run_uid
        ]


async def launch(
    sim: EdgesSimulator,
    callback: Mapping[str, Any] | None,
    *,
    script: RunScript | None = None,
    inputs: Sequence[Mapping[str, Any]] = ({},),
) -> str:
    """Launch an async run (with ``script``, if given) through the API; its uid."""
    if script is not None:
        sim.script_runs(script)
    body: dict[str, Any] = {"inputs": list(inputs)}
    if callback is not None:
        body["callback"] = dict(callback)
    async with raw_http(sim, API_KEY) as http:
        response = await http.post("/v1/actions/linkedin-extract-people/run/async", json=body)
    assert response.status_code == 200, response.text
    uid: str = response.json()["run_uid"]
    return uid


async def deliver_for(sim: EdgesSimulator, receiver: Receiver, seconds: float) -> None:
    """Deliver callbacks to ``receiver`` for ``seconds`` of (fake) time."""
    async with receiver.client() as http, sim.deliver_callbacks(http):
        await asyncio.sleep(seconds)


def retrying(*delays: float) -> tuple[EdgesSimulator, Workspace]:
    """A seeded simulator that retries callbacks after ``delays``, and its workspace (API_KEY)."""
    sim = EdgesSimulator(start_time=SIM_START, seed=2, callback_retry_delays=delays)
    return sim, sim.add_workspace(api_key=API_KEY)


def attempts(sim: EdgesSimulator) -> list[tuple[float, str, int, int | None]]:
    """(time, status, attempt, status code) of each logged delivery attempt."""
    return [(d.time, d.status, d.attempt, d.status_code) for d in sim.callback_deliveries]


@pytest.mark.parametrize("on", [None, "final"], ids=["default", "final"])
async def test_final_callback_carries_the_documented_body_at_the_terminal_moment(
    simulator: EdgesSimulator, workspace: Workspace, on: str | None
) -> None:
    """on absent or "final": one POST at the terminal step, with the run, input and custom_data."""
    callback: dict[str, Any] = {"url": HOOK, "headers": {"X-Edges-Secret": "s3cret"}}
    if on is not None:
        callback["on"] = on
    first = {"linkedin_profile_url": "https://www.linkedin.com/in/ada", "custom_data": {"crm": 7}}
    uid = await launch(
        simulator,
        callback,
        script=RunScript(steps=STEPS, outputs=5),
        inputs=[first, {"linkedin_profile_url": "https://www.linkedin.com/in/alan"}],
    )
    receiver = Receiver()
    await deliver_for(simulator, receiver, 60)
    [hit] = receiver.hits
    assert (hit.time, hit.path) == (12.0, "/edges")
    assert hit.body == {
        "callback_ref_uid": hit.body["callback_ref_uid"],
        "run": {"run_uid": uid, "batch_uid": hit.body["run"]["batch_uid"], "status": "SUCCEEDED"},
        "input": first,
        "custom_data": {"crm": 7},
        "error": None,
        "results": None,
    }
    assert uuid.UUID(hit.body["callback_ref_uid"]).version == 4
    assert uuid.UUID(hit.body["run"]["batch_uid"]).version == 4
    assert hit.headers["x-edges-secret"] == "s3cret"
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["user-agent"] == "EdgesSimulator"
    assert simulator.callback_deliveries == [
        CallbackDelivery(
            time=12.0,
            run_uid=uid,
            callback_ref_uid=hit.body["callback_ref_uid"],
            url=HOOK,
            status="SUCCEEDED",
            attempt=1,
            status_code=200,
            error=None,
        )
    ]


async def test_failed_run_final_callback_carries_its_error_and_no_custom_data(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """A FAILED run's callback has its last_error; an input without custom_data gives null."""
    failed = RunScript(steps=(("CREATED", 0.0), ("RUNNING", 1.0), ("FAILED", 3.0)), outputs=0)
    await launch(simulator, {"url": HOOK}, script=failed, inputs=[{"q": 1}])
    receiver = Receiver()
    await deliver_for(simulator, receiver, 10)
    [body] = receiver.bodies()
    assert body["run"]["status"] == "FAILED"
    assert body["error"]["label"] == "NO_RESULT"
    assert (body["input"], body["custom_data"], body["results"]) == ({"q": 1}, None, None)


async def test_all_mode_sends_outputs_in_chunks_of_ten_as_they_appear_then_the_final(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """on "all": RUNNING chunks of at most 10 when their last output shows, then the final."""
    uid = await launch(
        simulator, {"url": HOOK, "on": "all"}, script=RunScript(steps=STEPS, outputs=25)
    )
    receiver = Receiver()
    await deliver_for(simulator, receiver, 60)
    # 25 outputs appear linearly over RUNNING (2 s to 12 s): 10 at 6 s, 20 at 10 s, 25 at 12 s.
    assert [(hit.time, hit.body["run"]["status"]) for hit in receiver.hits] == [
        (6.0, "RUNNING"),
        (10.0, "RUNNING"),
        (12.0, "RUNNING"),
        (12.0, "SUCCEEDED"),
    ]
    partials = [body["results"] for body in receiver.bodies()[:3]]
    assert [len(results) for results in partials] == [10, 10, 5]
    async with raw_http(simulator, API_KEY) as http:
        outputs = (await http.get(f"/v1/runs/{uid}/outputs")).json()
    assert [item for results in partials for item in results] == outputs
    assert receiver.bodies()[-1]["results"] is None
    refs = {body["callback_ref_uid"] for body in receiver.bodies()}
    assert len(refs) == 4
    assert len({body["run"]["batch_uid"] for body in receiver.bodies()}) == 1


async def test_each_chunk_goes_out_exactly_when_its_last_output_is_visible(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """At a partial callback's time the outputs route shows its last output, a moment before not."""
    script = RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", 7.0)), outputs=33)
    uid = await launch(simulator, {"url": HOOK, "on": "all"}, script=script)
    receiver = Receiver()
    await deliver_for(simulator, receiver, 10)
    run = simulator.get_run(uid)
    partials = [hit for hit in receiver.hits if hit.body["run"]["status"] == "RUNNING"]
    assert [hit.body["results"][-1]["index"] + 1 for hit in partials] == [10, 20, 30, 33]
    for hit in partials:
        last = hit.body["results"][-1]["index"] + 1
        assert run.output_count_at(hit.time) >= last
        assert run.output_count_at(hit.time - 1e-6) < last


async def test_runs_without_a_callback_get_none(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Only the run that asked for callbacks gets one."""
    quick = RunScript(steps=(("CREATED", 0.0), ("SUCCEEDED", 1.0)), outputs=1)
    await launch(simulator, None, script=quick)
    with_hook = await launch(simulator, {"url": HOOK}, script=quick)
    simulator.add_run(workspace, script=quick)
    receiver = Receiver()
    await deliver_for(simulator, receiver, 30)
    assert [body["run"]["run_uid"] for body in receiver.bodies()] == [with_hook]


async def test_failed_deliveries_are_retried_with_the_same_body_after_the_delays() -> None:
    """Non-2xx answers are retried after each configured delay with the same callback_ref_uid."""
    sim, _ = retrying(0.5, 1.5, 4.0)
    done = RunScript(steps=(("CREATED", 0.0), ("SUCCEEDED", 3.0)), outputs=0)
    await launch(sim, {"url": HOOK}, script=done)
    receiver = Receiver({"/edges": [500, 503]})
    await deliver_for(sim, receiver, 60)
    assert attempts(sim) == [
        (3.0, "SUCCEEDED", 1, 500),
        (3.5, "SUCCEEDED", 2, 503),
        (5.0, "SUCCEEDED", 3, 200),
    ]
    assert [hit.time for hit in receiver.hits] == [3.0, 3.5, 5.0]
    assert len({str(hit.body) for hit in receiver.hits}) == 1
    assert len({d.callback_ref_uid for d in sim.callback_deliveries}) == 1


async def test_the_default_retry_delays_double_from_one_second_then_give_up(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """By default a failing receiver gets 6 attempts, 1, 2, 4, 8 and 16 s apart, then no more."""
    await launch(simulator, {"url": HOOK}, script=RunScript(steps=(("FAILED", 0.0),), outputs=0))
    receiver = Receiver({"/edges": [500] * 100})
    await deliver_for(simulator, receiver, 600)
    assert [(d.time, d.attempt) for d in simulator.callback_deliveries] == [
        (0.0, 1),
        (1.0, 2),
        (3.0, 3),
        (7.0, 4),
        (15.0, 5),
        (31.0, 6),
    ]


async def test_transport_errors_and_timeouts_count_as_failed_attempts() -> None:
    """A connection error and a receiver silent for over 10 s are retried, then given up."""
    sim, workspace = retrying(1.0)
    sim.add_run(workspace, script=RunScript(steps=(("SUCCEEDED", 0.0),)), callback={"url": HOOK})

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http,
        sim.deliver_callbacks(http),
    ):
        await asyncio.sleep(30)
    refused = sim.callback_deliveries
    assert [(d.time, d.attempt, d.status_code) for d in refused] == [(0.0, 1, None), (1.0, 2, None)]
    assert refused[0].error == "ConnectError: connection refused"
    assert not refused[0].delivered

    sim.callback_deliveries.clear()
    sim.add_run(workspace, script=RunScript(steps=(("SUCCEEDED", 0.0),)), callback={"url": HOOK})
    await deliver_for(sim, Receiver(delay=60.0), 100)
    assert [(d.time, d.attempt, d.error) for d in sim.callback_deliveries] == [
        (30.0, 1, "no answer within 10 s"),
        (41.0, 2, "no answer within 10 s"),
    ]


async def test_a_retrying_run_holds_back_no_other_run() -> None:
    """While one receiver fails and waits out a long retry, another run's callback is on time."""
    sim, _ = retrying(100.0)
    first = RunScript(steps=(("CREATED", 0.0), ("SUCCEEDED", 1.0)), outputs=0)
    second = RunScript(steps=(("CREATED", 0.0), ("SUCCEEDED", 5.0)), outputs=0)
    await launch(sim, {"url": "https://hooks.example.com/broken"}, script=first)
    await launch(sim, {"url": HOOK}, script=second)
    receiver = Receiver({"/broken": [500]})
    await deliver_for(sim, receiver, 200)
    assert [(hit.time, hit.path) for hit in receiver.hits] == [
        (1.0, "/broken"),
        (5.0, "/edges"),
        (101.0, "/broken"),
    ]


async def test_a_runs_callbacks_stay_in_order_when_one_is_retried() -> None:
    """A partial being retried holds back that run's later partials and its final, in order."""
    sim, _ = retrying(5.0)
    script = RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", 3.0)), outputs=30)
    await launch(sim, {"url": HOOK, "on": "all"}, script=script)
    receiver = Receiver({"/edges": [500]})
    await deliver_for(sim, receiver, 60)
    assert [(hit.time, hit.body["run"]["status"]) for hit in receiver.hits] == [
        (1.0, "RUNNING"),
        (6.0, "RUNNING"),
        (6.0, "RUNNING"),
        (6.0, "RUNNING"),
        (6.0, "SUCCEEDED"),
    ]
    assert receiver.hits[0].body == receiver.hits[1].body
    indexes = [item["index"] for hit in receiver.hits[1:4] for item in hit.body["results"]]
    assert indexes == list(range(30))


async def test_a_cancelled_run_gets_no_callbacks_after_the_cancel(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """Partials before POST /cancel arrive; nothing after it, neither partials nor a final."""
    script = RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", 100.0)), outputs=100)
    uid = await launch(simulator, {"url": HOOK, "on": "all"}, script=script)
    receiver = Receiver()
    async with (
        receiver.client() as hooks,
        simulator.deliver_callbacks(hooks),
        raw_http(simulator, API_KEY) as http,
    ):
        await asyncio.sleep(35)
        assert (await http.post(f"/v1/runs/{uid}/cancel")).status_code == 200
        await asyncio.sleep(200)
    assert [hit.time for hit in receiver.hits] == [10.0, 20.0, 30.0]
    assert {body["run"]["status"] for body in receiver.bodies()} == {"RUNNING"}


async def test_a_cancel_stops_the_retries_too() -> None:
    """A callback being retried is not attempted again once its run is cancelled."""
    sim, _ = retrying(10.0, 10.0)
    script = RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", 100.0)), outputs=20)
    uid = await launch(sim, {"url": HOOK, "on": "all"}, script=script)
    receiver = Receiver({"/edges": [500] * 10})
    async with (
        receiver.client() as hooks,
        sim.deliver_callbacks(hooks),
        raw_http(sim, API_KEY) as http,
    ):
        await asyncio.sleep(55)  # the first chunk failed at 50 s; its retry is due at 60 s
        assert (await http.post(f"/v1/runs/{uid}/cancel")).status_code == 200
        await asyncio.sleep(200)
    assert [(d.time, d.attempt) for d in sim.callback_deliveries] == [(50.0, 1)]


async def test_runs_launched_during_the_block_are_picked_up_at_their_time(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """A run launched mid-block gets its callback exactly at its terminal moment."""
    receiver = Receiver()
    async with receiver.client() as hooks, simulator.deliver_callbacks(hooks):
        await asyncio.sleep(5)
        done = RunScript(steps=(("CREATED", 0.0), ("SUCCEEDED", 3.0)), outputs=0)
        await launch(simulator, {"url": HOOK}, script=done)
        await asyncio.sleep(0.5)
        await launch(simulator, {"url": HOOK}, script=done)
        await asyncio.sleep(10)
    assert [hit.time for hit in receiver.hits] == [8.0, 8.5]


async def test_callbacks_due_before_the_block_go_out_when_it_starts(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """A run that ended before any deliver_callbacks block gets its callback as one starts."""
    simulator.add_run(
        workspace,
        script=RunScript(steps=(("CREATED", 0.0), ("SUCCEEDED", 1.0))),
        callback={"url": HOOK},
    )
    await asyncio.sleep(30)
    receiver = Receiver()
    await deliver_for(simulator, receiver, 1)
    assert [(hit.time, hit.body["run"]["status"]) for hit in receiver.hits] == [(30.0, "SUCCEEDED")]


async def test_a_callback_cut_short_by_the_block_ending_is_sent_again_by_the_next() -> None:
    """Leaving the block mid-retry keeps the callback; the next block sends it, same ref uid."""
    sim, workspace = retrying(50.0)
    sim.add_run(workspace, script=RunScript(steps=(("SUCCEEDED", 0.0),)), callback={"url": HOOK})
    receiver = Receiver({"/edges": [500]})
    await deliver_for(sim, receiver, 10)
    await deliver_for(sim, receiver, 10)
    assert [(hit.time, hit.body) for hit in receiver.hits] == [
        (0.0, receiver.hits[0].body),
        (10.0, receiver.hits[0].body),
    ]
    assert [d.attempt for d in sim.callback_deliveries] == [1, 1]


async def test_same_moment_deliveries_go_out_together_up_to_64_at_once(
    simulator: EdgesSimulator, workspace: Workspace
) -> None:
    """100 callbacks due at once to a 1-second receiver: 64 POSTs start at once, then the rest."""
    done = RunScript(steps=(("CREATED", 0.0), ("SUCCEEDED", 2.0)), outputs=0)
    for _ in range(100):
        simulator.add_run(workspace, script=done, callback={"url": HOOK})
    receiver = Receiver(delay=1.0)
    await deliver_for(simulator, receiver, 10)
    starts = sorted(d.time for d in simulator.callback_deliveries)
    assert starts == [2.0] * 64 + [3.0] * 36
    assert len({hit.body["run"]["run_uid"] for hit in receiver.hits}) == 100


async def test_a_given_client_stays_open_and_two_blocks_at_once_are_refused(
    simulator: EdgesSimulator,
) -> None:
    """deliver_callbacks leaves a given client open, and refuses to run twice at once."""
    receiver = Receiver()
    async with receiver.client() as hooks:
        async with simulator.deliver_callbacks(hooks):
            with pytest.raises(RuntimeError, match="already"):
                async with simulator.deliver_callbacks(hooks):
                    pass  # pragma: no cover
        assert not hooks.is_closed


async def test_callback_uids_are_reproducible_from_the_seed() -> None:
    """Two simulators with the same seed send the same callback_ref_uid and batch_uid."""

    async def bodies() -> list[dict[str, Any]]:
        sim = EdgesSimulator(start_time=SIM_START, seed=9)
        workspace = sim.add_workspace(api_key=API_KEY)
        script = RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", 1.0)), outputs=12)
        sim.add_run(workspace, script=script, callback={"url": HOOK, "on": "all"})
        receiver = Receiver()
        await deliver_for(sim, receiver, 5)
        return receiver.bodies()

    first, second = await bodies(), await bodies()
    assert [body["callback_ref_uid"] for body in first] == [
        body["callback_ref_uid"] for body in second
    ]
    assert len(first) == 3


@pytest.mark.looptime(False)
async def test_a_callback_reaches_a_receiver_over_real_loopback_sockets() -> None:
    """Over real sockets, with the default client, a final callback arrives within moments.

    The receiver is plain HTTP on 127.0.0.1, so the run is seeded with add_run,
    which does not hold its callback URL to the launch's https-only validation.
    """
    sim = EdgesSimulator(seed=4)
    workspace = sim.add_workspace(api_key=API_KEY)
    receiver = Receiver()
    async with serve_app(receiver.app, host="127.0.0.1", port=0) as base_url:
        origin = base_url.removesuffix("/v1")
        async with sim.deliver_callbacks():
            run = sim.add_run(
                workspace,
                script=RunScript(steps=(("CREATED", 0.0), ("SUCCEEDED", 0.05)), outputs=0),
                inputs=[{"custom_data": "over-the-wire"}],
                callback={"url": f"{origin}/hooks/edges", "headers": {"X-Token": "t"}},
            )
            with anyio.fail_after(5):
                await receiver.arrived.wait()
    [hit] = receiver.hits
    assert hit.path == "/hooks/edges"
    assert hit.headers["x-token"] == "t"
    assert hit.body["run"] == {
        "run_uid": run.uid,
        "batch_uid": hit.body["run"]["batch_uid"],
        "status": "SUCCEEDED",
    }
    assert hit.body["custom_data"] == "over-the-wire"
    # The receiver and the simulator read the same loop clock.
    assert 0.05 <= hit.time - run.created < 1.0
