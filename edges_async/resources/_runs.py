"""``client.runs``: read, list, resume and cancel runs."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncGenerator, Iterable
from typing import Any, final

import anyio

from .._export import export_outputs
from .._http import HTTPCore, QueryParams
from .._models import ExecutionMode, Run, RunStatus
from .._pagination import MAX_PAGE_SIZE, OutputsPage, output_pages
from .._params import array_param, check_int_range, check_run_uid, uid_array_param
from .._responses import parse_model, parse_models
from .._run_events import RunEvents, RunResumed

__all__ = ["Runs"]

_MAX_SORT_FIELDS = 10
_MAX_SORT_FIELD_LENGTH = 128
_MAX_LIST_PAGE = 100

UidFilter = str | uuid.UUID | Iterable[str | uuid.UUID] | None


def _sort_params(sort: str | Iterable[str] | None) -> list[tuple[str, str]]:
    pairs = array_param("sort", sort, max_items=_MAX_SORT_FIELDS)
    for _, field in pairs:
        name = field.removeprefix("-")
        if not name or len(field) > _MAX_SORT_FIELD_LENGTH:
            raise ValueError(
                f"sort fields must be names of 1 to {_MAX_SORT_FIELD_LENGTH} characters, "
                f"optionally prefixed with '-', got {field!r}"
            )
    return pairs


@final
class Runs:
    """Runs of the workspace: ``client.runs``."""

    __slots__ = ("_core", "_events")

    def __init__(self, core: HTTPCore, *, events: RunEvents) -> None:
        self._core = core
        self._events = events  # told of each resume: a callback's "it ended" is out of date

    async def get(self, run_uid: str | uuid.UUID) -> Run:
        """The full run object.

        >>> run = await client.runs.get("4c3a5f0e-9d1b-4a8e-8a52-6b1f0c2d7e11")
        >>> run.status, run.output_count
        """
        path = f"/runs/{check_run_uid(run_uid)}"
        return parse_model(Run, await self._core.get(path))

    async def status(self, run_uid: str | uuid.UUID) -> Run:
        """The run from the light ``/status`` endpoint: uid, status and timestamps only."""
        path = f"/runs/{check_run_uid(run_uid)}/status"
        return parse_model(Run, await self._core.get(path))

    async def resume(self, run_uid: str | uuid.UUID) -> Run:
        """Resume a BLOCKED run: its blocked inputs and the run go back to SCHEDULED."""
        uid = check_run_uid(run_uid)
        run = parse_model(Run, await self._core.post(f"/runs/{uid}/resume"))
        self._events.publish(RunResumed(uid))
        return run

    async def cancel(self, run_uid: str | uuid.UUID) -> Run:
        """Cancel an async or scheduled run; no callbacks are sent after this."""
        path = f"/runs/{check_run_uid(run_uid)}/cancel"
        return parse_model(Run, await self._core.post(path))

    def output_pages(
        self,
        run_uid: str | uuid.UUID,
        *,
        page_size: int = 500,
        cursor: str | None = None,
        read_ahead: int = 0,
    ) -> AsyncGenerator[OutputsPage, None]:
        """The run's outputs page by page, following ``X-Pagination-Next``.

        ``page_size`` is 1..500. Pass a saved ``page.next_cursor`` as ``cursor``
        to resume right after that page. Arguments are checked here, before any
        request. A next-page link is followed only when well formed, on the
        base URL's origin and on the same path; any other raises
        ``PaginationError`` once the page carrying it was delivered, with
        ``resume_cursor`` set. Outputs of a LIVE run are refused by the API.
        ``read_ahead`` (0 to 4) fetches that many pages ahead while you work on
        the current one: network and processing overlap, memory stays bounded.

        >>> async for page in client.runs.output_pages(run_uid):
        ...     save(page.items)
        ...     checkpoint(page.next_cursor)
        """
        uid = check_run_uid(run_uid)
        return output_pages(
            self._core, uid, page_size=page_size, cursor=cursor, read_ahead=read_ahead
        )

    def outputs(
        self,
        run_uid: str | uuid.UUID,
        *,
        page_size: int = 500,
        cursor: str | None = None,
        read_ahead: int = 0,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Every output of the run, one dict at a time, fetched page by page.

        Takes the arguments of :meth:`output_pages`.

        >>> async for output in client.runs.outputs(run_uid):
        ...     print(output)
        """
        pages = self.output_pages(
            run_uid, page_size=page_size, cursor=cursor, read_ahead=read_ahead
        )
        return self._iterate_outputs(pages)

    async def export_outputs(
        self, run_uid: str | uuid.UUID, path: str | os.PathLike[str], *, page_size: int = 500
    ) -> int:
        """Write every output of the run to ``path`` as JSON Lines; return how many.

        Safe to interrupt: a rerun after a crash goes on where the last one
        stopped, with no output doubled or skipped (progress is kept beside the
        file in ``<path>.part`` and ``<path>.checkpoint``). ``path`` appears only
        once complete, and the count is checked against the run's
        ``output_count`` (``IncompleteExportError`` if they differ). A path in a
        directory that does not exist, or naming a directory, is refused with
        ``ValueError`` before any request.

        >>> count = await client.runs.export_outputs(run_uid, "outputs.jsonl")
        """
        uid = check_run_uid(run_uid)
        check_int_range("page_size", page_size, 1, MAX_PAGE_SIZE)
        target = anyio.Path(path)
        if await target.is_dir() or not await target.parent.is_dir():
            raise ValueError(f"path must name a file in an existing directory, got {str(path)!r}")
        self._core.check_usable()  # before the disk is touched: nothing is left beside ``path``
        return await export_outputs(self._core, uid, path, page_size=page_size)

    @staticmethod
    async def _iterate_outputs(
        pages: AsyncGenerator[OutputsPage, None],
    ) -> AsyncGenerator[dict[str, Any], None]:
        async with contextlib.aclosing(pages):
            async for page in pages:
                for item in page.items:
                    yield item

    def list(
        self,
        *,
        status: RunStatus | str | Iterable[RunStatus | str] | None = None,
        action_name: str | Iterable[str] | None = None,
        execution_mode: ExecutionMode | str | Iterable[ExecutionMode | str] | None = None,
        uid: UidFilter = None,
        user_uid: UidFilter = None,
        flow_run_id: str | Iterable[str] | None = None,
        sort: str | Iterable[str] | None = None,
        page_size: int = 100,
        max_items: int | None = None,
    ) -> AsyncGenerator[Run, None]:
        """Every run matching the filters, fetched page by page as you iterate.

        Each filter takes one value or several (any of them matches). ``sort``
        takes a field or up to 10, ``-`` first for descending (``"-created_at"``).
        ``page_size`` (1..100) is the number of runs per request; ``max_items``
        stops after that many runs. Arguments are checked here, before any
        request: a bad one raises ``ValueError`` at once.

        >>> async for run in client.runs.list(status=["RUNNING", "QUEUED"], sort="-created_at"):
        ...     print(run.uid, run.status)
        """
        query: QueryParams = [
            *array_param("status", status),
            *array_param("action_name", action_name),
            *array_param("execution_mode", execution_mode),
            *uid_array_param("uid", uid),
            *uid_array_param("user_uid", user_uid),
            *array_param("flow_run_id", flow_run_id),
            *_sort_params(sort),
        ]
        check_int_range("page_size", page_size, 1, _MAX_LIST_PAGE)
        if max_items is not None:
            check_int_range("max_items", max_items, 0)
        return self._iterate_list(query, page_size, max_items)

    async def _iterate_list(
        self, query: QueryParams, page_size: int, max_items: int | None
    ) -> AsyncGenerator[Run, None]:
        # Offset pagination over a list that may grow while we read it: a run
        # inserted ahead of the offset shifts an already seen run into the next
        # page, so runs are de-duplicated by uid within one iteration.
        seen: set[str] = set()
        offset = 0
        while max_items is None or len(seen) < max_items:
            limit = page_size if max_items is None else min(page_size, max_items - len(seen))
            params: QueryParams = [*query, ("limit", limit), ("offset", offset)]
            page = parse_models(Run, await self._core.get("/runs", params))
            for run in page:
                if run.uid in seen:
                    continue
                seen.add(run.uid)
                yield run
                if max_items is not None and len(seen) >= max_items:
                    return
            if len(page) < limit:
                return
            offset += len(page)
