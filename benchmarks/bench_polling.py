"""How fast clients notice that runs finished, on a rate-limited workspace.

N runs are seeded at t=0 in the in-process simulator (sliding-minute limit,
the workspace on the client's plan), with long-tailed log-normal running times
(``PROFILE``). A run's detection delay is when a client noticed it had ended
minus when it ended on the server. Each (plan, N) group has the same runs:

- ``edges_async``: ``client.watch_runs(uids)`` with the default limiter. It
  polls on ``rpm x 0.95 (limiter headroom) x 0.8 (a 20 % reserve)`` requests
  per minute, up to 100 uids per ``GET /v1/runs``;
- ``naive``: the vendor's pattern in plain httpx: a task per run, ``GET
  /v1/runs/{uid}`` every 10 s until the status is terminal (a 429 or an error
  counts as not done), no limiter. Its 429 flood is slow to simulate at large
  N, so it stops after ``--naive-cap-minutes`` of fake time: runs not noticed
  by then are missed;
- ``bound``: the least p50 delay reachable on the edges_async share with
  100-run batches, computed exactly: an ideal poller with no latency checks the
  100 least recently checked pending runs every ``1 / rate`` s. ``bound, full
  rate`` does the same at the plan's whole rate.

Each cell runs in a fresh spawned worker (its peak RSS is its own) on a
fake-clock loop (``_fake_time.py``): delays do not depend on the machine.
Targets for edges_async: no 429; p50 <= 1.5 x bound at every N; at N = 10,000,
peak RSS < 150 MB and client CPU (the process's minus the simulator's) < 0.2 s
per simulated minute.

    python benchmarks/bench_polling.py [--plans trial,titanium]
        [--sizes 10,100,1000,10000] [--clients edges_async,naive,bound]
        [--naive-cap-minutes 20] [--jobs <cores>] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import itertools
import logging
import math
import multiprocessing
import os
import resource
import shlex
import sys
import textwrap
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from typing import TypeVar

import anyio
import httpx
from _fake_time import run_in_fake_time

import edges_async as ea
from edges_async.testing import EdgesSimulator, RunProfile, SimulatedRun

API_KEY = "bench-key"
BASE_URL = "https://api.edges.run/v1"
SIM_START = datetime(2026, 11, 2, 9, 0, 0, tzinfo=timezone.utc)
PROFILE = RunProfile(running_median_seconds=60.0, running_sigma=1.0, running_max_seconds=1800.0)
LIMITER_HEADROOM = 0.95  # WorkspaceRateLimiter's default
POLL_RESERVE = 0.2  # the share of the budget watch_runs leaves to other calls
BATCH = 100  # the most uids one GET /v1/runs answers for (limit <= 100)
NAIVE_INTERVAL = 10.0
EDGES_CAP_MINUTES = 60.0  # a safety net: a correct client is done in ~35 fake minutes
P50_RATIO_TARGET = 1.5
LARGE_N, RSS_TARGET_MB, CPU_TARGET = 10_000, 150.0, 0.2
TERMINAL = frozenset(status.value for status in ea.TERMINAL_STATUSES)
CLIENTS = ("edges_async", "naive", "bound")

T = TypeVar("T")
Notice = Callable[[str], None]
Poller = Callable[[httpx.AsyncBaseTransport, ea.PlanTier, list[str], Notice], Awaitable[None]]


def poll_share(plan: ea.PlanTier) -> float:
    """The requests per minute edges_async polls at on ``plan``."""
    return plan.requests_per_minute * LIMITER_HEADROOM * (1 - POLL_RESERVE)


# -- the clients and the bound ----------------------------------------------------


async def watch_with_edges_async(
    transport: httpx.AsyncBaseTransport, plan: ea.PlanTier, uids: list[str], notice: Notice
) -> None:
    """The SDK: one client, ``watch_runs`` over every run, in completion order."""
    async with (
        httpx.AsyncClient(transport=transport) as http,
        ea.AsyncClient(API_KEY, plan=plan, http_client=http) as client,
    ):
        async for run in client.watch_runs(uids):
            notice(run.uid)


async def poll_naively(
    transport: httpx.AsyncBaseTransport, plan: ea.PlanTier, uids: list[str], notice: Notice
) -> None:
    """The vendor's pattern with plain httpx: a task per run, a GET every 10 s, no limiter."""

    async def poll(http: httpx.AsyncClient, uid: str) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError):  # an error counts as not done
                response = await http.get(f"/runs/{uid}")
                if response.status_code == 200 and response.json()["status"] in TERMINAL:
                    notice(uid)
                    return
            await anyio.sleep(NAIVE_INTERVAL)

    headers = {"X-API-Key": API_KEY}
    async with (
        httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers) as http,
        anyio.create_task_group() as group,
    ):
        for uid in uids:
            group.start_soon(poll, http, uid)


POLLERS: dict[str, Poller] = {"edges_async": watch_with_edges_async, "naive": poll_naively}


def ideal_delays(finished: Sequence[float], per_minute: float) -> tuple[list[float], int]:
    """The ideal round-robin poller's detection delays, and how many requests it sends.

    Check ``k`` happens at ``k * 60 / per_minute`` s (k = 0, 1...) and looks at
    the ``BATCH`` pending runs checked longest ago; a run that has ended by
    then is noticed, the others go to the back of the queue.
    """
    interval = 60.0 / per_minute
    pending = collections.deque(finished)
    delays: list[float] = []
    checks = 0
    while pending:
        now = checks * interval
        for _ in range(min(BATCH, len(pending))):
            ended = pending.popleft()
            if ended <= now:
                delays.append(now - ended)
            else:
                pending.append(ended)
        checks += 1
    return delays, checks


# -- measuring one cell -----------------------------------------------------------


class MeteredTransport(httpx.AsyncBaseTransport):
    """Counts requests and 429s, and the CPU time spent in the simulator.

    ``httpx.ASGITransport`` runs the simulator's app inline, in the awaiting
    task, and nothing in the app's GET routes suspends: the process CPU time
    between entering and leaving ``handle_async_request`` is the server's work
    (and the in-process transport's, which a real network would not cost the
    client either). ``overlaps`` counts calls entered while another was
    inside: were it ever non-zero, that reasoning would fail, and the cell with it.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self._inside = 0
        self.requests = self.refused = self.overlaps = 0
        self.server_cpu = 0.0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Forward ``request`` to the simulator, timing it and counting its answer."""
        self.overlaps += self._inside > 0
        self._inside += 1
        started = time.process_time()
        try:
            response = await self._inner.handle_async_request(request)
        finally:
            self.server_cpu += time.process_time() - started
            self._inside -= 1
        self.requests += 1
        self.refused += response.status_code == 429
        return response

    async def aclose(self) -> None:
        """Close the simulator's transport."""
        await self._inner.aclose()


@dataclasses.dataclass(frozen=True, slots=True)
class Cell:
    """One measurement: ``client`` waiting for ``runs`` runs on ``plan``."""

    plan: ea.PlanTier
    runs: int
    client: str
    """``edges_async``, ``naive``, ``bound`` (at the poll share) or ``bound-full``."""
    seed: int
    cap_minutes: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What one cell measured (no client CPU for the bounds)."""

    cell: Cell
    noticed: int
    p50: float
    p99: float
    requests: int
    refused: int = 0
    minutes: float = 0.0
    """Fake minutes from seeding to the last notice (or the cap)."""
    wrong: int = 0
    """Notices of a run that had not ended, or of one already noticed."""
    client_cpu: float | None = None
    peak_rss_mb: float | None = None
    error: str | None = None
    cpu_spread: tuple[float, float] | None = None
    """The least and most client CPU over repeated measures of the cell."""

    @property
    def cpu_per_minute(self) -> float | None:
        """Client CPU seconds per simulated minute."""
        if self.client_cpu is None or self.minutes <= 0:
            return None
        return self.client_cpu / self.minutes


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile of ``values`` (NaN when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def seed_runs(cell: Cell) -> tuple[EdgesSimulator, list[SimulatedRun]]:
    """A simulator and the cell's runs, created now: the same for each cell of a (plan, N)."""
    # Requests are counted by MeteredTransport: a one-entry log keeps memory flat.
    sim = EdgesSimulator(
        seed=cell.seed, start_time=SIM_START, run_profile=PROFILE, max_logged_requests=1
    )
    workspace = sim.add_workspace(api_key=API_KEY, plan=cell.plan)
    return sim, [sim.add_run(workspace) for _ in range(cell.runs)]


