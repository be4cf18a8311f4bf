"""``LiveResult``: the answer of a live action, and the way to its further pages.

A large live answer continues at the ``X-Pagination-Next`` URL, fetched by
POSTing the same body there (API.md); the cursor expires after 24 hours.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, final

import httpx

from .._config import same_origin
from .._exceptions import PaginationError
from .._http import HTTPCore, decode_json, invalid_response
from .._pagination import NEXT_PAGE_HEADER

__all__ = ["LiveResult", "fetch_live_page"]


async def fetch_live_page(
    core: HTTPCore, url: str | httpx.URL, body: dict[str, Any]
) -> tuple[list[Any], str | None]:
    """POST ``body`` to a live URL (sent once); the page's results and the next page's URL."""
    response = await core.request("POST", httpx.URL(url), json=body)
    payload = decode_json(response)
    if isinstance(payload, dict):
        payload = [payload]  # a single result object
    if not isinstance(payload, list):
        raise invalid_response(response, "expected a JSON array of results")
    header = response.headers.get(NEXT_PAGE_HEADER, "").strip()
    next_url = response.request.url.join(header) if header else None
    if next_url is not None and not same_origin(next_url, core.base_url):
        raise PaginationError(
            f"The next page is on {next_url.scheme}://{next_url.host}, not on the base URL's "
            "origin: refusing to send the API key there."
        )
    return payload, str(next_url) if next_url is not None else None


@final
class LiveResult:
    """The results of ``client.actions.run_live``: the first page, and the rest on demand.

    ``results`` is the first page. Iterate the object (``async for result in
    live``) for every result across pages, fetched as needed, or call
    :meth:`all`; ``next_url`` is ``None`` when the first page is the only one.
    """

    __slots__ = ("_body", "_core", "next_url", "results")

    def __init__(
        self, core: HTTPCore, body: dict[str, Any], results: list[Any], next_url: str | None
    ) -> None:
        self._core = core
        self._body = body
        self.results = results
        """The results of the first page."""
        self.next_url = next_url
        """The full URL of the second page, or ``None``."""

    @property
    def has_more(self) -> bool:
        """Whether more pages follow the first."""
        return self.next_url is not None

    async def pages(self) -> AsyncIterator[list[Any]]:
        """Each page's results, the first one included; a live request per further page."""
        yield self.results
        url, seen = self.next_url, set[str]()
        while url is not None:
            if url in seen:
                raise PaginationError(f"The API sent the same next page twice ({url}): stopping.")
            seen.add(url)
            results, url = await fetch_live_page(self._core, url, self._body)
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
