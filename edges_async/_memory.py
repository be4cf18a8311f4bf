"""Bounded memories: what the client keeps about runs and callbacks, newest last, oldest out."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["remember"]

K = TypeVar("K")
V = TypeVar("V")


def remember(memory: dict[K, V], key: K, value: V, *, limit: int) -> None:
    """Keep ``key`` as the newest entry of ``memory``, dropping the oldest past ``limit``."""
    memory.pop(key, None)
    memory[key] = value
    if len(memory) > limit:
        del memory[next(iter(memory))]
