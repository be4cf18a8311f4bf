"""Per-run callback streams shared by every process of a workspace, through Redis.

With ``AsyncClient(coordination=RedisCoordination(...))`` a ``CallbackReceiver``
keeps each callback it takes in Redis rather than in its process, so that
``receiver.events(uid)`` / ``.results(uid)`` in any process of the workspace
read every callback of the run, whichever process Edges delivered it to. The
rules are those of :mod:`._run_streams`, across processes:

- **Once, in order, final last.** Each callback is read once, by one reader,
  in the order Redis got them; the run's final callback comes last (a partial
  redelivered after the final, while the final is unread, comes before it)
  and ends the reader. A partial arriving after the final was read goes to the
  run's next reader, which ends once it has read it.
- **One reader per run at a time**, anywhere: the reading process holds a
  lease on the run in Redis (``lease`` seconds, renewed by every read). A
  second reader in the same process raises ``RuntimeError`` at once; in
  another process, at its first step, after waiting up to ``handover`` seconds
  for a reader that just left to hand the lease back. A reader that stays
  away longer than the lease between two items may lose the run to a reader
  elsewhere (which may then get the event it was on again): it raises
  ``RuntimeError`` once done with that event.
- **Bounded.** ``max_buffered_results`` / ``max_buffered_bytes`` bound what
  the whole workspace holds unread (each receiver checks its own figures
  against the workspace's total): past them the receiver answers 503 and
  gives its claim back, so Edges' redelivery is taken later. A final callback
  without results is never refused; past the bound (or past an eighth of it
  for the finals of runs with nothing else unread) only its
  ``callback_ref_uid``, run uid and status are kept, outside the bound. What
  a reader takes is deleted from Redis; a run with nothing unread leaves only
  ``ended`` behind. A run whose unread callbacks nobody touched for ``keep``
  seconds (a day) is dropped, and its share of the bound freed, by the next
  callback any process takes.
- **Ended runs are remembered** ``keep`` seconds: a later reader ends at once.

Keys (``edges:{<workspace>}:callbacks:...``, the workspace's hash tag):

- ``<uid>``: a stream of the run's unread partial callbacks (fields ``b`` the
  body, ``n`` and ``r`` the bytes and results it counts, ``s`` its bytes in
  the finals' share); ``<uid>:finals``: the same for its final callbacks;
- ``<uid>:state``: a hash: what the run counts (``bytes``, ``results``,
  ``finals``) and the ``head``: the rest of an event a reader left in the
  middle of its results, read first;
- ``<uid>:reader``: the reading process's lease; ``<uid>:ended``: its final
  was read;
- ``buffered``: a hash of the workspace's totals; ``runs``: a sorted set of
  the runs holding unread callbacks, scored by when they lapse (Redis time).

A reader acknowledges what it took with its next request (or at once, in the
background, when it stays away): an answer lost with a connection costs
nothing, a reader whose Redis failed resumes where it was. A process that dies
in the middle of an event's results leaves the whole event to the next reader.

Redis failing (``RedisError``/``OSError``): the receiver keeps the callbacks
it takes in its own :class:`~._run_streams.RunStreams` (never dropped, never a
500), retrying Redis after ``retry`` seconds; logged once each way. Readers in
that process read them after what Redis holds of the run (while Redis fails,
only them: a final read there ends the reader, and what Redis holds goes to
the next one); readers in other processes never see them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, final

import anyio

from ._callback_models import CallbackEvent
from ._callback_stream_scripts import Scripts as _Scripts
from ._redis_calls import redis_errors
from ._run_streams import _FINALS_SHARE, CallbackReader, RunStreams, _Run, _slim

if TYPE_CHECKING:
    from ._redis_keys import SharedKeys

__all__ = ["ClientClosed", "SharedRunStreams", "StreamTiming"]

logger = logging.getLogger("edges_async")

_REAP = 8  # lapsed runs dropped at most per callback taken
_BUSY_RETRY = 0.05  # seconds between two tries of a lease another reader holds

_NO_ACK: Final = ("", "")


class ClientClosed(ConnectionError):
    """The receiver's client was closed: its Redis connection with it."""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _rest(body: bytes, taken: int) -> tuple[bytes, int]:
    """``body`` less its first ``taken`` results (the rest as it came); how many results remain."""
    data = json.loads(body)
    data["results"] = data["results"][taken:]
    return json.dumps(data, separators=(",", ":")).encode(), len(data["results"])


@final
@dataclass(frozen=True, slots=True)
class StreamTiming:
    """How long the shared streams hold on to things (seconds)."""

    lease: float = 15.0
    """A reader's hold on its run, renewed by each of its reads."""
    handover: float = 1.0
    """How long a new reader waits for a reader elsewhere to let go before ``RuntimeError``."""
    read_block: float = 0.2
    """The longest one wait for a callback blocks (below the Redis client's socket timeout)."""
    retry: float = 1.0
    """How long after Redis failed the receiver keeps callbacks in the process without trying it."""
    keep: float = 86_400.0
    """How long a run's unread callbacks, and the end of a run read, are kept after its last use."""