async def compute_bound(cell: Cell) -> Outcome:
    """The ideal poller's delays on the cell's runs (fake time only to seed them)."""
    # Nothing cancels or resumes these runs: their first terminal step is their end.
    finished = [run.snapshot(math.inf).finished for run in seed_runs(cell)[1]]
    rate = poll_share(cell.plan) if cell.client == "bound" else cell.plan.requests_per_minute
    delays, checks = ideal_delays([t for t in finished if t is not None], rate)
    p50, p99 = percentile(delays, 0.5), percentile(delays, 0.99)
    return Outcome(cell, len(delays), p50, p99, checks, minutes=(checks - 1) / rate)


async def watch(cell: Cell) -> Outcome:
    """Seed the runs, let the cell's client wait for them, and measure it."""
    origin = anyio.current_time()
    sim, seeded = seed_runs(cell)
    runs = {run.uid: run for run in seeded}
    meter = MeteredTransport(sim.transport())
    delays: dict[str, float] = {}
    wrong = 0

    def notice(uid: str) -> None:
        nonlocal wrong
        now = anyio.current_time()
        finished = runs[uid].snapshot(now).finished  # the run's terminal step, server side
        if uid in delays or finished is None:
            wrong += 1
        else:
            delays[uid] = now - finished

    cpu_started = time.process_time()
    with anyio.move_on_after(cell.cap_minutes * 60):
        await POLLERS[cell.client](meter, cell.plan, list(runs), notice)
    cpu = time.process_time() - cpu_started - meter.server_cpu
    if meter.overlaps:
        raise RuntimeError("simulator calls overlapped: its CPU time cannot be told apart")
    minutes = (anyio.current_time() - origin) / 60
    found = list(delays.values())
    p50, p99 = percentile(found, 0.5), percentile(found, 0.99)
    return Outcome(cell, len(found), p50, p99, meter.requests, meter.refused, minutes, wrong, cpu)


def measure(cell: Cell) -> Outcome:
    """Measure one cell on its own fake-time loop (the worker process's entry point)."""
    # The SDK logs a warning per retry: keep them off the terminal and the timings.
    logging.getLogger("edges_async").setLevel(logging.ERROR)
    compute = compute_bound if cell.client.startswith("bound") else watch
    try:
        outcome = run_in_fake_time(lambda: compute(cell))
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return Outcome(cell, 0, math.nan, math.nan, 0, error=f"{type(exc).__name__}: {exc}")
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return dataclasses.replace(outcome, peak_rss_mb=peak_kib / 1024)


# -- the table ------------------------------------------------------------------


def shortfalls(outcome: Outcome, bound: Outcome | None) -> list[str]:
    """The edges_async targets ``outcome`` misses (empty: it meets them all)."""
    if outcome.error is not None:
        return ["error"]
    misses = []
    if outcome.noticed < outcome.cell.runs or outcome.wrong:
        misses.append("missed or wrong runs")
    if outcome.refused:
        misses.append("429s")
    if bound is None or not outcome.p50 <= P50_RATIO_TARGET * bound.p50:
        misses.append("p50")
    if outcome.cell.runs >= LARGE_N:
        if outcome.peak_rss_mb is None or outcome.peak_rss_mb >= RSS_TARGET_MB:
            misses.append("RSS")
        if outcome.cpu_per_minute is None or outcome.cpu_per_minute >= CPU_TARGET:
            misses.append("CPU")
    return misses


COLUMNS = (
    ("plan", "<9"), ("N", ">6"), ("client", "<17"), ("requests", ">8"), ("429s", ">7"),
    ("noticed", ">12"), ("p50 s", ">7"), ("p99 s", ">7"), ("p50/bound", ">9"),
    ("sim min", ">7"), ("cpu s", ">6"), ("cpu s/min", ">9"), ("RSS MB", ">6"), ("targets", ""),
)  # fmt: skip


def figure(value: float | None, decimals: int | None = None) -> str:
    """A number for the table, ``-`` when there is none."""
    if value is None or math.isnan(value):
        return "-"
    if decimals is None:  # a delay: more decimals when small
        decimals = 2 if value < 10 else 1 if value < 1000 else 0
    return f"{value:.{decimals}f}"


def row(outcome: Outcome, bound: Outcome | None, verdict: str) -> str:
    """One table line."""
    cell = outcome.cell
    name = {"bound-full": "bound, full rate"}.get(cell.client, cell.client)
    if cell.client == "naive":
        name += f" (cap {cell.cap_minutes:g})"
    ratio = outcome.p50 / bound.p50 if bound is not None and bound.p50 > 0 else None
    values = (
        cell.plan.value, str(cell.runs), name, str(outcome.requests),
        "-" if cell.client.startswith("bound") else str(outcome.refused),
        f"{outcome.noticed}/{cell.runs}", figure(outcome.p50), figure(outcome.p99),
        figure(ratio, 2), figure(outcome.minutes, 1), figure(outcome.client_cpu, 2),
        figure(outcome.cpu_per_minute, 3), figure(outcome.peak_rss_mb, 0), verdict,
    )  # fmt: skip
    return " ".join(format(v, spec) for v, (_, spec) in zip(values, COLUMNS, strict=True))


def print_header(plans: Sequence[ea.PlanTier]) -> None:
    """The command line, the workload, the budgets and the targets."""
    shares = ", ".join(f"{p.value} {poll_share(p):g} of {p.requests_per_minute}" for p in plans)
    runs = f"runs: N seeded at t=0, running time log-normal (long-tailed): {PROFILE!r}"
    lines = [
        f"command: python {shlex.join(sys.argv)}",
        textwrap.fill(runs, width=110, subsequent_indent="  "),
        f"poll share = rpm x {LIMITER_HEADROOM} x (1 - {POLL_RESERVE}) req/min: {shares}; "
        "in-process simulator, sliding-minute limit, fake time",
        "delay = noticed by the client - ended on the server (p50, p99 over noticed runs)",
        "cpu = the client's: process CPU minus time in the simulator; RSS = the worker's peak, "
        "imports and simulator\n  included (bound rows: a worker with the seeded simulator alone)",
        f"targets (edges_async): 0 429s; p50 <= {P50_RATIO_TARGET} x bound; at N = {LARGE_N}: "
        f"RSS < {RSS_TARGET_MB:g} MB and cpu < {CPU_TARGET} s per simulated minute\n",
    ]
    print("\n".join(lines))


def print_report(outcomes: dict[Cell, Outcome], cells: Sequence[Cell]) -> None:
    """The table, in cell order, then the verdict."""
    lines = [" ".join(format(title, spec) for title, spec in COLUMNS)]
    lines.append("-" * (len(lines[0]) + 12))
    checked: list[bool] = []
    for index, cell in enumerate(cells):
        if index and (cells[index - 1].plan, cells[index - 1].runs) != (cell.plan, cell.runs):
            lines.append("")
        outcome = outcomes[cell]
        bound = outcomes.get(Cell(cell.plan, cell.runs, "bound", cell.seed))
        verdict = "-"
        if cell.client == "edges_async":
            misses = shortfalls(outcome, bound)
            checked.append(not misses)
            verdict = "PASS" if not misses else "FAIL: " + ", ".join(misses)
        if outcome.error is not None:
            verdict = f"ERROR {outcome.error[:70]}"
        lines.append(row(outcome, bound, verdict).rstrip())
    print("\n".join(lines))
    for cell in cells:
        spread = outcomes[cell].cpu_spread
        if spread is not None and outcomes[cell].minutes > 0:
            low, high = (cpu / outcomes[cell].minutes for cpu in spread)
            print(
                f"{cell.plan.value} N={cell.runs} {cell.client}: client cpu s/min over the "
                f"repeats {low:.3f} to {high:.3f} (the least is in the table)"
            )
    if checked:
        verdict = "PASS" if all(checked) else "FAIL"
        print(f"\nedges_async: {sum(checked)}/{len(checked)} cells meet every target: {verdict}")


# -- running it -----------------------------------------------------------------


def cells_for(args: argparse.Namespace) -> list[Cell]:
    """Every cell, in table order."""
    wanted = list(args.clients)
    if "edges_async" in wanted and "bound" not in wanted:
        wanted.append("bound")  # edges_async's p50 target is relative to the bound
    clients: list[str] = []
    for client in wanted:
        clients += ["bound", "bound-full"] if client == "bound" else [client]
    caps = {"naive": args.naive_cap_minutes, "edges_async": EDGES_CAP_MINUTES}
    rows = itertools.product(args.plans, args.sizes, clients)
    return [Cell(plan, n, client, args.seed, caps.get(client, 0.0)) for plan, n, client in rows]


