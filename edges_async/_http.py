"""The one HTTP layer every request goes through: auth, rate limiting, retries, redirects.

Errors are built from responses in ``._responses`` and from httpx failures here,
both redacted.

Retry rules. A GET (any idempotent method) is retried on 408, 429, 5xx and on
transport errors. A POST launches or changes something, and sending it twice
can launch a run twice, so it is retried only when it surely was not acted
on: the connection could not be opened, no pooled connection was free, or
the answer was 429 (the rate limiter refused it: the vendor's guidance is to
wait ``Retry-After`` and send it again).
Redirects are followed only within the base URL's origin; the key is never sent
anywhere else.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, final

import anyio
import httpx
import sniffio

from ._backoff import Backoff
from ._body import ACCEPT_ENCODING, BodyDecoder, BodyTooLarge, DecodedStream, UndecodableBody
from ._config import ApiKey, same_origin
from ._exceptions import (
    APIConnectionError,
    APITimeoutError,
    ClientClosedError,
    EventLoopError,
)
from ._limiter import RateLimiter
from ._logging import log_attempt
from ._redaction import protect, safe_request, scrub
from ._responses import invalid_response, status_error
from ._version import __version__

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "HTTPCore", "QueryParams"]

logger = logging.getLogger("edges_async")

QueryParams = list[tuple[str, str | int | float | bool | None]]

USER_AGENT = f"edges-async/{__version__}"
API_KEY_HEADER = "X-API-Key"
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_RETRIED_STATUSES = frozenset({408, 429})
_MAX_REDIRECTS = 5
# Errors raised before a single byte of the request left this machine.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Everything httpx raises while sending: none of it may reach a caller raw,
# as each holds the live request, API key included.
_HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)
_CLOSED = "The client is closed: open a new AsyncClient to send requests."


@dataclass(frozen=True, slots=True)
class _Failure:
    """An attempt that got no usable response: the error to raise, and whether to retry."""

    error: APIConnectionError
    never_sent: bool
    reason: str


@final
class _Lifecycle:
    """What a core and its views share: closed or not, the event loop, the requests under way."""

    __slots__ = ("closed", "in_flight", "loop")

    def __init__(self) -> None:
        self.closed = False
        self.loop: asyncio.AbstractEventLoop | None = None
        # One cancel scope per request under way: closing the client ends them all.
        self.in_flight: set[anyio.CancelScope] = set()

    def __repr__(self) -> str:
        return f"<_Lifecycle closed={self.closed} in_flight={len(self.in_flight)}>"


@final
class HTTPCore:
    """Sends requests for one client: builds, limits, retries, and maps errors."""

    __slots__ = (
        "_api_key",
        "_backoff",
        "_base_url",
        "_http",
        "_life",
        "_limiter",
        "_max_response_bytes",
        "_max_retries",
        "_owns_pool",
        "_timeout",
    )

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient,
        base_url: httpx.URL,
        api_key: ApiKey,
        timeout: httpx.Timeout,
        max_retries: int,
        backoff: Backoff,
        limiter: RateLimiter,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        owns_pool: bool = False,
    ) -> None:
        self._http = http_client
        self._owns_pool = owns_pool
        self._base_url = base_url
        self._api_key = api_key
        protect(api_key.reveal(), api_key=True)
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff = backoff
        self._limiter = limiter
        self._max_response_bytes = max_response_bytes
        self._life = _Lifecycle()

    def with_options(
        self, *, timeout: httpx.Timeout | None = None, max_retries: int | None = None
    ) -> HTTPCore:
        """A view sending with another timeout or retry count (``None``: this one's).

        It shares everything else: the pool, the limiter, the key, and the
        lifecycle (closing either closes both, and ends the requests of both).
        Cheap: no I/O, a copy of a few references.
        """
        view = object.__new__(HTTPCore)
        for name in HTTPCore.__slots__:
            setattr(view, name, getattr(self, name))
        if timeout is not None:
            view._timeout = timeout
        if max_retries is not None:
            view._max_retries = max_retries
        return view

    def close(self) -> None:
        """Refuse every request from now on, and end those under way (``ClientClosedError``).

        Applies to every view of this core too (see :meth:`with_options`).
        """
        self._life.closed = True
        for scope in self._life.in_flight:
            scope.cancel()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called, on this core or a view sharing its lifecycle."""
        return self._life.closed

    @property
    def timeout(self) -> httpx.Timeout:
        """The timeout every HTTP attempt is sent with."""
        return self._timeout

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt of a request that may be retried."""
        return self._max_retries

    @property
    def http(self) -> httpx.AsyncClient:
        """The httpx client requests are sent with now."""
        return self._http

    def check_usable(self) -> None:
        """``ClientClosedError`` once closed, ``EventLoopError`` from another loop (see below)."""
        if self._life.closed:
            raise ClientClosedError(_CLOSED)
        self.check_loop()

    def check_loop(self) -> None:
        """Bind to the running asyncio loop; ``EventLoopError`` outside asyncio or from another.

        Connections belong to the event loop that opened them, and die with
        it. A client with its own pool is refused from any other loop (a
        second ``asyncio.run``, another thread) at once, instead of failing
        deep inside with ``RuntimeError('Event loop is closed')``. A client
        sending through the caller's ``http_client`` moves to a new loop once
        its old one is closed: that pool is the caller's to keep usable (an
        in-process ``ASGITransport`` is), and the limiter and the poller make
        their primitives per loop.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            library = sniffio.current_async_library()
            raise EventLoopError(
                f"edges_async runs on asyncio only, not on {library}: "
                "run it under asyncio (or anyio's asyncio backend)."
            ) from None
        bound = self._life.loop
        if loop is bound:
            return
        if bound is not None and (self._owns_pool or not bound.is_closed()):
            state = "ended: a previous asyncio.run?" if bound.is_closed() else "still open"
            raise EventLoopError(
                f"This client belongs to another event loop ({state}): "
                "create the AsyncClient inside the event loop that uses it."
            )
        self._life.loop = loop

    @property
    def base_url(self) -> httpx.URL:
        """The base URL every request is resolved against."""
        return self._base_url

    def url(self, path: str) -> httpx.URL:
        """The absolute URL of an API path such as ``/runs/abc``."""
        return self._base_url.copy_with(path=self._base_url.path + path)

    async def get(
        self, path_or_url: str | httpx.URL, params: QueryParams | None = None
    ) -> httpx.Response:
        """GET, retried as the rules allow."""
        return await self.request("GET", path_or_url, params=params)

    async def post(
        self, path: str, body: Any = None, *, secrets: tuple[str, ...] = ()
    ) -> httpx.Response:
        """POST a JSON body; never retried once it may have reached the server."""
        return await self.request(
            "POST", path, json=body if body is not None else {}, secrets=secrets
        )

    async def request(
        self,
        method: str,
        path_or_url: str | httpx.URL,
        *,
        params: QueryParams | None = None,
        json: Any = None,
        secrets: tuple[str, ...] = (),
    ) -> httpx.Response:
        """Send one logical request, retrying as the rules above allow; return a 2xx response.

        ``secrets`` are values the body carries that must never show in an
        error or a log line (a callback's headers). The response's body has
        been read, at most ``max_response_bytes`` of it once decoded.
        """
        self.check_usable()
        for secret in secrets:
            protect(secret)
        url = path_or_url if isinstance(path_or_url, httpx.URL) else self.url(path_or_url)
        if not same_origin(url, self._base_url):
            raise ValueError(
                f"Refusing to send the API key to {url.host!r}: not the base URL's host."
            )
        request = self._http.build_request(
            method,
            url,
            params=params,
            json=json,
            headers={
                API_KEY_HEADER: self._api_key.reveal(),
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                "Accept-Encoding": ACCEPT_ENCODING,
            },
            timeout=self._timeout,
        )
        with anyio.CancelScope() as scope:
            self._life.in_flight.add(scope)
            try:
                return await self._send_with_retries(request)
            finally:
                self._life.in_flight.discard(scope)
        raise ClientClosedError(f"{_CLOSED} (it was closed while this request waited or ran)")

    async def _send_with_retries(self, request: httpx.Request) -> httpx.Response:
        idempotent = request.method.upper() in _IDEMPOTENT_METHODS
        # Asked once per request, so that with logging off an attempt costs
        # nothing more than before: no clock read, no string built.
        logged = logger.isEnabledFor(logging.DEBUG)
        retry = 0
        while True:
            if logged:
                outcome = await self._logged_attempt(request, retry)
            else:
                await self._limiter.acquire(request)
                if self._life.closed:
                    raise ClientClosedError(_CLOSED)
                outcome = await self._attempt(request)
            if isinstance(outcome, _Failure):
                self._limiter.feedback(request, None)
                if retry < self._max_retries and (idempotent or outcome.never_sent):
                    await self._wait_before_retry(request, retry, None, outcome.reason)
                    retry += 1
                    continue
                raise outcome.error
            self._limiter.feedback(request, outcome)
            if outcome.is_success:
                return outcome
            status = outcome.status_code
            if retry < self._max_retries and (
                status == 429  # refused, not acted on: safe to send again, even a POST
                or (idempotent and (status in _RETRIED_STATUSES or status >= 500))
            ):
                await self._wait_before_retry(request, retry, outcome, str(outcome.status_code))
                retry += 1
                continue
            raise status_error(outcome)

    async def _logged_attempt(
        self, request: httpx.Request, retry: int
    ) -> httpx.Response | _Failure:
        """Wait for the limiter and make one attempt, as above, then log it at DEBUG.

        The line tells the method, path and query, the status (or what went
        wrong when no response came), how long the attempt took and how long
        the limiter held it back, both read on the event loop's clock.
        """
        clock = asyncio.get_running_loop().time
        queued = clock()
        await self._limiter.acquire(request)
        if self._life.closed:
            raise ClientClosedError(_CLOSED)
        started = clock()
        try:
            outcome = await self._attempt(request)
        except BaseException as exc:  # an invalid body, a cancellation: logged, then raised
            log_attempt(
                request, type(exc).__name__, queued, started, clock(), retry, self._max_retries
            )
            raise
        result = outcome.reason if isinstance(outcome, _Failure) else outcome.status_code
        log_attempt(request, result, queued, started, clock(), retry, self._max_retries)
        return outcome

    async def _attempt(self, request: httpx.Request) -> httpx.Response | _Failure:
        """One attempt: the response, or the failure (built here, raised by the caller).

        The failure is raised outside this ``except`` block so that the raw
        httpx exception, which holds the live request, is not even its
        ``__context__``.
        """
        try:
            return await self._send_following_redirects(request)
        except _HTTPX_ERRORS as exc:
            failure = _Failure(
                _connection_error(request, exc),
                never_sent=isinstance(exc, _NEVER_SENT),
                reason=type(exc).__name__,
            )
        return failure

    async def _send_following_redirects(self, request: httpx.Request) -> httpx.Response:
        redirects = 0
        while True:
            response = await self._http.send(request, follow_redirects=False, stream=True)
            next_request = response.next_request
            if (
                next_request is None
                or redirects >= _MAX_REDIRECTS
                or not same_origin(next_request.url, self._base_url)
            ):
                return await self._read(response)
            await response.aclose()
            request = next_request
            redirects += 1

    async def _read(self, response: httpx.Response) -> httpx.Response:
        """``response`` with its body read: at most ``max_response_bytes``, once decoded.

        The body is decoded chunk by chunk within the cap (``_body.py``), so a
        gzip bomb is refused before it fills the memory; the response then
        holds the decoded body and no ``Content-Encoding``.
        """
        limit = self._max_response_bytes
        too_large, problem = False, None
        try:
            if response.is_stream_consumed:  # an in-memory transport's, decoded already
                too_large = len(response.content) > limit
            elif _plain_within(response.headers, limit):
                await response.aread()  # the HTTP framing holds it to its Content-Length
            else:
                decoder = BodyDecoder(response.headers.get("content-encoding"), limit)
                response.headers.pop("content-encoding", None)
                assert isinstance(response.stream, httpx.AsyncByteStream)
                response.stream = DecodedStream(response.stream, decoder)
                await response.aread()
        except BodyTooLarge:
            too_large = True
        except UndecodableBody as exc:
            problem = str(exc)
        finally:
            await response.aclose()
        if problem is not None:
            raise httpx.DecodingError(problem, request=response.request)
        if too_large:
            unread = httpx.Response(
                response.status_code,
                headers=response.headers,
                request=response.request,
                extensions=response.extensions,
            )
            raise invalid_response(
                unread, f"the body exceeds max_response_bytes ({limit:,} bytes once decoded)"
            )
        return response

    async def _wait_before_retry(
        self, request: httpx.Request, retry: int, response: httpx.Response | None, reason: str
    ) -> None:
        delay = self._backoff.delay(retry, response)
        logger.info(  # handled: INFO, like every retry backoff
            "Retrying %s %s after %s in %.2f s (retry %d of %d)",
            request.method,
            safe_request(request).url,
            reason,
            delay,
            retry + 1,
            self._max_retries,
        )
        await anyio.sleep(delay)


def _plain_within(headers: httpx.Headers, limit: int) -> bool:
    """Whether a body is sent as is and announced no longer than ``limit``: read it plainly."""
    encoding = headers.get("content-encoding", "identity").strip().lower()
    length = headers.get("content-length", "")
    return encoding in ("", "identity") and length.isdigit() and int(length) <= limit


def _connection_error(request: httpx.Request, exc: Exception) -> APIConnectionError:
    safe = safe_request(request)
    where = f"{safe.method} {safe.url}"
    detail = scrub(str(exc) or type(exc).__name__)
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"{where} timed out: {detail}", request=safe)
    if isinstance(exc, httpx.DecodingError):
        return APIConnectionError(
            f"{where}: the response body could not be decoded: {detail}", request=safe
        )
    return APIConnectionError(f"{where} failed: {type(exc).__name__}: {detail}", request=safe)
