"""A lease in Redis that elects one process of a workspace to poll for all of them.

Whoever holds the key ``leader`` (``SET NX PX``) polls; it renews the lease
well inside its expiry, and only while it still holds it (a script compares
the holder first: a process that stalled past its lease must not extend the
one another process took meanwhile). A holder that dies stops renewing: the
key expires and the next process to try takes over, within the lease time
and one try interval. A brief double leader (a stall longer than the lease)
only costs polls the shared budget still bounds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Lease"]

# KEYS[1] the lease; ARGV[1] the holder's token, ARGV[2] the lease in ms.
# Returns 1 when the caller holds the lease now (taken or renewed), else 0.
_HOLD = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS[1] the lease; ARGV[1] the token: released only by its holder.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@final
class Lease:
    """One process's claim on a workspace's polling lease."""

    __slots__ = ("_hold", "_key", "_milliseconds", "_release", "_token", "held")

    def __init__(self, redis: Redis, key: str, token: str, seconds: float) -> None:
        self._key = key
        self._token = token
        self._milliseconds = max(1, round(seconds * 1000))
        self._hold: Any = redis.register_script(_HOLD)
        self._release: Any = redis.register_script(_RELEASE)
        self.held = False
        """Whether the last try found this process holding the lease."""

    async def hold(self) -> bool:
        """Take the lease if it is free, renew it if this process holds it; whether it does."""
        self.held = bool(await self._hold(keys=[self._key], args=[self._token, self._milliseconds]))
        return self.held

    async def release(self) -> None:
        """Give the lease up, if this process holds it, for another to take at once."""
        self.held = False
        await self._release(keys=[self._key], args=[self._token])

    def __repr__(self) -> str:
        return f"<Lease held={self.held} for {self._milliseconds} ms>"
