"""``AsyncClient``: the entry point, holding configuration, the HTTP layer and the resources."""

from __future__ import annotations

import contextlib
import enum
import os
import uuid
from collections.abc import Iterable
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, cast, final, overload

import anyio
import httpx
from typing_extensions import TypeVar

from ._backoff import Backoff
from ._config import resolve_api_key, resolve_base_url, resolve_plan, resolve_timeout
from ._exceptions import ClientClosedError, ConfigurationError, EventLoopError
from ._http import DEFAULT_MAX_RESPONSE_BYTES, HTTPCore
from ._limiter import RateLimiter, WorkspaceRateLimiter, granted_runs_rate, workspace_id
from ._logging import log_from_environment
from ._models import Run
from ._params import check_run_uid, check_run_uids, check_timeout
from ._plans import PlanTier
from ._polling import RunPoller
from ._polling_policy import PollingPolicy
from ._run_events import RunEvents
from ._shared_polling import SharedPolling
from ._waiters import StatusCallback, Waiters
from ._watcher import RunWatcher
from .resources import Actions, Runs

if TYPE_CHECKING:
    from ._redis_coordination import RedisCoordination

__all__ = ["AsyncClient"]

_POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

LimiterT = TypeVar("LimiterT", bound=RateLimiter, default=Any)
# Tells "not passed" from any value, None included (which timeout= refuses).
_NOT_GIVEN: Any = object()
_VIEW_OWNS_NOTHING = (
    "This client is a view made by with_options(): it shares the pool of the client it "
    "came from and has nothing of its own to open or close. Use that client in "
    "`async with` (or close it), and call with_options() on it for the calls that need it."
)


def _check_max_retries(max_retries: int) -> int:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError(f"max_retries must be an integer >= 0, got {max_retries!r}.")
    return max_retries


def _is_coordination(value: object) -> bool:
    from ._redis_coordination import RedisCoordination

    return isinstance(value, RedisCoordination)


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


