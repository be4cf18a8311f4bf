"""The run events hub: the one way news about runs travels inside a client.

Each ``AsyncClient`` owns one :class:`RunEvents`. The parts that learn
something about a run publish it there; the parts that act on it subscribe:

- :class:`RunLaunched`: ``client.actions`` after a launch; the poller hears it.
- :class:`RunResumed`: ``client.runs.resume``; the poller's callback ledger.
- :class:`CallbacksServed`: a ``CallbackReceiver`` of the client, from
  ``receiver.callback(url)``; the poller's callback ledger.
- :class:`CallbackReceived`: that receiver, once per callback; the poller.
- :class:`RunChanged`, :class:`RunEnded`, :class:`RunFailed`: the poller (a
  new status seen, a terminal run in full, a wait that cannot go on); the
  waiters.

Nobody calls back up into the object that built it: resources, the receiver
and the poller only publish, and only the hub knows who listens. The
interface is two methods, :meth:`RunEvents.publish` and
:meth:`RunEvents.subscribe`, so a hub shared across processes can take this
one's place without the publishers or subscribers changing.

A receiver's per-run streams (``receiver.events`` / ``.results``) are its own
and fed by it directly, before it publishes: whether they have room decides
the receiver's answer (503 when full), and a hub listener cannot answer that;
two receivers of one client keep their streams apart.

Delivery is synchronous, in the publisher's task, to the listeners of the
event's exact type in the order they subscribed: a listener must not block or
await, and an exception in one reaches the publisher (they are the SDK's own
listeners, and a bug must not pass silently).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, final

from ._callback_models import CallbackEvent
from ._models import Run

__all__ = [
    "CallbackReceived",
    "CallbacksServed",
    "RunChanged",
    "RunEnded",
    "RunEvent",
    "RunEvents",
    "RunFailed",
    "RunLaunched",
    "RunResumed",
    "WaitEvent",
]


@final
@dataclass(frozen=True, slots=True)
class RunLaunched:
    """A run was launched, with callbacks sent to ``callback_url`` if any."""

    run_uid: str
    callback_url: str | None


@final
@dataclass(frozen=True, slots=True)
class RunResumed:
    """A run was resumed: whatever said it ended is out of date."""

    run_uid: str


@final
@dataclass(frozen=True, slots=True)
class CallbacksServed:
    """A receiver publishing here takes the callbacks Edges sends to ``url``."""

    url: str


@final
@dataclass(frozen=True, slots=True)
class CallbackReceived:
    """A callback arrived (once per ``callback_ref_uid``)."""

    event: CallbackEvent


@final
@dataclass(frozen=True, slots=True)
class RunChanged:
    """A waited-for run was seen with a new status (or a waiter joined, with the last one)."""

    run_uid: str
    """The uid waited for, lower-case (``run.uid`` is as the API spelt it)."""
    run: Run


@final
@dataclass(frozen=True, slots=True)
class RunEnded:
    """A waited-for run reached a terminal status: ``run`` is the full run object."""

    run_uid: str
    """The uid waited for, lower-case."""
    run: Run


@final
@dataclass(frozen=True, slots=True)
class RunFailed:
    """The wait for a run cannot go on: its waiters get ``error``."""

    run_uid: str
    """The uid waited for, lower-case."""
    error: Exception
    """An ``EdgesError``, or what a custom transport or limiter raised."""


WaitEvent = RunChanged | RunEnded | RunFailed
"""What waiters hear about a run they wait for."""

RunEvent = RunLaunched | RunResumed | CallbacksServed | CallbackReceived | WaitEvent

_E = TypeVar("_E", bound=RunEvent)


@final
class RunEvents:
    """The hub: listeners subscribe to one type of event each; publishers publish."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: dict[type[Any], list[Callable[[Any], None]]] = {}

    def subscribe(self, kind: type[_E], listener: Callable[[_E], None]) -> Callable[[], None]:
        """Call ``listener`` with every event of type ``kind``; returns the unsubscribe function."""
        listeners = self._listeners.setdefault(kind, [])
        listeners.append(listener)

        def unsubscribe() -> None:
            if listener in listeners:
                listeners.remove(listener)

        return unsubscribe

    def publish(self, event: RunEvent) -> None:
        """Hand ``event`` to its listeners, now, in the order they subscribed."""
        for listener in tuple(self._listeners.get(type(event), ())):
            listener(event)

    def __repr__(self) -> str:
        counts = ", ".join(
            f"{kind.__name__}: {len(found)}" for kind, found in self._listeners.items()
        )
        return f"<RunEvents {counts}>"
