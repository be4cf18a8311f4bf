"""Per-run buffers of callback events, for ``CallbackReceiver.events`` / ``.results``.

Events arriving before anyone reads them are buffered, so launching a run and
then starting to read its stream never loses the first partial results.

Order. A run's stream ends at its final event. Edges redelivers a partial it
got a 503 for later, possibly after the final one, so a partial may arrive
late: one that comes while the final is still waiting to be read goes before
it (the final stays last); one that comes after a reader took the final waits
for the next reader of the run, whose stream then ends once it is drained
(the run is known finished). A run whose final was read is remembered, so a
later reader ends at once instead of waiting for a callback that will never
come. Nothing taken is dropped: every event is read exactly once.

Memory. Events are kept as the bodies they arrived in (parsed again when
read: a parsed event takes several times its body's size), and the buffer
holds at most ``max_buffered_bytes`` of them and ``max_buffered_results``
results over every run. Past either, :meth:`RunStreams.add` refuses the event
and the receiver answers 503, so Edges delivers it again later instead of it
being dropped here. A final event without results is never refused, since it
ends waits. The final of a run with nothing else buffered (all of them, when
callbacks are ``on: "final"`` and nobody reads the streams) keeps its whole
body while such finals take at most an eighth of ``max_buffered_bytes``, so
they never crowd out partial results; past that, and for a final arriving
when the buffer is full, only its ``callback_ref_uid``, run uid and status
are kept. The ends of the last ``_MAX_ENDED`` runs are remembered.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final, Generic, Protocol, TypeVar, cast, final

from ._callback_models import CallbackEvent

__all__ = ["CallbackReader", "ReaderSource", "RunStreams"]

T = TypeVar("T")

# Runs with nothing else buffered whose stream ended, or whose final callback
# nobody read yet: each costs its uid (~125 bytes with the dict entry) plus, for
# a final not read yet, its slim body (~150 bytes, ~330 with a 200-character
# callback_ref_uid) or its whole one (within the finals' share of the bound).
# 50,000 runs thus take at most ~23 MB besides that share, and cover the ends
# of far more runs than a process reads the streams of at once.
_MAX_ENDED = 50_000
_FINALS_SHARE = 8  # whole bodies of unread finals take at most 1/8 of the bound
_COMPACT_AFTER = 1024  # read bodies at the head of a run's list before it is compacted
_NOTHING: Final = object()


@final
class _Run:
    """One run's unread bodies (``pending[head:]``, in reading order) and its reader."""

    __slots__ = (
        "arrived",
        "current",
        "final_last",
        "finished",
        "head",
        "pending",
        "reading",
        "taken",
    )

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.head = 0
        self.final_last = False  # whether pending ends with an unread final event
        self.finished = False  # whether a final event came (read or not)
        self.reading = False
        self.arrived: asyncio.Event | None = None  # made by a reader that has to wait
        self.current: CallbackEvent | None = None  # pending[head], parsed, while read
        self.taken = 0  # results of pending[head] already handed to a reader of results

    @property
    def unread(self) -> int:
        return len(self.pending) - self.head


@final
class RunStreams:
    """The callback events of each run, in arrival order, until its final one."""

    __slots__ = (
        "_buffered_bytes",
        "_buffered_results",
        "_ended",
        "_ended_bytes",
        "_max_bytes",
        "_max_results",
        "_runs",
    )

    def __init__(self, max_buffered_results: int, max_buffered_bytes: int) -> None:
        self._max_results = max_buffered_results
        self._max_bytes = max_buffered_bytes
        self._buffered_results = 0
        self._buffered_bytes = 0  # of the bodies in _runs
        self._runs: dict[str, _Run] = {}
        # A run not in _runs whose stream ended: None once its final was read,
        # else the body of its unread final and the bytes it counts (0 if slim).
        self._ended: dict[str, tuple[bytes, int] | None] = {}
        self._ended_bytes = 0  # of the whole bodies in _ended

    @property
    def buffered_bytes(self) -> int:
        """The bytes of the callback bodies waiting for a reader, slim finals aside."""
        return self._buffered_bytes + self._ended_bytes

    def add(self, event: CallbackEvent, body: bytes) -> bool:
        """Buffer ``event`` (which arrived as ``body``) for its run's reader; ``False`` if full.

        A final event without results is always taken.
        """
        uid = event.run_uid
        results = len(event.results or ())
        fits = (
            self.buffered_bytes + len(body) <= self._max_bytes
            and self._buffered_results + results <= self._max_results
        )
        if (
            event.is_final
            and not results
            and uid not in self._runs
            and not isinstance(self._ended.get(uid), tuple)
        ):
            whole = fits and self._ended_bytes + len(body) <= self._max_bytes // _FINALS_SHARE
            self._end(uid, (body, len(body)) if whole else (_slim(event), 0))
            return True
        if not fits:
            if results or not event.is_final:
                return False
            # A final for a run with buffered events: it goes past the bound, by a
            # few hundred bytes, as Edges sends a run one final (one more per resume).
            body = _slim(event)
        run = self._run(uid)
        self._push(run, body, results, final=event.is_final)
        if run.arrived is not None:
            run.arrived.set()
        return True

    def events(self, uid: str) -> CallbackReader[CallbackEvent]:
        """``uid``'s unread events as they arrive, ending after its final one.

        A run whose final event was read already: what came since, then the end.
        """
        return CallbackReader(self, uid, results=False)

    def results(self, uid: str) -> CallbackReader[Any]:
        """The results of ``uid``'s unread events, one by one (see :meth:`events`).

        A reader leaving in the middle of an event's results leaves the rest
        of them to the run's next reader.
        """
        return CallbackReader(self, uid, results=True)

    def _attach(self, uid: str) -> _Run:
        run = self._run(uid)
        if run.reading:
            raise RuntimeError(f"run {uid}'s callback events are already being read")
        run.reading = True
        return run

    def _detach(self, uid: str, run: _Run) -> None:
        """A reader of ``run`` is done (ended, closed, failed or collected)."""
        run.reading = False
        run.current = None  # parsed again by the next reader: it takes several times its body
        if not run.unread and self._runs.get(uid) is run:
            del self._runs[uid]
            if run.finished:
                self._end(uid, None)

    async def _peek(self, run: _Run) -> CallbackEvent | None:
        """``run``'s first unread event, waiting for one; ``None`` once its stream ended."""
        while not run.unread:
            if run.finished:
                return None
            if run.arrived is None:
                run.arrived = asyncio.Event()
            run.arrived.clear()
            await run.arrived.wait()
        if run.current is None:
            run.current = CallbackEvent.model_validate_json(run.pending[run.head])
        return run.current

    def _run(self, uid: str) -> _Run:
        """``uid``'s buffer, made (with what is remembered of its end) if it has none."""
        run = self._runs.get(uid)
        if run is None:
            run = self._runs[uid] = _Run()
            ended = self._ended.pop(uid, _NOTHING)
            if isinstance(ended, tuple):
                body, counted = ended
                self._ended_bytes -= counted
                self._push(run, body, 0, final=True)
            elif ended is None:
                run.finished = True
        return run

    def _end(self, uid: str, final: tuple[bytes, int] | None) -> None:
        """Remember that ``uid``'s stream ended, with its unread ``final`` if any."""
        previous = self._ended.pop(uid, None)  # (None: callers keep unread finals)
        if previous is not None:
            self._ended_bytes -= previous[1]
        self._ended[uid] = final
        if final is not None:
            self._ended_bytes += final[1]
        if len(self._ended) > _MAX_ENDED:
            oldest = self._ended.pop(next(iter(self._ended)))
            if oldest is not None:
                self._ended_bytes -= oldest[1]

    def _push(self, run: _Run, body: bytes, results: int, *, final: bool) -> None:
        if run.final_last and not final:
            run.pending.insert(len(run.pending) - 1, body)  # a late partial: the final stays last
        else:
            run.pending.append(body)
            run.final_last = final
        run.finished = run.finished or final
        self._buffered_bytes += len(body)
        self._buffered_results += results

    def _pop(self, run: _Run) -> CallbackEvent:
        """Take ``run``'s first unread event (less the results already handed out)."""
        body = run.pending[run.head]
        event = run.current or CallbackEvent.model_validate_json(body)
        taken, run.current, run.taken = run.taken, None, 0
        run.pending[run.head] = b""  # the buffer no longer holds it
        run.head += 1
        if run.head == len(run.pending):
            run.pending.clear()
            run.head = 0
            run.final_last = False
        elif run.head >= _COMPACT_AFTER and 2 * run.head >= len(run.pending):
            del run.pending[: run.head]
            run.head = 0
        self._buffered_bytes -= len(body)
        self._buffered_results -= len(event.results or ())
        if taken:
            event = event.model_copy(update={"results": (event.results or [])[taken:]})
        return event

    def __repr__(self) -> str:
        return (
            f"<RunStreams runs={len(self._runs)} ended={len(self._ended)}"
            f" bytes={self.buffered_bytes}/{self._max_bytes}"
            f" results={self._buffered_results}/{self._max_results}>"
        )


