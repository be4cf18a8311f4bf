"""Wire models: the shapes the Edges API sends, parsed with pydantic.

Every model keeps fields it does not know (the API adds fields over time), and a
status or execution mode the SDK does not know is kept as a plain string
instead of failing validation.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal

import httpx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PlainValidator, field_validator

__all__ = [
    "TERMINAL_STATUSES",
    "Callback",
    "ErrorBody",
    "ExecutionMode",
    "Run",
    "RunCallbackInfo",
    "RunErrorInfo",
    "RunStatus",
]


class RunStatus(str, enum.Enum):
    """The documented statuses of a run; ``.is_terminal`` tells whether waiting ends there."""

    CREATED = "CREATED"
    QUEUED = "QUEUED"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    PARTIAL_SUCCEEDED = "PARTIAL_SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    BLOCKED = "BLOCKED"
    INVALID = "INVALID"

    @property
    def is_terminal(self) -> bool:
        """Whether a run in this status is done (a BLOCKED run may still be resumed)."""
        return self in TERMINAL_STATUSES

    def __str__(self) -> str:
        return self.value


TERMINAL_STATUSES: frozenset[RunStatus] = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.PARTIAL_SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.STOPPED,
        RunStatus.BLOCKED,
        RunStatus.INVALID,
    }
)


class ExecutionMode(str, enum.Enum):
    """How a run was launched: ``LIVE`` (synchronous) or ``ASYNC`` (async and scheduled)."""

    LIVE = "LIVE"
    ASYNC = "ASYNC"

    def __str__(self) -> str:
        return self.value


def _known_or_raw(enum_type: type[enum.Enum]) -> PlainValidator:
    """A validator mapping a known value (any case) to its member and keeping others as str."""
    members = {str(member.value): member for member in enum_type}

    def validate(value: object) -> object:
        if value is None or isinstance(value, enum_type):
            return value
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {type(value).__name__}")
        return members.get(value.upper(), value)

    return PlainValidator(validate)


StatusValue = Annotated[RunStatus | str | None, _known_or_raw(RunStatus)]
ExecutionModeValue = Annotated[ExecutionMode | str | None, _known_or_raw(ExecutionMode)]


class _WireModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class RunErrorInfo(_WireModel):
    """The ``last_error`` of a run: a label such as ``NO_RESULT``, a message and parameters."""

    label: str | None = None
    message: str | None = None
    params: Any = None


class RunCallbackInfo(_WireModel):
    """The callback a run was launched with, as the API reports it back."""

    url: str | None = None


class Run(_WireModel):
    """A run, from ``GET /v1/runs/{uid}``, the light ``/status`` shape or a launch response.

    Fields the shape at hand does not carry are ``None``. ``status`` is a
    :class:`RunStatus` when the SDK knows the value and the raw string otherwise.
    """

    uid: str = Field(validation_alias=AliasChoices("uid", "run_uid"))
    id: int | None = Field(default=None, validation_alias=AliasChoices("id", "run_id"))
    status: StatusValue = None
    action_id: int | str | None = None
    action_name: str | None = None
    user_uid: str | None = None
    workspace_uid: str | None = None
    scheduled_run_uid: str | None = None
    execution_mode: ExecutionModeValue = None
    retry_count: int | None = None
    last_error: RunErrorInfo | None = None
    parameters: dict[str, Any] | None = None
    callback: RunCallbackInfo | None = None
    output_count: int | None = None
    postponed_until: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    synced_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        """Whether the run reached a terminal status (an unknown status is not terminal)."""
        return isinstance(self.status, RunStatus) and self.status.is_terminal


class ErrorBody(_WireModel):
    """The Edges error body: ``error_label``, ``error_scope``, ``error_ref``, ``message``."""

    error_label: str | None = None
    error_scope: str | None = None
    error_ref: str | None = None
    message: str | None = None
    status_code: int | None = None


class Callback(BaseModel):
    """Where Edges should POST a run's progress: an HTTPS ``url``, ``on`` "final" or "all".

    ``headers`` are sent with every callback: put a shared secret there and check
    it in your receiver, as Edges signs nothing.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    on: Literal["all", "final"] = "final"
    headers: dict[str, str] | None = None

    @field_validator("url")
    @classmethod
    def _https_only(cls, url: str) -> str:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if parsed.scheme != "https" or not parsed.host:
            raise ValueError(f"callback URLs must be absolute https:// URLs, got {url!r}")
        return url
