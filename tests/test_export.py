"""export_outputs: JSON Lines written atomically, resumable after a crash at any point."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import edges_async as ea
from edges_async import ExportInProgressError, _export
from edges_async.resources import Runs
from edges_async.testing import (
    EdgesSimulator,
    Fault,
    NoRateLimit,
    RecordedRequest,
    RunScript,
    Workspace,
)

from .conftest import API_KEY, RUN_UID
from .test_outputs import Reader


class ProcessKilled(Exception):
    """Stands for the process dying at that point."""


@contextlib.contextmanager
def dies_at(monkeypatch: pytest.MonkeyPatch, step: str, call: int) -> Iterator[None]:
    """The process dies (ProcessKilled) on the ``call``-th run of ``_export.<step>``."""
    real = getattr(_export, step)
    calls = 0

    def step_or_die(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == call:
            raise ProcessKilled
        return real(*args)

    monkeypatch.setattr(_export, step, step_or_die)
    with pytest.raises(ProcessKilled):
        yield
    monkeypatch.setattr(_export, step, real)


@dataclass
class Exports(Reader):
    """A client on the simulator and the file it exports to, ``outputs.jsonl`` in a new folder."""

    target: Path

    async def export(self, run_uid: str, *, page_size: int = 100) -> int:
        """Export ``run_uid`` to ``target``."""
        return await self.client.runs.export_outputs(run_uid, self.target, page_size=page_size)

    def page_requests_since(self, before: int) -> list[RecordedRequest]:
        """The requests for a page of outputs among those after the first ``before``."""
        return [r for r in self.simulator.requests[before:] if r.path.endswith("/outputs")]


@pytest.fixture
def exports(
    client: ea.AsyncClient, simulator: EdgesSimulator, workspace: Workspace, tmp_path: Path
) -> Exports:
    """A client on the simulator, exporting to ``tmp_path / "outputs.jsonl"``."""
    return Exports(client, simulator, workspace, tmp_path / "outputs.jsonl")


def exported_indices(path: Path) -> list[int]:
    return [json.loads(line)["index"] for line in path.read_text(encoding="utf-8").splitlines()]


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


async def test_export_writes_every_output_once(exports: Exports) -> None:
    """The file holds each output once, in order, and nothing else is left beside it."""
    run_uid = await exports.finished_run(1234)
    assert await exports.export(run_uid, page_size=500) == 1234
    assert exported_indices(exports.target) == list(range(1234))
    assert leftovers(exports.target) == []


async def test_export_of_an_empty_run(exports: Exports) -> None:
    """A run without outputs gives an empty file and a count of 0."""
    run_uid = await exports.finished_run(0)
    target = exports.target.with_name("none.jsonl")
    assert await exports.client.runs.export_outputs(run_uid, target) == 0
    assert target.read_text() == ""


async def test_crash_mid_stream_then_rerun_continues(
    exports: Exports, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export killed after two pages resumes from its checkpoint: no loss, no double."""
    run_uid = await exports.finished_run(1000)
    with dies_at(monkeypatch, "_append", call=3):  # before the third page lands
        await exports.export(run_uid)
    assert not exports.target.exists()
    assert leftovers(exports.target) == ["outputs.jsonl.checkpoint", "outputs.jsonl.part"]
    first_requests = len(exports.simulator.requests)
    assert await exports.export(run_uid) == 1000
    assert exported_indices(exports.target) == list(range(1000))
    resumed = exports.page_requests_since(first_requests)
    assert len(resumed) == 8  # pages 3 to 10 only
    assert dict(resumed[0].query).get("cursor")
    assert leftovers(exports.target) == []