def _slim(event: CallbackEvent) -> bytes:
    """The least of a final event that still ends its run's stream, as a body."""
    status = event.run.status
    return json.dumps(
        {
            "callback_ref_uid": event.callback_ref_uid,
            "run": {"run_uid": event.run_uid, "status": getattr(status, "value", status)},
        },
        separators=(",", ":"),
    ).encode()


class ReaderSource(Protocol):
    """Where a :class:`CallbackReader` reads a run's callbacks: this process's
    :class:`RunStreams`, or the streams shared through Redis. A hold (what
    ``_attach`` returns) has ``taken``: the results of the current event handed
    out already."""

    def _attach(self, uid: str) -> Any: ...

    async def _peek(self, hold: Any) -> CallbackEvent | None: ...

    def _pop(self, hold: Any) -> CallbackEvent: ...

    def _detach(self, uid: str, hold: Any) -> None: ...


@final
class CallbackReader(Generic[T]):
    """One reader of a run's stream: its events, or their results one by one.

    What ``CallbackReceiver.events`` (a reader of ``CallbackEvent``) and
    ``.results`` (of the results, ``Any``) return: an async iterator with
    ``aclose()``.

    A plain async iterator rather than an async generator, so that a reader
    left with ``break`` lets go of the run the moment it is dropped (an
    abandoned generator holds on until the event loop gets round to closing
    it): the run's next reader can start at once. Only one reader of a run
    reads at a time; a second one raises ``RuntimeError``.
    """

    __slots__ = ("_done", "_results", "_run", "_streams", "_uid")

    def __init__(self, streams: ReaderSource, uid: str, *, results: bool) -> None:
        self._streams = streams
        self._uid = uid
        self._results = results
        self._run: Any = None  # the source's hold on the run while reading
        self._done = False

    def __aiter__(self) -> CallbackReader[T]:
        return self

    async def __anext__(self) -> T:
        if self._run is None:
            if self._done:
                raise StopAsyncIteration
            self._run = self._streams._attach(self._uid)
        run = self._run
        try:
            while True:
                event = await self._streams._peek(run)
                if event is None:
                    break
                if not self._results:
                    return cast(T, self._take(run))
                results = event.results or ()
                if run.taken < len(results):
                    result = results[run.taken]
                    run.taken += 1
                    if run.taken == len(results):
                        self._take(run)
                    return cast(T, result)
                self._take(run)
                if self._done:
                    break
        except BaseException:
            self._close()
            raise
        self._close()
        raise StopAsyncIteration

    def _take(self, run: Any) -> CallbackEvent:
        event = self._streams._pop(run)
        if event.is_final:
            self._close()
        return event

    def _close(self) -> None:
        self._done = True
        run, self._run = self._run, None
        if run is not None:
            self._streams._detach(self._uid, run)

    async def aclose(self) -> None:
        """Stop reading: the run's next reader goes on from here."""
        self._close()

    def __del__(self) -> None:
        self._close()
