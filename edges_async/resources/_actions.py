"""``client.actions``: launching runs of an Edges action."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal, final

import pydantic

from .._http import HTTPCore, parse_model
from .._models import Callback, Run

__all__ = ["Actions"]

MAX_ASYNC_INPUTS = 100_000
IdentityMode = Literal["managed", "direct", "auto"]
_IDENTITY_MODES = ("managed", "direct", "auto")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _check_slug(action: str) -> str:
    if not isinstance(action, str) or not _SLUG.match(action):
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


def _check_callback(callback: Callback | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if callback is None:
        return None
    try:
        model = callback if isinstance(callback, Callback) else Callback.model_validate(callback)
    except pydantic.ValidationError as exc:
        raise ValueError(f"invalid callback: {exc}") from None
    return model.model_dump(exclude_none=True)


@final
class Actions:
    """Launching runs: ``client.actions``."""

    __slots__ = ("_core",)

    def __init__(self, core: HTTPCore) -> None:
        self._core = core

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

        The launch is sent once: if the connection breaks after the request may
        have reached Edges, the error is raised rather than risking a second run.
        Every argument is checked first (``ValueError``), before anything is sent.

        >>> run = await client.actions.run_async(
        ...     "linkedin-extract-people",
        ...     inputs=[{"linkedin_profile_url": "https://www.linkedin.com/in/someone"}],
        ...     callback={"url": "https://example.com/edges", "on": "final"},
        ... )
        >>> run.uid, run.status
        """
        body: dict[str, Any] = {"inputs": _check_inputs(inputs)}
        if parameters is not None:
            if not isinstance(parameters, Mapping):
                raise ValueError("parameters must be an object (dict)")
            body["parameters"] = dict(parameters)
        body.update(_identity_fields(identity_mode, identity_ids))
        callback_body = _check_callback(callback)
        if callback_body is not None:
            body["callback"] = callback_body
        path = f"/actions/{_check_slug(action)}/run/async"
        return parse_model(Run, await self._core.post(path, body))
