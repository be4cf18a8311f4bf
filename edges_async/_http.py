"""The one HTTP layer every request goes through: auth, rate limiting, retries, errors.

Retry rules. A GET (any idempotent method) is retried on 408, 429, 5xx and on
transport errors. A POST launches or changes something, and sending it twice
can launch a run twice, so it is retried only when it surely never reached the
server: the connection could not be opened, or no pooled connection was free.
Redirects are followed only within the base URL's origin; the key is never sent
anywhere else.
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar, final

import anyio
import httpx
import pydantic
import pydantic_core

from ._backoff import Backoff
from ._config import ApiKey, same_origin
from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    ClientClosedError,
    status_error_class,
)
from ._limiter import RateLimiter
from ._models import ErrorBody
from ._version import __version__

__all__ = [
    "HTTPCore",
    "QueryParams",
    "decode_json",
    "invalid_response",
    "parse_model",
    "parse_models",
]

logger = logging.getLogger("edges_async")

QueryParams = list[tuple[str, str | int | float | bool | None]]

USER_AGENT = f"edges-async/{__version__}"
API_KEY_HEADER = "X-API-Key"
_REDACTED = "[redacted]"
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_RETRIED_STATUSES = frozenset({408, 429})
_MAX_REDIRECTS = 5
# Errors raised before a single byte of the request left this machine.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_BODY_SNIPPET = 200

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


def _redacted(request: httpx.Request) -> httpx.Request:
    """A copy of ``request`` safe to hand to users: the API key replaced."""
    headers = request.headers.copy()
    if API_KEY_HEADER in headers:
        headers[API_KEY_HEADER] = _REDACTED
    return httpx.Request(request.method, request.url, headers=headers)


def _snippet(response: httpx.Response) -> str:
    text = response.content[:_BODY_SNIPPET].decode("utf-8", errors="replace")
    return text + ("..." if len(response.content) > _BODY_SNIPPET else "")


@final
class HTTPCore:
    """Sends requests for one client: builds, limits, retries, and maps errors."""

    __slots__ = (
        "_api_key",
        "_backoff",
        "_base_url",
        "_closed",
        "_http",
        "_limiter",
        "_max_retries",
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
    ) -> None:
        self._http = http_client
        self._base_url = base_url
        self._api_key = api_key
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff = backoff
        self._limiter = limiter
        self._closed = False

    def close(self) -> None:
        """Refuse every request from now on."""
        self._closed = True

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

    async def post(self, path: str, body: Any = None) -> httpx.Response:
        """POST a JSON body; never retried once it may have reached the server."""
        return await self.request("POST", path, json=body if body is not None else {})

    async def request(
        self,
        method: str,
        path_or_url: str | httpx.URL,
        *,
        params: QueryParams | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """Send one logical request, retrying as the rules above allow; return a 2xx response."""
        if self._closed:
            raise ClientClosedError(
                "The client is closed: open a new AsyncClient to send requests."
            )
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
            },
            timeout=self._timeout,
        )
        idempotent = method.upper() in _IDEMPOTENT_METHODS
        retry = 0
        while True:
            await self._limiter.acquire(request)
            try:
                response = await self._send_following_redirects(request)
            except httpx.TransportError as exc:
                self._limiter.feedback(request, None)
                if retry < self._max_retries and (idempotent or isinstance(exc, _NEVER_SENT)):
                    await self._wait_before_retry(request, retry, None, type(exc).__name__)
                    retry += 1
                    continue
                raise _connection_error(request, exc) from exc
            self._limiter.feedback(request, response)
            if response.is_success:
                return response
            if (
                retry < self._max_retries
                and idempotent
                and (response.status_code in _RETRIED_STATUSES or response.status_code >= 500)
            ):
                await response.aclose()
                await self._wait_before_retry(request, retry, response, str(response.status_code))
                retry += 1
                continue
            await response.aread()
            raise _status_error(response)

    async def _send_following_redirects(self, request: httpx.Request) -> httpx.Response:
        for _ in range(_MAX_REDIRECTS):
            response = await self._http.send(request, follow_redirects=False)
            next_request = response.next_request
            if next_request is None or not same_origin(next_request.url, self._base_url):
                return response
            await response.aclose()
            request = next_request
        return response

    async def _wait_before_retry(
        self, request: httpx.Request, retry: int, response: httpx.Response | None, reason: str
    ) -> None:
        delay = self._backoff.delay(retry, response)
        logger.warning(
            "Retrying %s %s after %s in %.2f s (retry %d of %d)",
            request.method,
            request.url,
            reason,
            delay,
            retry + 1,
            self._max_retries,
        )
        await anyio.sleep(delay)


def _connection_error(request: httpx.Request, exc: httpx.TransportError) -> APIConnectionError:
    safe = _redacted(request)
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"{request.method} {request.url} timed out: {detail}", request=safe)
    return APIConnectionError(
        f"{request.method} {request.url} failed: {type(exc).__name__}: {detail}", request=safe
    )


def _status_error(response: httpx.Response) -> APIStatusError:
    request = response.request
    response.request = _redacted(request)
    error_class = status_error_class(response.status_code)
    head = f"{response.status_code} {response.reason_phrase} from {request.method} {request.url}"
    if response.is_redirect:
        target = response.headers.get("location", "?")
        return error_class(
            f"{head}: redirect to {target!r} not followed (only the base URL's origin is trusted)",
            response=response,
            body=None,
        )
    try:
        body = ErrorBody.model_validate(json.loads(response.content))
    except (ValueError, TypeError):
        return error_class(
            f"{head}: the response body is not an Edges error (not JSON): {_snippet(response)!r}",
            response=response,
            body=None,
        )
    label = f"{body.error_label}: " if body.error_label else ""
    ref = f" (error_ref {body.error_ref})" if body.error_ref else ""
    return error_class(f"{head}: {label}{body.message or ''}{ref}", response=response, body=body)


def decode_json(response: httpx.Response) -> Any:
    """The JSON body of a successful response, or ``APIResponseValidationError``.

    pydantic-core's parser (already a dependency) reads bodies about 1.6x as
    fast as ``json``; object keys are interned, as every run repeats them.
    """
    try:
        return pydantic_core.from_json(response.content, cache_strings="keys")
    except ValueError as exc:
        raise invalid_response(
            response, f"the body is not valid JSON ({_snippet(response)!r})", exc
        ) from None


def invalid_response(
    response: httpx.Response, what: str, exc: Exception | None = None
) -> APIResponseValidationError:
    """An ``APIResponseValidationError`` for a 2xx body that is not what was expected."""
    request = response.request
    response.request = _redacted(request)
    return APIResponseValidationError(
        f"{response.status_code} from {request.method} {request.url}: {what}"
        + (f": {exc}" if exc is not None else ""),
        response=response,
    )


def parse_model(model: type[ModelT], response: httpx.Response) -> ModelT:
    """The response's JSON body as ``model``, or ``APIResponseValidationError``."""
    data = decode_json(response)
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise invalid_response(response, f"unexpected {model.__name__} shape", exc) from None


def parse_models(model: type[ModelT], response: httpx.Response) -> list[ModelT]:
    """The response's JSON array as a list of ``model``, or ``APIResponseValidationError``."""
    data = decode_json(response)
    if not isinstance(data, list):
        raise invalid_response(response, "expected a JSON array", TypeError(type(data).__name__))
    try:
        return [model.model_validate(item) for item in data]
    except pydantic.ValidationError as exc:
        raise invalid_response(response, f"unexpected {model.__name__} shape", exc) from None
