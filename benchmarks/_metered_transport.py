"""The transport ``bench_polling.py`` puts between the client and the simulator.

It counts requests and 429s, tells which of the poller's mechanisms each
request is, and keeps its own and the simulator's CPU apart from the
client's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx
from pydantic_core import from_json

import edges_async as ea

__all__ = ["TERMINAL", "MeteredTransport", "mechanism"]

TERMINAL = frozenset(status.value for status in ea.TERMINAL_STATUSES)


def mechanism(request: httpx.Request) -> str | None:
    """Which of the poller's mechanisms sent ``request``: ``feed``, ``net`` or None."""
    path = request.url.path
    if path.endswith("/runs"):
        params = request.url.params
        if "uid" in params:
            return "net"
        return "feed" if "-updated_at" in params.get_list("sort") else None
    if "/runs/" in path and path.rsplit("/", 1)[-1] not in ("outputs", "resume", "cancel"):
        return "net"  # GET /v1/runs/{uid} or /v1/runs/{uid}/status
    return None


class MeteredTransport(httpx.AsyncBaseTransport):
    """Counts requests and 429s, tells which mechanism showed each run ended, and times both.

    ``httpx.ASGITransport`` runs the simulator's app inline, in the awaiting
    task, and nothing in the app's GET routes suspends: the process CPU time
    between entering and leaving ``handle_async_request`` is the server's work
    plus this bookkeeping (reading the answers' runs), none of which a real
    client would pay: ``outside_cpu`` sums it. ``overlaps`` counts calls
    entered while another was inside: were it ever non-zero, that reasoning
    would fail, and the cell with it.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, waited: Iterable[str]) -> None:
        self._inner = inner
        self._inside = 0
        self._waited = frozenset(waited)
        self.requests = self.refused = self.overlaps = 0
        self.outside_cpu = 0.0
        self.ended_by: dict[str, str] = {}
        """For each waited run shown ended, the mechanism of the last answer that showed it."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Forward ``request`` to the simulator, timing it and reading its answer."""
        self.overlaps += self._inside > 0
        self._inside += 1
        started = time.process_time()
        try:
            response = await self._inner.handle_async_request(request)
            kind = mechanism(request) if response.status_code == 200 else None
            if kind is not None:
                body = await response.aread()
                self._note_ended(kind, from_json(body))
                # A fresh, unread response: the client reads the body as it would have.
                response = httpx.Response(
                    response.status_code,
                    headers=response.headers,
                    stream=httpx.ByteStream(body),
                    extensions=response.extensions,
                )
        finally:
            self.outside_cpu += time.process_time() - started
            self._inside -= 1
        self.requests += 1
        self.refused += response.status_code == 429
        return response

    def _note_ended(self, kind: str, body: Any) -> None:
        for item in body if isinstance(body, list) else [body]:
            if isinstance(item, dict) and item.get("status") in TERMINAL:
                uid = str(item.get("uid", "")).lower()
                if uid in self._waited:
                    self.ended_by[uid] = kind

    async def aclose(self) -> None:
        """Close the simulator's transport."""
        await self._inner.aclose()