@final
class _Hold:
    """This process's side of one run's stream: its reader here, and what it owes Redis.

    ``current`` is the event the reader is on (from Redis, ``source`` telling
    which entry, or ``("l", "")`` from this process's own buffer) and ``taken``
    its results handed out already; ``pending`` the Redis entry read and not
    acknowledged yet.
    """

    __slots__ = (
        "body",
        "current",
        "dirty",
        "leased",
        "local",
        "lock",
        "pending",
        "read_final",
        "reading",
        "source",
        "taken",
        "task",
        "uid",
    )

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.reading = False
        self.local: _Run | None = None  # the run in the process's own buffer, while read
        self.current: CallbackEvent | None = None
        self.body = b""  # current's body, from Redis
        self.source: tuple[str, str] = _NO_ACK
        self.taken = 0
        self.pending: tuple[str, str] = _NO_ACK
        self.read_final = False  # a final read from the process's buffer: Redis is told
        self.leased = False
        self.lock = asyncio.Lock()  # one conversation with Redis about the run at a time
        self.task: asyncio.Task[None] | None = None
        self.dirty = False  # the task has something to tell Redis

    @property
    def owes(self) -> bool:
        """Whether Redis has to hear from this process about the run."""
        return (
            self.leased
            or self.pending != _NO_ACK
            or self.read_final
            or (self.current is not None and self.source[0] != "l")
        )


