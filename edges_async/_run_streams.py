"""Per-run buffers of callback events, for ``CallbackReceiver.events`` / ``.results``.

Events arriving before anyone reads them are buffered, so launching a run and
then starting to read its stream never loses the first partial results. The
buffer holds at most ``max_buffered_results`` results over every run: past
that, :meth:`RunStreams.has_room` says no and the receiver answers 503, so
Edges delivers the callback again later instead of it being dropped here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import final

from ._callback_models import CallbackEvent
from ._memory import remember

__all__ = ["RunStreams"]

_MAX_FINISHED = 100_000  # final events kept for streams opened after their run ended


@final
class _Stream:
    __slots__ = ("arrived", "ended", "events", "reading")

    def __init__(self) -> None:
        self.events: deque[CallbackEvent] = deque()
        self.arrived = asyncio.Event()
        self.ended = False
        self.reading = False


@final
class RunStreams:
    """The callback events of each run, in arrival order, until its final one."""

    __slots__ = ("_buffered", "_finished", "_max_buffered", "_streams")

    def __init__(self, max_buffered_results: int) -> None:
        self._max_buffered = max_buffered_results
        self._buffered = 0
        self._streams: dict[str, _Stream] = {}
        self._finished: dict[str, CallbackEvent] = {}

    def has_room(self, event: CallbackEvent) -> bool:
        """Whether ``event``'s results fit in the buffer (a final event always fits)."""
        count = len(event.results or ())
        return count == 0 or self._buffered + count <= self._max_buffered

    def add(self, event: CallbackEvent) -> None:
        """Buffer ``event`` for its run's reader (present or future)."""
        uid = event.run_uid
        stream = self._streams.get(uid)
        if stream is None:
            if event.is_final and not event.results:
                # Nothing buffered and nobody reading: remember the end only.
                remember(self._finished, uid, event, limit=_MAX_FINISHED)
                return
            stream = self._streams[uid] = _Stream()
        if stream.ended:
            return  # a late partial after the final one: the run's stream is closed
        stream.events.append(event)
        self._buffered += len(event.results or ())
        stream.ended = event.is_final
        stream.arrived.set()

    async def read(self, uid: str) -> AsyncIterator[CallbackEvent]:
        """Yield ``uid``'s events as they arrive; end after its final one."""
        finished = self._finished.pop(uid, None)
        if finished is not None and uid not in self._streams:
            yield finished
            return
        stream = self._streams.setdefault(uid, _Stream())
        if stream.reading:
            raise RuntimeError(f"run {uid}'s callback events are already being read")
        stream.reading = True
        try:
            while True:
                while not stream.events:
                    stream.arrived.clear()
                    await stream.arrived.wait()
                event = stream.events.popleft()
                self._buffered -= len(event.results or ())
                yield event
                if event.is_final:
                    return
        finally:
            stream.reading = False
            if stream.ended and not stream.events:
                del self._streams[uid]
