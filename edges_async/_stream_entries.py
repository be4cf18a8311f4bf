"""The entries of a workspace's run events stream in Redis, written and read back.

Every process of a workspace reads one Redis Stream of what happened to the
runs its waiters wait for. An entry is a flat map of short byte fields:

- ``k``: the kind — ``changed`` / ``ended`` / ``failed`` (the polling leader
  saw it), ``callback`` (a process received a callback), ``watch`` (a process
  started waiting for runs: the leader follows them at once), ``resumed``,
  ``covered`` (a run launched with callbacks a receiver of the workspace takes);
- ``u``: the run uid, lower-case (``watch``: the uids, space-separated);
- ``r``: the run, as JSON (``changed``, ``ended``);
- ``e``: the error, as JSON (``failed``): its class, message and, for an
  HTTP answer, the request line and the response's status and body, so the
  reader raises the same ``EdgesError`` subclass the leader got;
- ``c``: the callback, as JSON (``callback``, without its partial results:
  they stay with the receiver that took them).

Nothing secret is written: runs and callbacks carry no key, an error's
response is the scrubbed one every ``EdgesError`` already carries, and its
request keeps only the method and URL (the key travels in a header).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, final

import httpx
import pydantic

from ._callback_models import CallbackEvent
from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    EdgesError,
)
from ._models import Run
from ._responses import status_error
from ._run_events import CallbackReceived, RunChanged, RunEnded, RunFailed, RunResumed

__all__ = [
    "CHANGED",
    "Covered",
    "Entry",
    "Watch",
    "decode",
    "encode",
    "encode_watch",
    "kept_run",
    "recorded_run",
    "run_json",
    "status_record",
]

Fields = dict[bytes, bytes]


@final
@dataclass(frozen=True, slots=True)
class Watch:
    """Some process started waiting for ``uids``."""

    uids: tuple[str, ...]


@final
@dataclass(frozen=True, slots=True)
class Covered:
    """A run was launched with callbacks some process's receiver takes: poll it as a safety net."""

    run_uid: str


Entry = RunChanged | RunEnded | RunFailed | CallbackReceived | RunResumed | Watch | Covered
"""What a stream entry says, as the event published in-process."""


def encode(
    event: RunChanged | RunEnded | RunFailed | CallbackReceived | RunResumed | Covered,
) -> Fields:
    """The stream fields for ``event``."""
    if isinstance(event, Covered):
        return {b"k": b"covered", b"u": event.run_uid.encode()}
    if isinstance(event, RunChanged):
        return {b"k": b"changed", b"u": event.run_uid.encode(), b"r": _run_json(event.run)}
    if isinstance(event, RunEnded):
        return {b"k": b"ended", b"u": event.run_uid.encode(), b"r": _run_json(event.run)}
    if isinstance(event, RunFailed):
        return {b"k": b"failed", b"u": event.run_uid.encode(), b"e": _error_json(event.error)}
    if isinstance(event, RunResumed):
        return {b"k": b"resumed", b"u": event.run_uid.lower().encode()}
    callback = event.event.model_copy(update={"results": None})
    return {
        b"k": b"callback",
        b"u": callback.run_uid.encode(),
        b"c": callback.model_dump_json(exclude_none=True).encode(),
    }


def encode_watch(uids: list[str]) -> Fields:
    """The stream fields telling the leader that ``uids`` are waited for now."""
    return {b"k": b"watch", b"u": " ".join(uids).encode()}


def decode(fields: Mapping[bytes, bytes]) -> Entry | None:
    """The event an entry tells, or ``None`` for an entry this version cannot read."""
    try:
        kind = fields[b"k"]
        uid = fields[b"u"].decode()
        if kind == b"changed":
            return RunChanged(uid, Run.model_validate_json(fields[b"r"]))
        if kind == b"ended":
            return RunEnded(uid, Run.model_validate_json(fields[b"r"]))
        if kind == b"failed":
            return RunFailed(uid, _error(json.loads(fields[b"e"])))
        if kind == b"callback":
            return CallbackReceived(CallbackEvent.model_validate_json(fields[b"c"]))
        if kind == b"resumed":
            return RunResumed(uid)
        if kind == b"watch":
            return Watch(tuple(uid.split()))
        if kind == b"covered":
            return Covered(uid)
    except Exception:  # a foreign or damaged entry must not end anybody's wait
        return None
    return None


def kept_run(raw: bytes | None) -> Run | None:
    """A run kept under ``run:<uid>`` (or with its last status), or ``None`` if unreadable."""
    if raw is None:
        return None
    try:
        return Run.model_validate_json(raw)
    except (ValueError, pydantic.ValidationError):
        return None


def status_record(run: Run) -> bytes:
    """A run's last status as the leader keeps it: the status, a separator, the run."""
    return f"{run.status}".encode() + _SEPARATOR + _run_json(run)


def recorded_run(raw: bytes | None) -> Run | None:
    """The run of a :func:`status_record`, or ``None``."""
    if raw is None or _SEPARATOR not in raw:
        return None
    return kept_run(raw.split(_SEPARATOR, 1)[1])


_SEPARATOR = b"\x1f"

# KEYS[1] the run's last status record, KEYS[2] the events stream; ARGV[1] the
# uid, ARGV[2] the record (status, 0x1F, run), ARGV[3] the stream's cap,
# ARGV[4] seconds the record is kept. A status already told (by this leader or
# one before it) is not told again: waiters hear each change once.
CHANGED = r"""
local previous = redis.call('GET', KEYS[1])
local cut = string.find(ARGV[2], '\31', 1, true)
if previous then
  local seen = string.find(previous, '\31', 1, true)
  if seen and cut and string.sub(previous, 1, seen) == string.sub(ARGV[2], 1, cut) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[4])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
  'k', 'changed', 'u', ARGV[1], 'r', string.sub(ARGV[2], (cut or 0) + 1))
return 1
"""


def run_json(run: Run) -> bytes:
    """A run as kept under ``run:{uid}`` for waits that start after it ended."""
    return _run_json(run)


def _run_json(run: Run) -> bytes:
    return run.model_dump_json(by_alias=True, exclude_unset=True).encode()


def _error_json(error: Exception) -> bytes:
    described: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    request = getattr(error, "request", None)
    if isinstance(request, httpx.Request):
        described["method"] = request.method
        described["url"] = str(request.url)
    response = getattr(error, "response", None)
    if isinstance(error, (APIStatusError, APIResponseValidationError)) and isinstance(
        response, httpx.Response
    ):
        described["status"] = response.status_code
        described["body"] = response.content.decode("utf-8", "replace")
    return json.dumps(described).encode()


def _error(described: dict[str, Any]) -> EdgesError:
    """The error the leader's poller got, rebuilt in this process."""
    message = str(described.get("message", "The wait for this run failed"))
    request = httpx.Request(
        str(described.get("method", "GET")), str(described.get("url", "http://edges.invalid/"))
    )
    status = described.get("status")
    if isinstance(status, int):
        response = httpx.Response(
            status, content=str(described.get("body", "")).encode(), request=request
        )
        if described.get("type") == APIResponseValidationError.__name__:
            return APIResponseValidationError(message, response=response)
        return status_error(response)
    if described.get("type") == APITimeoutError.__name__:
        return APITimeoutError(message, request=request)
    if described.get("type") == APIConnectionError.__name__:
        return APIConnectionError(message, request=request)
    return EdgesError(message)
