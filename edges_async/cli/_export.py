"""``edges runs export``: a run's outputs as JSON Lines or CSV, to a file or stdout.

To a file, JSON Lines is ``client.runs.export_outputs``: resumable (progress
kept in ``FILE.part`` and ``FILE.checkpoint``) and atomic (``FILE`` appears
only once complete and checked against the run's ``output_count``).

CSV needs every output's keys before its header, so it is made from a
complete JSON Lines export: the outputs are exported first to a hidden file
beside the target (``.FILE.<run uid>.jsonl``, resumable the same way), then
converted to a temporary file renamed over ``FILE`` in one step; the JSON Lines
file is removed last. Interrupted at any point, the same command goes on where
it stopped, and ``FILE`` is never seen half written. Columns are the outputs'
keys in the order first seen; nested values are written as JSON, nulls as
empty cells.

To stdout nothing is resumable: JSON Lines are streamed as pages arrive, and
CSV is made in a temporary directory first.

Progress (outputs written against the run's ``output_count``) is drawn on
stderr when it is a terminal; a file export's progress is read from the
``.part`` file the SDK appends to.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio
from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from rich.console import RenderableType

    import edges_async as ea

    from ._output import Output

__all__ = ["ExportProgress", "export_run", "jsonl_to_csv"]


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


class ExportProgress:
    """What the export's live display shows: outputs written out of the run's count."""

    def __init__(self, uid: str, total: int | None) -> None:
        self.uid = uid
        self.total = total
        self.written = 0
        self._started = time.monotonic()  # wall time, for display only

    def __rich__(self) -> RenderableType:
        """The display's current frame."""
        elapsed = time.monotonic() - self._started
        rate = self.written / elapsed if elapsed > 0 else 0.0
        row = Table.grid(padding=(0, 2))
        of_total = "?" if self.total is None else f"{self.total:,}"
        cells: list[RenderableType] = [
            ProgressBar(total=self.total, completed=self.written, width=32),
            Text(f"{self.written:,}/{of_total} outputs"),
            Text(f"elapsed {_duration(elapsed)}"),
        ]
        if self.total and rate > 0:
            cells.append(Text(f"ETA {_duration(max(self.total - self.written, 0) / rate)}"))
        cells.append(Text(f"{rate:,.0f}/s"))
        row.add_row(*cells)
        return Group(Text(f"Exporting run {self.uid}"), row)


async def _count_lines(part: Path, progress: ExportProgress) -> None:
    """Follow ``part`` as the SDK appends to it; keep ``progress.written`` at its line count."""
    offset = 0
    while True:
        try:
            size = (await anyio.Path(part).stat()).st_size
            if size < offset:  # started over
                offset, progress.written = 0, 0
            if size > offset:
                async with await anyio.open_file(part, "rb") as file:
                    await file.seek(offset)
                    chunk = await file.read(size - offset)
                offset += len(chunk)
                progress.written += chunk.count(b"\n")
        except FileNotFoundError:  # not made yet, or renamed into place
            pass
        await anyio.sleep(0.2)


async def _export_jsonl_file(
    client: ea.AsyncClient[Any], uid: str, path: Path, progress: ExportProgress
) -> int:
    async with anyio.create_task_group() as following:
        following.start_soon(_count_lines, Path(f"{path}.part"), progress)
        count = await client.runs.export_outputs(uid, path)
        following.cancel_scope.cancel()
    progress.written = count
    return count


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def jsonl_to_csv(source: Path, target: TextIO) -> int:
    """Write the JSON Lines file ``source`` as CSV to ``target``; return the rows written.

    Columns are the keys in the order first seen (an output that is not an
    object goes in a ``value`` column); nested values are JSON, nulls empty.
    """

    def rows() -> Any:
        with source.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    item = json.loads(line)
                    yield item if isinstance(item, dict) else {"value": item}

    columns: dict[str, None] = {}
    for row in rows():
        columns.update(dict.fromkeys(row))
    writer = csv.writer(target)
    writer.writerow(columns)
    count = 0
    for row in rows():
        writer.writerow([_cell(row.get(column)) for column in columns])
        count += 1
    return count


def _replace_with_csv(source: Path, target: Path) -> int:
    """Convert ``source`` to CSV in a temporary file, then rename it over ``target`` at once."""
    # Made by open(), not mkstemp(), so it gets the usual permissions (umask), not 0600.
    temporary = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with temporary.open("x", encoding="utf-8", newline="") as file:
            count = jsonl_to_csv(source, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return count


async def _export_csv_file(
    client: ea.AsyncClient[Any], uid: str, target: Path, progress: ExportProgress
) -> int:
    staged = target.parent / f".{target.name}.{uid}.jsonl"
    finished_before = await anyio.Path(staged).exists()
    finished_before = finished_before and not await anyio.Path(f"{staged}.part").exists()
    if not finished_before:  # else a complete export is there, left by an interrupted conversion
        await _export_jsonl_file(client, uid, staged, progress)
    count = await anyio.to_thread.run_sync(_replace_with_csv, staged, target)
    progress.written = count
    await anyio.Path(staged).unlink()
    return count


async def _stream_jsonl(
    client: ea.AsyncClient[Any], uid: str, output: Output, progress: ExportProgress
) -> int:
    async for item in client.runs.outputs(uid, page_size=500):
        output.json(item)
        progress.written += 1
    return progress.written


async def _stream_csv(
    client: ea.AsyncClient[Any], uid: str, output: Output, progress: ExportProgress
) -> int:
    with tempfile.TemporaryDirectory(prefix="edges-export-") as directory:
        staged = Path(directory) / f"{uid}.jsonl"
        await _export_jsonl_file(client, uid, staged, progress)
        count = jsonl_to_csv(staged, output.stdout)
    output.stdout.flush()
    return count


def _check_writable(path: Path) -> None:
    """Refuse, before any request, a path no export can write (named as given, not staged)."""
    if path.is_dir() or not path.parent.is_dir():
        raise ValueError(f"-o must name a file in an existing directory, got {str(path)!r}")


async def export_run(
    client: ea.AsyncClient[Any],
    uid: str,
    output: Output,
    *,
    path: str | None,
    file_format: str | None,
) -> int:
    """Export every output of run ``uid`` to ``path`` (stdout if ``None``); return the count.

    ``file_format`` is ``"jsonl"`` or ``"csv"``; ``None`` picks CSV for a
    ``.csv`` path and JSON Lines otherwise.
    """
    if file_format is None:
        file_format = "csv" if path is not None and path.lower().endswith(".csv") else "jsonl"
    if path is None and file_format == "csv" and output.json_lines:
        raise ValueError("--json puts one JSON object per line on stdout: CSV needs -o FILE")
    if path is not None:
        _check_writable(Path(path))
    run = await client.runs.get(uid)
    progress = ExportProgress(run.uid, run.output_count)
    async with output.showing(progress):
        if path is None:
            stream = _stream_csv if file_format == "csv" else _stream_jsonl
            count = await stream(client, run.uid, output, progress)
        else:
            export = _export_csv_file if file_format == "csv" else _export_jsonl_file
            count = await export(client, run.uid, Path(path), progress)
    where = "stdout" if path is None else path
    output.message(f"Exported {count} outputs of run {run.uid} to {where} ({file_format}).")
    return count
