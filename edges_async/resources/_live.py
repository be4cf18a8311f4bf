"""``LiveResult``: the answer of a live action, and the way to its further pages.

A large live answer continues at the ``X-Pagination-Next`` URL, fetched by
POSTing the same body there (API.md); the cursor expires after 24 hours.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, final

import httpx

from .._http import HTTPCore, decode_json, invalid_response
from .._pagination import next_link_problem, next_page_url

__all__ = ["LiveResult", "fetch_live_page"]


async def fetch_live_page(
    core: HTTPCore, url: httpx.URL, body: dict[str, Any], followed: set[str]
) -> tuple[list[Any], httpx.URL | None]:
    """POST ``body`` to a live URL (sent once); the page's results and the next page's URL.

    The next link is judged as the outputs' are (same origin, never twice):
    ``followed`` holds the links of this answer seen so far.
    """
    response = await core.request("POST", url, json=body)
    payload = decode_json(response)
    if isinstance(payload, dict):
        payload = [payload]  # a single result object
    if not isinstance(payload, list):
        raise invalid_response(response, "expected a JSON array of results")
    next_url = next_page_url(response)
    problem = next_link_problem(next_url, response.request.url, core.base_url, followed)
    if problem is not None:
        raise problem
    return payload, next_url


@final
class LiveResult:
    """The results of ``client.actions.run_live``: the first page, and the rest on demand.

    ``results`` is the first page. Iterate the object (``async for result in
    live``) for every result across pages, fetched as needed, or call
    :meth:`all`; ``next_url`` is ``None`` when the first page is the only one.
    """

    __slots__ = ("_body", "_core", "_followed", "_next", "results")

    def __init__(
        self,
        core: HTTPCore,
        body: dict[str, Any],
        results: list[Any],
        next_url: httpx.URL | None,
        followed: set[str],
    ) -> None:
        self._core = core
        self._body = body
        self._next = next_url
        self._followed = followed
        self.results = results
        """The results of the first page."""

    @property
    def next_url(self) -> str | None:
        """The full URL of the second page, or ``None``."""
        return str(self._next) if self._next is not None else None

    @property
    def has_more(self) -> bool:
        """Whether more pages follow the first."""
        return self._next is not None

    async def pages(self) -> AsyncIterator[list[Any]]:
        """Each page's results, the first one included; a live request per further page."""
        yield self.results
        url = self._next
        while url is not None:
            results, url = await fetch_live_page(self._core, url, self._body, self._followed)
            yield results

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for page in self.pages():
            for result in page:
                yield result

    async def all(self) -> list[Any]:
        """Every result, fetching the remaining pages."""
        return [result async for result in self]

    def __repr__(self) -> str:
        return f"<LiveResult results={len(self.results)} has_more={self.has_more}>"
