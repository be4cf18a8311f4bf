"""Attacks on the hardening promises: a hostile server, a careless caller, an odd transport.

Each test here failed before the fix it came with: a secret that got out by a
path the scrubbing did not cover (the status line, a cut message, a next-page
link, a run's fields, a different case), or a failure that escaped untyped.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

import edges_async as ea

from .conftest import API_KEY, RUN_UID, ClientFactory
from .test_secrets import _texts, leaks

BASE_URL = "https://api.edges.run/v1"
OUTPUTS_URL = f"{BASE_URL}/runs/{RUN_UID}/outputs"
RUN_BODY = {"uid": RUN_UID, "status": "RUNNING"}


def shows(value: object, secret: str) -> list[str]:
    """Where ``secret`` shows in anything ``value`` carries (any case)."""
    return [
        where for where, text in _texts(value, "error", set()) if secret.lower() in text.lower()
    ]


def _run_or_list(request: httpx.Request, run: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json=[run] if request.url.path.endswith("/runs") else run)


async def test_a_status_line_reason_phrase_echoing_the_key_is_scrubbed(
    mock_client: ClientFactory,
) -> None:
    """A reason phrase quoting the key: the error's response (and its repr) never holds it."""

    def handler(request: httpx.Request) -> httpx.Response:
        reason = f"Bad key {request.headers['x-api-key']}".encode()
        return httpx.Response(400, json={"message": "no"}, extensions={"reason_phrase": reason})

    client = mock_client(handler, max_retries=0)
    with pytest.raises(ea.BadRequestError) as caught:
        await client.runs.get(RUN_UID)
    assert leaks(caught.value) == []
    assert caught.value.response.reason_phrase == "Bad key [redacted]"


@pytest.mark.parametrize("call", ["get", "wait"])
async def test_a_validation_error_never_shows_a_cut_piece_of_the_key(
    mock_client: ClientFactory, call: str
) -> None:
    """pydantic cuts a long input mid-value: the key's first half must not survive the cut."""
    long_value = "x" * 10 + API_KEY + "y" * 80
    run = {**RUN_BODY, "output_count": long_value}
    client = mock_client(lambda request: _run_or_list(request, run))
    fetch = client.runs.get(RUN_UID) if call == "get" else client.wait_for_run(RUN_UID)
    with pytest.raises(ea.APIResponseValidationError) as caught:
        await fetch
    assert "output_count" in str(caught.value)
    assert shows(caught.value, API_KEY[:12]) == []


async def test_a_non_json_success_body_is_scrubbed_before_it_is_cut(
    mock_client: ClientFactory,
) -> None:
    """The key straddling the 200-character snippet's end: no piece of it is quoted."""
    body = ("x" * 190 + API_KEY + " not json").encode()
    client = mock_client(lambda request: httpx.Response(200, content=body))
    with pytest.raises(ea.APIResponseValidationError, match="not valid JSON") as caught:
        await client.runs.get(RUN_UID)
    assert API_KEY[:8] not in str(caught.value)


async def test_an_output_page_never_shows_the_key_its_next_link_echoes(
    mock_client: ClientFactory,
) -> None:
    """A page's next_url (and so its repr) is scrubbed; the link is still followed."""

    def handler(request: httpx.Request) -> httpx.Response:
        if "k" in request.url.params:
            return httpx.Response(200, json=[{"n": 2}])
        link = f"{OUTPUTS_URL}?cursor=c2&k={request.headers['x-api-key']}"
        return httpx.Response(200, json=[{"n": 1}], headers={"X-Pagination-Next": link})

    client = mock_client(handler)
    pages = [page async for page in client.runs.output_pages(RUN_UID)]
    assert [item for page in pages for item in page.items] == [{"n": 1}, {"n": 2}]
    assert API_KEY not in repr(pages)
    assert pages[0].next_cursor == "c2"


