"""RedisCoordination: its settings, its keys, its health, what it opens and closes, its secrets."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import redis
import redis.asyncio

from edges_async._exceptions import ConfigurationError, EdgesError
from edges_async._limiter import WorkspaceRateLimiter
from edges_async._plans import PlanTier
from edges_async._redis_coordination import (
    ENV_VARIABLE,
    CoordinationError,
    RedisCoordination,
    redact_url,
)

from .redis_server import free_port

pytestmark = pytest.mark.looptime(False)


@pytest.fixture(autouse=True)
def no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """No EDGES_REDIS_URL nor WEB_CONCURRENCY from the machine running the tests."""
    monkeypatch.delenv(ENV_VARIABLE, raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)


@pytest.fixture
async def coordination(redis_url: str) -> AsyncIterator[RedisCoordination]:
    """A coordination of the session's (emptied) Redis, closed after the test."""
    made = RedisCoordination(redis_url)
    try:
        yield made
    finally:
        await made.aclose()


# -- settings -----------------------------------------------------------------------


def test_without_url_nor_client_nor_env_is_a_configuration_error() -> None:
    """Nothing says where Redis is: ConfigurationError at construction, naming the variable."""
    with pytest.raises(ConfigurationError, match=ENV_VARIABLE):
        RedisCoordination()


def test_the_environment_variable_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """EDGES_REDIS_URL is used when no url is passed; an explicit url wins."""
    monkeypatch.setenv(ENV_VARIABLE, "redis://from-env:6379/0")
    assert "from-env" in repr(RedisCoordination())
    assert "explicit" in repr(RedisCoordination("redis://explicit:6379/1"))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"url": "http://localhost:6379"}, "redis://, rediss:// or unix://"),
        ({"url": "localhost:6379"}, "redis://, rediss:// or unix://"),
        ({"url": ""}, "non-empty string"),
        ({"url": 6379}, "non-empty string"),
        ({"url": "redis://localhost:notaport/0"}, "Invalid Redis URL"),
        ({"url": "unix://"}, "socket path"),
        ({"url": "redis://h", "on_redis_error": "ignore"}, "'degrade' or 'wait'"),
        ({"url": "redis://h", "expected_processes": 0}, "expected_processes"),
        ({"url": "redis://h", "expected_processes": True}, "expected_processes"),
        ({"url": "redis://h", "expected_processes": 2.5}, "expected_processes"),
        ({"url": "redis://h", "redis_wait_timeout": 0}, "redis_wait_timeout"),
        ({"url": "redis://h", "socket_timeout": float("nan")}, "socket_timeout"),
        ({"url": "redis://h", "heartbeat_interval": -1}, "heartbeat_interval"),
        ({"url": "redis://h", "retry_interval": "1"}, "retry_interval"),
        ({"redis": object()}, "redis.asyncio.Redis"),
        ({"redis": redis.Redis()}, "redis.asyncio.Redis"),
    ],
)
def test_bad_settings_are_refused_before_any_io(arguments: dict[str, object], message: str) -> None:
    """Every setting that can never work is a ConfigurationError (a ValueError) at once."""
    with pytest.raises(ConfigurationError, match=message) as caught:
        RedisCoordination(**arguments)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)


async def test_url_and_client_together_are_refused() -> None:
    """url= and redis= at once: ambiguous, refused."""
    client = redis.asyncio.Redis()
    with pytest.raises(ConfigurationError, match="not both"):
        RedisCoordination("redis://localhost", redis=client)
    await client.aclose()


def test_a_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py installed: a ConfigurationError saying which extra to install."""
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "redis" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigurationError, match=r"edges-async\[redis\]"):
        RedisCoordination("redis://localhost:6379/0")


def test_coordination_error_is_an_edges_error() -> None:
    """CoordinationError sits under EdgesError."""
    assert issubclass(CoordinationError, EdgesError)


# -- keys and names -------------------------------------------------------------------


def test_keys_share_one_hash_tag_per_workspace() -> None:
    """edges:{<workspace>}:<parts>: Redis Cluster keeps a workspace's keys on one node."""
    coordination = RedisCoordination("redis://localhost")
    assert coordination.key("ab12", "budget", "runs") == "edges:{ab12}:budget:runs"
    assert coordination.key("ab12", "run", "uid-1") == "edges:{ab12}:run:uid-1"
    with pytest.raises(ValueError, match="braces"):
        coordination.key("a}b", "x")


def test_each_coordination_has_its_own_process_token() -> None:
    """host:pid:random, different for each coordination."""
    first, second = RedisCoordination("redis://h"), RedisCoordination("redis://h")
    assert first.process_token != second.process_token
    assert first.process_token.count(":") == 2


# -- secrets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2-pass@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://alice:hunter2-pass@cache/0", "redis://alice:***@cache/0"),
        ("rediss://cache:6380/0", "rediss://cache:6380/0"),
        (
            "unix:///run/redis.sock?db=0&password=hunter2-pass",
            "unix:///run/redis.sock?db=0&password=***",
        ),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    """The password is replaced by *** wherever the URL is shown."""
    assert redact_url(url) == shown
    assert "hunter2" not in repr(RedisCoordination(url))


async def test_the_password_never_reaches_a_log_line_nor_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Redis that does not answer is logged by its URL without the password."""
    caplog.set_level(logging.DEBUG)
    url = f"redis://:hunter2-pass@127.0.0.1:{free_port()}/0"
    coordination = RedisCoordination(url, retry_interval=0.1)
    try:
        budgets = coordination._budgets("ws", PlanTier.TITANIUM, 0.95)
        await budgets.acquire("runs")
        await asyncio.sleep(0.2)
    finally:
        await coordination.aclose()
    assert "does not answer" in caplog.text
    assert "127.0.0.1" in caplog.text
    assert "hunter2" not in caplog.text


# -- health -------------------------------------------------------------------------


async def test_health_listeners_hear_each_transition_once() -> None:
    """A listener hears 'failing' once for many failures, 'healthy' once when it answers."""
    coordination = RedisCoordination(f"redis://127.0.0.1:{free_port()}/0", retry_interval=0.1)
    heard: list[bool] = []
    unsubscribe = coordination.on_health_change(heard.append)
    budgets = coordination._budgets("ws", PlanTier.TITANIUM, 0.95)
    try:
        for _ in range(3):
            await budgets.acquire("runs")
        assert heard == [False]
        assert not coordination.healthy
        coordination._health.answered()
        coordination._health.answered()
        assert heard == [False, True]
        unsubscribe()
        coordination._health.failed(OSError("gone"))
        assert heard == [False, True]
    finally:
        await coordination.aclose()


def test_a_failing_listener_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    """A listener that raises is logged; the next one still hears."""
    coordination = RedisCoordination("redis://h")
    heard: list[bool] = []

    def broken(healthy: bool) -> None:
        raise RuntimeError("listener bug")

    coordination.on_health_change(broken)
    coordination.on_health_change(heard.append)
    coordination._health.failed(OSError("gone"))
    assert heard == [False]
    assert "listener failed" in caplog.text


# -- what it opens and closes ---------------------------------------------------------


async def test_the_client_made_from_the_url_is_shared_in_a_loop(
    coordination: RedisCoordination,
) -> None:
    """One redis.asyncio client per loop, with the short socket timeouts."""
    client = coordination.redis
    assert client is coordination.redis
    assert await client.ping()
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.5


async def test_the_last_client_closes_what_the_coordination_opened(redis_url: str) -> None:
    """Two AsyncClients acquire it; the first release keeps it open, the second closes it."""
    coordination = RedisCoordination(redis_url)
    await coordination._acquire_client()
    await coordination._acquire_client()
    budgets = coordination._budgets("ws", PlanTier.TITANIUM, 0.95)
    await budgets.acquire("runs")
    client = coordination.redis
    await coordination._release_client()
    assert coordination.redis is client
    await coordination._release_client()
    workers = [t for t in asyncio.all_tasks() if "Redis budget" in t.get_name()]
    assert all(task.done() for task in workers)
    assert coordination.redis is not client  # opened again on next use
    assert coordination._budgets("ws", PlanTier.TITANIUM, 0.95) is not budgets
    await coordination.aclose()


def _budget_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if "Redis budget" in t.get_name()]


RUNS = httpx.Request("GET", "https://api.edges.run/v1/runs/x")


async def test_a_limiter_used_after_its_share_closed_opens_a_fresh_one(redis_url: str) -> None:
    """A client never entered, beside one that closes the loop's share: its 429s still pause all.

    The closed budgets are never handed out again: the limiter's next use
    opens the share anew, whose task sends the 429 to Redis.
    """
    coordination = RedisCoordination(redis_url)
    limiter = WorkspaceRateLimiter(PlanTier.TITANIUM, workspace="ws", coordination=coordination)
    try:
        await coordination._acquire_client()  # an AsyncClient entered with `async with`
        await limiter.acquire(RUNS)  # another one, used without it
        await coordination._release_client()  # the entered one closes, and the share with it
        assert not _budget_tasks()
        await limiter.acquire(RUNS)
        limiter.feedback(RUNS, httpx.Response(429, headers={"retry-after": "30"}, request=RUNS))
        key = coordination.key("ws", "budget", "runs")
        paused = None
        for _ in range(50):
            paused = await coordination.redis.hget(key, "paused_until")
            if paused is not None and float(paused) > 0:
                break
            await asyncio.sleep(0.02)
        seconds, micros = await coordination.redis.time()
        assert paused is not None
        assert float(paused) - (seconds + micros / 1e6) > 25
    finally:
        await coordination.aclose()
    assert not _budget_tasks()


async def test_a_client_never_entered_closes_the_share_when_no_entered_one_holds_it(
    redis_url: str,
) -> None:
    """The last client of the loop to close closes the share, entered with `async with` or not.

    Nothing survives it: no task, no connection. An entered client keeps the
    share open for everyone until it closes.
    """
    coordination = RedisCoordination(redis_url)
    limiter = WorkspaceRateLimiter(PlanTier.TITANIUM, workspace="ws", coordination=coordination)
    await coordination._acquire_client()
    await limiter.acquire(RUNS)
    await coordination._release_client(joined=False)  # another client, never entered, closes
    assert _budget_tasks()
    await coordination._release_client()
    assert not _budget_tasks()

    await limiter.acquire(RUNS)  # used without `async with` only
    client = coordination.redis
    pool = client.connection_pool
    assert _budget_tasks()
    await coordination._release_client(joined=False)
    assert not _budget_tasks()
    assert not coordination._loops
    assert not any(c.is_connected for c in pool._available_connections)
    assert not pool._in_use_connections


async def test_a_given_client_is_used_and_never_closed(redis_url: str) -> None:
    """redis=<client>: used as is, and still usable after the coordination closed."""
    client = redis.asyncio.Redis.from_url(redis_url)
    coordination = RedisCoordination(redis=client)
    try:
        assert coordination.redis is client
        await coordination._acquire_client()
        await coordination._budgets("ws", PlanTier.GOLD, 0.95).acquire("runs")
        await coordination._release_client()
        assert await client.ping()
        assert await client.exists(coordination.key("ws", "budget", "runs"))
    finally:
        await client.aclose()


async def test_clients_disagreeing_on_the_plan_keep_the_first_with_a_warning(
    coordination: RedisCoordination, caplog: pytest.LogCaptureFixture
) -> None:
    """The budgets of a workspace are sized once; another plan is a warning, not a second budget."""
    first = coordination._budgets("ws", PlanTier.GOLD, 0.95)
    assert coordination._budgets("ws", PlanTier.TRIAL, 0.95) is first
    assert "disagree" in caplog.text


def test_the_number_of_processes_is_the_largest_figure_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Heartbeats, expected_processes and WEB_CONCURRENCY: the largest wins; none: unknown."""
    coordination = RedisCoordination("redis://h", expected_processes=3)
    assert coordination._processes("ws") == 3
    coordination._saw_members("ws", 5)
    assert coordination._processes("ws") == 5
    monkeypatch.setenv("WEB_CONCURRENCY", "8")
    assert coordination._processes("ws") == 8
    monkeypatch.setenv("WEB_CONCURRENCY", "many")
    assert coordination._processes("ws") == 5
    assert RedisCoordination("redis://h")._processes("ws") is None
