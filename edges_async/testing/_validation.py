"""Request validation with the messages the Edges API gives.

Edges validates requests against JSON schemas and words its 400s the way Ajv
does (``body must NOT have additional properties (inputs)``,
``querystring/limit must be <= 100``); the simulator does the same, so a
client's error handling meets realistic messages.

The checks are written out by hand on purpose: a schema library words its
errors otherwise, orders them otherwise (Ajv stops at the first failing check,
in its own keyword order), and does not coerce query strings as Ajv does, so a
message mapper over it came out longer than the checks it replaced.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cronsim

from ._wire import APIError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "LIST_FILTERS",
    "MAX_INPUTS",
    "SORT_FIELDS",
    "AsyncLaunch",
    "ListQuery",
    "LiveLaunch",
    "OutputsQuery",
    "ScheduleLaunch",
    "parse_async_body",
    "parse_list_query",
    "parse_live_body",
    "parse_outputs_query",
    "parse_run_uid_param",
    "parse_schedule_body",
]

MAX_INPUTS = 100_000
SORT_FIELDS = frozenset(
    {"created_at", "updated_at", "status", "action_name", "id", "finished_at", "started_at"}
)
LIST_FILTERS = ("status", "action_name", "execution_mode", "uid", "user_uid", "flow_run_id")

_UUID = re.compile(r"^(?:urn:uuid:)?[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$", re.IGNORECASE)
_INTEGER = re.compile(r"^-?[0-9]+$")
_IDENTITY_MODES = ("managed", "direct", "auto")
_CALLBACK_ON = ("all", "final")


def _bad(message: str, label: str = "BAD_PARAMETERS") -> APIError:
    return APIError(400, message, label=label)


def parse_run_uid_param(value: str) -> str:
    """The canonical (lower-case) form of the path's ``run_uid``; the API's 400 if malformed."""
    if _UUID.fullmatch(value) is None:
        raise _bad('params/run_uid must match format "uuid"')
    return value.lower().removeprefix("urn:uuid:")


def _grouped(items: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for key, value in items:
        grouped.setdefault(key, []).append(value)
    return grouped


def _integer(
    params: Mapping[str, list[str]], name: str, *, low: int, high: int | None
) -> int | None:
    """The integer query parameter ``name``, ``None`` when absent."""
    values = params.get(name)
    if values is None:
        return None
    if len(values) != 1 or _INTEGER.fullmatch(values[0]) is None:
        raise _bad(f"querystring/{name} must be integer")
    number = int(values[0])
    if number < low:
        raise _bad(f"querystring/{name} must be >= {low}")
    if high is not None and number > high:
        raise _bad(f"querystring/{name} must be <= {high}")
    return number


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The parsed query of ``GET /v1/runs``."""

    filters: dict[str, frozenset[str]]
    limit: int
    offset: int
    sort: tuple[tuple[str, bool], ...]
    """(field, descending) pairs, most significant first."""


def parse_list_query(items: Sequence[tuple[str, str]]) -> ListQuery:
    """Validate the query of ``GET /v1/runs`` (arrays as repeated keys)."""
    params = _grouped(items)
    limit = _integer(params, "limit", low=1, high=100)
    offset = _integer(params, "offset", low=0, high=None)
    filters: dict[str, frozenset[str]] = {}
    for name in LIST_FILTERS:
        values = params.get(name)
        if values is None:
            continue
        for position, value in enumerate(values):
            if name == "execution_mode" and value not in ("LIVE", "ASYNC"):
                raise _bad(
                    f"querystring/{name}/{position} must be equal to one of the allowed "
                    "values: LIVE, ASYNC"
                )
            if name in ("uid", "user_uid") and _UUID.fullmatch(value) is None:
                raise _bad(f'querystring/{name}/{position} must match format "uuid"')
        if name in ("uid", "user_uid"):
            values = [value.lower().removeprefix("urn:uuid:") for value in values]
        filters[name] = frozenset(values)
    sort_values = params.get("sort", ["-created_at"])
    if len(sort_values) > 10:
        raise _bad("querystring/sort must NOT have more than 10 items")
    sort: list[tuple[str, bool]] = []
    for position, value in enumerate(sort_values):
        if len(value) > 128:
            raise _bad(f"querystring/sort/{position} must NOT have more than 128 characters")
        descending = value.startswith("-")
        name = value[1:] if descending else value
        if name not in SORT_FIELDS:
            allowed = ", ".join(sorted(SORT_FIELDS))
            raise _bad(
                f"querystring/sort/{position} must name a field ({allowed}), "
                "optionally prefixed with '-'"
            )
        sort.append((name, descending))
    return ListQuery(
        filters=filters,
        limit=10 if limit is None else limit,
        offset=0 if offset is None else offset,
        sort=tuple(sort),
    )


