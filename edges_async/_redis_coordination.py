"""``RedisCoordination``: one budget for every process and host of a workspace.

>>> coordination = ea.RedisCoordination("redis://localhost:6379/0")  # or EDGES_REDIS_URL
>>> async with ea.AsyncClient(plan="titanium", coordination=coordination) as client: ...

What it holds, per event loop that uses it: a ``redis.asyncio`` client (made
from the URL on first use, with short socket timeouts; a client given as
``redis=`` is used as is, in every loop: give one only to clients of one
loop), the scripts registered on it, and one
:class:`~edges_async._redis_budget.RedisBudgets` per workspace. A loop's share
is closed when the last ``AsyncClient`` of that loop using it closes (or by
:meth:`RedisCoordination.aclose`): the budgets' background tasks, and the Redis
connection the coordination made, never a client it was given. A client
entered with ``async with`` holds the share open until it closes; one used
without it closes the share when it closes if no entered one holds it. What
is closed is never handed out again: the next use opens the share anew (a
limiter still in use asks for its budgets again).

Every key of a workspace carries one hash tag, ``edges:{<workspace id>}:...``
(the id is a digest, never the API key), so a Redis Cluster keeps them on one
node: ``budget:<group>`` (the slot books), ``members`` (the heartbeats).

Redis failing is not fatal. With ``on_redis_error="degrade"`` (the default)
each process falls back to a budget of its own, ``plan x headroom / N``, where
``N`` is the largest of what it knows of the processes sharing the workspace:
the live members it last read from Redis, ``expected_processes=``,
``WEB_CONCURRENCY``; none known, it assumes it is alone and says so (WARNING).
It keeps pinging and goes back to the shared budget when Redis answers, each
process keeping its own pace across the switch (no burst). With ``"wait"``,
a request waits for Redis up to ``redis_wait_timeout`` seconds, then raises
:class:`CoordinationError`. Never does a request go without a budget.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import numbers
import os
import secrets
import socket
import threading
import urllib.parse
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal, final

from ._exceptions import ConfigurationError, EdgesError
from ._plans import PlanTier
from ._redaction import protect
from ._redis_health import RedisHealth

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._budget import GroupBudgets
    from ._local_budgets import LocalBudgets
    from ._redis_budget import RedisBudgets
    from ._redis_scripts import BudgetScripts

__all__ = ["ENV_VARIABLE", "CoordinationError", "RedisCoordination", "redact_url"]

logger = logging.getLogger("edges_async")

ENV_VARIABLE = "EDGES_REDIS_URL"
_SCHEMES = ("redis", "rediss", "unix")
_EXTRA_HINT = "RedisCoordination needs the redis package: pip install 'edges-async[redis]'"


class CoordinationError(EdgesError):
    """Redis did not answer within ``redis_wait_timeout`` (``on_redis_error="wait"``)."""


def redact_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` query) shown as ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.password  # noqa: B018 - parsing the authority raises on garbage
    except ValueError:
        return "<a Redis URL that cannot be parsed>"
    shown = url
    if parts.password is not None:
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        shown = shown.replace(f"//{parts.netloc}", f"//{user}:***@{hostinfo}", 1)
    if parts.query:
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if any(name == "password" for name, _ in pairs):
            query = "&".join(
                f"{name}=***" if name == "password" else urllib.parse.urlencode({name: value})
                for name, value in pairs
            )
            shown = shown.replace(f"?{parts.query}", f"?{query}", 1)
    return shown


def _passwords(url: str) -> list[str]:
    parts = urllib.parse.urlsplit(url)
    found = [parts.password] if parts.password else []
    found += [
        value
        for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if name == "password" and value
    ]
    return [urllib.parse.unquote(value) for value in found] + found


def _checked_url(url: object) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(
            f"The Redis URL must be a non-empty string such as 'redis://localhost:6379/0', "
            f"got {type(url).__name__}."
        )
    url = url.strip()
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - parsing the port raises on garbage
    except ValueError as exc:
        raise ConfigurationError(f"Invalid Redis URL {redact_url(url)!r}: {exc}") from None
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            f"The Redis URL must start with redis://, rediss:// or unix://, "
            f"got {redact_url(url)!r}."
        )
    if parts.scheme == "unix" and not parts.path:
        raise ConfigurationError(
            f"A unix:// Redis URL needs a socket path, got {redact_url(url)!r}."
        )
    return url


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}.")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"{name} must be a finite number of seconds > 0, got {value!r}.")
    return seconds


def _processes_from(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a whole number >= 1, got {value!r}.")
    return value


def _web_concurrency(environ: Mapping[str, str]) -> int | None:
    raw = environ.get("WEB_CONCURRENCY", "").strip()
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 1 else None


@final
class _LoopShare:
    """What one event loop uses: its Redis client, scripts, budgets, and how many clients."""

    __slots__ = ("budgets", "client", "owned", "scripts", "users")

    def __init__(self, client: Redis, *, owned: bool, scripts: BudgetScripts) -> None:
        self.client = client
        self.owned = owned
        self.scripts = scripts
        self.budgets: dict[str, RedisBudgets] = {}
        self.users = 0


@final
class RedisCoordination:
    """Shares a workspace's rate-limit budget between processes and hosts through Redis.

    ``url`` (``redis://``, ``rediss://`` or ``unix://``; ``EDGES_REDIS_URL``
    when omitted) or ``redis=`` (a ``redis.asyncio.Redis`` you own and close):
    one of them. ``on_redis_error`` decides what a request does while Redis
    does not answer: ``"degrade"`` (spend this process's share of the plan,
    ``plan x headroom / N``) or ``"wait"`` (wait for Redis up to
    ``redis_wait_timeout`` seconds, then :class:`CoordinationError`).
    ``expected_processes`` tells ``N`` before any heartbeat was read.
    ``socket_timeout`` bounds each Redis command (and connect) made from
    ``url``, and every call of the budgets whatever the client (a ``redis=``
    client without timeouts too: a stalled Redis is a failing one);
    ``heartbeat_interval`` is how often each process says it is alive
    (and, while Redis fails, how often it tries it again, at most every
    ``retry_interval`` seconds). Nothing connects until the first request.

    Pass it to every ``AsyncClient`` of every process: ``AsyncClient(coordination=...)``.
    """

    __slots__ = (
        "__weakref__",
        "_expected",
        "_fallbacks",
        "_given",
        "_health",
        "_heartbeat_interval",
        "_lock",
        "_loops",
        "_members",
        "_mode",
        "_retry_interval",
        "_socket_timeout",
        "_target",
        "_token",
        "_url",
        "_wait_timeout",
        "_warned_alone",
    )

    def __init__(
        self,
        url: str | None = None,
        *,
        redis: Redis | None = None,
        on_redis_error: Literal["degrade", "wait"] = "degrade",
        expected_processes: int | None = None,
        redis_wait_timeout: float = 30.0,
        socket_timeout: float = 0.5,
        heartbeat_interval: float = 3.0,
        retry_interval: float = 0.5,
    ) -> None:
        if url is not None and redis is not None:
            raise ConfigurationError("Pass a Redis url or redis=<client>, not both.")
        if url is None and redis is None:
            url = os.environ.get(ENV_VARIABLE) or None
            if url is None:
                raise ConfigurationError(
                    f"No Redis: pass RedisCoordination('redis://host:6379/0'), "
                    f"redis=<redis.asyncio.Redis>, or set {ENV_VARIABLE}."
                )
        if on_redis_error not in ("degrade", "wait"):
            raise ConfigurationError(
                f"on_redis_error must be 'degrade' or 'wait', got {on_redis_error!r}."
            )
        self._mode: Literal["degrade", "wait"] = on_redis_error
        self._expected = (
            None
            if expected_processes is None
            else _processes_from("expected_processes", expected_processes)
        )
        self._wait_timeout = _seconds("redis_wait_timeout", redis_wait_timeout)
        self._socket_timeout = _seconds("socket_timeout", socket_timeout)
        self._heartbeat_interval = _seconds("heartbeat_interval", heartbeat_interval)
        self._retry_interval = _seconds("retry_interval", retry_interval)
        if redis is not None:
            self._check_client(redis)
            self._url: str | None = None
            self._given: Redis | None = redis
            self._target = "the given Redis client"
        else:
            self._url = _checked_url(url)
            if importlib.util.find_spec("redis") is None:
                raise ConfigurationError(_EXTRA_HINT)
            for password in _passwords(self._url):
                protect(password)
            self._given = None
            self._target = redact_url(self._url)
        self._token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        meanwhile = (
            "each process spends its own share of the plan"
            if on_redis_error == "degrade"
            else f"requests wait for it (up to {self._wait_timeout:g} s)"
        )
        self._health = RedisHealth(self._target, on_failure=meanwhile)
        self._lock = threading.Lock()
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopShare] = (
            weakref.WeakKeyDictionary()
        )
        self._members: dict[str, int] = {}
        self._fallbacks: dict[str, LocalBudgets] = {}
        self._warned_alone: dict[str, int] = {}

    @staticmethod
    def _check_client(client: object) -> None:
        if importlib.util.find_spec("redis") is None:
            raise ConfigurationError(_EXTRA_HINT)
        import redis.asyncio

        if not isinstance(client, (redis.asyncio.Redis, redis.asyncio.RedisCluster)):
            raise ConfigurationError(
                f"redis= must be a redis.asyncio.Redis (or RedisCluster), "
                f"got {type(client).__name__}."
            )

    # -- public ---------------------------------------------------------------

    @property
    def on_redis_error(self) -> Literal["degrade", "wait"]:
        """What a request does while Redis does not answer: ``"degrade"`` or ``"wait"``."""
        return self._mode

    @property
    def socket_timeout(self) -> float:
        """Seconds a Redis call may take before it counts as failed (bound yours with it)."""
        return self._socket_timeout

    @property
    def healthy(self) -> bool:
        """Whether Redis answered the latest command this process sent it."""
        return self._health.healthy

    def on_health_change(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``listener(healthy)`` when Redis stops or starts answering; returns an unsubscribe.

        Called in the thread and loop that saw the change (see ``_redis_health``).
        """
        return self._health.subscribe(listener)

    async def aclose(self) -> None:
        """Close what this event loop uses: its budgets' tasks, the Redis client made from the URL.

        ``AsyncClient`` does it when the last client using the coordination in
        the loop closes; call it yourself when you pass the coordination's
        limiter to clients by hand. Using the coordination again reopens it.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            share = self._loops.pop(loop, None)
        if share is not None:
            await self._close_share(share)

    def __repr__(self) -> str:
        state = "healthy" if self._health.healthy else "failing"
        return (
            f"<RedisCoordination {self._target} on_redis_error={self._mode!r} "
            f"{state} token={self._token!r}>"
        )

    # -- for the SDK ------------------------------------------------------------

    @property
    def redis(self) -> Redis:
        """The ``redis.asyncio`` client of the running event loop (made on first use)."""
        return self._share().client

    @property
    def process_token(self) -> str:
        """This coordination's name among the processes: ``host:pid:random``."""
        return self._token

    def key(self, workspace: str, *parts: str) -> str:
        """The key ``edges:{<workspace>}:<parts joined by ':'>``: one hash tag per workspace."""
        if not workspace or "{" in workspace or "}" in workspace:
            raise ValueError(f"a workspace id must be non-empty, without braces: {workspace!r}")
        return ":".join((f"edges:{{{workspace}}}", *parts))

    def _budgets(self, workspace: str, plan: PlanTier, headroom: float) -> GroupBudgets:
        """``workspace``'s budgets in Redis for the running loop: one per loop and workspace."""
        from ._redis_budget import RedisBudgets

        share = self._share()
        with self._lock:
            budgets = share.budgets.get(workspace)
            if budgets is None or budgets.closed:  # closed: never handed out again
                budgets = share.budgets[workspace] = RedisBudgets(
                    self,
                    workspace,
                    PlanTier(plan),
                    headroom,
                    client=share.client,
                    scripts=share.scripts,
                    loop=asyncio.get_running_loop(),
                )
                return budgets
        if budgets.plan is not PlanTier(plan) or budgets.headroom != headroom:
            logger.warning(
                "Clients of one workspace disagree on its plan or headroom (%s x %g, %s x %g): "
                "keeping %s x %g",
                budgets.plan.value,
                budgets.headroom,
                PlanTier(plan).value,
                headroom,
                budgets.plan.value,
                budgets.headroom,
            )
        return budgets

    async def _acquire_client(self) -> None:
        """An ``AsyncClient`` of the running loop starts using the coordination."""
        share = self._share()
        with self._lock:
            share.users += 1

    async def _release_client(self, *, joined: bool = True) -> None:
        """An ``AsyncClient`` of the running loop is done: the last one closes the loop's share.

        ``joined``: whether it was counted by :meth:`_acquire_client` (entered
        with ``async with``). One that was not closes the share too when no
        counted client holds it: nothing it used (a task, a connection)
        outlives it. Another such client still in use opens the share anew.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            share = self._loops.get(loop)
            if share is None:
                return
            if joined:
                share.users = max(0, share.users - 1)
            if share.users:
                return
            del self._loops[loop]
        await self._close_share(share)

    def _share(self) -> _LoopShare:
        loop = asyncio.get_running_loop()
        with self._lock:
            share = self._loops.get(loop)
            if share is None:
                share = self._loops[loop] = self._open_share()
            return share

    def _open_share(self) -> _LoopShare:
        from ._redis_scripts import BudgetScripts

        if self._given is not None:
            return _LoopShare(self._given, owned=False, scripts=BudgetScripts(self._given))
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        assert self._url is not None
        client = redis.asyncio.Redis.from_url(
            self._url,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=self._socket_timeout,
            # One retry: a pooled connection Redis closed (a restart) is
            # replaced at once; a Redis that is down fails fast.
            retry=Retry(NoBackoff(), 1),
        )
        return _LoopShare(client, owned=True, scripts=BudgetScripts(client))

    async def _close_share(self, share: _LoopShare) -> None:
        for budgets in list(share.budgets.values()):
            await budgets.aclose()
        share.budgets.clear()
        if share.owned:
            await share.client.aclose()

    # -- degraded mode ------------------------------------------------------------

    def _saw_members(self, workspace: str, members: int) -> None:
        """A heartbeat read how many processes of ``workspace`` are alive."""
        with self._lock:
            self._members[workspace] = members

    def _processes(self, workspace: str, environ: Mapping[str, str] | None = None) -> int | None:
        """How many processes share ``workspace``, as best known: the largest known figure."""
        environ = os.environ if environ is None else environ
        known = [
            figure
            for figure in (
                self._members.get(workspace),
                self._expected,
                _web_concurrency(environ),
            )
            if figure
        ]
        return max(known) if known else None

    def _fallback(self, workspace: str, plan: PlanTier, headroom: float) -> LocalBudgets:
        """This process's own budgets for ``workspace`` while Redis fails: ``1 / N`` of the plan.

        One per workspace for the whole process (every loop), resized when
        ``N`` changes.
        """
        from ._local_budgets import LocalBudgets

        processes = self._processes(workspace)
        share = 1.0 / (processes or 1)
        with self._lock:
            budgets = self._fallbacks.get(workspace)
            if budgets is None:
                budgets = self._fallbacks[workspace] = LocalBudgets.private(
                    plan, headroom, share=share
                )
            elif budgets.share != share:
                budgets.share = share
            episode = self._health.transitions
            warn = processes is None and self._warned_alone.get(workspace) != episode
            if warn:
                self._warned_alone[workspace] = episode
        if warn:
            logger.warning(
                "Redis does not answer and the number of processes sharing the workspace "
                "is unknown (no heartbeat read, no expected_processes=, no WEB_CONCURRENCY): "
                "this process spends the whole plan as if it were alone."
            )
        return budgets
