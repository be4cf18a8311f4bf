"""Cursor pagination of run outputs: following ``X-Pagination-Next`` safely."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import httpx

from ._config import same_origin
from ._exceptions import PaginationError
from ._http import HTTPCore, QueryParams, decode_json, invalid_response

__all__ = ["OutputsPage", "iterate_output_pages"]

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


def _next_url(response: httpx.Response) -> httpx.URL | None:
    header = response.headers.get(NEXT_PAGE_HEADER)
    if not header or not header.strip():
        return None
    return response.request.url.join(header.strip())


async def iterate_output_pages(
    core: HTTPCore, run_uid: str, page_size: int, cursor: str | None
) -> AsyncGenerator[OutputsPage, None]:
    """Yield pages from the first (or after ``cursor``) until ``X-Pagination-Next`` is absent.

    An empty page with a next link is not the end: only the header's absence is.
    A page is yielded before its next link is judged, so its items can be kept
    and its cursor saved; moving on then raises ``PaginationError`` if the link
    leaves the base URL's origin (the key is never sent there) or was seen
    before (the server is looping).
    """
    url: httpx.URL = core.url(f"/runs/{run_uid}/outputs")
    params: QueryParams | None = [("limit", page_size)]
    if cursor is not None:
        params = [("limit", page_size), ("cursor", cursor)]
    followed: set[str] = set()
    while True:
        response = await core.get(url, params)
        items = decode_json(response)
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise invalid_response(response, "expected a JSON array of output objects")
        next_url = _next_url(response)
        yield OutputsPage(
            items=items,
            next_cursor=next_url.params.get("cursor") if next_url else None,
            next_url=str(next_url) if next_url else None,
        )
        if next_url is None:
            return
        if not same_origin(next_url, core.base_url):
            raise PaginationError(
                f"The next page is on {next_url.scheme}://{next_url.host}, not on the base "
                f"URL's origin {core.base_url.scheme}://{core.base_url.host}: refusing to "
                "send the API key there."
            )
        key = str(next_url)
        if key in followed or next_url == response.request.url:
            raise PaginationError(f"The API sent the same next page twice ({key}): stopping.")
        followed.add(key)
        url, params = next_url, None
