"""Locks the public API's types: type-checked by mypy --strict, never run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import httpx
from typing_extensions import assert_type

import edges_async as ea
from edges_async.callbacks import CallbackEvent, CallbackReader, CallbackReceiver
from edges_async.testing import (
    EdgesSimulator,
    NoRateLimit,
    RecordedRequest,
    SimulatedRun,
    Workspace,
)


async def client_surface(client: ea.AsyncClient, uid: str, other: uuid.UUID) -> None:
    """The documented calls return what the docs say."""
    assert_type(await client.runs.get(uid), ea.Run)
    assert_type(await client.runs.status(other), ea.Run)
    assert_type(await client.runs.resume(uid), ea.Run)
    assert_type(await client.runs.cancel(uid), ea.Run)
    listed = client.runs.list(status=["RUNNING", ea.RunStatus.QUEUED])
    assert_type(listed, AsyncGenerator[ea.Run, None])
    await listed.aclose()
    outputs = client.runs.outputs(uid, read_ahead=1)
    assert_type(outputs, AsyncGenerator[dict[str, Any], None])
    await outputs.aclose()
    pages = client.runs.output_pages(uid, cursor="c")
    assert_type(pages, AsyncGenerator[ea.OutputsPage, None])
    await pages.aclose()
    assert_type(await client.runs.export_outputs(uid, Path("out.jsonl")), int)
    assert_type(
        await client.actions.run_async("a", inputs=[{}], callback=ea.Callback(url="https://x")),
        ea.Run,
    )
    assert_type(await client.actions.schedule("a", inputs=[{}], cron="0 9 * * *"), ea.Run)
    live = await client.actions.run_live("a", input={})
    assert_type(live, ea.LiveResult)
    assert_type(live.results, list[Any])
    assert_type(await live.all(), list[Any])
    assert_type(live.pages(), AsyncGenerator[list[Any], None])
    receiver = CallbackReceiver(client, secret="0123456789abcdef")
    assert_type(receiver.callback("https://x", on="all"), ea.Callback)
    events = receiver.events(uid)
    assert_type(events, CallbackReader[CallbackEvent])
    async for event in events:
        assert_type(event, CallbackEvent)
    await events.aclose()
    assert_type(receiver.results(other), CallbackReader[Any])
    watcher = client.watch_runs([uid], timeout=60)
    assert_type(watcher, ea.RunWatcher)
    async with watcher as runs:
        async for run in runs:
            assert_type(run, ea.Run)
    await watcher.aclose()
    assert_type(await client.wait_for_runs([uid, other]), list[ea.Run])
    assert_type(client.plan, ea.PlanTier)
    assert_type(client.limiter, Any)  # a bare ``ea.AsyncClient`` takes any limiter


async def default_limiter() -> None:
    """A client made without a limiter has the default one, statistics and all."""
    async with ea.AsyncClient(plan="silver") as client:
        assert_type(client.limiter, ea.WorkspaceRateLimiter)
        assert_type(client.limiter.statistics(), ea.LimiterStatistics)  # as the README shows


async def custom_limiter(http: httpx.AsyncClient, testing: bool) -> None:
    """Clients with and without a limiter of one's own mix in one variable."""
    async with ea.AsyncClient("key", http_client=http, limiter=NoRateLimit()) as client:
        assert_type(client, ea.AsyncClient[Any])
    plain: ea.AsyncClient = client  # the bare name takes a client of any limiter
    assert_type(plain.limiter, Any)
    either = ea.AsyncClient("key", limiter=NoRateLimit()) if testing else ea.AsyncClient("key")
    swapped = ea.AsyncClient("key")
    swapped = ea.AsyncClient("key", limiter=NoRateLimit())
    optional: NoRateLimit | None = NoRateLimit() if testing else None
    maybe = ea.AsyncClient("key", limiter=optional)  # either overload: a union
    assert_type(maybe.limiter, Any | ea.WorkspaceRateLimiter)
    del either, swapped


def models_surface(run: ea.Run, page: ea.OutputsPage, error: ea.EdgesError) -> None:
    """Model fields keep their documented types."""
    assert_type(run.status, ea.RunStatus | str | None)
    assert_type(run.is_terminal, bool)
    assert_type(page.items, list[dict[str, Any]])
    assert_type(page.next_cursor, str | None)
    assert_type(error.resume_cursor, str | None)
    assert_type(ea.TERMINAL_STATUSES, frozenset[ea.RunStatus])
    assert_type(ea.PlanTier.GOLD.requests_per_minute, int)
    limiter = ea.WorkspaceRateLimiter("silver", workspace="w")
    assert_type(limiter.statistics(), ea.LimiterStatistics)


def simulator_surface(sim: EdgesSimulator) -> None:
    """The simulator's setup and inspection calls keep their types."""
    assert_type(sim.add_workspace(api_key="k", plan="trial"), Workspace)
    workspace = sim.add_workspace(api_key="k2")
    assert_type(sim.add_run(workspace), SimulatedRun)
    assert_type(sim.requests, list[RecordedRequest])


async def with_options_surface(client: ea.AsyncClient, http: httpx.AsyncClient) -> None:
    """A view from ``with_options`` is the same type as its client, limiter parameter and all."""
    assert_type(client.with_options(timeout=1), ea.AsyncClient)
    assert_type(client.with_options(timeout=httpx.Timeout(5), max_retries=0), ea.AsyncClient)
    assert_type(await client.with_options(max_retries=0).runs.get("uid"), ea.Run)
    async with ea.AsyncClient(plan="silver") as default:
        view = default.with_options(timeout=120, max_retries=0)
        assert_type(view, ea.AsyncClient[ea.WorkspaceRateLimiter])
        assert_type(view.limiter.statistics(), ea.LimiterStatistics)
    async with ea.AsyncClient("key", http_client=http, limiter=NoRateLimit()) as custom:
        assert_type(custom.with_options(timeout=1).with_options(), ea.AsyncClient[Any])
