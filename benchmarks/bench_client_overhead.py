"""What the SDK's request path costs over a plain httpx loop.

Both sides fetch ``GET /v1/runs/{uid}/status`` from the simulator (its rate
limit switched off, so only the client is measured) and decode the body: the
baseline with ``http.get(...).json()``, the SDK with ``client.runs.status``
(URL building, the limiter protocol with a no-op limiter, retry bookkeeping,
error mapping and the pydantic ``Run``). Run in-process (ASGI transport) and
over loopback sockets (uvicorn), sequentially and with 20 concurrent tasks;
each cell is the best of 3 alternating rounds.

    python benchmarks/bench_client_overhead.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import httpx

import edges_async as ea
from edges_async.testing import EdgesSimulator, NoRateLimit, RunScript, WindowKind

API_KEY = "bench-key"
CONCURRENCY = 20
ROUNDS = 3


@asynccontextmanager
async def transport_for(
    sim: EdgesSimulator, mode: str
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """The base URL and an httpx client reaching the simulator in-process or over loopback."""
    if mode == "in-process":
        async with httpx.AsyncClient(transport=sim.transport()) as http:
            yield "https://api.edges.run/v1", http
    else:
        async with sim.serve() as base_url, httpx.AsyncClient() as http:
            yield base_url, http


async def timed(requests: int, concurrency: int, call: Callable[[], Awaitable[object]]) -> float:
    """Seconds to make ``requests`` calls spread over ``concurrency`` tasks."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        share, extra = divmod(requests, concurrency)
        for index in range(concurrency):
            group.start_soon(worker, share + (1 if index < extra else 0))
    return time.perf_counter() - start


async def measure(mode: str, requests: int) -> list[tuple[str, str, int, float, float]]:
    """Rows of (mode, concurrency label, requests, baseline seconds, SDK seconds)."""
    sim = EdgesSimulator(seed=0, window=WindowKind.UNLIMITED)
    workspace = sim.add_workspace(api_key=API_KEY, plan="titanium")
    run = sim.add_run(workspace, script=RunScript(steps=(("SUCCEEDED", 0.0),), outputs=1))
    rows = []
    async with transport_for(sim, mode) as (base_url, http):
        url = f"{base_url}/runs/{run.uid}/status"
        headers = {"X-API-Key": API_KEY}

        async def plain() -> object:
            response = await http.get(url, headers=headers)
            response.raise_for_status()
            return response.json()

        async with ea.AsyncClient(
            API_KEY, base_url=base_url, http_client=http, limiter=NoRateLimit()
        ) as client:

            async def sdk() -> object:
                return await client.runs.status(run.uid)

            for concurrency in (1, CONCURRENCY):
                await timed(200, concurrency, plain)  # warm up both paths
                await timed(200, concurrency, sdk)
                # Alternate the two sides and keep each one's best round, so a
                # hiccup of the shared 2-core machine does not decide the ratio.
                baseline = ours = float("inf")
                for _ in range(ROUNDS):
                    baseline = min(baseline, await timed(requests, concurrency, plain))
                    ours = min(ours, await timed(requests, concurrency, sdk))
                label = "sequential" if concurrency == 1 else f"{concurrency} tasks"
                rows.append((mode, label, requests, baseline, ours))
    return rows


async def main(requests: int) -> None:
    """Measure every mode and print the table."""
    rows = []
    for mode in ("in-process", "loopback"):
        rows.extend(await measure(mode, requests))
    print(f"GET /v1/runs/{{uid}}/status, {requests} requests per cell, best of {ROUNDS} rounds\n")
    header = (
        f"{'transport':<11} {'load':<11} {'plain httpx':>12} {'edges_async':>12} "
        f"{'overhead/req':>13} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for mode, label, count, baseline, ours in rows:
        overhead_us = (ours - baseline) / count * 1e6
        print(
            f"{mode:<11} {label:<11} {count / baseline:>8.0f} r/s {count / ours:>8.0f} r/s "
            f"{overhead_us:>10.0f} µs {ours / baseline:>6.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    anyio.run(main, parser.parse_args().requests)
