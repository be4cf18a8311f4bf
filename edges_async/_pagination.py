"""Cursor pagination of run outputs: following ``X-Pagination-Next`` safely.

The judge of a next link (:func:`next_link_problem`) serves live answers too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import httpx

from ._config import same_origin
from ._exceptions import EdgesError, PaginationError
from ._http import HTTPCore, QueryParams
from ._params import check_int_range
from ._redaction import scrub
from ._responses import decode_json, invalid_response

__all__ = [
    "MAX_PAGE_SIZE",
    "MAX_READ_AHEAD",
    "OutputsPage",
    "link_cursor",
    "next_link_problem",
    "next_page_url",
    "output_pages",
]

NEXT_PAGE_HEADER = "X-Pagination-Next"
MAX_PAGE_SIZE = 500  # outputs per page, at most
MAX_READ_AHEAD = 4  # pages fetched ahead of the caller, at most


@dataclass(frozen=True, slots=True)
class OutputsPage:
    """One page of a run's outputs.

    ``next_cursor`` is what to pass as ``cursor=`` to resume right after this
    page (say, after a crash); it is ``None`` on the last page, as is ``next_url``,
    the next page's link as the API sent it: the full URL, or the header's text
    when it is not a URL at all (then moving past this page raises
    ``PaginationError``, and ``next_cursor`` is read from the text's query).
    """

    items: list[dict[str, Any]]
    next_cursor: str | None
    next_url: str | None

    @property
    def is_last(self) -> bool:
        """Whether no page follows this one."""
        return self.next_url is None


def next_page_url(response: httpx.Response) -> httpx.URL | str | None:
    """The absolute URL in ``X-Pagination-Next``, ``None`` on the last page.

    A header that does not even parse as a URL comes back as its (stripped)
    text, for :func:`next_link_problem` to refuse; nothing is raised here.
    """
    header = response.headers.get(NEXT_PAGE_HEADER)
    if not header or not header.strip():
        return None
    text: str = header.strip()
    try:
        return response.request.url.join(text)
    except (httpx.InvalidURL, ValueError):
        return text


def link_cursor(link: httpx.URL | str | None) -> str | None:
    """The ``cursor`` in a next link's query, even one that is malformed elsewhere.

    It goes back to the base URL as ``cursor=``, never to the link's host, so a
    refused link still tells where to resume; a cursor with control characters
    in it is not believed.
    """
    if link is None:
        return None
    if isinstance(link, httpx.URL):
        cursor: str | None = link.params.get("cursor")
        return cursor
    query = link.partition("#")[0].partition("?")[2]
    cursor = httpx.QueryParams(query).get("cursor")
    return cursor if cursor and cursor.isprintable() else None


def next_link_problem(
    link: httpx.URL | str | None,
    this_url: httpx.URL,
    route: httpx.URL,
    followed: AbstractSet[str],
) -> PaginationError | None:
    """Why following ``link`` is unsafe, or ``None``; it only judges, recording nothing.

    ``this_url`` is the URL the page came from and ``route`` the URL the
    caller asked for (on the base URL's origin). A link must be a well-formed
    URL, on ``route``'s origin (else the API key would go elsewhere), without
    credentials, on exactly ``route``'s path (compared percent-encoded, so
    ``/outputs/`` or ``/outpu%74s`` is another path), and new: one seen before
    means the server is looping (the caller adds each link it follows to
    ``followed``). Messages never quote a malformed link.
    """
    if link is None:
        return None
    if isinstance(link, str) or not _well_formed(link):
        return PaginationError(
            f"The API sent a malformed next-page link in {NEXT_PAGE_HEADER}: stopping."
        )
    if not same_origin(link, route):
        return PaginationError(
            f"The next page is on {_origin_text(link)}, not on the base URL's origin "
            f"{_origin_text(route)}: refusing to send the API key there."
        )
    if link.userinfo:
        return PaginationError("The next-page link carries credentials: refusing to follow it.")
    if _path(link) != _path(route):
        shown = scrub(_path(link).decode("ascii", "replace"))  # before it is cut
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return PaginationError(
            f"The next page is on the path {shown}, not on "
            f"{_path(route).decode('ascii', 'replace')}: refusing to follow it."
        )
    key = str(link)
    if key in followed or link == this_url:
        return PaginationError(f"The API sent the same next page twice ({key}): stopping.")
    return None


def _well_formed(url: httpx.URL) -> bool:
    """Whether the parts the judge reads can be read: a decodable host, a port in range."""
    try:
        url.host  # noqa: B018 - raises on an invalid punycode (xn--) label
    except ValueError:
        return False
    return url.port is None or 0 < url.port < 65536


def _origin_text(url: httpx.URL) -> str:
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}"


def _path(url: httpx.URL) -> bytes:
    """The percent-encoded path, as sent on the wire (dot segments already resolved)."""
    return url.raw_path.partition(b"?")[0]


class _Pages:
    """Fetches pages one after another, judging each next link before following it.

    A refused link does not cost the page carrying it: :meth:`next` returns the
    page and keeps the refusal, raising it on the following call.
    """

    __slots__ = ("_core", "_followed", "_params", "_refused", "_route", "_url")

    def __init__(self, core: HTTPCore, run_uid: str, page_size: int, cursor: str | None) -> None:
        self._core = core
        self._route = core.url(f"/runs/{run_uid}/outputs")
        self._url: httpx.URL | None = self._route
        self._params: QueryParams | None = [("limit", page_size)]
        if cursor is not None:
            self._params = [("limit", page_size), ("cursor", cursor)]
        self._followed: set[str] = set()
        self._refused: PaginationError | None = None  # the last page's next link, refused

    async def next(self) -> OutputsPage | None:
        """The next page, or ``None`` at the end.

        ``PaginationError`` if the page returned last time had its next link refused.
        """
        if self._refused is not None:
            raise self._refused
        if self._url is None:
            return None
        response = await self._core.get(self._url, self._params)
        items = decode_json(response)
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise invalid_response(response, "expected a JSON array of output objects")
        link = next_page_url(response)
        # What a page shows is scrubbed (its repr may well be logged); the link
        # itself is followed as sent, to the base URL's origin only.
        cursor = link_cursor(link)
        page = OutputsPage(
            items=items,
            next_cursor=scrub(cursor) if cursor is not None else None,
            next_url=scrub(str(link)) if link is not None else None,
        )
        self._refused = next_link_problem(link, response.request.url, self._route, self._followed)
        self._url = None
        self._params = None
        if self._refused is None and isinstance(link, httpx.URL):
            self._followed.add(str(link))
            self._url = link
        return page


def output_pages(
    core: HTTPCore, run_uid: str, *, page_size: int, cursor: str | None, read_ahead: int = 0
) -> AsyncGenerator[OutputsPage, None]:
    """The pages of ``run_uid``'s outputs (see :func:`_iterate_output_pages`).

    The arguments are checked here, before any request: ``page_size`` 1 to
    ``MAX_PAGE_SIZE``, ``read_ahead`` 0 to ``MAX_READ_AHEAD``, ``cursor`` a
    non-empty string or ``None``. ``run_uid`` is taken as already checked.
    """
    check_int_range("page_size", page_size, 1, MAX_PAGE_SIZE)
    check_int_range("read_ahead", read_ahead, 0, MAX_READ_AHEAD)
    if cursor is not None and (not isinstance(cursor, str) or not cursor):
        raise ValueError(f"cursor must be a non-empty string, got {cursor!r}")
    return _iterate_output_pages(core, run_uid, page_size, cursor, read_ahead)


async def _iterate_output_pages(
    core: HTTPCore, run_uid: str, page_size: int, cursor: str | None, read_ahead: int = 0
) -> AsyncGenerator[OutputsPage, None]:
    """Yield pages from the first (or after ``cursor``) until ``X-Pagination-Next`` is absent.

    An empty page with a next link is not the end: only the header's absence is.
    A page is yielded before its next link is judged, so its items can be kept
    and its cursor saved; moving on then raises ``PaginationError`` (with
    ``resume_cursor``) if the link is malformed, leaves the base URL's origin
    (the key is never sent there) or the outputs' path, or was seen before
    (the server is looping). With ``read_ahead`` > 0, up to that many pages
    are fetched while the caller works on the current one.
    """
    pages = _Pages(core, run_uid, page_size, cursor)
    resume = cursor
    try:
        if read_ahead <= 0:
            while (page := await pages.next()) is not None:
                resume = page.next_cursor
                yield page
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
                page = await pages.next()
                if page is None:
                    break
                queue.put_nowait(page)
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
