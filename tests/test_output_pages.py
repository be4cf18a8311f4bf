"""Following X-Pagination-Next: where the SDK goes, where it refuses to go, and when it stops."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import httpx
import pytest

import edges_async as ea

from .conftest import API_KEY, RUN_UID, ClientFactory

OUTPUTS = f"https://api.edges.run/v1/runs/{RUN_UID}/outputs"
Pages = dict[str | None, tuple[list[dict[str, int]], str | None]]  # items and next link, by cursor
T = TypeVar("T")


def serving(mock_client: ClientFactory, pages: Pages) -> tuple[ea.AsyncClient, list[httpx.Request]]:
    """A client served ``pages`` keyed by cursor, each naming its next link; the requests seen."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        items, next_url = pages[request.url.params.get("cursor")]
        headers = {"X-Pagination-Next": next_url} if next_url else {}
        return httpx.Response(200, json=items, headers=headers)

    return mock_client(handler), seen


def linked_by(next_url: str) -> Pages:
    """A first page linking on with ``next_url``, and the last page, at cursor ``c1``."""
    return {None: ([{"i": 0}], next_url), "c1": ([{"i": 1}], None)}


async def delivered_then_refused(stream: AsyncIterator[T]) -> tuple[T, ea.PaginationError]:
    """The first item of ``stream``, and the PaginationError that moving on raises."""
    first = await anext(stream)
    with pytest.raises(ea.PaginationError) as caught:
        await anext(stream)
    return first, caught.value


async def test_follows_next_until_header_absent(mock_client: ClientFactory) -> None:
    """Pages are followed by their full next URL, an empty middle page included."""
    client, seen = serving(
        mock_client,
        {
            None: ([{"i": 0}, {"i": 1}], f"{OUTPUTS}?limit=2&cursor=c1"),
            "c1": ([], f"{OUTPUTS}?limit=2&cursor=c2"),
            "c2": ([{"i": 2}], None),
        },
    )
    pages = [page async for page in client.runs.output_pages(RUN_UID, page_size=2)]
    assert [page.items for page in pages] == [[{"i": 0}, {"i": 1}], [], [{"i": 2}]]
    assert [page.next_cursor for page in pages] == ["c1", "c2", None]
    assert pages[-1].is_last
    assert seen[0].url.params["limit"] == "2"
    assert all(request.headers["x-api-key"] == API_KEY for request in seen)
    items = [item async for item in client.runs.outputs(RUN_UID, page_size=2)]
    assert items == [{"i": 0}, {"i": 1}, {"i": 2}]


async def test_cursor_resumes_after_saved_page(mock_client: ClientFactory) -> None:
    """cursor= starts right after the page that gave it."""
    client, seen = serving(
        mock_client, {None: ([{"i": 0}], f"{OUTPUTS}?cursor=c1"), "c1": ([{"i": 1}], None)}
    )
    items = [item async for item in client.runs.outputs(RUN_UID, cursor="c1")]
    assert items == [{"i": 1}]
    assert seen[0].url.params["cursor"] == "c1"


async def test_next_link_to_another_host_is_refused(mock_client: ClientFactory) -> None:
    """The page is delivered, then moving on raises PaginationError; the key is not sent."""
    client, seen = serving(
        mock_client, {None: ([{"i": 0}], "https://evil.example/v1/outputs?cursor=c1")}
    )
    outputs = client.runs.outputs(RUN_UID)
    assert await anext(outputs) == {"i": 0}
    with pytest.raises(ea.PaginationError, match=r"evil\.example"):
        await anext(outputs)
    assert [request.url.host for request in seen] == ["api.edges.run"]


@pytest.mark.parametrize(
    "next_url",
    ["http://api.edges.run/v1/runs/x/outputs?cursor=c1", "https://api.edges.run:8443/v1/x"],
)
async def test_next_link_with_other_scheme_or_port_is_refused(
    mock_client: ClientFactory, next_url: str
) -> None:
    """Same host but another scheme or port is another origin."""
    client, _ = serving(mock_client, {None: ([{"i": 0}], next_url)})
    with pytest.raises(ea.PaginationError):
        [page async for page in client.runs.output_pages(RUN_UID)]


async def test_repeating_next_link_is_an_error_not_a_loop(mock_client: ClientFactory) -> None:
    """A next link seen before raises PaginationError instead of looping forever."""
    client, seen = serving(
        mock_client,
        {
            None: ([{"i": 0}], f"{OUTPUTS}?cursor=c1"),
            "c1": ([{"i": 1}], f"{OUTPUTS}?cursor=c2"),
            "c2": ([{"i": 2}], f"{OUTPUTS}?cursor=c1"),
        },
    )
    with pytest.raises(ea.PaginationError, match="same next page"):
        [page async for page in client.runs.output_pages(RUN_UID)]
    assert len(seen) == 3


