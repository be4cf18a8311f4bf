"""Where a request meets its fault: matched once, applied, and logged, in one place.

Every HTTP request enters the simulator through :class:`FaultInjector`, an
ASGI app in front of the API's routes. It takes the first matching rule of the
:class:`~._faults.FaultSet` (using it up), sleeps its delay, then answers in
the API's place, cuts the response short, or lets the routes answer; either
way it logs the request. :class:`SimulatorTransport`, the in-process httpx
transport, marks its requests so that a ``refuse`` fault can refuse them
before any answer, and turns the simulated breakages into httpx's exceptions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import httpx
from starlette.responses import Response

from ._wire import (
    JSON_CONTENT_TYPE,
    default_error_label,
    default_error_scope,
    dump_json,
    error_body,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from ._clock import SimClock
    from ._faults import Fault, FaultSet
    from ._log import RequestLog

__all__ = ["FaultInjector", "SimulatedDisconnect", "SimulatorTransport"]

# Set in the scope of requests that come through SimulatorTransport, which can refuse them.
_IN_PROCESS = "edges_simulator.in_process"


class SimulatedDisconnect(Exception):
    """Raised by the app when a ``drop`` fault kills the connection mid-response."""


class _SimulatedRefusal(Exception):
    """Raised by the app, before any answer, when a ``refuse`` fault refuses an in-process call."""


class FaultInjector:
    """The simulator's ASGI entry point: faults, then the API's routes; every request logged."""

    __slots__ = ("_api", "_clock", "_error_ref", "_faults", "_log")

    def __init__(
        self,
        api: ASGIApp,
        *,
        faults: FaultSet,
        log: RequestLog,
        clock: SimClock,
        error_ref: Callable[[], str],
    ) -> None:
        self._api = api
        self._faults = faults
        self._log = log
        self._clock = clock
        self._error_ref = error_ref

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI request, applying the first fault rule that matches it."""
        if scope["type"] != "http":
            await self._api(scope, receive, send)
            return
        arrived = self._clock.now()
        fault = self._faults.match(scope["method"], scope["path"])
        if fault is not None and fault.refuse and scope.get(_IN_PROCESS):
            # The connection is never made: logged now, refused once the delay is slept.
            self._log.record(arrived, scope, None, fault)
            await anyio.sleep(fault.delay_seconds)
            raise _SimulatedRefusal
        status: int | None = None

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if fault is not None and fault.delay_seconds > 0:
                await anyio.sleep(fault.delay_seconds)
            if fault is None or not (
                fault.answers or fault.malformed or fault.drop or fault.refuse
            ):
                await self._api(scope, receive, recording_send)
            elif fault.answers:
                answer = _fault_response(fault, self._error_ref())
                await answer(scope, receive, recording_send)
            elif fault.malformed:
                await _send_malformed(recording_send)
            else:
                # drop, or refuse over a real socket: the server can only hang up.
                await _send_drop(send)
        finally:
            self._log.record(arrived, scope, status, fault)

    def __repr__(self) -> str:
        return f"FaultInjector(faults={len(self._faults)}, logged={len(self._log)})"


def _fault_response(fault: Fault, error_ref: str) -> Response:
    """The answer of a ``status``/``body`` fault."""
    status = fault.status if fault.status is not None else 200
    media_type = JSON_CONTENT_TYPE
    if isinstance(fault.body, bytes):
        content = fault.body
        media_type = "text/plain; charset=utf-8"
    elif isinstance(fault.body, str):
        content = fault.body.encode()
        media_type = "text/plain; charset=utf-8"
    elif fault.body is not None:
        content = dump_json(fault.body)
    else:
        message = f"Simulated fault: HTTP {status}"
        label, scope = default_error_label(status), default_error_scope(status)
        content = dump_json(error_body(status, label, scope, message, error_ref))
    headers = dict(fault.headers or {})
    for name in list(headers):
        if name.lower() == "content-type":
            media_type = headers.pop(name)
    return Response(content, status_code=status, headers=headers, media_type=media_type)


async def _send_drop(send: Send) -> None:
    """Start a response, send part of its body, and die."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'[{"index":0,"full_', "more_body": True})
    raise SimulatedDisconnect("simulated fault: connection dropped mid-response")


async def _send_malformed(send: Send) -> None:
    """A 200 JSON response whose body is cut short."""
    body = b'[{"index":0,"full_name":"Ada Lovel'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SimulatorTransport(httpx.AsyncBaseTransport):
    """An in-process transport to the simulator that fails the way a network does.

    It wraps ``httpx.ASGITransport(app=simulator)``; a ``refuse`` fault raises
    ``httpx.ConnectError`` before any answer, and a ``drop`` fault surfaces as
    ``httpx.RemoteProtocolError``.
    """

    def __init__(self, app: ASGIApp, faults: FaultSet) -> None:
        async def in_process(scope: Scope, receive: Receive, send: Send) -> None:
            await app({**scope, _IN_PROCESS: True}, receive, send)

        self._asgi = httpx.ASGITransport(app=in_process)
        self._faults = faults

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request to the simulator."""
        try:
            return await self._asgi.handle_async_request(request)
        except _SimulatedRefusal:
            raise httpx.ConnectError(
                "simulated fault: connection refused", request=request
            ) from None
        except SimulatedDisconnect as exc:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a complete response", request=request
            ) from exc

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._asgi.aclose()

    def __repr__(self) -> str:
        return f"SimulatorTransport(faults={len(self._faults)})"
