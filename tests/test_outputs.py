"""Run outputs against the simulator: exactly once, resumable, robust mid-stream, read-ahead."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

import edges_async as ea
from edges_async.testing import EdgesSimulator, Fault, RunScript, WindowKind, Workspace

FINISHED = RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", 1.0)), outputs=0)


def finished_with(outputs: int) -> RunScript:
    """A run that is done a second after it starts, with ``outputs`` outputs."""
    return RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", 1.0)), outputs=outputs)


@dataclass
class Reader:
    """A client reading outputs of runs in the simulator's workspace."""

    client: ea.AsyncClient
    simulator: EdgesSimulator
    workspace: Workspace

    async def finished_run(self, outputs: int) -> str:
        """The uid of a run done with ``outputs`` outputs, once it is done."""
        run = self.simulator.add_run(self.workspace, script=finished_with(outputs))
        await anyio.sleep(2)
        return run.uid

    async def indices(self, run_uid: str, page_size: int, cursor: str | None = None) -> list[int]:
        """The ``index`` of every output of ``run_uid`` (after ``cursor``), in the order read."""
        outputs = self.client.runs.outputs(run_uid, page_size=page_size, cursor=cursor)
        return [item["index"] async for item in outputs]


@pytest.fixture
def reader(client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace) -> Reader:
    """The client on the simulator's workspace."""
    return Reader(client, simulator, workspace)


@pytest.mark.parametrize(
    ("total", "page_size"), [(0, 10), (1, 1), (10, 10), (11, 10), (137, 25), (1000, 500)]
)
async def test_exactly_once_and_resumable_from_every_page_boundary(
    reader: Reader, total: int, page_size: int
) -> None:
    """Every output once, in order; resuming from any page's cursor gives exactly the rest."""
    run_uid = await reader.finished_run(total)
    pages = [page async for page in reader.client.runs.output_pages(run_uid, page_size=page_size)]
    seen = [item["index"] for page in pages for item in page.items]
    assert seen == list(range(total))
    done = 0
    for page in pages:
        done += len(page.items)
        if page.next_cursor is None:
            assert page is pages[-1]
            continue
        rest = await reader.indices(run_uid, page_size, cursor=page.next_cursor)
        assert rest == list(range(done, total))


async def test_transient_errors_mid_stream_lose_and_repeat_nothing(reader: Reader) -> None:
    """A 503, a 429 and a dropped connection mid-stream are retried; each output once."""
    run_uid = await reader.finished_run(2500)
    stream = reader.client.runs.outputs(run_uid, page_size=500)
    first = await anext(stream)
    reader.simulator.faults.add(
        Fault(path=r"/outputs$", status=503, times=1),
        Fault(path=r"/outputs$", status=429, headers={"Retry-After": "2"}, times=1),
        Fault(path=r"/outputs$", drop=True, times=1),
    )
    rest = [item["index"] async for item in stream]
    assert [first["index"], *rest] == list(range(2500))
    assert sum(1 for r in reader.simulator.requests if r.fault is not None) == 3


async def test_run_archived_mid_stream_raises_with_cursor_to_resume(reader: Reader) -> None:
    """A 404 mid-stream (retention passed) raises NotFoundError carrying the resume cursor."""
    age = timedelta(days=90) - timedelta(seconds=30)
    run = reader.simulator.add_run(reader.workspace, script=finished_with(1000), age=age)
    pages = reader.client.runs.output_pages(run.uid, page_size=400)
    first = await anext(pages)
    await anyio.sleep(60)  # the run is now past the 90-day retention
    with pytest.raises(ea.NotFoundError) as caught:
        await anext(pages)
    assert caught.value.resume_cursor == first.next_cursor
    assert caught.value.resume_cursor is not None


async def test_outputs_error_carries_resume_cursor_of_last_delivered_page(reader: Reader) -> None:
    """With outputs(), which hides pages, the error still says where to go on from."""
    run_uid = await reader.finished_run(30)
    got: list[int] = []
    reader.simulator.faults.add(Fault(path=r"/outputs$", status=400, times=None))
    stream = reader.client.runs.outputs(run_uid, page_size=10)
    with pytest.raises(ea.BadRequestError) as caught:
        await anext(stream)
    assert caught.value.resume_cursor is None  # nothing delivered: start again
    reader.simulator.faults.clear()
    pages = reader.client.runs.output_pages(run_uid, page_size=10)
    first = await anext(pages)
    got.extend(item["index"] for item in first.items)
    reader.simulator.faults.add(Fault(path=r"/outputs$", status=400, times=None))
    with pytest.raises(ea.BadRequestError) as second:
        await anext(pages)
    reader.simulator.faults.clear()
    got.extend(await reader.indices(run_uid, 10, cursor=second.value.resume_cursor))
    assert got == list(range(30))


@pytest.mark.parametrize("read_ahead", [1, 2, 4])
async def test_read_ahead_delivers_exactly_once(reader: Reader, read_ahead: int) -> None:
    """Read-ahead changes timing, never content."""
    run_uid = await reader.finished_run(1234)
    got = [
        item["index"]
        async for item in reader.client.runs.outputs(run_uid, page_size=100, read_ahead=read_ahead)
    ]
    assert got == list(range(1234))