async def test_non_array_body_is_a_validation_error(mock_client: ClientFactory) -> None:
    """A page that is not a JSON array of objects raises APIResponseValidationError."""
    client = mock_client(lambda request: httpx.Response(200, json={"data": []}))
    with pytest.raises(ea.APIResponseValidationError):
        [page async for page in client.runs.output_pages(RUN_UID)]


@pytest.mark.parametrize(
    ("run_uid", "kwargs"),
    [
        ("nope", {}),
        (RUN_UID, {"page_size": 0}),
        (RUN_UID, {"page_size": 501}),
        (RUN_UID, {"cursor": ""}),
    ],
)
def test_bad_arguments_raise_at_call_time(run_uid: str, kwargs: dict[str, object]) -> None:
    """A malformed uid, page size out of 1..500 or an empty cursor fail before any request."""
    client = ea.AsyncClient(API_KEY)
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        client.runs.output_pages(run_uid, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # noqa: PT011
        client.runs.outputs(run_uid, **kwargs)  # type: ignore[arg-type]


SECRET = "s3cret-token"
MALFORMED_LINKS = [
    pytest.param(
        f"https://api.edges.run:99999/v1/runs/{RUN_UID}/outputs?cursor=c1&t={SECRET}", id="port"
    ),
    pytest.param(f"https://[::1/v1/runs/{RUN_UID}/outputs?cursor=c1&t={SECRET}", id="ipv6"),
    pytest.param(f"{OUTPUTS}\x01?cursor=c1&t={SECRET}", id="control-character"),
    pytest.param(f"https://xn--a.com/v1/runs/{RUN_UID}/outputs?cursor=c1&t={SECRET}", id="idna"),
]


@pytest.mark.parametrize("read_ahead", [0, 2])
@pytest.mark.parametrize("next_url", MALFORMED_LINKS)
async def test_malformed_next_link_delivers_the_page_then_raises_pagination_error(
    mock_client: ClientFactory, next_url: str, read_ahead: int
) -> None:
    """The page comes first; then a short PaginationError, unchained, whose cursor resumes."""
    client, seen = serving(mock_client, linked_by(next_url))
    first, error = await delivered_then_refused(client.runs.outputs(RUN_UID, read_ahead=read_ahead))
    assert first == {"i": 0}
    assert "malformed" in str(error)
    assert SECRET not in str(error)
    assert error.__cause__ is None
    assert error.__context__ is None
    assert error.resume_cursor == "c1"
    assert len(seen) == 1
    rest = [item async for item in client.runs.outputs(RUN_UID, cursor=error.resume_cursor)]
    assert rest == [{"i": 1}]


@pytest.mark.parametrize("read_ahead", [0, 2])
@pytest.mark.parametrize(
    "next_url",
    [
        pytest.param("https://api.edges.run/v2/admin?cursor=c1", id="other-path"),
        pytest.param(f"{OUTPUTS}/?cursor=c1", id="trailing-slash"),
        pytest.param(f"{OUTPUTS}/../../admin?cursor=c1", id="dot-segments"),
        pytest.param(f"{OUTPUTS}/%2e%2e/%2e%2e/admin?cursor=c1", id="encoded-dot-segments"),
        pytest.param(f"/v1/runs/{RUN_UID}/outpu%74s?cursor=c1", id="encoded-letter"),
        pytest.param(f"/v1/runs%2F{RUN_UID}/outputs?cursor=c1", id="encoded-slash"),
        pytest.param(
            f"https://user:pw@api.edges.run/v1/runs/{RUN_UID}/outputs?cursor=c1", id="credentials"
        ),
    ],
)
async def test_next_link_off_the_outputs_path_is_refused(
    mock_client: ClientFactory, next_url: str, read_ahead: int
) -> None:
    """A same-origin link to any other path is not followed: page first, then PaginationError."""
    client, seen = serving(mock_client, linked_by(next_url))
    pages = client.runs.output_pages(RUN_UID, read_ahead=read_ahead)
    first, error = await delivered_then_refused(pages)
    assert first.items == [{"i": 0}]
    assert error.resume_cursor == "c1"
    assert len(seen) == 1


async def test_relative_next_link_on_the_same_path_is_followed(mock_client: ClientFactory) -> None:
    """A link that is only a query, or spells out the same path, stays on the outputs path."""
    client, seen = serving(
        mock_client,
        {
            None: ([{"i": 0}], "?cursor=c1"),
            "c1": ([{"i": 1}], f"/v1/runs/{RUN_UID}/outputs?cursor=c2"),
            "c2": ([{"i": 2}], None),
        },
    )
    items = [item async for item in client.runs.outputs(RUN_UID)]
    assert items == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert {request.url.path for request in seen} == {f"/v1/runs/{RUN_UID}/outputs"}
