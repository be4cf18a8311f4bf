"""One export at a time per file: an exclusive, non-blocking lock on ``<path>.part``.

Two exports to the same path at once would append the same pages twice to one
``.part`` file. The lock is ``flock(LOCK_EX | LOCK_NB)`` on the ``.part`` file
itself, held for the whole export: a second export fails at once instead of
waiting, and the lock goes with the process (closing the descriptor, or the
process dying, releases it), so a crashed export never leaves it behind.

On a platform without ``fcntl`` (Windows) no lock is taken: concurrent exports
to one path are not detected there.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread

from ._exceptions import ExportInProgressError

if sys.platform != "win32":
    import fcntl

__all__ = ["locked_part"]


def _lock(part: Path) -> int | None:
    """A descriptor of ``part`` (created if missing) holding its lock, or ``None`` if taken."""
    while True:
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        # The export that held the lock may have renamed this file to the
        # target (its last step) before letting go: then the lock is on a file
        # that is no longer ``part``, and the export must lock the new one.
        try:
            held, named = os.fstat(fd), os.stat(part)
            if (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.asynccontextmanager
async def locked_part(part: Path) -> AsyncIterator[None]:
    """Hold the lock of ``part`` while the block runs; ``ExportInProgressError`` if taken."""
    if sys.platform == "win32":  # pragma: no cover - no flock; an open file could not be renamed
        yield
        return
    fd = await anyio.to_thread.run_sync(_lock, part)
    if fd is None:
        raise ExportInProgressError(
            f"Another export to the same file is running ({part} is locked): "
            "wait for it to end, or export to another path."
        )
    try:
        yield
    finally:
        os.close(fd)  # releases the lock
