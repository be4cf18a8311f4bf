"""``AsyncClient``: the entry point, holding configuration, the HTTP layer and the resources."""

from __future__ import annotations

import enum
import os
from types import TracebackType
from typing import final

import httpx

from ._backoff import Backoff
from ._config import resolve_api_key, resolve_base_url, resolve_plan, resolve_timeout
from ._exceptions import ClientClosedError, ConfigurationError
from ._http import HTTPCore
from ._limiter import RateLimiter, WorkspaceRateLimiter, workspace_id
from ._plans import PlanTier
from .resources import Actions, Runs

__all__ = ["AsyncClient"]

_POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


@final
class AsyncClient:
    """An asynchronous client for the Edges runs API.

    Use it as an async context manager, one per workspace and process, for as
    long as the application runs::

        async with edges_async.AsyncClient(plan="silver") as client:
            run = await client.runs.get(run_uid)

    Args:
        api_key: The workspace's API key; ``EDGES_API_KEY`` when omitted.
        plan: The workspace's plan (a ``PlanTier`` or its name), which sizes the
            rate limiter; ``EDGES_PLAN`` when omitted, else Trial.
        base_url: ``EDGES_BASE_URL`` when omitted, else ``https://api.edges.run/v1``.
            Plain ``http://`` is accepted only for a loopback host.
        timeout: Per HTTP request, in seconds or as an ``httpx.Timeout``.
        max_retries: Retries after the first attempt of a request that may be retried.
        backoff: How long to wait between retries (see ``Backoff``).
        http_client: An ``httpx.AsyncClient`` to send with (e.g. one with an
            ``ASGITransport``); it is never closed by this client.
        limiter: A ``RateLimiter``; by default a ``WorkspaceRateLimiter`` sized
            from ``plan`` and shared by every client of the same workspace.

    Raises:
        ConfigurationError: No API key, an unknown plan, or an unsafe base URL.
    """

    __slots__ = ("_core", "_http", "_limiter", "_owns_http", "_plan", "_state", "actions", "runs")

    def __init__(
        self,
        api_key: str | None = None,
        *,
        plan: PlanTier | str | None = None,
        base_url: str | httpx.URL | None = None,
        timeout: float | httpx.Timeout = 30.0,
        max_retries: int = 3,
        backoff: Backoff | None = None,
        http_client: httpx.AsyncClient | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        key = resolve_api_key(api_key, os.environ)
        self._plan = resolve_plan(plan, os.environ)
        url = resolve_base_url(base_url, os.environ)
        resolved_timeout = resolve_timeout(timeout)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be an integer >= 0, got {max_retries!r}.")
        if limiter is not None and not isinstance(limiter, RateLimiter):
            raise ConfigurationError(
                f"limiter must have acquire() and feedback() methods, got {limiter!r}."
            )
        self._limiter: RateLimiter = (
            limiter
            if limiter is not None
            else WorkspaceRateLimiter(self._plan, workspace=workspace_id(key.reveal(), str(url)))
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=resolved_timeout, limits=_POOL_LIMITS, follow_redirects=False
        )
        self._core = HTTPCore(
            http_client=self._http,
            base_url=url,
            api_key=key,
            timeout=resolved_timeout,
            max_retries=max_retries,
            backoff=backoff or Backoff(),
            limiter=self._limiter,
        )
        self._state = _State.UNOPENED
        self.runs = Runs(self._core)
        """Read, list, resume and cancel runs, and read their outputs."""
        self.actions = Actions(self._core)
        """Launch runs of Edges actions."""

    @property
    def plan(self) -> PlanTier:
        """The workspace's plan, as configured."""
        return self._plan

    @property
    def base_url(self) -> httpx.URL:
        """The base URL requests go to."""
        return self._core.base_url

    @property
    def limiter(self) -> RateLimiter:
        """The rate limiter every request of this client waits on.

        The default one tells how it is doing: ``client.limiter.statistics()``.
        """
        return self._limiter

    @property
    def is_closed(self) -> bool:
        """Whether the client was closed and refuses further requests."""
        return self._state is _State.CLOSED

    async def __aenter__(self) -> AsyncClient:
        if self._state is _State.CLOSED:
            raise ClientClosedError("This client was closed; create a new AsyncClient.")
        if self._state is _State.OPENED:
            raise RuntimeError("This client is already open: enter it only once.")
        self._state = _State.OPENED
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client (and its HTTP connection pool, unless it was given one).

        Closing twice is harmless; any request afterwards raises ``ClientClosedError``.
        """
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self._core.close()
        if self._owns_http:
            await self._http.aclose()

    def __repr__(self) -> str:
        return (
            f"<AsyncClient plan={self._plan.value} base_url='{self._core.base_url}' "
            f"state={self._state.value}>"
        )