async def test_crash_between_a_page_and_its_checkpoint(
    exports: Exports, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page written but not yet checkpointed is dropped on rerun, then written once."""
    run_uid = await exports.finished_run(500)
    with dies_at(monkeypatch, "_save", call=3):  # the third page is in, not recorded
        await exports.export(run_uid)
    part = exports.target.with_name("outputs.jsonl.part")
    assert len(part.read_text().splitlines()) == 300
    assert await exports.export(run_uid) == 500
    assert exported_indices(exports.target) == list(range(500))


async def test_crash_before_the_final_rename(
    exports: Exports, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If only the final rename was missed, the rerun fetches no page again."""
    run_uid = await exports.finished_run(300)
    with dies_at(monkeypatch, "_finish", call=1):
        await exports.export(run_uid)
    before = len(exports.simulator.requests)
    assert await exports.export(run_uid) == 300
    assert not exports.page_requests_since(before)
    assert exported_indices(exports.target) == list(range(300))


async def test_export_of_a_growing_run_reports_the_gap_then_completes(exports: Exports) -> None:
    """A run still adding outputs gives IncompleteExportError; once done, a rerun completes."""
    script = RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", 100.0)), outputs=1000)
    run = exports.simulator.add_run(exports.workspace, script=script)
    await anyio.sleep(20)
    exports.simulator.faults.add(Fault(path=r"/runs/[^/]+$", delay=5.0, times=None))
    with pytest.raises(ea.IncompleteExportError) as caught:
        await exports.export(run.uid)
    assert caught.value.written < caught.value.expected <= 1000
    exports.simulator.faults.clear()
    await anyio.sleep(100)
    assert await exports.export(run.uid) == 1000
    assert exported_indices(exports.target) == list(range(1000))


async def test_export_refuses_bad_arguments(client: ea.AsyncClient, tmp_path: Path) -> None:
    """A malformed uid or page size raises ValueError and writes nothing."""
    with pytest.raises(ValueError, match="UUID"):
        await client.runs.export_outputs("nope", tmp_path / "x.jsonl")
    with pytest.raises(ValueError, match="page_size"):
        await client.runs.export_outputs(
            "4c3a5f0e-9d1b-4a8e-8a52-6b1f0c2d7e11", tmp_path / "x.jsonl", page_size=501
        )
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("where", ["missing/x.jsonl", "."])
async def test_export_refuses_a_path_it_cannot_write_before_any_request(
    where: str, tmp_path: Path
) -> None:
    """A file in a directory that does not exist, or a directory, is a ValueError, sent nothing."""
    server = OutputsServer(10)
    async with runs_served_by(server) as runs:
        with pytest.raises(ValueError, match="existing directory"):
            await runs.export_outputs(RUN_UID, tmp_path / where)
    assert server.requests == []
    assert files_in(tmp_path) == []


class OutputsServer:
    """A MockTransport handler serving ``total`` outputs of RUN_UID in pages of 10.

    The first page asked for is held until ``release`` is set, so that an
    export can be caught in the middle of its work.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.requests: list[httpx.Request] = []
        self.first_page_asked = anyio.Event()
        self.release = anyio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not request.url.path.endswith("/outputs"):
            return httpx.Response(
                200, json={"uid": RUN_UID, "status": "SUCCEEDED", "output_count": self.total}
            )
        if not self.first_page_asked.is_set():
            self.first_page_asked.set()
            await self.release.wait()
        start = int(request.url.params.get("cursor", "0"))
        end = min(start + 10, self.total)
        headers = {}
        if end < self.total:
            headers["X-Pagination-Next"] = (
                f"https://api.edges.run/v1/runs/{RUN_UID}/outputs?limit=10&cursor={end}"
            )
        items = [{"index": index} for index in range(start, end)]
        return httpx.Response(200, json=items, headers=headers)


@contextlib.asynccontextmanager
async def runs_served_by(server: OutputsServer) -> AsyncIterator[Runs]:
    """``runs`` of a client whose requests ``server`` answers, with no rate limit."""
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(server)) as http,
        ea.AsyncClient(API_KEY, http_client=http, limiter=NoRateLimit()) as client,
    ):
        yield client.runs


async def test_a_second_export_to_the_same_path_fails_at_once(tmp_path: Path) -> None:
    """While one export runs, another to the same path raises at once and sends nothing."""
    server = OutputsServer(total=47)
    target = tmp_path / "outputs.jsonl"
    async with runs_served_by(server) as runs, anyio.create_task_group() as tasks:
        counts: list[int] = []

        async def first_export() -> None:
            counts.append(await runs.export_outputs(RUN_UID, target, page_size=10))

        tasks.start_soon(first_export)
        await server.first_page_asked.wait()  # the first export is under way
        sent = len(server.requests)
        with pytest.raises(ExportInProgressError, match="Another export") as caught:
            await runs.export_outputs(RUN_UID, target, page_size=10)
        assert isinstance(caught.value, ea.EdgesError)
        assert len(server.requests) == sent
        server.release.set()
    assert counts == [47]
    assert exported_indices(target) == list(range(47))
    assert leftovers(target) == []
    # The lock went with the first export: the path can be exported to again.
    async with runs_served_by(server) as runs:
        assert await runs.export_outputs(RUN_UID, target, page_size=10) == 47
    assert exported_indices(target) == list(range(47))


async def test_an_export_to_another_path_runs_alongside(tmp_path: Path) -> None:
    """The lock is per path: exports of the same run to two files both complete."""
    server = OutputsServer(total=23)
    server.release.set()
    async with runs_served_by(server) as runs, anyio.create_task_group() as tasks:
        for name in ("a.jsonl", "b.jsonl"):
            tasks.start_soon(runs.export_outputs, RUN_UID, tmp_path / name)
    assert exported_indices(tmp_path / "a.jsonl") == list(range(23))
    assert exported_indices(tmp_path / "b.jsonl") == list(range(23))


@pytest.mark.parametrize("damage", ["deleted", "cut short"])
async def test_a_checkpoint_beyond_its_part_file_starts_over(
    exports: Exports, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """A .part file gone or shorter than its checkpoint says: the export restarts from page 1."""
    run_uid = await exports.finished_run(500)
    with dies_at(monkeypatch, "_append", call=3):  # two pages in and checkpointed
        await exports.export(run_uid)
    part = exports.target.with_name("outputs.jsonl.part")
    if damage == "deleted":
        part.unlink()
    else:
        part.write_bytes(part.read_bytes()[:1000])
    before = len(exports.simulator.requests)
    assert await exports.export(run_uid) == 500
    assert b"\0" not in exports.target.read_bytes()
    assert exported_indices(exports.target) == list(range(500))
    resumed = exports.page_requests_since(before)
    assert len(resumed) == 5  # every page, from the first
    assert "cursor" not in dict(resumed[0].query)
    assert leftovers(exports.target) == []


async def test_a_refused_next_link_is_not_taken_for_the_end_of_an_export(
    exports: Exports,
) -> None:
    """A page whose next link is refused (and carries no cursor) leaves the export unfinished.

    The rerun, once the server behaves, goes on from that page: every output once,
    even when the run reports no output_count to check the file against.
    """
    run_uid = await exports.finished_run(30)
    no_count = {"uid": run_uid, "status": "SUCCEEDED"}
    faults = exports.simulator.faults
    faults.add(Fault(method="GET", path=f"/runs/{run_uid}$", body=no_count, times=None))
    first = await anext(aiter(exports.client.runs.output_pages(run_uid, page_size=10)))
    faults.add(
        Fault(
            path=r"/outputs$",
            body=first.items,
            headers={"X-Pagination-Next": "https://elsewhere.example/v1/steal"},
        )
    )
    with pytest.raises(ea.PaginationError):
        await exports.export(run_uid, page_size=10)
    assert not exports.target.exists()
    assert await exports.export(run_uid, page_size=10) == 30
    assert exported_indices(exports.target) == list(range(30))
