"""Wire helpers shared by the simulator's modules: JSON bodies, error bodies, timestamps.

Edges answers every error with one JSON shape::

    {"error_label": "NOT_FOUND", "error_scope": "input", "error_ref": "ERR-000001",
     "message": "Run ... not found", "status_code": 404}

Handlers raise :class:`APIError`; the simulator turns it into that body with a
fresh ``error_ref``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "JSON_CONTENT_TYPE",
    "APIError",
    "default_error_label",
    "default_error_scope",
    "dump_json",
    "error_body",
    "format_time",
    "json_response",
]

JSON_CONTENT_TYPE = "application/json"

# The label Edges documents for each status; statuses it documents none for get
# ``STATUS_<code>``, the shape its upstream errors take (STATUS_403, STATUS_429...).
_LABELS: dict[int, str] = {
    400: "BAD_PARAMETERS",
    401: "UNAUTHORIZED",
    402: "NO_ACCESS",
    404: "NOT_FOUND",
    422: "ACTION_ABORTED",
    424: "GENERIC_ERROR",
    429: "STATUS_429",
}

_SCOPES: dict[int, str] = {400: "input", 401: "auth", 402: "auth", 403: "auth", 429: "rate_limit"}


def default_error_label(status_code: int) -> str:
    """The ``error_label`` a bare error of this status carries."""
    if status_code >= 500:
        return "INTERNAL_ERROR"
    return _LABELS.get(status_code, f"STATUS_{status_code}")


def default_error_scope(status_code: int) -> str:
    """The ``error_scope`` a bare error of this status carries."""
    if status_code >= 500:
        return "server"
    return _SCOPES.get(status_code, "request")


class APIError(Exception):
    """Raised by a handler to answer with an Edges error body."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        label: str | None = None,
        scope: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.label = label or default_error_label(status_code)
        self.scope = scope or default_error_scope(status_code)
        self.headers: dict[str, str] = dict(headers or {})

    def to_response(self, error_ref: str) -> Response:
        """The error as a JSON response carrying ``error_ref``."""
        body = error_body(self.status_code, self.label, self.scope, self.message, error_ref)
        return json_response(body, status_code=self.status_code, headers=self.headers)


def error_body(
    status_code: int, label: str, scope: str, message: str, error_ref: str
) -> dict[str, Any]:
    """The Edges error body."""
    return {
        "error_label": label,
        "error_scope": scope,
        "error_ref": error_ref,
        "message": message,
        "status_code": status_code,
    }


def dump_json(data: Any) -> bytes:
    """Compact UTF-8 JSON, as a Node server writes it."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(
    data: Any, *, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response."""
    return Response(
        dump_json(data), status_code=status_code, headers=headers, media_type=JSON_CONTENT_TYPE
    )


def format_time(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a ``Z``, as JavaScript's ``toISOString``."""
    if moment is None:
        return None
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
