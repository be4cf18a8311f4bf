"""Wire models: the shapes the Edges API sends, parsed with pydantic.

Every model keeps fields it does not know (the API adds fields over time), and a
status or execution mode the SDK does not know is kept as a plain string
instead of failing validation.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
from collections.abc import Iterable
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


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``host`` spells, in any form a resolver accepts, else ``None``.

    Besides the usual forms, the legacy IPv4 ones (``127.1``, ``2130706433``,
    ``0x7f.0.0.1``) count: ``getaddrinfo`` reads them as addresses too.
    """
    try:
        return ipaddress.ip_address(host.partition("%")[0])  # an IPv6 zone is no help
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _unreachable_host(host: str) -> str | None:
    """Why Edges, on the public internet, could never reach ``host``; ``None`` if it may.

    Only what the URL itself says is judged: a host name other than
    ``localhost`` is not resolved here, so a name pointing at a private
    address passes.
    """
    host = host.lower().removesuffix(".")
    if host == "localhost" or host.endswith(".localhost"):
        return "a loopback host"
    address = _literal_address(host)
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_private or not address.is_global or address.is_multicast:
        return "a private or non-public address"
    return None


class Callback(BaseModel):
    """Where Edges should POST a run's progress: an HTTPS ``url``, ``on`` "final" or "all".

    ``headers`` are sent with every callback: put a shared secret there and check
    it in your receiver, as Edges signs nothing. Their values never show in a
    ``repr`` or ``str`` (nor in a validation error); ``model_dump()`` gives them.

    The URL must be absolute ``https://`` on a host Edges can reach: ``localhost``
    and literal loopback, link-local, private or otherwise non-public addresses
    (``127.0.0.1``, ``[::1]``, ``10.1.2.3``, ``169.254.1.1``, ``[fd00::1]``...)
    are a ``ValueError``. Host names are not resolved, so a local receiver can
    be tested under a name that only the test's sender maps to ``127.0.0.1``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

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
        unreachable = _unreachable_host(parsed.host)
        if unreachable is not None:
            raise ValueError(
                f"callback URL {url!r} is on {unreachable}, which Edges can never reach: "
                "use a public host name"
            )
        return url

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name == "headers" and value is not None:
                value = dict.fromkeys(value, "***")
            yield name, value
