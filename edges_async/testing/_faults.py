"""Fault rules: which requests to make slow, failing or broken, and how.

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
which can raise before any answer; over a real socket the server can only
drop the connection, so ``refuse`` behaves as ``drop`` there. This module holds
the rules; :mod:`._fault_injection` decides, applies and logs them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from edges_async._backoff import to_seconds

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["Fault", "FaultSet"]


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
        return to_seconds(self.delay)

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
