"""The request log: what each request asked and how the simulator answered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from starlette.types import Scope

    from ._faults import Fault
    from ._workspace import Workspace

__all__ = ["RecordedRequest", "RequestLog"]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the simulator received, as logged in ``sim.requests``."""

    time: float
    """The simulator's clock when the request arrived."""
    method: str
    path: str
    query: list[tuple[str, str]]
    """Query parameters in order, repeated keys kept."""
    headers: dict[str, str]
    """Request headers, names lower-cased (repeated ones joined with ", ")."""
    workspace_uid: str | None
    """The workspace the ``X-API-Key`` belongs to, or ``None``."""
    status_code: int | None
    """The status answered; ``None`` when the connection was dropped or refused."""
    fault: Fault | None
    """The fault rule applied to the request, if any."""


class RequestLog:
    """The requests, in the order the answers were given (only the newest ones, if bounded)."""

    __slots__ = ("_max_entries", "_workspace_for_key", "entries")

    def __init__(
        self, workspace_for_key: Callable[[str], Workspace | None], max_entries: int | None
    ) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_logged_requests must be >= 1, got {max_entries}")
        self._workspace_for_key = workspace_for_key
        self._max_entries = max_entries
        self.entries: list[RecordedRequest] = []

    def record(self, arrived: float, scope: Scope, status: int | None, fault: Fault | None) -> None:
        """Log the HTTP request of ``scope``, which arrived at clock reading ``arrived``."""
        headers = _merge_headers(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
        )
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        workspace = self._workspace_for_key(headers.get("x-api-key", ""))
        self.entries.append(
            RecordedRequest(
                time=arrived,
                method=scope["method"],
                path=scope["path"],
                query=query,
                headers=headers,
                workspace_uid=workspace.uid if workspace is not None else None,
                status_code=status,
                fault=fault,
            )
        )
        # Trim in chunks of a tenth, so the amortised cost per request stays O(1).
        if self._max_entries is not None and len(self.entries) > self._max_entries * 1.1:
            del self.entries[: len(self.entries) - self._max_entries]

    def __len__(self) -> int:
        return len(self.entries)


def _merge_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header pairs as a dict with lower-cased names, repeated headers joined as HTTP allows."""
    headers: dict[str, str] = {}
    for raw_name, value in pairs:
        name = raw_name.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers
