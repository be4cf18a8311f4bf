"""What callbacks told a client's poller: the runs they cover and the runs they ended.

A run launched with a callback URL that one of the client's receivers serves
is *covered*: its callbacks reach the client, so it is polled only as a safety
net. A final callback says the run ended, which a wait starting later still
needs to know; resuming the run makes that out of date. The ledger keeps the
last ``_MAX_REMEMBERED`` of each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import final

from ._callback_models import CallbackEvent
from ._memory import remember
from ._run_events import CallbacksServed, RunEvents, RunLaunched, RunResumed

__all__ = ["CallbackLedger"]

_MAX_REMEMBERED = 100_000  # runs remembered as covered by callbacks, or ended by one


@final
class CallbackLedger:
    """The callback URLs served, the runs covered, and the final statuses callbacks told."""

    __slots__ = ("_covered", "_ended", "_served")

    def __init__(self, events: RunEvents) -> None:
        self._served: set[str] = set()
        self._covered: dict[str, None] = {}
        self._ended: dict[str, object] = {}  # uid -> the final status a callback told
        events.subscribe(CallbacksServed, self._callbacks_served)
        events.subscribe(RunResumed, self._resumed)

    @property
    def ended(self) -> Mapping[str, object]:
        """The final status a callback told, by run uid."""
        return self._ended

    def covers(self, uid: str) -> bool:
        """Whether callbacks for ``uid`` reach the client."""
        return uid in self._covered

    def launched(self, event: RunLaunched) -> str | None:
        """The uid of the launched run if its callbacks reach the client (now covered)."""
        if event.callback_url is None or event.callback_url not in self._served:
            return None
        uid = event.run_uid.lower()
        remember(self._covered, uid, None, limit=_MAX_REMEMBERED)
        return uid

    def took(self, event: CallbackEvent) -> None:
        """A callback arrived: its run is covered, and ended if the callback is final."""
        remember(self._covered, event.run_uid, None, limit=_MAX_REMEMBERED)
        if event.is_final:
            remember(self._ended, event.run_uid, event.run.status, limit=_MAX_REMEMBERED)

    def _callbacks_served(self, event: CallbacksServed) -> None:
        self._served.add(event.url)

    def _resumed(self, event: RunResumed) -> None:
        self._ended.pop(event.run_uid, None)  # a callback's "it ended" is out of date

    def __repr__(self) -> str:
        return f"<CallbackLedger covered={len(self._covered)} ended={len(self._ended)}>"
