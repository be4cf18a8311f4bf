"""Checking arguments before any request, and the wire form of query parameters.

Array filters go on the wire as repeated keys (``?uid=a&uid=b``), as the API's
documented examples show, though the API does not confirm it for every route.
This module is the one place that knows it.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Iterable
from datetime import timedelta

__all__ = [
    "array_param",
    "check_int_range",
    "check_run_uid",
    "check_run_uids",
    "check_timeout",
    "uid_array_param",
    "uid_filter_query",
]

# fullmatch, not match with ``$``: ``$`` also matches before a trailing newline.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def check_run_uid(run_uid: str | uuid.UUID, *, name: str = "run_uid") -> str:
    """A run uid in canonical (lower-case) form; anything but a UUID is a ``ValueError``.

    ``name`` is the argument named in the error message.
    """
    if isinstance(run_uid, uuid.UUID):
        return str(run_uid)
    if not isinstance(run_uid, str) or not _UUID.fullmatch(run_uid):
        raise ValueError(f"{name} must be a UUID like '3f2c...-...', got {run_uid!r}")
    return run_uid.lower()


def check_run_uids(run_uids: Iterable[str | uuid.UUID]) -> list[str]:
    """Run uids in canonical form, in the order given; a single string is a ``TypeError``."""
    if isinstance(run_uids, (str, bytes, uuid.UUID)):
        raise TypeError(
            f"run_uids must be a collection of run uids, not one ({run_uids!r}): "
            "wrap it in a list, or use wait_for_run"
        )
    if not isinstance(run_uids, Iterable):
        raise TypeError(f"run_uids must be a collection of run uids, got {run_uids!r}")
    return [check_run_uid(uid) for uid in run_uids]


def check_timeout(timeout: float | timedelta | None) -> float | None:
    """A wait's ``timeout`` in seconds: ``None`` (no deadline) or a number > 0."""
    if timeout is None:
        return None
    if isinstance(timeout, timedelta):
        seconds = timeout.total_seconds()
    elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        seconds = float(timeout)
    else:
        raise TypeError(f"timeout must be seconds, a timedelta or None, got {timeout!r}")
    if not seconds > 0:  # NaN included
        raise ValueError(f"timeout must be > 0 seconds (or None to wait forever), got {timeout!r}")
    return seconds


def check_int_range(name: str, value: int, low: int, high: int | None = None) -> int:
    """``value`` when it is an int within ``[low, high]``, else a ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def _wire_value(value: object) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def array_param(
    name: str,
    values: str | enum.Enum | uuid.UUID | Iterable[object] | None,
    *,
    max_items: int | None = None,
) -> list[tuple[str, str]]:
    """Query pairs for an array parameter given one value or several; ``None`` gives none.

    An empty collection is refused: the API wants at least one value when a
    filter is given, and an empty filter silently matching everything would
    surprise.
    """
    if values is None:
        return []
    items = [values] if isinstance(values, (str, enum.Enum, uuid.UUID)) else list(values)
    if not items:
        raise ValueError(f"{name} must hold at least one value when given")
    if max_items is not None and len(items) > max_items:
        raise ValueError(f"{name} takes at most {max_items} values, got {len(items)}")
    try:
        return [(name, _wire_value(item)) for item in items]
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def uid_array_param(
    name: str, values: str | uuid.UUID | Iterable[str | uuid.UUID] | None
) -> list[tuple[str, str]]:
    """Query pairs for an array filter of uids (``uid``, ``user_uid``), each checked.

    Like :func:`array_param`, but every value must be a UUID and goes on the
    wire in canonical form: a malformed one is a ``ValueError`` before any request.
    """
    if values is None:
        return []
    items = [values] if isinstance(values, (str, uuid.UUID)) else values
    if isinstance(items, bytes) or not isinstance(items, Iterable):
        raise ValueError(f"{name} must be a UUID or a collection of them, got {values!r}")
    return array_param(name, [check_run_uid(item, name=name) for item in items])


def uid_filter_query(run_uids: Iterable[str], *, limit: int, statuses: Iterable[str] = ()) -> str:
    """The query string of a runs list filtered by uid: ``uid=a&uid=b&limit=2``.

    For uids from :func:`check_run_uid` and status names only: their characters
    need no escaping, so the string is joined directly, without the cost of
    encoding a list of pairs (it matters when polling sends hundreds of these a
    minute).
    """
    pairs = [*(f"uid={uid}" for uid in run_uids), *(f"status={name}" for name in statuses)]
    return "&".join([*pairs, f"limit={limit}"])