@dataclass(frozen=True, slots=True)
class OutputsQuery:
    """The parsed query of ``GET /v1/runs/{uid}/outputs``."""

    limit: int
    cursor: str | None
    offset: int | None
    """Set when the deprecated offset pagination is asked for."""


def parse_outputs_query(items: Sequence[tuple[str, str]]) -> OutputsQuery:
    """Validate the query of ``GET /v1/runs/{uid}/outputs``."""
    params = _grouped(items)
    limit = _integer(params, "limit", low=1, high=500)
    offset = _integer(params, "offset", low=0, high=None)
    cursors = params.get("cursor")
    if cursors is not None and len(cursors) != 1:
        raise _bad("querystring/cursor must be string")
    return OutputsQuery(
        limit=100 if limit is None else limit,
        cursor=cursors[0] if cursors else None,
        offset=offset,
    )


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad("body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise _bad("body must be object")
    return body


def _only(body: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for name in body:
        if name not in allowed:
            raise _bad(f"{where} must NOT have additional properties ({name})")


def _check_common(body: Mapping[str, Any]) -> dict[str, Any]:
    """Checks ``parameters``, ``identity_mode`` and ``identity_ids``; returns the parameters."""
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise _bad("body/parameters must be object")
    if "identity_mode" in body and body["identity_mode"] not in _IDENTITY_MODES:
        raise _bad(
            "body/identity_mode must be equal to one of the allowed values: "
            + ", ".join(_IDENTITY_MODES)
        )
    if "identity_ids" in body:
        identity_ids = body["identity_ids"]
        if not isinstance(identity_ids, list):
            raise _bad("body/identity_ids must be array")
        for position, value in enumerate(identity_ids):
            if not isinstance(value, str) or _UUID.fullmatch(value) is None:
                raise _bad(f'body/identity_ids/{position} must match format "uuid"')
    return parameters


def _max_results(parameters: Mapping[str, Any]) -> int | None:
    value = parameters.get("max_results")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _check_callback(callback: Any) -> dict[str, Any]:
    if not isinstance(callback, dict):
        raise _bad("body/callback must be object")
    _only(callback, ("url", "headers", "on"), "body/callback")
    if "url" not in callback:
        raise _bad("body/callback must have required property 'url'")
    url = callback["url"]
    if not isinstance(url, str):
        raise _bad("body/callback/url must be string")
    parts = urlsplit(url)
    if parts.scheme.lower() != "https" or not parts.netloc:
        raise _bad(f"body/callback/url must be an HTTPS URL (https://...), got {url!r}")
    headers = callback.get("headers", {})
    if not isinstance(headers, dict):
        raise _bad("body/callback/headers must be object")
    for name, value in headers.items():
        if not isinstance(value, str):
            raise _bad(f"body/callback/headers/{name} must be string")
    if "on" in callback and callback["on"] not in _CALLBACK_ON:
        raise _bad("body/callback/on must be equal to one of the allowed values: all, final")
    return callback


@dataclass(frozen=True, slots=True)
class AsyncLaunch:
    """A validated ``POST /v1/actions/{slug}/run/async`` body."""

    input_count: int
    first_input: dict[str, Any]
    parameters: dict[str, Any]
    callback: dict[str, Any] | None
    max_results: int | None


_ASYNC_FIELDS = ("inputs", "parameters", "identity_mode", "identity_ids", "callback")


def parse_async_body(raw: bytes) -> AsyncLaunch:
    """Validate the body of an async launch."""
    body = _json_object(raw)
    _only(body, _ASYNC_FIELDS, "body")
    return _async_launch(body)


def _async_launch(body: Mapping[str, Any]) -> AsyncLaunch:
    if "inputs" not in body:
        raise _bad("body must have required property 'inputs'", "BAD_INPUT")
    inputs = body["inputs"]
    if not isinstance(inputs, list):
        raise _bad("body/inputs must be array", "BAD_INPUT")
    if not inputs:
        raise _bad("body/inputs must NOT have fewer than 1 items", "BAD_INPUT")
    if len(inputs) > MAX_INPUTS:
        raise _bad(f"body/inputs must NOT have more than {MAX_INPUTS} items", "BAD_INPUT")
    for position, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise _bad(f"body/inputs/{position} must be object", "BAD_INPUT")
    parameters = _check_common(body)
    callback = _check_callback(body["callback"]) if "callback" in body else None
    return AsyncLaunch(
        input_count=len(inputs),
        first_input=inputs[0],
        parameters=parameters,
        callback=callback,
        max_results=_max_results(parameters),
    )


@dataclass(frozen=True, slots=True)
class LiveLaunch:
    """A validated ``POST /v1/actions/{slug}/run/live`` body."""

    input: dict[str, Any]
    parameters: dict[str, Any]
    max_results: int | None
    body: dict[str, Any]
    """The whole body: a live cursor is valid with the same body only."""


def parse_live_body(raw: bytes) -> LiveLaunch:
    """Validate the body of a live action."""
    body = _json_object(raw)
    _only(body, ("input", "parameters", "identity_mode", "identity_ids"), "body")
    if "input" not in body:
        raise _bad("body must have required property 'input'", "BAD_INPUT")
    if not isinstance(body["input"], dict):
        raise _bad("body/input must be object", "BAD_INPUT")
    parameters = _check_common(body)
    return LiveLaunch(
        input=body["input"],
        parameters=parameters,
        max_results=_max_results(parameters),
        body=body,
    )


@dataclass(frozen=True, slots=True)
class ScheduleLaunch:
    """A validated ``POST /v1/actions/{slug}/run/schedule`` body: an async launch and its time."""

    launch: AsyncLaunch
    cron: str | None
    zone: ZoneInfo
    schedule_at: datetime | None
    """Aware; a naive ``schedule_at`` is taken as UTC."""

    def start_after(self, now: datetime) -> datetime:
        """When the run starts: the cron's next occurrence after ``now``, or ``schedule_at``."""
        if self.schedule_at is not None:
            return self.schedule_at
        assert self.cron is not None
        return next(cronsim.CronSim(self.cron, now.astimezone(self.zone)))


def _check_cron(cron: Any) -> str:
    if not isinstance(cron, str):
        raise _bad("body/cron must be string")
    if len(cron.split()) != 5:
        raise _bad(
            "body/cron must be a 5-field cron expression (minute hour day-of-month month "
            f"day-of-week), got {cron!r}"
        )
    try:
        cronsim.CronSim(cron, datetime(2000, 1, 1, tzinfo=timezone.utc))
    except cronsim.CronSimError as exc:
        raise _bad(f"body/cron is not a valid cron expression ({exc}): {cron!r}") from None
    return cron


def _check_timezone(name: Any) -> ZoneInfo:
    if not isinstance(name, str):
        raise _bad("body/timezone must be string")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _bad(
            f"body/timezone must be an IANA time zone name (e.g. 'Europe/Paris'), got {name!r}"
        ) from None


def _check_schedule_at(value: Any) -> datetime:
    if not isinstance(value, str):
        raise _bad("body/schedule_at must be string")
    text = value.strip()
    # datetime.fromisoformat reads a trailing Z only from Python 3.11 on.
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _bad('body/schedule_at must match format "date-time"') from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment


def parse_schedule_body(raw: bytes) -> ScheduleLaunch:
    """Validate the body of a scheduled launch: an async body plus ``cron`` or ``schedule_at``.

    ``cron`` (5 fields) goes with an optional IANA ``timezone`` (default UTC);
    ``schedule_at`` is an ISO 8601 datetime (naive means UTC). Exactly one of them.
    """
    body = _json_object(raw)
    _only(body, (*_ASYNC_FIELDS, "cron", "timezone", "schedule_at"), "body")
    launch = _async_launch(body)
    if ("cron" in body) == ("schedule_at" in body):
        if "cron" in body:
            raise _bad("body must NOT have both 'cron' and 'schedule_at': give exactly one")
        raise _bad("body must have required property 'cron' or 'schedule_at'")
    if "schedule_at" in body:
        if "timezone" in body:
            raise _bad(
                "body/timezone goes with 'cron' only: give 'schedule_at' an offset (or Z) instead"
            )
        return ScheduleLaunch(
            launch, None, ZoneInfo("UTC"), _check_schedule_at(body["schedule_at"])
        )
    cron = _check_cron(body["cron"])
    zone = _check_timezone(body["timezone"]) if "timezone" in body else ZoneInfo("UTC")
    return ScheduleLaunch(launch, cron, zone, None)
