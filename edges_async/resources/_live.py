"""``LiveResult``: the answer of a live action, and the way to its further pages.

A large live answer continues at the ``X-Pagination-Next`` URL: the API serves
the next page to a POST of the same body there, and the cursor in that URL
expires after 24 hours.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, final

import httpx

from .._exceptions import PaginationError
from .._http import HTTPCore
from .._pagination import next_link_problem, next_page_url
from .._redaction import scrub
from .._responses import decode_json, invalid_response

__all__ = ["LiveResult", "fetch_live_page"]


async def fetch_live_page(
    core: HTTPCore, url: httpx.URL, body: dict[str, Any], followed: set[str]
) -> tuple[list[Any], httpx.URL | PaginationError | None]:
    """POST ``body`` to a live URL (sent once); the page's results and what comes next.

    What comes next is the next page's URL, ``None`` after the last page, or
    the ``PaginationError`` to raise once this page's results are delivered:
    the next link is judged as the outputs' are (well formed, same origin,
    same path as ``url``, never twice), and a refused link never costs the
    results already paid for. ``followed`` holds the links of this answer seen so
    far; the next link joins it when it is to be followed.
    """
    response = await core.request("POST", url, json=body)
    payload = decode_json(response)
    if isinstance(payload, dict):
        payload = [payload]  # a single result object
    if not isinstance(payload, list):
        raise invalid_response(response, "expected a JSON array of results")
    link = next_page_url(response)
    problem = next_link_problem(link, response.request.url, url, followed)
    if problem is not None:
        return payload, problem
    if isinstance(link, httpx.URL):
        followed.add(str(link))
        return payload, link
    return payload, None


@final
class LiveResult:
    """The results of ``client.actions.run_live``: the first page, and the rest on demand.

    ``results`` is the first page. Iterate the object (``async for result in
    live``) for every result across pages, fetched as needed, or call
    :meth:`all`; ``next_url`` is ``None`` when the first page is the only one.

    When a next-page link cannot be followed safely (another host or path, a
    malformed or repeated link), every result received up to it is still
    delivered; iterating then raises ``PaginationError``, whose message says
    after which page it stopped and how many results were delivered by then.
    """

    __slots__ = ("_body", "_core", "_followed", "_next", "results")

    def __init__(
        self,
        core: HTTPCore,
        body: dict[str, Any],
        results: list[Any],
        next_url: httpx.URL | PaginationError | None,
        followed: set[str],
    ) -> None:
        self._core = core
        self._body = body
        self._next = next_url
        self._followed = frozenset(followed)  # the links judged with the first page
        self.results = results
        """The results of the first page."""

    @property
    def next_url(self) -> str | None:
        """The second page's full URL, or ``None`` (no second page, or its link was refused)."""
        return scrub(str(self._next)) if isinstance(self._next, httpx.URL) else None

    @property
    def has_more(self) -> bool:
        """Whether the answer goes on past the first page (even through a refused link)."""
        return self._next is not None

    async def pages(self) -> AsyncGenerator[list[Any], None]:
        """Each page's results, the first one included; a live request per further page.

        Each iteration fetches the further pages again (while their cursor lasts).
        """
        yield self.results
        pages, delivered = 1, len(self.results)
        after = self._next
        # Each iteration follows the links afresh: a link seen by an earlier
        # iteration is not a loop of the server's.
        followed = set(self._followed)
        while after is not None:
            if isinstance(after, PaginationError):
                raise PaginationError(
                    f"The live answer stopped after page {pages} ({delivered} results "
                    f"delivered): {after}"
                )
            results, after = await fetch_live_page(self._core, after, self._body, followed)
            pages, delivered = pages + 1, delivered + len(results)
            yield results

    async def __aiter__(self) -> AsyncGenerator[Any, None]:
        async for page in self.pages():
            for result in page:
                yield result

    async def all(self) -> list[Any]:
        """Every result, fetching the remaining pages.

        If a next link is refused, ``PaginationError`` is raised and the
        results gathered so far are lost to the caller: iterate instead to
        keep them.
        """
        return [result async for result in self]

    def __repr__(self) -> str:
        return f"<LiveResult results={len(self.results)} has_more={self.has_more}>"
