"""Whether a coordination's Redis answers, as this process last saw it.

Every part of the SDK that talks to Redis reports here: :meth:`RedisHealth.failed`
when a command failed (an error, a timeout), :meth:`RedisHealth.answered` when
one went through. Only the transitions count: the first failure after a
success logs one WARNING, the first success after a failure one INFO, and
listeners hear of each transition once, never of every request.

Listeners are plain callables taking the new state (``True``: Redis answers
again). They are called synchronously, in the thread and event loop that saw
the transition, outside any lock: one that must act in another loop hands the
news over with ``loop.call_soon_threadsafe``. A listener that raises is logged
and forgotten by that call, not by the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import final

from ._redaction import scrub

__all__ = ["RedisHealth"]

logger = logging.getLogger("edges_async")


@final
class RedisHealth:
    """One Redis's health for this process: ``healthy``, and who to tell when it changes.

    ``target`` names the Redis in log lines (its URL without its password);
    ``on_failure`` says what the SDK does meanwhile ("each process spends its
    share of the plan", ...).
    """

    __slots__ = ("_healthy", "_listeners", "_lock", "_on_failure", "_target", "_transitions")

    def __init__(self, target: str, *, on_failure: str) -> None:
        self._target = target
        self._on_failure = on_failure
        self._healthy = True
        self._transitions = 0
        self._lock = threading.Lock()
        self._listeners: list[Callable[[bool], None]] = []

    @property
    def healthy(self) -> bool:
        """``False`` from a failed Redis command until the next one that goes through."""
        return self._healthy

    @property
    def transitions(self) -> int:
        """How many times the state changed (each one was logged once)."""
        return self._transitions

    def subscribe(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``listener(healthy)`` at each transition; returns what unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def failed(self, error: BaseException) -> bool:
        """A Redis command failed with ``error``; whether that was news (a transition)."""
        if not self._switch(False):
            return False
        logger.warning(
            "Redis at %s does not answer (%s): %s until it does.",
            self._target,
            scrub(_describe(error)),
            self._on_failure,
        )
        self._tell(False)
        return True

    def answered(self) -> bool:
        """A Redis command went through; whether that was news (a transition)."""
        if not self._switch(True):
            return False
        logger.info("Redis at %s answers again: the budget is shared again.", self._target)
        self._tell(True)
        return True

    def _switch(self, healthy: bool) -> bool:
        if self._healthy is healthy:  # the common case, without the lock
            return False
        with self._lock:
            if self._healthy is healthy:
                return False
            self._healthy = healthy
            self._transitions += 1
            return True

    def _tell(self, healthy: bool) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            _call(listener, healthy)

    def __repr__(self) -> str:
        state = "healthy" if self._healthy else "failing"
        return f"<RedisHealth {self._target} {state} transitions={self._transitions}>"


def _call(listener: Callable[[bool], None], healthy: bool) -> None:
    try:
        listener(healthy)
    except Exception:
        logger.exception("A Redis health listener failed")


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    name = type(error).__name__
    return f"{name}: {text}" if text else name
