"""Fault injection: rules that make chosen requests slow, failing or broken.

Rules are matched in the order they were added, before authentication and
rate limiting; a faulted request consumes no budget. Each effect imitates
something a real network or server does:

==============  ==============================================================
``delay``       the answer comes late (slept on the event loop: fake time applies)
``status``      an error status with an Edges error body (or ``body``), at once
``malformed``   a 200 whose JSON body is cut short
``drop``        the connection dies mid-response: ``httpx.RemoteProtocolError``
``refuse``      the request never reaches the server: ``httpx.ConnectError``
==============  ==============================================================

``refuse`` needs the in-process transport (:meth:`EdgesSimulator.transport`),
which raises before calling the app; over a real socket the server can only
drop the connection, so ``refuse`` behaves as ``drop`` there.
"""

from __future__ import annotations

import contextvars
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

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
    from collections.abc import Callable, Mapping, Sequence

    from starlette.types import ASGIApp, Send

__all__ = [
    "PREMATCHED",
    "Fault",
    "FaultSet",
    "Prematch",
    "SimulatedDisconnect",
    "SimulatorTransport",
    "fault_response",
    "send_drop",
    "send_malformed",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """A rule that injects a fault into matching requests.

    ``method`` (``None``: any) and ``path`` (a regular expression searched in
    the URL path; ``None``: any) choose the requests; ``times`` is how many
    requests the rule applies to (``None``: all of them).

    Effects: ``delay`` seconds (float or timedelta) before anything else, then
    at most one of: ``status`` (answered at once with an Edges error body, or
    ``body``: ``str``/``bytes`` sent raw, anything else as JSON; plus
    ``headers``), ``malformed``, ``drop`` or ``refuse``. A delay alone lets the
    request through once slept.

    Example: ``Fault(path=r"/outputs$", status=429, headers={"Retry-After": "3"}, times=2)``
    answers the next two outputs requests with a 429.
    """

    method: str | None = None
    path: str | None = None
    times: int | None = 1
    status: int | None = None
    body: str | bytes | Mapping[str, Any] | Sequence[Any] | None = None
    headers: Mapping[str, str] | None = None
    delay: float | timedelta = 0.0
    drop: bool = False
    refuse: bool = False
    malformed: bool = False

    def __post_init__(self) -> None:
        if self.times is not None and self.times < 1:
            raise ValueError("Fault.times must be at least 1 (or None for every request)")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError("Fault.status must be an HTTP status code")
        if self.delay_seconds < 0:
            raise ValueError("Fault.delay cannot be negative")
        if self.path is not None:
            re.compile(self.path)
        answers = self.status is not None or self.body is not None
        effects = sum((answers, self.drop, self.refuse, self.malformed))
        if effects > 1:
            raise ValueError("a Fault has at most one of status/body, drop, refuse, malformed")
        if effects == 0 and self.delay_seconds == 0:
            raise ValueError(
                "a Fault needs an effect: delay, status, body, drop, refuse, malformed"
            )

    @property
    def delay_seconds(self) -> float:
        """``delay`` in seconds."""
        if isinstance(self.delay, timedelta):
            return self.delay.total_seconds()
        return float(self.delay)

    @property
    def answers(self) -> bool:
        """Whether the fault answers in place of the server (``status`` or ``body``)."""
        return self.status is not None or self.body is not None


@dataclass(slots=True)
class _Rule:
    fault: Fault
    pattern: re.Pattern[str] | None
    remaining: int | None


class FaultSet:
    """The simulator's fault rules (``sim.faults``), matched in the order added."""

    __slots__ = ("_rules",)

    def __init__(self) -> None:
        self._rules: list[_Rule] = []

    def add(self, *faults: Fault) -> None:
        """Add rules, after the ones already there."""
        for fault in faults:
            pattern = re.compile(fault.path) if fault.path is not None else None
            self._rules.append(_Rule(fault, pattern, fault.times))

    def clear(self) -> None:
        """Remove every rule."""
        self._rules.clear()

    def match(self, method: str, path: str) -> Fault | None:
        """The first rule matching a request, used up once; ``None`` if none matches."""
        for position, rule in enumerate(self._rules):
            fault = rule.fault
            if fault.method is not None and fault.method.upper() != method.upper():
                continue
            if rule.pattern is not None and rule.pattern.search(path) is None:
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining == 0:
                    del self._rules[position]
            return fault
        return None

    @property
    def pending(self) -> list[tuple[Fault, int | None]]:
        """The rules not used up yet, with how many requests each still applies to."""
        return [(rule.fault, rule.remaining) for rule in self._rules]

    def __len__(self) -> int:
        return len(self._rules)

    def __repr__(self) -> str:
        return f"FaultSet({self.pending!r})"


class SimulatedDisconnect(Exception):
    """Raised by the app when a ``drop`` fault kills the connection mid-response."""


@dataclass(frozen=True, slots=True)
class Prematch:
    """The fault the in-process transport matched for the request it is sending."""

    fault: Fault | None = field(default=None)


#: Set by :class:`SimulatorTransport` around each call of the app, so the app
#: does not match (and use up) the fault rules a second time.
PREMATCHED: contextvars.ContextVar[Prematch | None] = contextvars.ContextVar(
    "edges_simulator_prematched", default=None
)


def fault_response(fault: Fault, error_ref: str) -> Response:
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


async def send_drop(send: Send) -> None:
    """Start a response, send part of its body, and die."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'[{"index":0,"full_', "more_body": True})
    raise SimulatedDisconnect("simulated fault: connection dropped mid-response")


async def send_malformed(send: Send) -> None:
    """A 200 JSON response whose body is cut short."""
    body = b'[{"index":0,"full_name":"Ada Lovel'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SimulatorTransport(httpx.AsyncBaseTransport):
    """An in-process transport to the simulator that fails the way a network does.

    It wraps ``httpx.ASGITransport(app=simulator)``; a ``refuse`` fault raises
    ``httpx.ConnectError`` without calling the app, and a ``drop`` fault
    surfaces as ``httpx.RemoteProtocolError``.
    """

    def __init__(
        self,
        app: ASGIApp,
        faults: FaultSet,
        on_refused: Callable[[httpx.Request, Fault], None],
    ) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._faults = faults
        self._on_refused = on_refused

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request to the simulator."""
        fault = self._faults.match(request.method, request.url.path)
        if fault is not None and fault.refuse:
            self._on_refused(request, fault)
            await anyio.sleep(fault.delay_seconds)
            raise httpx.ConnectError("simulated fault: connection refused", request=request)
        token = PREMATCHED.set(Prematch(fault))
        try:
            return await self._asgi.handle_async_request(request)
        except SimulatedDisconnect as exc:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a complete response", request=request
            ) from exc
        finally:
            PREMATCHED.reset(token)

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._asgi.aclose()

    def __repr__(self) -> str:
        return f"SimulatorTransport(faults={len(self._faults)})"
