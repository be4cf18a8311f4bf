"""The API key and callback secrets never leave: a hostile server echoes them everywhere.

Each test makes a server send the secrets back wherever it can (error bodies,
headers, redirects, transport error messages) and then searches everything a
user or a log line can reach: ``str``, ``repr``, ``args``, notes, the chained
``__cause__`` and ``__context__``, ``.response`` (headers, body, its request,
``next_request``), ``.request``, and every log record of edges_async, httpx and
httpcore at DEBUG.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pydantic
import pytest

import edges_async as ea
from edges_async.testing import NoRateLimit
from edges_async.testing._server import serve_origin

from .conftest import API_KEY, RUN_UID, ClientFactory

CALLBACK_SECRET = "cb-secret-7f3a9c1e5b"
SECRETS = (API_KEY, CALLBACK_SECRET)
LOGGERS = ("edges_async", "httpx", "httpcore")


def _texts(value: object, where: str, seen: set[int]) -> Iterator[tuple[str, str]]:
    """Every text reachable from ``value`` that a user could print, with where it was found."""
    if id(value) in seen or value is None:
        return
    seen.add(id(value))
    if isinstance(value, BaseException):
        yield f"{where} str", str(value)
        yield f"{where} repr", repr(value)
        yield f"{where} args", repr(value.args)
        for note in getattr(value, "__notes__", ()):
            yield f"{where} note", str(note)
        for name, attribute in vars(value).items():
            yield from _texts(attribute, f"{where}.{name}", seen)
        yield from _texts(value.__cause__, f"{where}.__cause__", seen)
        yield from _texts(value.__context__, f"{where}.__context__", seen)
        for inner in getattr(value, "exceptions", ()):
            yield from _texts(inner, f"{where} group member", seen)
    elif isinstance(value, httpx.Response):
        yield f"{where} headers", repr(value.headers.raw)
        yield f"{where} content", value.content.decode("utf-8", "replace")
        yield f"{where} repr", repr(value)
        yield from _texts(value.request, f"{where}.request", seen)
        yield from _texts(value.next_request, f"{where}.next_request", seen)
    elif isinstance(value, httpx.Request):
        yield f"{where} url", str(value.url)
        yield f"{where} headers", repr(value.headers.raw)
        with contextlib.suppress(httpx.RequestNotRead):
            yield f"{where} content", value.content.decode("utf-8", "replace")
    elif isinstance(value, pydantic.BaseModel):
        yield f"{where} repr", repr(value)
        yield f"{where} dump", value.model_dump_json()
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _texts(item, f"{where}[{index}]", seen)
    else:
        yield f"{where} repr", repr(value)


def leaks(error: BaseException) -> list[str]:
    """Where a secret shows in anything ``error`` carries."""
    return [
        where
        for where, text in _texts(error, "error", set())
        for secret in SECRETS
        if secret in text
    ]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Captures every log record of edges_async, httpx and httpcore, at DEBUG."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def logged_secrets(records: list[logging.LogRecord]) -> list[str]:
    """The log lines that show a secret (as a handler would format them)."""
    lines = [record.getMessage() for record in records]
    return [line for line in lines if any(secret in line for secret in SECRETS)]


def echo(
    status: int, *, headers: dict[str, str] | None = None, **body: Any
) -> Callable[[httpx.Request], httpx.Response]:
    """A handler answering ``status`` with the request's secrets echoed in body and headers."""

    def handler(request: httpx.Request) -> httpx.Response:
        sent = request.content.decode() if request.content else ""
        text = f"key={request.headers.get('x-api-key')} body={sent}"
        return httpx.Response(
            status,
            headers={"X-Echo": text.replace("\n", " ")[:2000], **(headers or {})},
            **(body or {"json": {"error_label": "BAD_INPUT", "message": text}}),
        )

    return handler


@pytest.mark.parametrize("status", [400, 401, 404, 422, 429, 500])
async def test_a_status_error_never_carries_the_key(
    mock_client: ClientFactory, logs: pytest.LogCaptureFixture, status: int
) -> None:
    """An error body, JSON message and headers echoing the key: nothing carries it."""
    client = mock_client(echo(status), max_retries=1)
    with pytest.raises(ea.APIStatusError) as caught:
        await client.runs.get(RUN_UID)
    assert leaks(caught.value) == []
    assert "[redacted]" in caught.value.message
    assert caught.value.request.headers["X-API-Key"] == "[redacted]"
    assert logged_secrets(logs.records) == []


async def test_a_non_json_error_body_is_scrubbed(mock_client: ClientFactory) -> None:
    """The raw snippet of a non-JSON error body is scrubbed too."""
    client = mock_client(echo(502, text=f"<h1>upstream said {API_KEY}</h1>"), max_retries=0)
    with pytest.raises(ea.InternalServerError) as caught:
        await client.runs.get(RUN_UID)
    assert "not JSON" in str(caught.value)
    assert leaks(caught.value) == []


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda key: key, id="plain"),
        pytest.param(lambda key: "".join(f"\\u{ord(char):04x}" for char in key), id="u-escaped"),
    ],
)
async def test_a_json_error_spelling_the_key_with_escapes_is_scrubbed(
    mock_client: ClientFactory, spelling: Callable[[str], str]
) -> None:
    """A JSON body spelling the key with \\u escapes: the parsed message is scrubbed as well."""
    spelled = spelling(API_KEY)
    text = f'{{"error_label": "X", "message": "key {spelled}", "extra": {{"k": "{spelled}"}}}}'
    body = text.encode()
    client = mock_client(echo(400, content=body), max_retries=0)
    with pytest.raises(ea.BadRequestError) as caught:
        await client.runs.get(RUN_UID)
    assert leaks(caught.value) == []
    assert API_KEY not in json.dumps(json.loads(caught.value.response.content))
    assert API_KEY not in json.dumps(caught.value.body.model_dump() if caught.value.body else {})


