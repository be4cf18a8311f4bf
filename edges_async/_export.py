"""Exporting a run's outputs to a JSON Lines file that survives crashes.

Pages are appended to ``<path>.part``; after each one, ``<path>.checkpoint``
records how far the file is good (bytes and outputs) and the cursor of the next
page, written to a temporary file and moved into place, so it is always either
the old or the new state. A rerun truncates ``.part`` to the checkpoint (a page
written after it is dropped, so nothing is doubled) and goes on from its
cursor (nothing is skipped). A checkpoint vouching for more bytes than ``.part``
holds (the file was deleted or cut short) is not trusted: the export starts
over. At the end the count is checked against the run's ``output_count`` and
``.part`` is renamed to ``path`` in one step.

An export holds an exclusive lock on ``.part`` from start to end (see
``_export_lock``): a second export to the same path fails at once.

If the run gained outputs since its last page was read (it was still running),
the last page is read again from its own cursor, once, before giving up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread

from ._exceptions import IncompleteExportError
from ._export_lock import locked_part
from ._http import HTTPCore
from ._models import Run
from ._pagination import output_pages
from ._responses import parse_model

__all__ = ["export_outputs"]


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    """How far ``.part`` is good, and where to go on."""

    run_uid: str
    next_cursor: str | None  # where to go on (None: from the start, or the end if complete)
    complete: bool  # the last page (no next link) is in the file
    count: int
    size: int
    # The last page written, to read it again if the run grew since.
    page_cursor: str | None = None
    count_before: int = 0
    size_before: int = 0

    def rewound(self) -> _Checkpoint:
        """The state before the last page, to read it again."""
        return dataclasses.replace(
            self,
            next_cursor=self.page_cursor,
            complete=False,
            count=self.count_before,
            size=self.size_before,
        )


def _load(checkpoint: Path, run_uid: str) -> _Checkpoint | None:
    try:
        data = json.loads(checkpoint.read_text(encoding="utf-8"))
        state = _Checkpoint(**data)
    except (OSError, ValueError, TypeError):
        return None
    return state if state.run_uid == run_uid else None


def _resume_point(part: Path, checkpoint: Path, run_uid: str) -> _Checkpoint:
    """Where to go on: the checkpoint, or the start if there is none to trust.

    A checkpoint is trusted only if ``.part`` holds at least the bytes it
    vouches for: were the file gone or cut short, truncating it to the
    checkpoint's size would pad it with NUL bytes.
    """
    state = _load(checkpoint, run_uid)
    try:
        held = part.stat().st_size
    except FileNotFoundError:
        held = 0
    if state is not None and held >= state.size:
        return state
    return _Checkpoint(run_uid=run_uid, next_cursor=None, complete=False, count=0, size=0)


def _save(checkpoint: Path, state: _Checkpoint) -> None:
    temporary = checkpoint.with_name(checkpoint.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as file:
        json.dump(dataclasses.asdict(state), file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, checkpoint)


def _truncate(part: Path, size: int) -> None:
    with part.open("ab") as file:
        file.truncate(size)


def _append(part: Path, items: Sequence[dict[str, Any]]) -> int:
    lines = "".join(
        json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n" for item in items
    )
    with part.open("ab") as file:
        file.write(lines.encode("utf-8"))
        file.flush()
        os.fsync(file.fileno())
        return file.tell()


def _finish(part: Path, target: Path, checkpoint: Path) -> None:
    os.replace(part, target)
    with contextlib.suppress(FileNotFoundError):
        checkpoint.unlink()


async def _copy_pages(
    core: HTTPCore, state: _Checkpoint, part: Path, checkpoint: Path, page_size: int
) -> _Checkpoint:
    await anyio.to_thread.run_sync(_truncate, part, state.size)
    pages = output_pages(core, state.run_uid, page_size=page_size, cursor=state.next_cursor)
    async with contextlib.aclosing(pages):
        async for page in pages:
            if page.next_cursor is None and not page.is_last:
                # Its next link was refused and names no cursor to go on from:
                # keep the checkpoint before it, so a rerun reads it again.
                continue
            size = await anyio.to_thread.run_sync(_append, part, page.items)
            state = _Checkpoint(
                run_uid=state.run_uid,
                next_cursor=page.next_cursor,
                complete=page.is_last,
                count=state.count + len(page.items),
                size=size,
                page_cursor=state.next_cursor,
                count_before=state.count,
                size_before=state.size,
            )
            await anyio.to_thread.run_sync(_save, checkpoint, state)
    return state


async def _output_count(core: HTTPCore, run_uid: str) -> int | None:
    """The run's ``output_count`` as the API reports it now."""
    return parse_model(Run, await core.get(f"/runs/{run_uid}")).output_count


async def export_outputs(
    core: HTTPCore, run_uid: str, path: str | os.PathLike[str], *, page_size: int
) -> int:
    """Write every output of ``run_uid`` to ``path`` as JSON Lines; return how many.

    ``run_uid`` is taken as already checked. ``ExportInProgressError`` at once
    if another export to ``path`` is running.
    """
    target = Path(path)
    part = target.with_name(target.name + ".part")
    checkpoint = target.with_name(target.name + ".checkpoint")
    async with locked_part(part):
        state = await anyio.to_thread.run_sync(_resume_point, part, checkpoint, run_uid)
        reported = 0
        for attempt in range(2):
            if not state.complete:
                state = await _copy_pages(core, state, part, checkpoint, page_size)
            expected = await _output_count(core, run_uid)
            if expected is None or expected == state.count:
                await anyio.to_thread.run_sync(_finish, part, target, checkpoint)
                return state.count
            reported = expected
            if attempt == 0:
                state = state.rewound()
                await anyio.to_thread.run_sync(_save, checkpoint, state)
    raise IncompleteExportError(
        f"Exported {state.count} outputs of run {run_uid} but the run reports {reported}; "
        f"{part} and its checkpoint are kept: run the export again to go on.",
        expected=reported,
        written=state.count,
    )
