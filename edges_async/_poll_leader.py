"""The polling leader of a coordinated workspace: one process polls every watched run.

A :class:`PollLeader` belongs to each :class:`~._shared_polling.SharedPolling`;
the one whose process holds the workspace's lease (:mod:`._leadership`)
runs an ordinary :class:`~._polling.RunPoller` on every run any process waits
for (the ``watched`` set: read whole every ``sync`` seconds, and the runs
announced on the stream at once). The poller publishes on a hub of its own;
what it sees is handed to ``tell`` (the shared polling's outbox, written to
the stream), so it reaches every process's waiters, this one's included, the
same way.

News for the leader comes from the stream (:meth:`PollLeader.hear`):
callbacks and resumed runs go to its poller as a lone client's would; a run
launched with callbacks a receiver of the workspace takes is *covered* (polled
as a safety net only), as is every run marked ``covered:<uid>`` when the
leader starts following it. A run that ended already (``run:<uid>``) is not
polled again.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, final

import anyio

from ._leadership import Lease
from ._polling import RunPoller
from ._redis_calls import redis_errors
from ._redis_keys import EXPIRE_INTEREST, SharedKeys, SharedTiming
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
from ._stream_entries import Covered, Watch, kept_run

__all__ = ["PollLeader"]

logger = logging.getLogger("edges_async")

_T = TypeVar("_T")
_CHUNK = 500  # run uids per Redis command
# The leader poller's stand-in for "a callback URL some receiver takes".
_COVERED = "edges-async:covered"


@final
class PollLeader:
    """This process's bid to poll for the workspace, and the polling while it leads."""

    __slots__ = (
        "_bounded",
        "_covered_key",
        "_events",
        "_keys",
        "_lease",
        "_led",
        "_news",
        "_poller",
        "_timing",
        "_token",
        "_wake",
    )

    def __init__(
        self,
        *,
        keys: SharedKeys,
        timing: SharedTiming,
        token: str,
        covered_key: Callable[[str], str],
        make_poller: Callable[[RunEvents], RunPoller],
        tell: Callable[[WaitEvent], None],
        bounded: Callable[[Awaitable[Any]], Awaitable[Any]],
    ) -> None:
        self._keys = keys
        self._timing = timing
        self._token = token
        self._covered_key = covered_key
        self._bounded = bounded
        self._led: set[str] = set()  # runs the poller follows (or just saw end)
        self._news: list[str] = []  # runs announced on the stream, not followed yet
        self._lease: Lease | None = None
        self._wake: asyncio.Event | None = None
        self._events = RunEvents()
        self._poller = make_poller(self._events)
        self._poller.every_change = True  # for followers in every process
        self._events.subscribe(RunChanged, tell)
        self._events.subscribe(RunEnded, tell)
        self._events.subscribe(RunFailed, tell)
        self._events.publish(CallbacksServed(_COVERED))

    @property
    def leading(self) -> bool:
        """Whether this process held the lease at its last try."""
        return self._lease is not None and self._lease.held

    def hear(self, entry: CallbackReceived | RunResumed | Covered | Watch) -> None:
        """News from the stream that a leader acts on (nothing, when not leading)."""
        if not self.leading:
            return
        if isinstance(entry, Covered):
            self._events.publish(RunLaunched(entry.run_uid, _COVERED))
        elif isinstance(entry, Watch):
            self._news.extend(entry.uids)
            if self._wake is not None:
                self._wake.set()
        else:
            self._events.publish(entry)

    def written(self, uid: str) -> None:
        """The end of ``uid`` is on the stream and out of the watched set."""
        self._led.discard(uid)

    async def run(self, redis: Any) -> None:
        """Hold the lease when free; while held, poll every watched run. Raises on Redis errors."""
        self._wake = asyncio.Event()
        lease = self._lease = Lease(redis, self._keys.leader, self._token, self._timing.lease)
        expire = redis.register_script(EXPIRE_INTEREST)
        loop = asyncio.get_running_loop()
        tried = synced = -math.inf
        while True:
            if loop.time() - tried >= self._timing.lease_try:
                tried = loop.time()
                was_held = lease.held
                if await self._bounded(lease.hold()):
                    if not was_held:
                        synced = -math.inf
                        logger.info("This process polls the workspace's runs for all processes")
                elif self._led:
                    await self.step_down(release=False)
            if lease.held:
                if loop.time() - synced >= self._timing.sync:
                    synced = loop.time()
                    watched = await self._bounded(expire(keys=[self._keys.watched]))
                    await self._follow_watched(redis, {uid.decode() for uid in watched})
                news, self._news = self._news, []
                if news:
                    await self._follow_new(redis, set(news) - self._led)
            self._wake.clear()
            wake_at = tried + self._timing.lease_try
            if lease.held:
                wake_at = min(wake_at, synced + self._timing.sync)
            with anyio.move_on_after(wake_at - loop.time()):
                await self._wake.wait()

    async def _follow_watched(self, redis: Any, watched: set[str]) -> None:
        gone = self._led - watched
        if gone:
            self._led -= gone
            self._poller.unfollow(gone, wants_changes=False)
        await self._follow_new(redis, watched - self._led)

    async def _follow_new(self, redis: Any, uids: set[str]) -> None:
        """Poll ``uids``, except the runs that ended already (no longer watched then)."""
        ordered = sorted(uids)
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            kept = await self._bounded(redis.mget([self._keys.run(uid) for uid in chunk]))
            covered = await self._bounded(redis.mget([self._covered_key(uid) for uid in chunk]))
            for uid, flag in zip(chunk, covered, strict=True):
                if flag is not None:  # told before the poller follows it
                    self._events.publish(RunLaunched(uid, _COVERED))
            ended = [uid for uid, found in zip(chunk, kept, strict=True) if kept_run(found)]
            if ended:
                await self._bounded(redis.zrem(self._keys.watched, *ended))
            follow = [uid for uid, found in zip(chunk, kept, strict=True) if not kept_run(found)]
            self._led.update(follow)
            self._poller.follow(follow, wants_changes=False)

    async def step_down(self, *, release: bool = True) -> None:
        """Stop polling for the workspace (lease lost, Redis failing, or leaving)."""
        led, self._led = self._led, set()
        self._poller.unfollow(led, wants_changes=False)
        await self._poller.stop_if_idle()
        lease = self._lease
        if release and lease is not None and lease.held:
            with anyio.move_on_after(1.0):
                try:
                    await self._bounded(lease.release())
                except redis_errors():
                    pass  # it lapses on its own

    def __repr__(self) -> str:
        return f"<PollLeader leading={self.leading} runs={len(self._led)}>"