@pytest.mark.parametrize(
    ("api_key", "link"),
    [
        pytest.param(API_KEY, f"{OUTPUTS_URL}?cursor=c&k={API_KEY}", id="repeated-link"),
        pytest.param(API_KEY, f"{BASE_URL}/runs/{'a' * 50}{API_KEY}/outputs", id="long-path"),
        pytest.param(API_KEY, f"https://{API_KEY}.evil.example/v1/outputs", id="host"),
        pytest.param(
            "sk-Test-0123456789ABCDEF",
            "https://sk-Test-0123456789ABCDEF.evil.example/v1/outputs",
            id="host-lowercased",
        ),
    ],
)
async def test_a_pagination_error_never_quotes_the_key(
    mock_client: ClientFactory, api_key: str, link: str
) -> None:
    """A refused next link holding the key (query, cut path, host that URLs lower-case)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"n": 1}], headers={"X-Pagination-Next": link})

    client = mock_client(handler, api_key=api_key)
    with pytest.raises(ea.PaginationError) as caught:
        async for _ in client.runs.output_pages(RUN_UID):
            pass
    assert shows(caught.value, api_key[:12]) == []


async def test_a_live_answer_never_shows_the_key_of_its_next_link(
    mock_client: ClientFactory,
) -> None:
    """A live next link echoing the key, sent twice: next_url and the error are scrubbed."""

    def handler(request: httpx.Request) -> httpx.Response:
        link = str(request.url.copy_with(query=f"k={request.headers['x-api-key']}".encode()))
        return httpx.Response(200, json=[{"n": 1}], headers={"X-Pagination-Next": link})

    client = mock_client(handler)
    live = await client.actions.run_live("some-action", input={"a": 1})
    assert API_KEY not in (live.next_url or "")
    with pytest.raises(ea.PaginationError) as caught:
        async for _ in live:
            pass
    assert leaks(caught.value) == []


async def test_the_runs_a_wait_timeout_carries_hold_no_key(mock_client: ClientFactory) -> None:
    """WaitTimeoutError.runs: a run whose fields echo the key is handed over scrubbed."""
    run = {**RUN_BODY, "note": API_KEY, "nested": {"k": [API_KEY]}}
    client = mock_client(lambda request: _run_or_list(request, run))
    with pytest.raises(ea.WaitTimeoutError) as caught:
        await client.wait_for_run(RUN_UID, timeout=5)
    assert leaks(caught.value) == []
    assert caught.value.runs[0].uid == RUN_UID
    assert caught.value.runs[0].model_extra == {
        "note": "[redacted]",
        "nested": {"k": ["[redacted]"]},
    }


@pytest.mark.parametrize(
    "api_key", ["sk-tést-0123456789", "sk-“test”-0123456789", "sk-\x01test-0123"]
)
def test_an_api_key_that_cannot_go_in_a_header_is_refused_at_construction(api_key: str) -> None:
    """Non-ASCII or control characters: ConfigurationError, not a raw error at the first request."""
    with pytest.raises(ea.ConfigurationError, match="printable ASCII") as caught:
        ea.AsyncClient(api_key)
    assert api_key not in str(caught.value)


@pytest.mark.parametrize(
    ("api_key", "spell"),
    [
        pytest.param(API_KEY, str.upper, id="upper-case"),
        pytest.param("sk/test/0123456789", lambda key: key.replace("/", "\\/"), id="json-slash"),
    ],
)
async def test_the_key_echoed_in_another_spelling_is_scrubbed(
    mock_client: ClientFactory, api_key: str, spell: Callable[[str], str]
) -> None:
    """The key upper-cased, or JSON-escaped as \\/: message, body and headers are scrubbed."""
    spelled = spell(api_key)

    def handler(request: httpx.Request) -> httpx.Response:
        body = f'{{"message": "key {spelled}"}}'.encode()
        return httpx.Response(400, content=body, headers={"X-Echo": spelled})

    client = mock_client(handler, api_key=api_key, max_retries=0)
    with pytest.raises(ea.BadRequestError) as caught:
        await client.runs.get(RUN_UID)
    assert shows(caught.value, api_key) == []
    assert api_key.lower() not in json.dumps(json.loads(caught.value.response.content)).lower()


@pytest.mark.parametrize("prefix", [b"", b'["\\u0041",'], ids=["plain", "with-escape"])
async def test_a_deeply_nested_error_body_is_a_typed_error(
    mock_client: ClientFactory, prefix: bytes
) -> None:
    """100,000 nested arrays in an error body: a typed error, not a RecursionError."""
    body = prefix + b"[" * 100_000 + b"]" * (100_000 + (1 if prefix else 0))
    client = mock_client(lambda request: httpx.Response(400, content=body), max_retries=0)
    with pytest.raises(ea.BadRequestError, match="not JSON"):
        await client.runs.get(RUN_UID)


@pytest.mark.parametrize("first", [0, 1], ids=["empty-first-chunk", "one-byte-first-chunk"])
async def test_a_zlib_deflate_body_streamed_byte_by_byte_is_decoded(
    mock_client: ClientFactory, first: int
) -> None:
    """The zlib header split over chunks: the body is read, not refused as corrupt."""
    compressed = zlib.compress(json.dumps(RUN_BODY).encode())

    async def chunks() -> AsyncIterator[bytes]:
        yield compressed[:first]
        for index in range(first, len(compressed)):
            yield compressed[index : index + 1]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "deflate"}, content=chunks())

    client = mock_client(handler, max_retries=0)
    run = await client.runs.get(RUN_UID)
    assert run.uid == RUN_UID
