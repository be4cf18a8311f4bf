"""The Redis data of a coordinated workspace that waiting for runs uses, and its scripts.

Keys (``edges:{<workspace id>}:...``, one hash tag per workspace: a Redis
Cluster keeps them on one node):

- ``events``: the stream of run events every process reads (capped);
- ``watched``: a sorted set of the run uids some process waits for, scored by
  the Redis time their interest expires at (each waiter refreshes it);
- ``leader``: the polling lease;
- ``run:<uid>``: a run that ended, as JSON, kept a day for waits that start late;
- ``callback:<digest>``: a callback taken by some process (an hour), by a
  digest of its ``callback_ref_uid``;
- ``callbacks:...``: the callbacks taken and not read yet, per run, for
  ``CallbackReceiver.events`` / ``.results`` in any process (the layout is in
  :mod:`._shared_run_streams`).

Times in scores come from Redis ``TIME`` (inside the scripts), never from a
process's clock: processes on several hosts disagree on the time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, final

__all__ = ["EXPIRE_INTEREST", "INTEREST", "Coordinated", "SharedKeys", "SharedTiming"]


class Coordinated(Protocol):
    """What waiting needs of a ``RedisCoordination``."""

    @property
    def redis(self) -> object:
        """The ``redis.asyncio.Redis`` client."""
        ...

    @property
    def socket_timeout(self) -> float:
        """Seconds one Redis command may take (validated > 0 by the coordination)."""
        ...

    @property
    def process_token(self) -> str:
        """This process's (this coordination's) unique name."""
        ...

    def key(self, workspace: str, *parts: str) -> str:
        """The key ``edges:{<workspace>}:<parts>``."""
        ...


@final
@dataclass(frozen=True, slots=True)
class SharedKeys:
    """The keys of one workspace."""

    events: str
    watched: str
    leader: str
    run: Callable[[str], str]
    callback: Callable[[str], str]
    callbacks: Callable[[str], str]

    @classmethod
    def of(cls, coordination: Coordinated, workspace: str) -> SharedKeys:
        """The keys ``coordination`` gives ``workspace``."""
        return cls(
            events=coordination.key(workspace, "events"),
            watched=coordination.key(workspace, "watched"),
            leader=coordination.key(workspace, "leader"),
            run=lambda uid: coordination.key(workspace, "run", uid),
            callback=lambda ref: coordination.key(workspace, "callback", ref),
            callbacks=lambda rest: coordination.key(workspace, "callbacks", rest),
        )


@final
@dataclass(frozen=True, slots=True)
class SharedTiming:
    """How often the processes of a workspace talk through Redis (seconds)."""

    lease: float = 10.0
    """The polling lease: a dead leader is replaced within it (plus ``lease_try``)."""
    lease_try: float = 2.0
    """How often the leader renews its lease, and the others try to take it."""
    interest: float = 30.0
    """How long a process's interest in a run lasts unless refreshed."""
    refresh: float = 10.0
    """How often a process refreshes its interests."""
    sync: float = 5.0
    """How often the leader reads the whole watched set (new runs also come by the stream)."""
    read_block: float = 0.2
    """The longest one stream read blocks (below the Redis client's socket timeout)."""
    retry: float = 1.0
    """How often a process whose Redis failed tries it again."""
    keep_ended: float = 86_400.0
    """How long an ended run stays readable for waits that start late."""
    max_stream: int = 100_000
    """Entries the events stream keeps (approximately: Redis trims whole nodes)."""

    def __post_init__(self) -> None:
        for name in ("lease", "lease_try", "interest", "refresh", "sync", "read_block", "retry"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if self.lease_try * 2 > self.lease:
            raise ValueError("lease_try must be at most half the lease: renewals would be late")
        if self.refresh * 2 > self.interest:
            raise ValueError("refresh must be at most half of interest: interests would lapse")


# KEYS[1] the watched set; ARGV[1] seconds of interest, ARGV[2...] run uids.
# GT: an interest only ever lasts longer (another process's may run later).
# A refresh re-adds a run Redis lost (a restart): the leader checks
# ``run:<uid>`` before it polls a run, so a run that ended is not polled again.
INTEREST = """
local now = redis.call('TIME')
local expires = tonumber(now[1]) + tonumber(now[2]) / 1e6 + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'GT', expires, ARGV[i])
end
return #ARGV - 1
"""

# KEYS[1] the watched set: drops lapsed interests, returns the runs still watched.
EXPIRE_INTEREST = """
local now = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(now[1]) + tonumber(now[2]) / 1e6)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
