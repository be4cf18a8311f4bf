"""Waiting for runs across processes: one poller per workspace, one event stream for all.

With ``AsyncClient(coordination=RedisCoordination(...))`` a client's waiters
reach :class:`SharedPolling` instead of a poller of their own (it has the
same :class:`~._waiters.Polling` interface):

- **Interest.** The runs this process waits for go into the workspace's
  ``watched`` set (scored by when the interest lapses, refreshed while the
  wait lasts) and are announced on the events stream, so the leader polls
  them at once. A run that ended before the wait began is read from
  ``run:<uid>``, kept a day.
- **One leader.** The process holding the lease (:mod:`._poll_leader`, on
  :mod:`._leadership`) runs an ordinary :class:`~._polling.RunPoller` on every
  watched run, on a hub of its own whose news this module writes to the
  stream (an ended run also to ``run:<uid>``).
  The other processes only read; a dead leader is replaced within the lease.
- **One stream.** Every process reads the stream from where it joined and
  hands each event of a run it waits for to its waiters through the client's
  hub, the leader's own waiters included (so nobody hears a thing twice).
  Callbacks received by any process and resumed runs go on the stream too:
  the leader's poller acts on them (a final callback is confirmed in the
  leader's next poll). A run launched with callbacks a receiver of the
  client takes is marked ``covered:<uid>``: the leader polls it as a safety
  net only, as a lone client does. A process that only launches or receives
  callbacks runs the task too, to write that news (and may lead).
- **Redis failing.** The process polls its own waits with a local poller
  (within the limiter's fallback budget) until Redis answers again, then
  hands them back to the leader; logged once each way. No wait ends because
  Redis failed.

Everything runs in one task per client, started by the first wait and ended
when the last wait leaves (releasing the lease for another process) or the
client closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, TypeVar, final

import anyio

from . import _callback_claims as claims
from ._callback_models import CallbackEvent
from ._exceptions import EdgesError
from ._models import Run
from ._poll_leader import PollLeader
from ._polling import RunPoller
from ._redis_calls import bounded, redis_errors
from ._redis_keys import INTEREST, Coordinated, SharedKeys, SharedTiming
from ._run_events import (
    CallbackReceived,
    CallbacksServed,
    RunChanged,
    RunEnded,
    RunEvents,
    RunFailed,
    RunLaunched,
    RunResumed,
    WaitEvent,
)
from ._stream_entries import (
    CHANGED,
    Covered,
    Watch,
    decode,
    encode,
    encode_watch,
    kept_run,
    recorded_run,
    run_json,
    status_record,
)

__all__ = ["SharedPolling"]

_T = TypeVar("_T")

logger = logging.getLogger("edges_async")

_CHUNK = 500  # run uids per Redis command
_READ_COUNT = 1000  # stream entries per read


@final
class SharedPolling:
    """A client's waits, polled by the workspace's leader process and heard on its stream."""

    __slots__ = (
        "_call_timeout",
        "_client_events",
        "_closed",
        "_coordination",
        "_covered_key",
        "_down",
        "_fallback",
        "_interest",
        "_keys",
        "_last_seen",
        "_leader",
        "_local",
        "_outbox",
        "_position",
        "_register",
        "_served",
        "_status_key",
        "_stepping_out",
        "_stopping",
        "_task",
        "_timing",
        "_wake",
    )

    def __init__(
        self,
        coordination: Coordinated,
        workspace: str,
        *,
        events: RunEvents,
        make_poller: Callable[[RunEvents], RunPoller],
        timing: SharedTiming | None = None,
    ) -> None:
        self._coordination = coordination
        self._keys = SharedKeys.of(coordination, workspace)
        self._timing = timing or SharedTiming()
        self._client_events = events
        self._interest: dict[str, int] = {}  # uid -> this process's waiters
        self._last_seen: dict[str, Run] = {}
        self._register: list[str] = []  # uids to announce
        self._outbox: deque[CallbackReceived | RunResumed | Covered | WaitEvent] = (
            deque()
        )  # events to write to Redis, in order
        self._position: bytes | None = None  # the last stream entry read
        self._stepping_out = False  # the task cleans up after a cancel
        self._stopping: asyncio.Task[None] | None = None  # a task still cleaning up
        # Per SharedPolling, not per coordination: two clients sharing one
        # coordination must not both think they hold the lease.
        token = f"{coordination.process_token}:{secrets.token_hex(4)}"
        self._status_key: Callable[[str], str] = lambda uid: coordination.key(
            workspace, "status", uid
        )
        self._covered_key: Callable[[str], str] = lambda uid: coordination.key(
            workspace, "covered", uid
        )
        # The longest one Redis call may take (a blocking read included).
        self._call_timeout = coordination.socket_timeout * 4 + self._timing.read_block
        self._local = False  # polling here, Redis failing
        self._closed = False  # aclose ran: the task never starts again
        self._down = False  # Redis failed and has not answered since (logged)
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        # What the leader's poller sees goes to the stream, and comes back to
        # every process's waiters from there.
        self._leader = PollLeader(
            keys=self._keys,
            timing=self._timing,
            token=token,
            covered_key=self._covered_key,
            make_poller=make_poller,
            tell=self._queue,
            bounded=self._bounded,
        )
        # The stand-in while Redis fails: publishes to this client's waiters directly.
        self._fallback = make_poller(events)
        events.subscribe(RunResumed, self._queue)
        # Runs launched with callbacks that this process's receivers take are
        # polled by the leader as a safety net only, as a lone client does.
        self._served: set[str] = set()
        events.subscribe(CallbacksServed, lambda served: self._served.add(served.url))
        events.subscribe(RunLaunched, self._launched)
        events.subscribe(RunEnded, self._settled)  # also what the stand-in saw
        events.subscribe(RunFailed, self._settled)

    @property
    def _redis(self) -> Any:
        # redis.asyncio.Redis: its annotations are too loose to type-check
        # answers by (bytes | str | ...), so it is handled as Any here.
        return self._coordination.redis

    # -- the Polling interface of ._waiters -----------------------------------------

    def follow(self, uids: list[str], wants_changes: bool) -> dict[str, Run]:
        """Wait for ``uids`` through the workspace's leader; the runs seen already, if asked."""
        fresh = []
        for uid in uids:
            count = self._interest.get(uid, 0)
            self._interest[uid] = count + 1
            if count == 0:
                fresh.append(uid)
        if self._local:
            self._fallback.follow(fresh, wants_changes=False)
        else:
            self._register.extend(fresh)
        self._start()
        if not wants_changes:
            return {}
        return {uid: self._last_seen[uid] for uid in uids if uid in self._last_seen}

    def unfollow(self, uids: Iterable[str], wants_changes: bool) -> None:
        """One waiter of ``uids`` left (its interest lapses in Redis unless others refresh it)."""
        gone = []
        for uid in uids:
            count = self._interest.get(uid, 0) - 1
            if count > 0:
                self._interest[uid] = count
            elif self._interest.pop(uid, None) is not None:
                self._last_seen.pop(uid, None)
                gone.append(uid)
        self._fallback.unfollow(gone, wants_changes=False)

    def last_state(self, uid: str) -> Run:
        """The run as last heard of (only its uid when never)."""
        if self._local:
            return self._fallback.last_state(uid)
        return self._last_seen.get(uid) or Run(uid=uid)

    def _launched(self, event: RunLaunched) -> None:
        if event.callback_url is not None and event.callback_url in self._served:
            self._queue(Covered(event.run_uid.lower()))

    def _settled(self, event: RunEnded | RunFailed) -> None:
        """A run's wait is over here: this process is interested in it no more."""
        self._interest.pop(event.run_uid, None)
        self._last_seen.pop(event.run_uid, None)

    async def stop_if_idle(self) -> None:
        """When nothing is waited for here: stop, giving the lease to a process that waits."""
        if not self._interest:
            await self._stop()
            await self._fallback.stop_if_idle()

    async def aclose(self, error: EdgesError) -> None:
        """Stop for good; every waiter still waiting gets ``error``."""
        self._closed = True  # nothing starts the task again (a late callback, say)
        for uid in list(self._interest):
            self._client_events.publish(RunFailed(uid, error))
        self._interest.clear()
        await self._stop()
        await self._fallback.aclose(error)

    # -- callbacks (for a CallbackReceiver of this client) -----------------------------

    async def claim(self, ref: bytes) -> Literal["ours", "busy", "done"]:
        """Claim the callback whose ``callback_ref_uid`` digests to ``ref``.

        ``"ours"``: this process takes it (claimed for ``PENDING_SECONDS``
        until :meth:`tell` marks it done: a process that dies in between lets
        Edges' next delivery be taken); ``"busy"``: another process is taking
        it right now (answer 503: if it dies, the next delivery is ours);
        ``"done"``: taken already (a duplicate). With Redis failing, every
        callback is this process's to take.
        """
        key = self._keys.callback(ref.hex())
        try:
            claim = self._redis.register_script(claims.CLAIM)
            answer = await self._bounded(claim(keys=[key], args=[claims.PENDING_SECONDS]))
        except redis_errors():
            return "ours"
        return claims.claim_answer(answer)

    async def unclaim(self, ref: bytes) -> None:
        """Give a claimed callback up (this process could not keep it)."""
        with contextlib.suppress(*redis_errors()):
            await self._bounded(self._redis.delete(self._keys.callback(ref.hex())))

    async def tell(self, event: CallbackEvent, ref: bytes) -> None:
        """Put a callback taken here on the stream, for the leader and every waiter.

        Its claim is marked done in the same transaction (for an hour:
        Edges' redeliveries come within minutes). With Redis failing it waits in this process's
        outbox; this process's own waits hear it through the client's hub
        all the same.
        """
        received = CallbackReceived(event)
        try:
            await self._send(received, claim=self._keys.callback(ref.hex()))
        except redis_errors():
            self._queue(received)

    # -- the task --------------------------------------------------------------------

    def _start(self) -> None:
        if self._closed:
            return
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._position = None
            self._task = asyncio.get_running_loop().create_task(
                self._run(self._stopping), name="edges_async shared run polling"
            )
        self._nudge()

    def _nudge(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = task  # a task started meanwhile waits for this one to end
        with anyio.CancelScope(shield=True):
            # Cancelled again until it ends: on Python 3.11 a cancel landing as
            # a redis-py command completes is lost (its asyncio.wait_for eats it).
            # Not once it is cleaning up (_stepping_out): that part must run whole.
            while not task.done():
                if not self._stepping_out:
                    task.cancel()
                await asyncio.wait({task}, timeout=0.05)

    async def _run(self, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            # One task at a time: the last one still steps down and flushes.
            with anyio.CancelScope(shield=True):
                await asyncio.wait({previous})
        errors = redis_errors()
        loop = asyncio.get_running_loop()
        failed_at = -math.inf
        try:
            while True:
                try:
                    await self._shared()
                except errors as exc:
                    failure: BaseException = exc
                else:
                    return
                # A connection that died with an earlier Redis fails once: when
                # Redis answers on a fresh one, go on at once, unless it fails
                # again right away.
                again = loop.time() - failed_at > self._timing.retry and await self._answers()
                failed_at = loop.time()
                if not again:
                    await self._poll_here(failure)
        except Exception as exc:  # a bug: no waiter may hang on it
            logger.exception("Shared run polling failed")
            error = EdgesError(f"Polling failed unexpectedly: {type(exc).__name__}: {exc}")
            for uid in list(self._interest):
                self._client_events.publish(RunFailed(uid, error))
            self._interest.clear()
        finally:
            self._stepping_out = True
            try:
                with anyio.CancelScope(shield=True):
                    await self._leader.step_down()
                    await self._flush()
            finally:
                self._stepping_out = False

    async def _flush(self) -> None:
        """Write what is left in the outbox, briefly: a leader's last news, before it leaves.

        What cannot be written within a second stays for the next start; a
        run whose end was not written is still watched, and polled again by
        whoever leads next.
        """
        with anyio.move_on_after(1.0):
            with contextlib.suppress(*redis_errors()):
                await self._drain()

    async def _drain(self) -> None:
        """Write the outbox, oldest first; an event not surely written goes back at its head."""
        while self._outbox:
            event = self._outbox.popleft()
            try:
                await self._send(event)
            except BaseException:
                self._outbox.appendleft(event)  # written twice at worst, never lost
                raise

    async def _shared(self) -> None:
        """Wait through Redis until it fails (raises) or the task is cancelled."""
        redis = self._redis
        if self._position is None:  # this start of the task: from now on
            newest = await self._bounded(redis.xrevrange(self._keys.events, count=1))
            self._position = newest[0][0] if newest else b"0-0"
        # else: after a Redis error, on from the last entry read
        if self._down:
            self._down = False
            logger.info(
                "Redis answers again: the workspace's leader polls this process's %d runs",
                len(self._interest),
            )
        self._register = list(self._interest)  # all of them: Redis may have lost them
        failure: list[BaseException] = []

        async def guarded(part: Callable[[], Any]) -> None:
            try:
                await part()
            except redis_errors() as exc:
                failure.append(exc)
                group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(guarded, self._read)
            group.start_soon(guarded, self._write)
            group.start_soon(guarded, lambda: self._leader.run(redis))
        if failure:
            raise failure[0]

    async def _poll_here(self, failure: BaseException) -> None:
        """Redis failed: poll this process's waits here until it answers again."""
        if not self._down:  # once per outage, not per failed command
            self._down = True
            logger.warning(
                "Redis failed (%s: %s): polling this process's %d runs here until it answers",
                type(failure).__name__,
                failure,
                len(self._interest),
            )
        await self._leader.step_down()
        self._local = True
        self._fallback.follow(list(self._interest), wants_changes=False)
        try:
            while True:  # polling Redis: nothing would set an event
                if await self._answers():
                    break
                await anyio.sleep(self._timing.retry)
        finally:
            self._local = False
            self._fallback.unfollow(list(self._interest), wants_changes=False)
        await self._fallback.stop_if_idle()

    async def _bounded(self, call: Awaitable[_T]) -> _T:
        """Await one Redis call, for at most ``_call_timeout`` (``TimeoutError`` past it)."""
        return await bounded(call, self._call_timeout)

    async def _answers(self) -> bool:
        """Whether Redis answers a PING on a fresh connection."""
        try:
            # The idle connections may be dead ones from before an outage.
            await self._redis.connection_pool.disconnect(inuse_connections=False)
            with anyio.fail_after(self._timing.retry):
                await self._bounded(self._redis.ping())
        except redis_errors():  # a timeout included
            return False
        return True

    # -- reading the stream -------------------------------------------------------------

    async def _read(self) -> None:
        block = max(1, round(self._timing.read_block * 1000))
        while True:
            answer = await self._bounded(
                self._redis.xread(
                    {self._keys.events: self._position}, count=_READ_COUNT, block=block
                )
            )
            for _stream, entries in answer or ():
                for entry_id, fields in entries:
                    self._position = entry_id
                    self._heard(decode(fields))

    def _heard(self, entry: object) -> None:
        if isinstance(entry, (RunChanged, RunEnded, RunFailed)):
            uid = entry.run_uid
            if uid not in self._interest:
                return
            if isinstance(entry, RunChanged):
                self._last_seen[uid] = entry.run
            self._client_events.publish(entry)  # an end reaches _settled too
        elif isinstance(entry, (CallbackReceived, RunResumed, Covered, Watch)):
            self._leader.hear(entry)

    # -- writing: interests, the leader's news, callbacks -------------------------------

    def _queue(self, event: CallbackReceived | RunResumed | Covered | WaitEvent) -> None:
        """Write ``event`` to Redis soon, starting the task if this process waits for nothing."""
        self._outbox.append(event)
        self._start()

    async def _write(self) -> None:
        assert self._wake is not None
        interest = self._redis.register_script(INTEREST)
        loop = asyncio.get_running_loop()
        refreshed = loop.time()
        while True:
            if loop.time() - refreshed >= self._timing.refresh:
                refreshed = loop.time()
                await self._announce(interest, list(self._interest), tell_leader=False)
            fresh, self._register = self._register, []
            if fresh:
                await self._announce(interest, fresh, tell_leader=True)
            await self._drain()
            if self._register or self._outbox:
                continue
            self._wake.clear()
            with anyio.move_on_after(refreshed + self._timing.refresh - loop.time()):
                await self._wake.wait()

    async def _announce(self, interest: Any, uids: list[str], *, tell_leader: bool) -> None:
        """Mark ``uids`` waited for; hand over those that ended already (``run:<uid>``).

        Run at each refresh too: an end this process missed on the stream
        (entries trimmed while it lagged, a reconnect) is found there.
        """
        for start in range(0, len(uids), _CHUNK):
            chunk = uids[start : start + _CHUNK]
            await self._bounded(
                interest(keys=[self._keys.watched], args=[self._timing.interest, *chunk])
            )
            if tell_leader:
                await self._bounded(
                    self._redis.xadd(
                        self._keys.events,
                        encode_watch(chunk),
                        maxlen=self._timing.max_stream,
                        approximate=True,
                    )
                )
                # A run some leader saw already: its last status, for on_status_change.
                records = await self._bounded(
                    self._redis.mget([self._status_key(uid) for uid in chunk])
                )
                for uid, record in zip(chunk, records, strict=True):
                    run = recorded_run(record)
                    if run is not None and uid not in self._last_seen:
                        self._heard(RunChanged(uid, run))
            kept = await self._bounded(self._redis.mget([self._keys.run(uid) for uid in chunk]))
            for uid, found in zip(chunk, kept, strict=True):
                ended = kept_run(found)
                if ended is not None:
                    self._heard(RunEnded(uid, ended))

    async def _send(
        self,
        event: CallbackReceived | RunResumed | Covered | WaitEvent,
        *,
        claim: str | None = None,
    ) -> None:
        """Write ``event`` (and its side records) in one transaction.

        ``claim``: the key of the callback claim this event settles, marked
        done in the same round trip as the stream entry.
        """
        keys = self._keys
        if isinstance(event, RunChanged):  # told unless this status was told already
            changed = self._redis.register_script(CHANGED)
            await self._bounded(
                changed(
                    keys=[self._status_key(event.run_uid), keys.events],
                    args=[
                        event.run_uid,
                        status_record(event.run),
                        self._timing.max_stream,
                        round(self._timing.keep_ended),
                    ],
                )
            )
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            if isinstance(event, RunEnded):
                pipe.set(
                    keys.run(event.run_uid),
                    run_json(event.run),
                    ex=round(self._timing.keep_ended),
                )
            elif isinstance(event, RunResumed):
                pipe.delete(keys.run(event.run_uid.lower()))
            elif isinstance(event, Covered):
                pipe.set(self._covered_key(event.run_uid), b"1", ex=round(self._timing.keep_ended))
            elif claim is not None:
                pipe.set(claim, b"done", ex=claims.DONE_SECONDS)
            if isinstance(event, (RunEnded, RunFailed)):
                pipe.zrem(keys.watched, event.run_uid)
                pipe.delete(self._status_key(event.run_uid))
            pipe.xadd(
                keys.events,
                encode(event),
                maxlen=self._timing.max_stream,
                approximate=True,
            )
            await self._bounded(pipe.execute())
        if isinstance(event, (RunEnded, RunFailed)):
            self._leader.written(event.run_uid)  # out of the watched set now
