"""Live answers whose next link cannot be followed: the results already paid for are kept."""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any, TypeVar

import httpx
import pytest

import edges_async as ea

from .conftest import ClientFactory

T = TypeVar("T")
LIVE = "https://api.edges.run/v1/actions/a/run/live"
REFUSED_LINKS = [
    pytest.param("https://evil.example/v1/actions/a/run/live?cursor=9", id="other-host"),
    pytest.param("https://api.edges.run/v1/actions/b/run/live?cursor=9", id="other-action"),
    pytest.param("https://api.edges.run/v2/admin?cursor=9", id="other-path"),
    pytest.param(f"{LIVE}/../../../admin?cursor=9", id="dot-segments"),
    pytest.param(f"{LIVE}/?cursor=9", id="trailing-slash"),
    pytest.param("https://[::1/v1/actions/a/run/live?cursor=9", id="malformed"),
]


def live_handler(links: list[str | None]) -> tuple[Any, list[httpx.Request]]:
    """Answer the n-th live request with results 2n and 2n+1 and the n-th link (if any)."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        page = len(sent)
        sent.append(request)
        link = links[page] if page < len(links) else None
        headers = {"X-Pagination-Next": link} if link else {}
        return httpx.Response(200, json=[{"n": 2 * page}, {"n": 2 * page + 1}], headers=headers)

    return handler, sent


async def drain(source: AsyncIterable[T], into: list[T]) -> None:
    """Append what ``source`` yields to ``into``, which keeps it if ``source`` then fails."""
    async for item in source:
        into.append(item)  # noqa: PERF401 - a comprehension would lose it all on the error


async def collect(live: ea.LiveResult) -> tuple[list[Any], ea.PaginationError]:
    """Every result iterating ``live`` yields, and the PaginationError that ends it."""
    received: list[Any] = []
    with pytest.raises(ea.PaginationError) as caught:
        await drain(live, received)
    return received, caught.value


@pytest.mark.parametrize("link", REFUSED_LINKS)
async def test_first_page_is_returned_when_its_next_link_is_refused(
    mock_client: ClientFactory, link: str
) -> None:
    """run_live returns the first page; iterating yields it, then says where it stopped."""
    handler, sent = live_handler([link])
    client = mock_client(handler)
    live = await client.actions.run_live("a", input={})
    assert live.results == [{"n": 0}, {"n": 1}]
    assert live.has_more
    assert live.next_url is None
    received, error = await collect(live)
    assert received == [{"n": 0}, {"n": 1}]
    assert "after page 1 (2 results delivered)" in str(error)
    assert error.__context__ is None
    assert [request.url for request in sent] == [httpx.URL(LIVE)]


async def test_first_page_linking_to_itself_is_returned(mock_client: ClientFactory) -> None:
    """A first page whose next link is its own URL is a loop: its results are kept all the same."""
    handler, sent = live_handler([LIVE])
    client = mock_client(handler)
    live = await client.actions.run_live("a", input={})
    received, error = await collect(live)
    assert received == [{"n": 0}, {"n": 1}]
    assert "same next page twice" in str(error)
    assert len(sent) == 1


@pytest.mark.parametrize(
    "link", [*REFUSED_LINKS, pytest.param(f"{LIVE}?cursor=1", id="seen-before")]
)
async def test_later_page_is_yielded_before_its_refused_link(
    mock_client: ClientFactory, link: str
) -> None:
    """A second page whose link is refused is delivered whole, then PaginationError."""
    handler, sent = live_handler([f"{LIVE}?cursor=1", link])
    client = mock_client(handler)
    live = await client.actions.run_live("a", input={})
    assert live.next_url == f"{LIVE}?cursor=1"
    received, error = await collect(live)
    assert received == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]
    assert "after page 2 (4 results delivered)" in str(error)
    assert error.__context__ is None
    assert [request.url.host for request in sent] == ["api.edges.run"] * 2


async def test_pages_yields_each_page_before_the_refusal(mock_client: ClientFactory) -> None:
    """pages() hands over every page received, the one with the refused link included."""
    handler, _ = live_handler([f"{LIVE}?cursor=1", "https://evil.example/next"])
    client = mock_client(handler)
    live = await client.actions.run_live("a", input={})
    received: list[list[Any]] = []
    with pytest.raises(ea.PaginationError, match=r"evil\.example"):
        await drain(live.pages(), received)
    assert received == [[{"n": 0}, {"n": 1}], [{"n": 2}, {"n": 3}]]