@final
class AsyncClient(Generic[LimiterT]):
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
        timeout: Per HTTP request, in seconds (a finite number > 0) or as an
            ``httpx.Timeout``.
        max_retries: Retries after the first attempt of a request that may be retried.
        backoff: How long to wait between retries (see ``Backoff``).
        http_client: An ``httpx.AsyncClient`` to send with (e.g. one with an
            ``ASGITransport``); it is never closed by this client.
        limiter: A ``RateLimiter``; by default a ``WorkspaceRateLimiter`` sized
            from ``plan`` and shared by every client of the same workspace.
            ``AsyncClient`` is generic in it: a client built without one is an
            ``AsyncClient[WorkspaceRateLimiter]`` (``client.limiter.statistics()``
            type-checks), one built with one an ``AsyncClient[Any]``, so clients
            of either kind mix freely in one variable.
        polling: How waiting for runs polls them (see ``PollingPolicy``).
        max_response_bytes: The largest response body read, once decoded
            (64 MiB by default); a larger one is refused unread with
            ``APIResponseValidationError``.
        coordination: A ``RedisCoordination`` shared by every process (and
            host) of the workspace: one rate budget for all of them, one
            process polling for all their waits, and callbacks received by any
            of them ending waits in all. The client joins it when opened and
            leaves it when closed (the last client to leave closes what it
            opened). Without it, the budget is shared by the clients of this
            process only.

    A client belongs to the event loop it is first used in (``EventLoopError``
    from any other) and runs on asyncio only. For one call with another
    timeout or no retries, see :meth:`with_options`.

    Logs go to the ``edges_async`` logger: a DEBUG line per HTTP attempt
    (method, path and query, status, milliseconds, rate limiter wait, attempt
    number), INFO for retries and rate-limit pauses; secrets are scrubbed
    from all of them. ``EDGES_LOG=debug`` or ``EDGES_LOG=info`` prints them on
    stderr without any logging setup: read at the first ``AsyncClient`` built,
    it adds a stderr handler at that level once per process, and only if the
    application configured no handler (on ``edges_async`` or the root logger).
    Any other value is ignored, silently, as ``OPENAI_LOG`` does: a logging
    switch must never keep a service from starting.

    Raises:
        ConfigurationError: No API key, an unknown plan, or an unsafe base URL.
    """

    __slots__ = (
        "_coordination",
        "_core",
        "_events",
        "_joined",
        "_limiter",
        "_owns_http",
        "_plan",
        "_poller",
        "_state",
        "_view_of",
        "_waiters",
        "actions",
        "runs",
    )

    @overload
    def __init__(
        self: AsyncClient[WorkspaceRateLimiter],
        api_key: str | None = None,
        *,
        plan: PlanTier | str | None = None,
        base_url: str | httpx.URL | None = None,
        timeout: float | httpx.Timeout = 30.0,
        max_retries: int = 3,
        backoff: Backoff | None = None,
        http_client: httpx.AsyncClient | None = None,
        limiter: None = None,
        polling: PollingPolicy | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        coordination: RedisCoordination | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self: AsyncClient[Any],
        api_key: str | None = None,
        *,
        plan: PlanTier | str | None = None,
        base_url: str | httpx.URL | None = None,
        timeout: float | httpx.Timeout = 30.0,
        max_retries: int = 3,
        backoff: Backoff | None = None,
        http_client: httpx.AsyncClient | None = None,
        limiter: RateLimiter,
        polling: PollingPolicy | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        coordination: RedisCoordination | None = None,
    ) -> None: ...

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
        polling: PollingPolicy | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        coordination: RedisCoordination | None = None,
    ) -> None:
        log_from_environment()
        key = resolve_api_key(api_key, os.environ)
        self._plan = resolve_plan(plan, os.environ)
        url = resolve_base_url(base_url, os.environ)
        resolved_timeout = resolve_timeout(timeout)
        _check_max_retries(max_retries)
        if (
            isinstance(max_response_bytes, bool)
            or not isinstance(max_response_bytes, int)
            or max_response_bytes < 1
        ):
            raise ConfigurationError(
                f"max_response_bytes must be an integer >= 1, got {max_response_bytes!r}."
            )
        if polling is not None and not isinstance(polling, PollingPolicy):
            raise ConfigurationError(f"polling must be a PollingPolicy, got {polling!r}.")
        if limiter is not None and not isinstance(limiter, RateLimiter):
            raise ConfigurationError(
                f"limiter must have acquire() and feedback() methods, got {limiter!r}."
            )
        if coordination is not None and not _is_coordination(coordination):
            raise ConfigurationError(
                f"coordination must be an edges_async.RedisCoordination, got {coordination!r}."
            )
        workspace = workspace_id(key.reveal(), str(url))
        # Without a limiter given, LimiterT is WorkspaceRateLimiter (the overloads say so).
        self._limiter = cast(
            "LimiterT",
            limiter
            if limiter is not None
            else WorkspaceRateLimiter(self._plan, workspace=workspace, coordination=coordination),
        )
        self._coordination = coordination
        self._joined = False
        self._owns_http = http_client is None
        self._core = HTTPCore(
            http_client=http_client
            or httpx.AsyncClient(
                timeout=resolved_timeout, limits=_POOL_LIMITS, follow_redirects=False
            ),
            owns_pool=self._owns_http,
            base_url=url,
            api_key=key,
            timeout=resolved_timeout,
            max_retries=max_retries,
            backoff=backoff or Backoff(),
            limiter=self._limiter,
            max_response_bytes=max_response_bytes,
        )
        # News about runs flows one way, through one hub: resources and callback
        # receivers publish, the poller and the waiters subscribe.
        self._events = RunEvents()
        granted_rate = granted_runs_rate(self._limiter, self._plan)

        def poller(events: RunEvents) -> RunPoller:
            return RunPoller(
                self._core,
                events=events,
                granted_rate=granted_rate,
                policy=polling or PollingPolicy(),
                backoff=backoff or Backoff(),
            )

        # With coordination, the workspace's leader process polls for every
        # process, and each hears what it saw on a Redis stream.
        self._poller: RunPoller | SharedPolling = (
            poller(self._events)
            if coordination is None
            else SharedPolling(coordination, workspace, events=self._events, make_poller=poller)
        )
        self._waiters = Waiters(self._events, self._poller)
        self._state = _State.UNOPENED
        self._view_of: AsyncClient[LimiterT] | None = None
        self.runs = Runs(self._core, events=self._events)
        """Read, list, resume and cancel runs, and read their outputs."""
        self.actions = Actions(self._core, events=self._events)
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
    def limiter(self) -> LimiterT:
        """The rate limiter every request of this client waits on, typed as given.

        The default one tells how it is doing: ``client.limiter.statistics()``.
        """
        return self._limiter

    @property
    def is_closed(self) -> bool:
        """Whether the client (for a view: the client it came from) was closed."""
        return self._core.closed

    def with_options(
        self,
        *,
        timeout: float | httpx.Timeout = _NOT_GIVEN,
        max_retries: int = _NOT_GIVEN,
    ) -> AsyncClient[LimiterT]:
        """This client with another timeout or retry count, for the calls that need it.

        The view shares everything else with this client: the connection pool,
        the rate limiter (one budget still), the poller, the callbacks hub and
        the closed state. It is cheap to make (no I/O), so make one per call::

            run = await client.with_options(timeout=120, max_retries=0).runs.get(run_uid)

        Args:
            timeout: Per HTTP request, as for ``AsyncClient``; omitted: this client's.
            max_retries: As for ``AsyncClient``; omitted: this client's.

        Both are checked here, as the constructor checks them. A view of a
        view layers its options on that view's. Its ``runs`` and ``actions``
        send with its options; its ``wait_for_run(s)`` and ``watch_runs`` wait
        through the client's one poller, whose polls keep the client's own
        timeout and retries (they serve every waiter at once).

        A view owns nothing: ``async with view`` and ``await view.aclose()``
        raise ``RuntimeError`` rather than close the shared pool or do nothing.
        Doing nothing would hide a leak: in
        ``async with AsyncClient(...).with_options(...)`` nobody would ever
        close the client itself. Close the client it came from; from then on
        every view of it raises ``ClientClosedError`` when used.

        Raises:
            ConfigurationError: A timeout or retry count the constructor refuses.
        """
        core = self._core.with_options(
            timeout=None if timeout is _NOT_GIVEN else resolve_timeout(timeout),
            max_retries=None if max_retries is _NOT_GIVEN else _check_max_retries(max_retries),
        )
        view: AsyncClient[LimiterT] = object.__new__(AsyncClient)
        view._view_of = self._view_of or self
        view._core = core
        view._plan = self._plan
        view._limiter = self._limiter
        view._owns_http = False
        view._coordination = self._coordination
        view._joined = False
        view._events = self._events
        view._poller = self._poller
        view._waiters = self._waiters
        view._state = self._state  # never read: a view asks its core (is_closed)
        view.runs = Runs(core, events=self._events)
        view.actions = Actions(core, events=self._events)
        return view

    async def wait_for_run(
        self,
        run_uid: str | uuid.UUID,
        timeout: float | timedelta | None = None,  # noqa: ASYNC109 (the documented form: one overall deadline)
        *,
        on_status_change: StatusCallback | None = None,
    ) -> Run:
        """Wait until the run reaches a terminal status; return it.

        Terminal: SUCCEEDED, PARTIAL_SUCCEEDED, FAILED, STOPPED, BLOCKED or
        INVALID (``TERMINAL_STATUSES``); any other status, known or not, keeps
        waiting. The run is polled with every other run this client waits for,
        within the plan's budget (see ``PollingPolicy``).

        Args:
            run_uid: The run to wait for.
            timeout: The overall deadline in seconds (or a ``timedelta``);
                ``None`` waits as long as it takes.
            on_status_change: Called with the run at each status change seen
                (a plain function or a coroutine function), e.g. for progress.

        Raises:
            WaitTimeoutError: The deadline passed; ``.runs`` holds the run as last seen.
            NotFoundError: The API still did not know the run after a grace period.

        >>> run = await client.wait_for_run(run.uid, timeout=600)
        >>> run.status, run.output_count
        """
        uid = check_run_uid(run_uid)
        (run,) = await self.wait_for_runs([uid], timeout, on_status_change=on_status_change)
        return run

    async def wait_for_runs(
        self,
        run_uids: Iterable[str | uuid.UUID],
        timeout: float | timedelta | None = None,  # noqa: ASYNC109 (the documented form: one overall deadline)
        *,
        on_status_change: StatusCallback | None = None,
    ) -> list[Run]:
        """Wait until every run reaches a terminal status; return them in the order given.

        Takes the arguments of :meth:`wait_for_run`, with a collection of run
        uids; ``timeout`` is the deadline for all of them. Thousands of runs
        are fine: one request polls up to 100 of them.

        >>> runs = await client.wait_for_runs([run.uid for run in launched], timeout=3600)
        >>> failed = [run for run in runs if run.status is edges_async.RunStatus.FAILED]
        """
        uids = check_run_uids(run_uids)
        deadline = self._deadline(timeout)
        finished: dict[str, Run] = {}
        watched = self._waiters.watch(list(dict.fromkeys(uids)), deadline, on_status_change)
        async with contextlib.aclosing(watched):
            async for run in watched:
                finished[run.uid.lower()] = run
        return [finished[uid] for uid in uids]

    def watch_runs(
        self,
        run_uids: Iterable[str | uuid.UUID],
        timeout: float | timedelta | None = None,
        *,
        on_status_change: StatusCallback | None = None,
    ) -> RunWatcher:
        """Yield each run as it reaches a terminal status, in the order they finish.

        Takes the arguments of :meth:`wait_for_runs` (a run given twice is
        yielded once); arguments are checked here, before any request.

        Polling stops when the watcher is closed: on leaving its ``async with``
        block, on ``aclose()``, once every run was yielded, at the deadline, or
        when Python finalizes a watcher nobody holds (the plain ``async for``
        left with ``break``). A watcher kept in a variable and left with
        ``break`` polls on until closed: prefer the ``async with`` form.

        >>> async with client.watch_runs(uids, timeout=3600) as runs:
        ...     async for run in runs:
        ...         print(run.uid, run.status)
        """
        uids = list(dict.fromkeys(check_run_uids(run_uids)))
        deadline = self._deadline(timeout)
        return RunWatcher(self._waiters.watch(uids, deadline, on_status_change))

    def _deadline(self, timeout: float | timedelta | None) -> float | None:
        if self._core.closed:
            raise ClientClosedError(
                "The client is closed: open a new AsyncClient to wait for runs."
            )
        self._core.check_loop()
        seconds = check_timeout(timeout)
        return None if seconds is None else anyio.current_time() + seconds

    async def __aenter__(self) -> AsyncClient[LimiterT]:
        if self._view_of is not None:
            raise RuntimeError(_VIEW_OWNS_NOTHING)
        if self._state is _State.CLOSED:
            raise ClientClosedError("This client was closed; create a new AsyncClient.")
        if self._state is _State.OPENED:
            raise RuntimeError("This client is already open: enter it only once.")
        self._core.check_loop()
        self._state = _State.OPENED
        if self._coordination is not None:
            await self._coordination._acquire_client()
            self._joined = True
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

        Closing twice is harmless; any request afterwards raises ``ClientClosedError``,
        from this client and from every view :meth:`with_options` made of it.
        A view itself cannot be closed (``RuntimeError``): it owns nothing.
        """
        if self._view_of is not None:
            raise RuntimeError(_VIEW_OWNS_NOTHING)
        if self._state is _State.CLOSED:
            return
        try:
            self._core.check_loop()
        except EventLoopError:
            # Another loop's pool: its connections can only be closed there (or
            # died with it). Refuse everything from now on all the same.
            self._state = _State.CLOSED
            self._core.close()
            raise
        self._state = _State.CLOSED
        self._core.close()
        try:
            await self._poller.aclose(
                ClientClosedError("The client was closed while waiting for runs.")
            )
            if self._owns_http:
                await self._core.http.aclose()
        finally:
            if self._coordination is not None:
                # An entered client leaves its place; one never entered lets the
                # coordination close what no entered client still uses.
                joined, self._joined = self._joined, False
                await self._coordination._release_client(joined=joined)

    def __repr__(self) -> str:
        if self._view_of is not None:
            return (
                f"<AsyncClient view timeout={self._core.timeout!r} "
                f"max_retries={self._core.max_retries} of {self._view_of!r}>"
            )
        return (
            f"<AsyncClient plan={self._plan.value} base_url='{self._core.base_url}' "
            f"state={self._state.value}>"
        )