@final
class SharedRunStreams:
    """The callback streams of a workspace's runs, in Redis, for one receiver (see the module).

    Reads through :class:`~._run_streams.CallbackReader`, like
    :class:`~._run_streams.RunStreams`: it has the same ``_attach``,
    ``_peek``, ``_pop`` and ``_detach``.
    """

    __slots__ = (
        "_bound",
        "_down",
        "_failed_at",
        "_holds",
        "_keys",
        "_local",
        "_max_bytes",
        "_max_results",
        "_redis",
        "_tasks",
        "_timing",
        "_token",
    )

    def __init__(
        self,
        redis: Callable[[], AbstractAsyncContextManager[Any]],
        keys: SharedKeys,
        local: RunStreams,
        *,
        max_buffered_results: int,
        max_buffered_bytes: int,
        timing: StreamTiming | None = None,
        token: str | None = None,
    ) -> None:
        # The running loop's redis.asyncio client, kept open while in use (even
        # if the receiver's client closes meanwhile); ClientClosed once closed.
        self._redis = redis
        self._keys = keys
        self._local = local  # where callbacks go while Redis fails
        self._max_results = max_buffered_results
        self._max_bytes = max_buffered_bytes
        self._timing = timing or StreamTiming()
        self._token = token or f"{os.getpid()}:{secrets.token_hex(8)}"
        self._bound: _Scripts | None = None
        self._holds: dict[str, _Hold] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._down = False
        self._failed_at = -float("inf")

    # -- taking callbacks -------------------------------------------------------------

    async def add(self, event: CallbackEvent, body: bytes) -> bool:
        """Keep ``event`` (which arrived as ``body``) for its run's readers; ``False`` if full.

        In Redis; in this process while Redis fails. A final event without
        results is always taken.
        """
        if self._resting():
            return self._local.add(event, body)
        try:
            taken = await self._append(event, body)
        except redis_errors() as exc:
            self._failed(exc)
            return self._local.add(event, body)
        self._recovered()
        return taken

    async def _append(self, event: CallbackEvent, body: bytes) -> bool:
        uid = event.run_uid
        final = event.is_final
        args = [
            uid,
            "1" if final else "0",
            body,
            _slim(event) if final else b"",
            len(event.results or ()),
            self._max_bytes,
            self._max_results,
            self._max_bytes // _FINALS_SHARE,
            round(self._timing.keep),
            _REAP,
        ]
        async with self._redis() as redis:
            scripts = self._scripts(redis)
            for _ in range(2):  # again once, when runs that lapsed freed their share
                taken, lapsed = await scripts.append(keys=self._append_keys(uid), args=args)
                freed = 0
                for other in map(_text, lapsed):
                    if other != uid:
                        freed += await scripts.reap(
                            keys=self._reap_keys(other), args=[other, round(self._timing.keep)]
                        )
                if taken or not freed:
                    return bool(taken)
        return False

    # -- reading, for CallbackReader -------------------------------------------------------

    def events(self, uid: str) -> CallbackReader[CallbackEvent]:
        """``uid``'s unread events as they arrive, in any process, ending after its final one."""
        return CallbackReader(self, uid, results=False)

    def results(self, uid: str) -> CallbackReader[Any]:
        """The results of ``uid``'s unread events, one by one (see :meth:`events`)."""
        return CallbackReader(self, uid, results=True)

    def _attach(self, uid: str) -> _Hold:
        hold = self._holds.get(uid)
        if hold is None:
            hold = self._holds[uid] = _Hold(uid)
        if hold.reading:
            raise RuntimeError(f"run {uid}'s callback events are already being read")
        hold.local = self._local._attach(uid)
        hold.reading = True
        return hold

    def _detach(self, uid: str, hold: _Hold) -> None:
        """A reader of ``hold`` is done (ended, closed, failed or collected): let go of the run."""
        hold.reading = False
        local, hold.local = hold.local, None
        if local is not None:
            if hold.current is not None and hold.source[0] == "l":
                local.taken = hold.taken  # the rest of it for the next reader
                hold.current, hold.taken = None, 0
            self._local._detach(uid, local)
        if hold.owes:
            self._settle_soon(hold)  # the rest of a half-read event back, the lease let go
        else:
            self._forget(hold)

    async def _peek(self, hold: _Hold) -> CallbackEvent | None:
        """The run's next unread event, waiting for one; ``None`` once its stream ended."""
        if hold.current is not None:
            return hold.current
        loop = asyncio.get_running_loop()
        busy_since: float | None = None
        async with hold.lock:
            while True:
                local = self._local_head(hold)
                answer: list[Any] | None = None
                if not self._resting():
                    try:
                        answer = await self._call(hold, "next", hold.pending)
                    except redis_errors() as exc:
                        self._failed(exc)
                    else:
                        self._recovered()
                if answer is None:  # Redis failing: the callbacks taken here only
                    if local is not None:
                        return self._hand(hold, local, ("l", ""), b"")
                    if hold.local is not None and hold.local.finished:
                        return None
                    await self._arrival_here(hold)
                    continue
                kind = _text(answer[0])
                if kind == "busy":
                    hold.leased = False
                    busy_since = loop.time() if busy_since is None else busy_since
                    if loop.time() - busy_since >= self._timing.handover:
                        raise RuntimeError(
                            f"run {hold.uid}'s callback events are already being read "
                            "(in another process)"
                        )
                    await anyio.sleep(_BUSY_RETRY)
                    continue
                hold.leased = True
                if kind == "none":
                    if local is not None:
                        return self._hand(hold, local, ("l", ""), b"")
                    if int(answer[1]) or (hold.local is not None and hold.local.finished):
                        await self._let_go(hold)
                        return None
                    await self._arrival(hold)
                    continue
                body = _bytes(answer[2])
                event = CallbackEvent.model_validate_json(body)
                if event.is_final and local is not None and not local.is_final:
                    return self._hand(hold, local, ("l", ""), b"")  # partials before the final
                return self._hand(hold, event, (kind, _text(answer[1])), body)

    async def _let_go(self, hold: _Hold) -> None:
        """The reader ends: give the lease up now (else it is done in the background)."""
        try:
            await self._call(hold, "release", hold.pending)
        except redis_errors() as exc:
            self._failed(exc)
        else:
            hold.leased = False

    def _pop(self, hold: _Hold) -> CallbackEvent:
        """Take the event ``hold`` is on (less the results already handed out)."""
        event, taken = hold.current, hold.taken
        assert event is not None
        hold.current, hold.body, hold.taken = None, b"", 0
        if hold.source[0] == "l":
            assert hold.local is not None
            hold.local.taken = 0
            self._local._pop(hold.local)
            hold.read_final = hold.read_final or event.is_final
        else:
            hold.pending = hold.source
        if hold.pending != _NO_ACK or hold.read_final:
            self._settle_soon(hold)  # acknowledged at once: the bound frees without waiting
        if taken:
            event = event.model_copy(update={"results": (event.results or [])[taken:]})
        return event

    def _hand(
        self, hold: _Hold, event: CallbackEvent, source: tuple[str, str], body: bytes
    ) -> CallbackEvent:
        hold.current, hold.source, hold.body = event, source, body
        hold.taken = 0
        if source[0] == "l":
            assert hold.local is not None
            hold.taken = hold.local.taken
        return event

    def _local_head(self, hold: _Hold) -> CallbackEvent | None:
        """The first event the process's own buffer holds for the run, if any."""
        run = hold.local
        if run is None or not run.unread:
            return None
        if run.current is None:
            run.current = CallbackEvent.model_validate_json(run.pending[run.head])
        return run.current

    async def _arrival(self, hold: _Hold) -> None:
        """Wait (briefly) for a callback of the run to reach Redis."""
        keys = self._keys.callbacks
        block = max(1, round(self._timing.read_block * 1000))
        streams = {keys(hold.uid): b"0-0", keys(f"{hold.uid}:finals"): b"0-0"}
        try:
            async with self._redis() as redis:
                await redis.xread(streams, count=1, block=block)
        except redis_errors() as exc:
            self._failed(exc)

    async def _arrival_here(self, hold: _Hold) -> None:
        """Wait (up to ``retry``) for a callback of the run to reach this process's buffer."""
        run = hold.local
        assert run is not None
        if run.arrived is None:
            run.arrived = asyncio.Event()
        run.arrived.clear()
        with anyio.move_on_after(self._timing.retry):
            await run.arrived.wait()

    # -- telling Redis what was read -------------------------------------------------------

    def _settle_soon(self, hold: _Hold) -> None:
        hold.dirty = True
        if hold.task is not None and not hold.task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # collected outside the loop: the lease lapses on its own
        # Short and bounded (one request at a time, each within the socket
        # timeout), its failures handled inside: not an orphan that can fail.
        task = loop.create_task(self._settle(hold), name="edges_async callback stream settle")
        hold.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, hold: _Hold) -> None:
        """Acknowledge what the reader took; once it left, also give the lease up."""
        try:
            while hold.dirty:
                hold.dirty = False
                async with hold.lock:
                    if not hold.reading:
                        await self._release(hold)
                    elif hold.pending != _NO_ACK or hold.read_final:
                        await self._call(hold, "ack", hold.pending)
        except redis_errors() as exc:
            self._failed(exc)  # a later reader here sends what is owed
            if not hold.reading:
                hold.leased = False  # it lapses on its own
        finally:
            if not hold.reading and not hold.owes:
                self._forget(hold)

    async def _release(self, hold: _Hold) -> None:
        ack, rest, left = hold.pending, b"", 0
        if hold.current is not None and hold.source[0] != "l":
            if hold.taken:  # left in the middle of its results: the rest goes back
                ack = hold.source
                rest, left = _rest(hold.body, hold.taken)
            hold.current, hold.body, hold.taken = None, b"", 0  # else Redis has it whole
        if not (hold.leased or ack != _NO_ACK or hold.read_final):
            return
        await self._call(hold, "release", ack, rest, left)
        hold.leased = False

    async def _call(
        self, hold: _Hold, mode: str, ack: tuple[str, str], rest: bytes = b"", left: int = 0
    ) -> list[Any]:
        keys = self._keys.callbacks
        uid = hold.uid
        read_final = hold.read_final
        async with self._redis() as redis:
            answer: list[Any] = await self._scripts(redis).read(
                keys=[
                    keys(uid),
                    keys(f"{uid}:finals"),
                    keys(f"{uid}:state"),
                    keys(f"{uid}:reader"),
                    keys(f"{uid}:ended"),
                    keys("buffered"),
                    keys("runs"),
                ],
                args=[
                    mode,
                    self._token,
                    max(1, round(self._timing.lease * 1000)),
                    *ack,
                    rest,
                    left,
                    round(self._timing.keep),
                    uid,
                    "1" if read_final else "",
                ],
            )
        if hold.pending == ack:
            hold.pending = _NO_ACK
        if read_final:
            hold.read_final = False
        return answer

    def _forget(self, hold: _Hold) -> None:
        if self._holds.get(hold.uid) is hold:
            del self._holds[hold.uid]

    # -- Redis ------------------------------------------------------------------------------

    def _scripts(self, redis: Any) -> _Scripts:
        bound = self._bound
        if bound is None or bound.redis is not redis:
            bound = self._bound = _Scripts(redis)
        return bound

    def _append_keys(self, uid: str) -> list[str]:
        keys = self._keys.callbacks
        return [
            keys(uid),
            keys(f"{uid}:finals"),
            keys(f"{uid}:state"),
            keys("buffered"),
            keys("runs"),
        ]

    def _reap_keys(self, uid: str) -> list[str]:
        keys = self._keys.callbacks
        return [
            keys(uid),
            keys(f"{uid}:finals"),
            keys(f"{uid}:state"),
            keys(f"{uid}:reader"),
            keys("buffered"),
            keys("runs"),
        ]

    def _resting(self) -> bool:
        """Whether Redis failed too recently to try it again."""
        if not self._down:
            return False
        return asyncio.get_running_loop().time() - self._failed_at < self._timing.retry

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, ClientClosed):
            return  # not Redis failing: nothing to talk to any more
        self._failed_at = asyncio.get_running_loop().time()
        if not self._down:
            self._down = True
            logger.warning(
                "Redis failed (%s: %s): callbacks taken here stay in this process, "
                "for its own readers, until it answers",
                type(exc).__name__,
                exc,
            )

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            logger.info("Redis answers again: callbacks go to the workspace's streams")

    def __repr__(self) -> str:
        state = "failing" if self._down else "shared"
        return f"<SharedRunStreams {state} reading={sum(h.reading for h in self._holds.values())}>"
