"""The request log: what each request asked and how the simulator answered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._faults import Fault

__all__ = ["RecordedRequest", "merge_headers"]


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


def merge_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header pairs as a dict with lower-cased names, repeated headers joined as HTTP allows."""
    headers: dict[str, str] = {}
    for raw_name, value in pairs:
        name = raw_name.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers
