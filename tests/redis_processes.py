"""Several real processes spending one workspace's budget against the simulator on loopback.

The simulator runs in its own process (``python -m edges_async.testing``),
each worker in its own (``python -m tests.redis_processes worker '<json job>'``):
an ``AsyncClient`` whose ``tasks`` tasks loop on ``client.runs.status(uid)``
(an unknown run: a 404 the server counts against the budget like any
request) from ``start_at`` for ``seconds``, with ``max_retries=0`` so that
every 429 shows. Each worker limits with a ``WorkspaceRateLimiter`` on a
``RedisCoordination`` of its own (``redis_url`` set: as each process of a
deployment would), else with the default per-process limiter. Times are
``time.monotonic()``, one clock for every process of the machine.

Run it by hand for a table (real time: about ``seconds + 5`` s per cell)::

    python -m tests.redis_processes [--processes 2,3,4] [--seconds 15]
                                    [--plan titanium] [--window per_second]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "sk-processes-0123456789"
UNKNOWN_RUN = "4c3a5f0e-9d1b-4a8e-8a52-6b1f0c2d7e11"
_STARTUP = 3.0  # seconds for every worker to import and connect before the common start


@dataclass(frozen=True, slots=True)
class WorkerResult:
    """What one worker saw: accepted and refused request times, errors of other kinds."""

    accepted: list[float]
    refused: list[float]
    errors: int
    slots: dict[str, int]
    """How confirmations ended (coordinated): ``go``, ``early`` (slept on), ``new`` (a new slot)."""


@dataclass(frozen=True, slots=True)
class Cell:
    """N processes on one workspace for ``seconds``: the workspace's rate and 429s."""

    processes: int
    coordinated: bool
    seconds: float
    per_second: float  # the plan's
    results: list[WorkerResult]

    @property
    def accepted(self) -> int:
        """Requests accepted by the server, all processes."""
        return sum(len(r.accepted) for r in self.results)

    @property
    def refused(self) -> int:
        """429s drawn, all processes."""
        return sum(len(r.refused) for r in self.results)

    @property
    def share_of_plan(self) -> float:
        """Accepted requests per second as a share of the plan's rate."""
        return self.accepted / self.seconds / self.per_second

    @property
    def process_shares(self) -> list[float]:
        """Each process's share of the accepted requests."""
        total = self.accepted or 1
        return [len(r.accepted) / total for r in self.results]


