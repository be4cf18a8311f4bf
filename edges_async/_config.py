"""Resolving the client's settings: arguments first, then environment variables, then defaults."""

from __future__ import annotations

import ipaddress
import math
import numbers
from collections.abc import Mapping
from typing import final

import httpx

from ._exceptions import ConfigurationError
from ._plans import PlanTier

__all__ = [
    "DEFAULT_BASE_URL",
    "ApiKey",
    "resolve_api_key",
    "resolve_base_url",
    "resolve_plan",
    "resolve_timeout",
    "same_origin",
]

DEFAULT_BASE_URL = "https://api.edges.run/v1"


@final
class ApiKey:
    """An API key that never shows itself in a ``repr`` or ``str``; ``reveal()`` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself, for the ``X-API-Key`` header only."""
        return self._value

    def __repr__(self) -> str:
        return "ApiKey('**********')"

    __str__ = __repr__


def resolve_api_key(api_key: str | None, environ: Mapping[str, str]) -> ApiKey:
    """The key from the argument or ``EDGES_API_KEY``; neither is a ``ConfigurationError``."""
    value = api_key if api_key is not None else environ.get("EDGES_API_KEY")
    if value is None or not value.strip():
        raise ConfigurationError(
            "No API key: pass api_key=... or set the EDGES_API_KEY environment variable."
        )
    value = value.strip()
    if not (value.isascii() and value.isprintable()):
        # It goes in a header: a non-ASCII character fails to encode at the
        # first request, a control character is refused by the HTTP layer.
        raise ConfigurationError(
            "The API key holds a character that is not printable ASCII "
            "(a line break, a control character, an accented letter or a typographic quote?)."
        )
    return ApiKey(value)


def resolve_plan(plan: PlanTier | str | None, environ: Mapping[str, str]) -> PlanTier:
    """The plan from the argument or ``EDGES_PLAN``, else Trial; names are case-insensitive."""
    value = plan if plan is not None else environ.get("EDGES_PLAN", PlanTier.TRIAL)
    try:
        return PlanTier(value)
    except ValueError:
        names = ", ".join(tier.value for tier in PlanTier)
        raise ConfigurationError(f"Unknown plan {value!r}; expected one of: {names}.") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_base_url(base_url: str | httpx.URL | None, environ: Mapping[str, str]) -> httpx.URL:
    """The base URL from the argument or ``EDGES_BASE_URL``, checked.

    It must be ``https://``, except on a loopback host (a local simulator), so
    that the API key never travels in clear text.
    """
    raw = base_url if base_url is not None else environ.get("EDGES_BASE_URL", DEFAULT_BASE_URL)
    try:
        url = httpx.URL(str(raw).strip())
    except httpx.InvalidURL as exc:
        raise ConfigurationError(f"Invalid base_url {str(raw)!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"base_url must be an absolute http(s) URL, got {str(raw)!r}.")
    if url.scheme == "http" and not _is_loopback(url.host):
        raise ConfigurationError(
            f"base_url {str(raw)!r} uses plain http: only https is allowed, "
            "except on a loopback host such as 127.0.0.1 or localhost."
        )
    if url.query or url.fragment or url.userinfo:
        raise ConfigurationError("base_url must not carry a query, fragment or credentials.")
    return url.copy_with(path=url.path.rstrip("/"))


def resolve_timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    """An ``httpx.Timeout`` from a number of seconds, or the ``httpx.Timeout`` given, as is.

    The seconds must be a finite number above zero: ``inf``, NaN, zero, a
    negative value, a boolean, a string (even ``"30"``) and ``None`` are a
    ``ConfigurationError``. A request without any timeout could hang forever,
    so it is never the default nor ``None``'s meaning: pass
    ``httpx.Timeout(None)`` to ask for it knowingly.
    """
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if timeout is None:
        raise ConfigurationError(
            "timeout=None is not accepted: pass a number of seconds > 0, "
            "or httpx.Timeout(None) for requests without any timeout."
        )
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise ConfigurationError(
            f"timeout must be a number of seconds or an httpx.Timeout, "
            f"got {type(timeout).__name__} {timeout!r}."
        )
    seconds = float(timeout)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(
            f"timeout must be a finite number of seconds > 0, got {timeout!r}."
        )
    return httpx.Timeout(seconds)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host, url.port or default_port)


def same_origin(url: httpx.URL, other: httpx.URL) -> bool:
    """Whether two URLs share scheme, host and port (so the key may go to both)."""
    return _origin(url) == _origin(other)