def run_cells(cells: Sequence[Cell], jobs: int, cpu_repeats: int) -> dict[Cell, Outcome]:
    """Measure every cell, each in a fresh spawned worker, the slowest to simulate first.

    The cells with a CPU target run last, alone, ``cpu_repeats`` times: on this
    kind of VM (two vCPUs, likely hyperthreads) a busy sibling inflated their
    CPU time by half, and even alone it varies by +-20 % from run to run. As
    ``timeit`` does, the least CPU time is the measure (the rest is other
    processes' interference, not the code); ``cpu_spread`` keeps the range.
    """
    exclusive = [c for c in cells if c.client == "edges_async" and c.runs >= LARGE_N]
    shared = sorted(
        (c for c in cells if c not in exclusive), key=lambda c: (-c.runs, c.client != "naive")
    )
    outcomes: dict[Cell, Outcome] = {}
    context = multiprocessing.get_context("spawn")
    for batch, processes in ((shared, jobs), (exclusive * cpu_repeats, 1)):
        if not batch:
            continue
        with context.Pool(processes=processes, maxtasksperchild=1) as pool:
            for outcome in pool.imap_unordered(measure, batch, chunksize=1):
                outcomes[outcome.cell] = least_cpu(outcomes.get(outcome.cell), outcome)
                if sys.stderr.isatty():
                    print(f"\r{len(outcomes)}/{len(cells)} cells", end="", file=sys.stderr)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return outcomes


def least_cpu(kept: Outcome | None, new: Outcome) -> Outcome:
    """Of two measures of one cell, the one with the least client CPU; the CPU range kept."""
    if kept is None or kept.client_cpu is None or new.client_cpu is None:
        return new
    low, high = kept.cpu_spread or (kept.client_cpu, kept.client_cpu)
    spread = (min(low, new.client_cpu), max(high, new.client_cpu))
    best = new if new.client_cpu < kept.client_cpu else kept
    peak = max(kept.peak_rss_mb or 0.0, new.peak_rss_mb or 0.0)
    return dataclasses.replace(best, cpu_spread=spread, peak_rss_mb=peak)


def listed(parse: Callable[[str], T]) -> Callable[[str], list[T]]:
    """An argparse type: comma-separated values."""

    def convert(text: str) -> list[T]:
        try:
            return [parse(item.strip()) for item in text.split(",")]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def main() -> None:
    """Parse the command line, measure every cell and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add = parser.add_argument
    add("--plans", type=listed(ea.PlanTier), default=[ea.PlanTier.TRIAL, ea.PlanTier.TITANIUM])
    add("--sizes", type=listed(int), default=[10, 100, 1_000, 10_000], help="numbers of runs")
    add("--clients", type=listed(str), default=list(CLIENTS), help="among " + ", ".join(CLIENTS))
    add("--naive-cap-minutes", type=float, default=20.0, help="fake minutes the naive client gets")
    add("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)")
    add("--seed", type=int, default=0, help="the simulator's seed (the runs of every cell)")
    add("--cpu-repeats", type=int, default=3, help="measures of each CPU-target cell (least kept)")
    args = parser.parse_args()
    if not set(args.clients) <= set(CLIENTS):
        parser.error(f"--clients: choose among {', '.join(CLIENTS)}")
    if min(args.sizes) < 1 or min(args.jobs, args.cpu_repeats) < 1 or args.naive_cap_minutes <= 0:
        parser.error("--sizes, --jobs, --cpu-repeats must be >= 1, --naive-cap-minutes > 0")

    started = time.perf_counter()
    cells = cells_for(args)
    print_header(args.plans)
    print_report(run_cells(cells, args.jobs, args.cpu_repeats), cells)
    seconds = time.perf_counter() - started
    processes = f"{args.jobs} worker process{'es' if args.jobs > 1 else ''}"
    print(f"\n{len(cells)} cells in {seconds:.0f} s of real time ({processes})")


if __name__ == "__main__":
    main()
