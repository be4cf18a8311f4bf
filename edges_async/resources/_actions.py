"""``client.actions``: launching runs of an Edges action."""

from __future__ import annotations

import re
import uuid
import zoneinfo
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, final

import cronsim
import pydantic

from .._backoff import utc_now
from .._http import HTTPCore
from .._models import Callback, Run
from .._responses import parse_model
from .._run_events import RunEvents, RunLaunched
from ._live import LiveResult, fetch_live_page

__all__ = ["Actions"]

MAX_ASYNC_INPUTS = 100_000
IdentityMode = Literal["managed", "direct", "auto"]
_IDENTITY_MODES = ("managed", "direct", "auto")
# fullmatch, not match with ``$``: ``$`` also matches before a trailing newline.
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# How far in the past a one-off ``schedule_at`` may be: clocks drift, and a
# time "now" is stale by the time it is sent.
_SCHEDULE_AT_TOLERANCE = timedelta(minutes=1)


def _check_slug(action: str) -> str:
    if not isinstance(action, str) or not _SLUG.fullmatch(action):
        raise ValueError(
            f"action must be an action slug like 'linkedin-extract-people', got {action!r}"
        )
    return action


def _check_inputs(inputs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(inputs, (str, bytes, Mapping)) or not isinstance(inputs, Sequence):
        raise ValueError("inputs must be a list of input objects (dicts)")
    if not inputs:
        raise ValueError("inputs must hold at least one input")
    if len(inputs) > MAX_ASYNC_INPUTS:
        raise ValueError(f"inputs takes at most {MAX_ASYNC_INPUTS:,} items, got {len(inputs):,}")
    for index, item in enumerate(inputs):
        if not isinstance(item, Mapping):
            raise ValueError(f"inputs[{index}] must be an object (dict), got {type(item).__name__}")
    return [dict(item) for item in inputs]


def _identity_fields(
    identity_mode: IdentityMode | None, identity_ids: Sequence[str | uuid.UUID] | None
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if identity_mode is not None:
        if identity_mode not in _IDENTITY_MODES:
            raise ValueError(
                f"identity_mode must be one of {_IDENTITY_MODES}, got {identity_mode!r}"
            )
        fields["identity_mode"] = identity_mode
    if identity_ids is not None:
        if isinstance(identity_ids, (str, uuid.UUID)):
            identity_ids = [identity_ids]
        try:
            fields["identity_ids"] = [str(uuid.UUID(str(value))) for value in identity_ids]
        except ValueError:
            raise ValueError(f"identity_ids must be UUIDs, got {identity_ids!r}") from None
    return fields


def _check_callback(callback: Callback | Mapping[str, Any] | None) -> Callback | None:
    if callback is None or isinstance(callback, Callback):
        return callback
    try:
        return Callback.model_validate(callback)
    except pydantic.ValidationError as exc:
        raise ValueError(f"invalid callback: {exc}") from None


def _check_parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise ValueError("parameters must be an object (dict)")
    return {"parameters": dict(parameters)}


def _check_cron(cron: str, timezone_name: str | None) -> dict[str, Any]:
    if not isinstance(cron, str) or len(cron.split()) != 5:
        raise ValueError(f"cron must have 5 fields (minute hour day month weekday), got {cron!r}")
    try:
        cronsim.CronSim(cron, datetime(2000, 1, 1))
    except cronsim.CronSimError as exc:
        raise ValueError(f"invalid cron expression {cron!r}: {exc}") from None
    fields: dict[str, Any] = {"cron": " ".join(cron.split())}
    if timezone_name is not None:
        try:
            zoneinfo.ZoneInfo(timezone_name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(
                f"timezone must be an IANA time zone name like 'Europe/Paris', "
                f"got {timezone_name!r}"
            ) from None
        fields["timezone"] = timezone_name
    return fields


_AWARE_DATETIME: pydantic.TypeAdapter[pydantic.AwareDatetime] = pydantic.TypeAdapter(
    pydantic.AwareDatetime
)


def _check_schedule_at(schedule_at: datetime | str) -> dict[str, Any]:
    """The ``schedule_at`` field; a time more than a minute past is a ``ValueError``.

    "Now" is the module's ``utc_now()``, looked up at each call so that tests
    can replace it.
    """
    try:
        moment = _AWARE_DATETIME.validate_python(schedule_at)
    except pydantic.ValidationError:
        raise ValueError(
            "schedule_at must be a timezone-aware datetime or ISO 8601 string "
            f"(e.g. '2026-12-01T09:00:00Z'), got {schedule_at!r}"
        ) from None
    now = utc_now()
    if moment < now - _SCHEDULE_AT_TOLERANCE:
        raise ValueError(
            f"schedule_at {schedule_at!r} is in the past (now is "
            f"{now.isoformat(timespec='seconds')}): a one-off run must be scheduled ahead"
        )
    return {"schedule_at": moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")}


_NOT_GIVEN: Any = object()


@final
class Actions:
    """Launching runs: ``client.actions``.

    Every argument is checked before anything is sent (``ValueError``). A
    launch is sent once: if the connection breaks after the request may have
    reached Edges, the error is raised rather than risking a second run.
    """

    __slots__ = ("_core", "_events")

    def __init__(self, core: HTTPCore, *, events: RunEvents) -> None:
        self._core = core
        self._events = events  # told of each launch: callbacks may cover the run

    async def run_async(
        self,
        action: str,
        *,
        inputs: Sequence[Mapping[str, Any]],
        parameters: Mapping[str, Any] | None = None,
        identity_mode: IdentityMode | None = None,
        identity_ids: Sequence[str | uuid.UUID] | None = None,
        callback: Callback | Mapping[str, Any] | None = None,
    ) -> Run:
        """Launch an async run of ``action`` over ``inputs`` (1 to 100,000 objects).

        ``callback`` (an :class:`~edges_async.Callback` or the same as a dict)
        asks Edges to POST the run's progress to an HTTPS URL; see
        ``edges_async.callbacks`` to receive it.

        >>> run = await client.actions.run_async(
        ...     "linkedin-extract-people",
        ...     inputs=[{"linkedin_profile_url": "https://www.linkedin.com/in/someone"}],
        ...     callback={"url": "https://example.com/edges", "on": "final"},
        ... )
        >>> run.uid, run.status
        """
        path = f"/actions/{_check_slug(action)}/run/async"
        body, checked = self._launch_body(inputs, parameters, identity_mode, identity_ids, callback)
        return await self._launch(path, body, checked)

    async def schedule(
        self,
        action: str,
        *,
        inputs: Sequence[Mapping[str, Any]],
        cron: str | None = None,
        timezone: str | None = None,
        schedule_at: datetime | str | None = None,
        parameters: Mapping[str, Any] | None = None,
        identity_mode: IdentityMode | None = None,
        identity_ids: Sequence[str | uuid.UUID] | None = None,
        callback: Callback | Mapping[str, Any] | None = None,
    ) -> Run:
        """Schedule a run of ``action``: on a 5-field ``cron``, or once at ``schedule_at``.

        ``timezone`` is an IANA name (``"Europe/Paris"``) and goes with ``cron``
        only; ``schedule_at`` is a timezone-aware datetime or ISO 8601 string.
        Exactly one of ``cron`` and ``schedule_at`` is required.

        >>> run = await client.actions.schedule(
        ...     "linkedin-extract-people", inputs=[...], cron="0 9 * * 1-5", timezone="Europe/Paris"
        ... )
        """
        path = f"/actions/{_check_slug(action)}/run/schedule"
        if (cron is None) == (schedule_at is None):
            raise ValueError("schedule needs exactly one of cron= and schedule_at=")
        if cron is not None:
            when = _check_cron(cron, timezone)
        else:
            if timezone is not None:
                raise ValueError(
                    "timezone goes with cron=; give schedule_at= a timezone-aware time"
                )
            assert schedule_at is not None
            when = _check_schedule_at(schedule_at)
        body, checked = self._launch_body(inputs, parameters, identity_mode, identity_ids, callback)
        return await self._launch(path, {**body, **when}, checked)

    async def run_live(
        self,
        action: str,
        *,
        input: Mapping[str, Any] = _NOT_GIVEN,
        parameters: Mapping[str, Any] | None = None,
        identity_mode: IdentityMode | None = None,
        identity_ids: Sequence[str | uuid.UUID] | None = None,
        inputs: Any = _NOT_GIVEN,
    ) -> LiveResult:
        """Run ``action`` on one ``input`` object now and return its results.

        Live requests draw on the workspace's live rate limit, not the runs
        one. A large answer comes in pages: ``result.results`` is the first,
        ``async for item in result`` goes through all of them (each further
        page POSTs the same body again, as the API asks).

        >>> live = await client.actions.run_live(
        ...     "linkedin-extract-people",
        ...     input={"linkedin_profile_url": "https://www.linkedin.com/in/someone"},
        ... )
        >>> async for person in live: ...
        """
        if inputs is not _NOT_GIVEN:
            raise ValueError("a live run takes one input object: input={...}, not inputs=[...]")
        if input is _NOT_GIVEN:
            raise ValueError("run_live needs input={...}: the one input object to run on")
        if not isinstance(input, Mapping):
            raise ValueError(f"input must be an object (dict), got {type(input).__name__}")
        path = f"/actions/{_check_slug(action)}/run/live"
        body: dict[str, Any] = {"input": dict(input), **_check_parameters(parameters)}
        body.update(_identity_fields(identity_mode, identity_ids))
        followed: set[str] = set()
        url = self._core.url(path)
        results, next_url = await fetch_live_page(self._core, url, body, followed)
        return LiveResult(self._core, body, results, next_url, followed)

    def _launch_body(
        self,
        inputs: Sequence[Mapping[str, Any]],
        parameters: Mapping[str, Any] | None,
        identity_mode: IdentityMode | None,
        identity_ids: Sequence[str | uuid.UUID] | None,
        callback: Callback | Mapping[str, Any] | None,
    ) -> tuple[dict[str, Any], Callback | None]:
        body: dict[str, Any] = {"inputs": _check_inputs(inputs), **_check_parameters(parameters)}
        body.update(_identity_fields(identity_mode, identity_ids))
        checked = _check_callback(callback)
        if checked is not None:
            body["callback"] = checked.model_dump(exclude_none=True)
        return body, checked

    async def _launch(self, path: str, body: dict[str, Any], callback: Callback | None) -> Run:
        secrets = tuple(callback.headers.values()) if callback and callback.headers else ()
        run = parse_model(Run, await self._core.post(path, body, secrets=secrets))
        self._events.publish(RunLaunched(run.uid, callback.url if callback else None))
        return run