async def test_read_ahead_overlaps_network_and_work(reader: Reader) -> None:
    """With 1 s per page on the wire and 1 s of work per page, read-ahead nearly halves the time."""
    run_uid = await reader.finished_run(1000)
    reader.simulator.faults.add(Fault(path=r"/outputs$", delay=1.0, times=None))
    loop = asyncio.get_running_loop()

    async def consume(read_ahead: int) -> float:
        start = loop.time()
        async for _ in reader.client.runs.output_pages(
            run_uid, page_size=100, read_ahead=read_ahead
        ):
            await anyio.sleep(1.0)
        return loop.time() - start

    plain = await consume(0)
    ahead = await consume(1)
    assert plain == pytest.approx(20, abs=1.5)
    assert ahead == pytest.approx(11, abs=1.5)


async def test_leaving_early_stops_the_read_ahead(reader: Reader) -> None:
    """Closing the iteration cancels the prefetch: no request is sent after it."""
    run_uid = await reader.finished_run(5000)
    pages = reader.client.runs.output_pages(run_uid, page_size=100, read_ahead=2)
    await anext(pages)
    await pages.aclose()
    sent = len(reader.simulator.requests)
    await anyio.sleep(60)
    assert len(reader.simulator.requests) == sent
    assert sent <= 4


async def test_bad_read_ahead_is_refused(client: ea.AsyncClient) -> None:
    """read_ahead must be 0 to 4, checked before any request."""
    with pytest.raises(ValueError, match="read_ahead"):
        client.runs.outputs("4c3a5f0e-9d1b-4a8e-8a52-6b1f0c2d7e11", read_ahead=5)


@pytest.mark.looptime(False)
async def test_outputs_over_real_loopback_sockets_survive_a_dropped_connection(
    tmp_path: Path,
) -> None:
    """Over uvicorn on 127.0.0.1, a connection cut mid-response loses and repeats nothing."""
    simulator = EdgesSimulator(window=WindowKind.UNLIMITED)
    workspace = simulator.add_workspace(api_key="loopback-key", plan="titanium")
    run = simulator.add_run(workspace, script=RunScript(steps=(("SUCCEEDED", 0.0),), outputs=3000))
    async with (
        simulator.serve() as base_url,
        ea.AsyncClient(
            "loopback-key",
            plan="titanium",
            base_url=base_url,
            backoff=ea.Backoff(initial=0.01, jitter=0),
        ) as client,
    ):
        stream = client.runs.outputs(run.uid, page_size=500, read_ahead=1)
        first = await anext(stream)
        simulator.faults.add(Fault(path=r"/outputs$", drop=True, times=1))
        rest = [item["index"] async for item in stream]
        target = tmp_path / "loopback.jsonl"
        exported = await client.runs.export_outputs(run.uid, target)
    assert [first["index"], *rest] == list(range(3000))
    assert any(r.fault is not None and r.fault.drop for r in simulator.requests)
    assert exported == 3000


@pytest.mark.parametrize("read_ahead", [1, 3])
async def test_read_ahead_stays_within_its_depth(reader: Reader, read_ahead: int) -> None:
    """While the caller holds a page, no more than read_ahead further pages are requested."""
    run_uid = await reader.finished_run(2000)
    pages = reader.client.runs.output_pages(run_uid, page_size=100, read_ahead=read_ahead)
    for taken in range(1, 4):
        await anext(pages)
        await anyio.sleep(30)  # the caller is slow: let the prefetch run as far as it may
        requested = sum(1 for r in reader.simulator.requests if r.path.endswith("/outputs"))
        assert requested == taken + read_ahead
    await pages.aclose()


@pytest.mark.parametrize("read_ahead", [0, 2])
async def test_malformed_next_link_keeps_the_page_and_resumes_exactly_once(
    reader: Reader, read_ahead: int
) -> None:
    """A page with a malformed next link is kept; resume_cursor then gives exactly the rest."""
    run_uid = await reader.finished_run(30)
    first, *_ = [page async for page in reader.client.runs.output_pages(run_uid, page_size=10)]
    assert first.next_cursor is not None
    broken = f"https://api.edges.run:99999/v1/runs/{run_uid}/outputs?cursor={first.next_cursor}"
    reader.simulator.faults.add(
        Fault(path=r"/outputs$", body=first.items, headers={"X-Pagination-Next": broken})
    )
    got: list[int] = []

    async def keep_indices() -> None:
        async for item in reader.client.runs.outputs(run_uid, page_size=10, read_ahead=read_ahead):
            got.append(item["index"])  # noqa: PERF401 - a comprehension would lose them

    with pytest.raises(ea.PaginationError, match="malformed") as caught:
        await keep_indices()
    assert caught.value.resume_cursor == first.next_cursor
    got.extend(await reader.indices(run_uid, 10, cursor=caught.value.resume_cursor))
    assert got == list(range(30))