async def test_a_launch_error_never_carries_the_callback_secret(
    mock_client: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    """A server echoing the launch body (callback headers included) in its error."""
    client = mock_client(echo(400))
    callback = ea.Callback(
        url="https://hooks.example.com/edges", headers={"X-Hook-Secret": CALLBACK_SECRET}
    )
    with pytest.raises(ea.BadRequestError) as caught:
        await client.actions.run_async("some-action", inputs=[{"a": 1}], callback=callback)
    assert leaks(caught.value) == []
    assert CALLBACK_SECRET not in repr(callback)
    assert logged_secrets(logs.records) == []


async def test_a_redirect_to_another_host_leaves_no_next_request(
    mock_client: ClientFactory,
) -> None:
    """A 3xx off the base URL is not followed, and its error holds no request with our headers."""
    client = mock_client(
        echo(307, headers={"Location": f"https://evil.example/steal?k={API_KEY}"}, content=b""),
        max_retries=0,
    )
    with pytest.raises(ea.APIStatusError) as caught:
        await client.runs.get(RUN_UID)
    assert caught.value.response.next_request is None
    assert "not followed" in str(caught.value)
    assert leaks(caught.value) == []


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout],
)
async def test_a_transport_error_is_not_chained_to_the_live_request(
    mock_client: ClientFactory, logs: pytest.LogCaptureFixture, error: type[httpx.TransportError]
) -> None:
    """The raw httpx exception holds the live request: it is neither cause nor context."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise error(f"peer said {request.headers['x-api-key']}", request=request)

    client = mock_client(fail, max_retries=1)
    with pytest.raises(ea.APIConnectionError) as caught:
        await client.runs.get(RUN_UID)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert caught.value.request.headers["X-API-Key"] == "[redacted]"
    assert leaks(caught.value) == []
    assert logged_secrets(logs.records) == []


async def test_a_corrupt_content_encoding_is_a_typed_error(mock_client: ClientFactory) -> None:
    """gzip that is not gzip: APIConnectionError, never a raw httpx.DecodingError."""

    def corrupt(request: httpx.Request) -> httpx.Response:
        stream = httpx.ByteStream(b"this is not gzip " + API_KEY.encode())
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=stream)

    client = mock_client(corrupt, max_retries=1)
    with pytest.raises(ea.APIConnectionError, match="could not be decoded") as caught:
        await client.runs.get(RUN_UID)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert leaks(caught.value) == []


async def test_a_malformed_success_body_never_carries_the_key(mock_client: ClientFactory) -> None:
    """A 200 whose run fields echo the key: the validation error is scrubbed."""
    body = {"uid": RUN_UID, "status": "RUNNING", "output_count": API_KEY, "x": API_KEY}
    client = mock_client(lambda request: httpx.Response(200, json=body))
    with pytest.raises(ea.APIResponseValidationError) as caught:
        await client.runs.get(RUN_UID)
    assert "output_count" in str(caught.value)
    assert leaks(caught.value) == []


async def test_the_pollers_warning_never_quotes_the_key(
    mock_client: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    """The poller logs the transient errors it backs off from: scrubbed, at every level."""
    answers = iter([echo(503)] * 3)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers, None)
        if answer is not None:
            return answer(request)
        run = {"uid": RUN_UID, "status": "SUCCEEDED"}
        return httpx.Response(200, json=[run] if request.url.path.endswith("/runs") else run)

    client = mock_client(handler, max_retries=0)
    run = await client.wait_for_run(RUN_UID)
    assert run.status is ea.RunStatus.SUCCEEDED
    warnings = [record for record in logs.records if "Polling runs failed" in record.getMessage()]
    assert len(warnings) == 3
    assert logged_secrets(logs.records) == []


@pytest.mark.looptime(False)
async def test_nothing_logged_over_a_real_socket_shows_a_secret(
    logs: pytest.LogCaptureFixture,
) -> None:
    """httpcore logs response headers at DEBUG: a server echoing the key there is scrubbed."""

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        key = dict(scope["headers"]).get(b"x-api-key", b"")
        body = json.dumps({"error_label": "X", "message": f"your key {key.decode()}"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [(b"x-echo", key), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async with (
        serve_origin(app) as origin,
        ea.AsyncClient(API_KEY, base_url=f"{origin}/v1", limiter=NoRateLimit()) as client,
    ):
        with pytest.raises(ea.BadRequestError) as caught:
            await client.runs.get(RUN_UID)
    assert leaks(caught.value) == []
    assert any(record.name.startswith("httpcore") for record in logs.records)
    assert logged_secrets(logs.records) == []


def test_a_callbacks_repr_hides_its_header_values() -> None:
    """repr() and str() of a Callback show header names, never values."""
    callback = ea.Callback(url="https://hooks.example.com/e", headers={"X-S": CALLBACK_SECRET})
    assert CALLBACK_SECRET not in repr(callback)
    assert CALLBACK_SECRET not in str(callback)
    assert "X-S" in repr(callback)
    assert callback.model_dump()["headers"] == {"X-S": CALLBACK_SECRET}


async def test_a_gzip_bomb_is_refused_within_the_cap(mock_client: ClientFactory) -> None:
    """A 200 MB gzip bomb over a streamed body: refused after the cap, not decoded whole."""
    bomb = gzip.compress(b"[" + b" " * 200_000_000 + b"]", compresslevel=9)
    streamed: list[int] = []

    async def chunks() -> Any:
        for start in range(0, len(bomb), 16_384):
            streamed.append(start)
            yield bomb[start : start + 16_384]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=chunks())

    client = mock_client(handler, max_response_bytes=1_000_000)
    with pytest.raises(ea.APIResponseValidationError, match="max_response_bytes"):
        await client.runs.get(RUN_UID)
    assert len(streamed) < 5  # a few raw chunks in, not the whole 200 MB decoded


@pytest.mark.parametrize("size", [1_000_000, 1_000_001])
@pytest.mark.parametrize("wire", ["gzip", "plain with length", "plain without length"])
async def test_the_body_cap_is_exact(mock_client: ClientFactory, size: int, wire: str) -> None:
    """A body of exactly the cap is read; one byte more is refused, however it is sent."""
    body = json.dumps([{"pad": "x" * (size - 13)}]).encode()
    assert len(body) == size

    async def unannounced() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65_536):
            yield body[start : start + 65_536]

    def handler(request: httpx.Request) -> httpx.Response:
        if wire == "gzip":
            stream = httpx.ByteStream(gzip.compress(body))
            return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=stream)
        if wire == "plain with length":
            headers = {"Content-Length": str(len(body))}
            return httpx.Response(200, headers=headers, stream=httpx.ByteStream(body))
        return httpx.Response(200, content=unannounced())

    client = mock_client(handler, max_response_bytes=1_000_000)
    outputs = client.runs.outputs(RUN_UID)
    if size == 1_000_000:
        assert [item async for item in outputs] == [{"pad": "x" * (size - 13)}]
    else:
        with pytest.raises(ea.APIResponseValidationError):
            await anext(aiter(outputs))
    await anyio.lowlevel.checkpoint()
