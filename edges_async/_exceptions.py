"""The errors edges_async raises.

The whole hierarchy::

    EdgesError
    ├── ConfigurationError                (also a ValueError)
    ├── ClientClosedError                 (also a RuntimeError)
    ├── EventLoopError                    (also a RuntimeError)
    ├── APIConnectionError
    │   └── APITimeoutError
    ├── APIResponseValidationError
    ├── APIStatusError
    │   ├── BadRequestError               400
    │   ├── AuthenticationError           401
    │   ├── PaymentRequiredError          402
    │   ├── PermissionDeniedError         403
    │   ├── NotFoundError                 404
    │   ├── ConflictError                 409
    │   ├── UnprocessableEntityError      422
    │   ├── FailedDependencyError         424
    │   ├── RateLimitError                429
    │   └── InternalServerError           5xx
    ├── PaginationError
    ├── IncompleteExportError
    ├── ExportInProgressError
    └── WaitTimeoutError                  (also a TimeoutError)

Arguments that can never be valid raise the built-in ``ValueError`` before any
request is sent. No error ever holds a secret (the API key, a callback's
headers): its message is scrubbed, and the request and response it carries are
redacted copies (``_redaction.py``), never the live objects, nor chained to a
raw httpx exception that holds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import httpx

from ._redaction import scrub, scrub_json

if TYPE_CHECKING:
    from ._models import ErrorBody, Run

__all__ = [
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConfigurationError",
    "ConflictError",
    "EdgesError",
    "EventLoopError",
    "ExportInProgressError",
    "FailedDependencyError",
    "IncompleteExportError",
    "InternalServerError",
    "NotFoundError",
    "PaginationError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "UnprocessableEntityError",
    "WaitTimeoutError",
    "status_error_class",
]


class EdgesError(Exception):
    """The root of every error edges_async raises on purpose.

    Its text arguments are scrubbed of every secret when it is made, whatever
    module makes it and whatever it quotes (a link, a path, a server's words).
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(scrub(arg) if isinstance(arg, str) else arg for arg in args))

    resume_cursor: str | None = None
    """Set when the error interrupted a run's outputs: pass it as ``cursor=`` to go on
    right after the last page delivered (``None`` there means: from the start)."""


class ConfigurationError(EdgesError, ValueError):
    """The client cannot be built as configured (no API key, a bad base URL or plan)."""


class ClientClosedError(EdgesError, RuntimeError):
    """The client was used after it was closed."""


class EventLoopError(EdgesError, RuntimeError):
    """The client was used outside asyncio, or from another event loop than its own."""


class APIConnectionError(EdgesError):
    """No usable HTTP response arrived: the connection failed or broke, or the body was corrupt."""

    def __init__(self, message: str, *, request: httpx.Request) -> None:
        super().__init__(message)
        self.request = request


class APITimeoutError(APIConnectionError):
    """The HTTP request timed out (connect, read, write or pool timeout)."""


class APIResponseValidationError(EdgesError):
    """A response carried a body the SDK cannot read: malformed, or over ``max_response_bytes``."""

    def __init__(self, message: str, *, response: httpx.Response) -> None:
        super().__init__(message)
        self.response = response
        self.request = response.request
        self.status_code = response.status_code


class APIStatusError(EdgesError):
    """The API answered with an error status; the subclass says which one."""

    def __init__(self, message: str, *, response: httpx.Response, body: ErrorBody | None) -> None:
        super().__init__(message)
        self.response = response
        self.request = response.request
        self.status_code = response.status_code
        self.body = body
        message = scrub(message)
        self.error_label = body.error_label if body else None
        self.error_scope = body.error_scope if body else None
        self.error_ref = body.error_ref if body else None
        self.message = body.message if body and body.message else message


class BadRequestError(APIStatusError):
    """400: the request's input or parameters were refused (BAD_INPUT, BAD_PARAMETERS)."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or invalid."""


class PaymentRequiredError(APIStatusError):
    """402: the workspace has no access to this feature (NO_ACCESS, billing)."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this."""


class NotFoundError(APIStatusError):
    """404: no such run or action, or the run was archived after 90 days."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the resource's current state."""


class UnprocessableEntityError(APIStatusError):
    """422: the run was aborted or the operation refused (e.g. resuming a flow's run)."""


class FailedDependencyError(APIStatusError):
    """424: an upstream or processing failure (NO_RESULT, LK_*, PROXY_ERROR...)."""


class RateLimitError(APIStatusError):
    """429: a rate limit was hit and retries did not get through."""

    @property
    def retry_after(self) -> str | None:
        """The raw ``Retry-After`` header of the refusal, if any."""
        value: str | None = self.response.headers.get("retry-after")
        return value

    @property
    def rate_limit_type(self) -> str | None:
        """Which limit fired, from ``X-RateLimit-Type`` (e.g. ``/v1/runs/outputs``)."""
        value: str | None = self.response.headers.get("x-ratelimit-type")
        return value


class InternalServerError(APIStatusError):
    """5xx: the server failed, and retries did not get through."""


class PaginationError(EdgesError):
    """A next-page link cannot be followed safely (another host, or a loop)."""


class IncompleteExportError(EdgesError):
    """An export wrote a different number of outputs than the run reports."""

    def __init__(self, message: str, *, expected: int, written: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.written = written


class ExportInProgressError(EdgesError):
    """Another export to the same path is running (in this process or another)."""


class WaitTimeoutError(EdgesError, TimeoutError):
    """Waiting for runs passed its deadline; ``runs`` holds the last state of each pending run."""

    def __init__(self, message: str, *, runs: Sequence[Run] = ()) -> None:
        super().__init__(message)
        self.runs: list[Run] = [_scrubbed_run(run) for run in runs]


def _scrubbed_run(run: Run) -> Run:
    """``run``, or a copy of it without the secrets the server echoed into its fields."""
    dumped = run.model_dump(mode="json", exclude_unset=True)
    scrubbed = scrub_json(dumped)
    return run if scrubbed == dumped else type(run).model_validate(scrubbed)


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    424: FailedDependencyError,
    429: RateLimitError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The error class for an HTTP error status (``APIStatusError`` when none is specific)."""
    if status_code >= 500:
        return InternalServerError
    return _STATUS_ERRORS.get(status_code, APIStatusError)
