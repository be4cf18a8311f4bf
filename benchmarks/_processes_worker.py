"""One worker process of ``bench_processes.py``: ``python _processes_worker.py '<json job>'``.

Every request carries ``X-Bench-Process: <tag>``, so the simulator's log tells
which process sent it. Each client has its own ``RedisCoordination`` when the
job says ``coordinated`` (as each process of a deployment would), else the
default per-process ``WorkspaceRateLimiter``. Roles:

- ``load``: one client per cell (each cell its own workspace), ``tasks`` tasks
  each looping on ``client.runs.status(uid)``; prints ``ready``, runs until
  SIGTERM, then prints ``{"health": [[time, healthy], ...]}`` (the
  coordinations' changes of Redis health, on ``time.monotonic()``);
- ``wait``: prints ``ready``, waits for ``uids`` (else for the JSON list of uids
  it reads on stdin) with ``watch_runs``, prints ``{"noticed": {uid: time},
  "since": time}`` and exits;
- ``receive``: serves a ``CallbackReceiver`` on a loopback port (over TLS with
  ``certfile``), prints its origin; with ``public_host``, reads a count on stdin,
  launches that many runs with ``receiver.callback(...)`` naming the receiver by
  that host (one at a time, within the budget), prints their uids as a JSON list;
  runs until SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import time
from typing import Any

import anyio
import anyio.to_thread
import httpx

import edges_async as ea
from edges_async.callbacks import CallbackReceiver
from edges_async.testing._server import serve_origin

MAX_RETRIES = 10_000
CALLBACK_PATH = "/edges/callbacks"


def say(line: str) -> None:
    """One line to the benchmark, at once."""
    print(line, flush=True)


async def open_client(
    stack: contextlib.AsyncExitStack, job: dict[str, Any], cell: dict[str, Any]
) -> tuple[ea.AsyncClient, ea.RedisCoordination | None]:
    """A client for ``cell``'s workspace, tagged with the job's process tag."""
    http = await stack.enter_async_context(
        httpx.AsyncClient(headers={"X-Bench-Process": job["tag"]}, timeout=30)
    )
    coordination = ea.RedisCoordination(job["redis_url"]) if cell["coordinated"] else None
    client = ea.AsyncClient(
        cell["api_key"],
        plan=cell["plan"],
        base_url=job["base_url"],
        http_client=http,
        max_retries=MAX_RETRIES,
        coordination=coordination,
    )
    await stack.enter_async_context(client)
    return client, coordination


async def until_sigterm() -> None:
    """Return at the first SIGTERM."""
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def load(job: dict[str, Any]) -> None:
    """Saturate each cell's client until SIGTERM."""
    health: list[tuple[float, bool]] = []

    def changed(healthy: bool) -> None:
        health.append((time.monotonic(), healthy))

    async def poll_forever(client: ea.AsyncClient, uid: str) -> None:
        while True:
            with contextlib.suppress(ea.EdgesError):
                await client.runs.status(uid)

    async with contextlib.AsyncExitStack() as stack, anyio.create_task_group() as group:
        for cell in job["cells"]:
            client, coordination = await open_client(stack, job, cell)
            if coordination is not None:
                coordination.on_health_change(changed)
            for _ in range(job["tasks"]):
                group.start_soon(poll_forever, client, cell["run_uid"])
        say("ready")
        await until_sigterm()
        group.cancel_scope.cancel()
    say(json.dumps({"health": health}))


async def heard() -> Any:
    """The next line on stdin, as JSON."""
    return json.loads(await anyio.to_thread.run_sync(sys.stdin.readline))


async def wait(job: dict[str, Any]) -> None:
    """Wait for every uid; say when each was noticed."""
    noticed: dict[str, float] = {}
    async with contextlib.AsyncExitStack() as stack:
        client, _ = await open_client(stack, job, job)
        say("ready")
        uids = job["uids"] if "uids" in job else await heard()
        since = time.monotonic()
        async for run in client.watch_runs(uids):
            noticed[run.uid] = time.monotonic()
    say(json.dumps({"noticed": noticed, "since": since}))


async def receive(job: dict[str, Any]) -> None:
    """Take callbacks until SIGTERM; launch runs with callbacks to here if asked."""
    async with contextlib.AsyncExitStack() as stack:
        client, _ = await open_client(stack, job, job)
        receiver = CallbackReceiver(client, secret=job["secret"])
        origin = await stack.enter_async_context(
            serve_origin(receiver, certfile=job.get("certfile"))
        )
        say(origin)
        if "public_host" in job:
            port = httpx.URL(origin).port
            callback = receiver.callback(f"https://{job['public_host']}:{port}{CALLBACK_PATH}")
            count = await heard()
            uids = [
                (await client.actions.run_async("bench", inputs=[{}], callback=callback)).uid
                for _ in range(count)
            ]
            say(json.dumps(uids))
            if job.get("wait_here"):  # the one-process baseline: this process waits too
                noticed: dict[str, float] = {}
                since = time.monotonic()
                async for run in client.watch_runs(uids):
                    noticed[run.uid] = time.monotonic()
                say(json.dumps({"noticed": noticed, "since": since}))
        await until_sigterm()


ROLES = {"load": load, "wait": wait, "receive": receive}

if __name__ == "__main__":
    logging.getLogger("edges_async").setLevel(logging.CRITICAL)
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)  # its shutdown notes
    task = json.loads(sys.argv[1])
    anyio.run(ROLES[task["role"]], task)