def _python(*arguments: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("EDGES_LOG", None)
    return subprocess.Popen(
        [sys.executable, *arguments],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


@contextlib.contextmanager
def simulator_process(plan: str, window: str) -> Iterator[str]:
    """The simulator served by its own process on a free loopback port; yields its base URL."""
    process = _python(
        "-m",
        "edges_async.testing",
        "--port",
        "0",
        "--plan",
        plan,
        "--window",
        window,
        "--api-key",
        API_KEY,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        if "listening on" not in first:
            raise RuntimeError(f"the simulator did not start: {first!r}")
        yield first.rsplit(" ", 1)[-1].strip()
    finally:
        process.terminate()
        process.communicate(timeout=10)  # waits, and closes its stdout


def run_cell(
    processes: int,
    *,
    base_url: str,
    redis_url: str | None,
    plan: str,
    per_second: float,
    seconds: float,
    tasks: int = 10,
) -> Cell:
    """Run ``processes`` workers together; what each saw."""
    start_at = time.monotonic() + _STARTUP
    job = {
        "base_url": base_url,
        "redis_url": redis_url,
        "plan": plan,
        "start_at": start_at,
        "seconds": seconds,
        "tasks": tasks,
    }
    workers = [
        _python("-m", "tests.redis_processes", "worker", json.dumps(job)) for _ in range(processes)
    ]
    results = []
    for worker in workers:
        output, _ = worker.communicate(timeout=_STARTUP + seconds + 30)
        if worker.returncode != 0:
            raise RuntimeError(f"a worker failed (status {worker.returncode}): {output[-2000:]}")
        found = json.loads(output.strip().splitlines()[-1])
        results.append(
            WorkerResult(found["accepted"], found["refused"], found["errors"], found["slots"])
        )
    return Cell(processes, redis_url is not None, seconds, per_second, results)


# -- the worker process ---------------------------------------------------------------


async def _worker(job: dict[str, Any]) -> dict[str, Any]:
    import anyio

    import edges_async as ea
    from edges_async._limiter import WorkspaceRateLimiter, workspace_id
    from edges_async._redis_coordination import RedisCoordination

    accepted: list[float] = []
    refused: list[float] = []
    errors = 0
    slots = _count_slots()
    coordination = RedisCoordination(job["redis_url"]) if job["redis_url"] else None
    limiter = None
    if coordination is not None:
        limiter = WorkspaceRateLimiter(
            job["plan"],
            workspace=workspace_id(API_KEY, job["base_url"]),
            coordination=coordination,
        )
    end = job["start_at"] + job["seconds"]

    async def one(client: ea.AsyncClient) -> None:
        nonlocal errors
        try:
            await client.runs.status(UNKNOWN_RUN)
        except ea.NotFoundError:
            accepted.append(time.monotonic())
        except ea.RateLimitError:
            refused.append(time.monotonic())
        except ea.EdgesError:
            errors += 1

    async def loop(client: ea.AsyncClient) -> None:
        while time.monotonic() < end:
            await one(client)

    try:
        async with ea.AsyncClient(
            API_KEY, plan=job["plan"], base_url=job["base_url"], max_retries=0, limiter=limiter
        ) as client:
            if coordination is not None:  # connect and say hello before the start
                await coordination.redis.ping()
            await anyio.sleep(max(0.0, job["start_at"] - time.monotonic()))
            with anyio.move_on_after(job["seconds"]):
                async with anyio.create_task_group() as group:
                    for _ in range(job["tasks"]):
                        group.start_soon(loop, client)
    finally:
        if coordination is not None:
            await coordination.aclose()
    window = (job["start_at"], end)
    return {
        "accepted": [t for t in accepted if window[0] <= t <= window[1]],
        "refused": [t for t in refused if window[0] <= t <= window[1]],
        "errors": errors,
        "slots": slots,
    }


def _count_slots() -> dict[str, int]:
    """Count how confirmations end in this process: go, sleep on, or a new slot (late, voided)."""
    from edges_async._redis_scripts import BudgetScripts, Reservation

    counts = {"go": 0, "early": 0, "new": 0}
    confirm = BudgetScripts.confirm

    async def counted(self: BudgetScripts, key: str, held: Reservation, **kw: Any) -> Reservation:
        answer = await confirm(self, key, held, **kw)
        outcome = "go" if answer.wait == 0 else "early" if answer.slot == held.slot else "new"
        counts[outcome] += 1
        return answer

    BudgetScripts.confirm = counted  # type: ignore[method-assign,assignment]
    return counts


def _table(cells: Sequence[Cell]) -> str:
    lines = ["processes  limiter        share of plan  429s  each process's share"]
    for cell in cells:
        mode = "RedisCoord." if cell.coordinated else "per-process"
        shares = " ".join(f"{share:.2f}" for share in cell.process_shares)
        slots = {k: sum(r.slots[k] for r in cell.results) for k in ("go", "early", "new")}
        lines.append(
            f"{cell.processes:>9}  {mode:<13}  {cell.share_of_plan:>13.3f}  "
            f"{cell.refused:>4}  {shares}  {slots if cell.coordinated else ''}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """The worker (``worker '<json>'``), or the whole table by hand."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        import anyio

        print(json.dumps(anyio.run(_worker, json.loads(argv[1]))), flush=True)
        return 0
    from edges_async._plans import PlanTier

    from .redis_server import RedisServer

    parser = argparse.ArgumentParser(prog="python -m tests.redis_processes")
    parser.add_argument("--processes", default="2,3,4")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--plan", default="titanium")
    parser.add_argument("--window", default="per_second")
    args = parser.parse_args(argv)
    tier = PlanTier(args.plan)
    cells = []
    with RedisServer().running() as redis_server:
        for count in (int(n) for n in args.processes.split(",")):
            for redis_url in (redis_server.url, None):
                # A simulator per cell: the minute windows start empty, and
                # its new port makes a new workspace id, a fresh Redis budget.
                with simulator_process(args.plan, args.window) as url:
                    cell = run_cell(
                        count,
                        base_url=url,
                        redis_url=redis_url,
                        plan=args.plan,
                        per_second=tier.requests_per_second,
                        seconds=args.seconds,
                    )
                cells.append(cell)
                print(_table(cells[-1:]).splitlines()[-1], flush=True)
    print(f"\n{args.plan}, window {args.window}, {args.seconds:g} s per cell")
    print(_table(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
