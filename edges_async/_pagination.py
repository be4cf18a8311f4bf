"""Cursor pagination of run outputs: following ``X-Pagination-Next`` safely."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import httpx

from ._config import same_origin
from ._exceptions import EdgesError, PaginationError
from ._http import HTTPCore, QueryParams, decode_json, invalid_response

__all__ = ["OutputsPage", "iterate_output_pages", "next_link_problem", "next_page_url"]

NEXT_PAGE_HEADER = "X-Pagination-Next"


@dataclass(frozen=True, slots=True)
class OutputsPage:
    """One page of a run's outputs.

    ``next_cursor`` is what to pass as ``cursor=`` to resume right after this
    page (say, after a crash); it is ``None`` on the last page, as is ``next_url``,
    the full URL of the next page as the API sent it.
    """

    items: list[dict[str, Any]]
    next_cursor: str | None
    next_url: str | None

    @property
    def is_last(self) -> bool:
        """Whether no page follows this one."""
        return self.next_url is None


def next_page_url(response: httpx.Response) -> httpx.URL | None:
    """The absolute URL in the response's ``X-Pagination-Next``, or ``None`` on the last page."""
    header = response.headers.get(NEXT_PAGE_HEADER)
    if not header or not header.strip():
        return None
    return response.request.url.join(header.strip())


class _Pages:
    """Fetches pages one after another, judging each next link before following it."""

    __slots__ = ("_core", "_followed", "_params", "_url")

    def __init__(self, core: HTTPCore, run_uid: str, page_size: int, cursor: str | None) -> None:
        self._core = core
        self._url: httpx.URL | None = core.url(f"/runs/{run_uid}/outputs")
        self._params: QueryParams | None = [("limit", page_size)]
        if cursor is not None:
            self._params = [("limit", page_size), ("cursor", cursor)]
        self._followed: set[str] = set()

    async def next(self) -> tuple[OutputsPage, PaginationError | None] | None:
        """The next page and the error that moving past it will raise; ``None`` at the end."""
        if self._url is None:
            return None
        response = await self._core.get(self._url, self._params)
        items = decode_json(response)
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise invalid_response(response, "expected a JSON array of output objects")
        next_url = next_page_url(response)
        page = OutputsPage(
            items=items,
            next_cursor=next_url.params.get("cursor") if next_url else None,
            next_url=str(next_url) if next_url else None,
        )
        self._url, self._params = next_url, None
        return page, self._judge(next_url, response.request.url)

    def _judge(self, next_url: httpx.URL | None, this_url: httpx.URL) -> PaginationError | None:
        problem = next_link_problem(next_url, this_url, self._core.base_url, self._followed)
        self._url = next_url if problem is None else None
        return problem


def next_link_problem(
    next_url: httpx.URL | None, this_url: httpx.URL, base: httpx.URL, followed: set[str]
) -> PaginationError | None:
    """Why following ``next_url`` is unsafe, or ``None`` (then it joins ``followed``).

    A link off the base URL's origin would send the API key there; a link
    seen before means the server is looping.
    """
    if next_url is None:
        return None
    if not same_origin(next_url, base):
        return PaginationError(
            f"The next page is on {next_url.scheme}://{next_url.host}, not on the base "
            f"URL's origin {base.scheme}://{base.host}: refusing to send the API key there."
        )
    key = str(next_url)
    if key in followed or next_url == this_url:
        return PaginationError(f"The API sent the same next page twice ({key}): stopping.")
    followed.add(key)
    return None


async def iterate_output_pages(
    core: HTTPCore, run_uid: str, page_size: int, cursor: str | None, read_ahead: int = 0
) -> AsyncGenerator[OutputsPage, None]:
    """Yield pages from the first (or after ``cursor``) until ``X-Pagination-Next`` is absent.

    An empty page with a next link is not the end: only the header's absence is.
    A page is yielded before its next link is judged, so its items can be kept
    and its cursor saved; moving on then raises ``PaginationError`` if the link
    leaves the base URL's origin (the key is never sent there) or was seen
    before (the server is looping). With ``read_ahead`` > 0, up to that many
    pages are fetched while the caller works on the current one.
    """
    pages = _Pages(core, run_uid, page_size, cursor)
    resume = cursor
    try:
        if read_ahead <= 0:
            while (fetched := await pages.next()) is not None:
                page, problem = fetched
                resume = page.next_cursor
                yield page
                if problem is not None:
                    raise problem
        else:
            async for page in _read_ahead(pages, read_ahead):
                resume = page.next_cursor
                yield page
    except EdgesError as exc:
        exc.resume_cursor = resume
        raise


_END = object()


async def _read_ahead(pages: _Pages, depth: int) -> AsyncGenerator[OutputsPage, None]:
    """Pages from a producer task that stays at most ``depth`` pages ahead of the caller.

    At most ``depth`` pages are fetched or waiting beyond the one the caller
    holds: the producer takes a slot before each request and the caller gives
    it back when it takes the page. Failures reach the caller in order, after
    the pages fetched before them.

    Why a bare task rather than a task group: a task group cannot stay open
    across this generator's ``yield`` (its cancel scope would leak into the
    caller's code). The task is owned all the same: cancelled and awaited in
    ``finally`` when the iteration ends, fails or is closed, and it never fails
    silently, since everything it raises is handed over through the queue.
    """
    queue: asyncio.Queue[object] = asyncio.Queue()
    slots = asyncio.Semaphore(depth)

    async def produce() -> None:
        try:
            while True:
                await slots.acquire()
                fetched = await pages.next()
                if fetched is None:
                    break
                page, problem = fetched
                queue.put_nowait(page)
                if problem is not None:
                    queue.put_nowait(problem)
                    return
        except Exception as exc:  # handed to the caller, in order
            queue.put_nowait(exc)
            return
        queue.put_nowait(_END)

    producer = asyncio.get_running_loop().create_task(produce())
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, OutputsPage)
            slots.release()
            yield item
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
