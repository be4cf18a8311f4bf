"""What counts as Redis failing, and Redis calls bounded in time.

Redis fails by ``RedisError`` (redis-py's), ``OSError`` (the socket), or a
call that does not answer within its bound (``TimeoutError``, itself an
``OSError``): a stalled Redis, or a client given without a socket timeout,
must not hang a wait or a request. Every part of the coordination (budget,
shared polling, shared callback streams) uses these two, and only these.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import anyio

__all__ = ["bounded", "redis_errors"]

_T = TypeVar("_T")


def redis_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean Redis failed (redis-py imported on first use)."""
    from redis.exceptions import RedisError

    return (RedisError, OSError)  # TimeoutError is an OSError


async def bounded(call: Awaitable[_T], seconds: float) -> _T:
    """Await one Redis call for at most ``seconds`` (``TimeoutError`` past them)."""
    with anyio.fail_after(seconds):
        return await call
