"""``RunWatcher``: what ``client.watch_runs`` returns.

An async iterator of the runs as they end, and an async context manager that
stops polling the moment its block is left::

    async with client.watch_runs(uids) as runs:
        async for run in runs:
            ...

Polling for the runs it waits for (that no other waiter also waits for) stops
when the watcher is closed: on leaving the ``async with`` block, on
``aclose()``, when every run was yielded, at the deadline, or, for a plain
``async for`` whose watcher is kept nowhere else, when Python finalizes it
after a ``break``. A watcher kept in a variable and left with ``break`` goes
on polling until one of those happens: use the ``async with`` form.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from types import TracebackType
from typing import final

from ._models import Run

__all__ = ["RunWatcher"]


@final
class RunWatcher:
    """The runs of ``client.watch_runs`` as they end; ``async with`` it to stop polling on exit."""

    __slots__ = ("_runs",)

    def __init__(self, runs: AsyncGenerator[Run, None]) -> None:
        self._runs = runs

    def __aiter__(self) -> RunWatcher:
        return self

    async def __anext__(self) -> Run:
        return await self._runs.__anext__()

    async def aclose(self) -> None:
        """Stop waiting: polling for runs nobody else waits for ends now."""
        await self._runs.aclose()

    async def __aenter__(self) -> RunWatcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<RunWatcher {self._runs!r}>"
