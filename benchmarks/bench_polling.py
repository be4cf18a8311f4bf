"""How fast clients notice that runs finished, on a rate-limited workspace.

N runs are seeded at t=0 in the in-process simulator (sliding-minute limit,
the workspace on the client's plan) and one client waits for all of them. A
run's detection delay is when the client noticed it had ended minus when it
ended on the server. The workloads (``--workloads``):

- ``longtail``: log-normal running times (``PROFILE``: median 60 s, capped at
  30 min), most runs ending in the first minutes;
- ``uniform``: each run ends at a seeded uniform random moment within 30 min
  (``EdgesSimulator.add_runs``: RUNNING after a second, terminal statuses drawn
  with the simulator's default weights, 80 % SUCCEEDED);
- ``foreign``: ``uniform`` plus as many runs of the same workspace, ending at
  the same pace, that nobody waits for (N = 1,000 and 10,000 of ``--sizes``,
  on ``--foreign-plans``): a change feed reads them too;
- ``burst``: ``BURST_RUNS`` runs all ending within the same second, at 300 s.

Each (plan, workload, N) group has the same runs for every client and bound:

- ``edges_async``: ``client.watch_runs(uids)`` with the default limiter. It
  polls on ``rpm x 0.95 (limiter headroom) x 0.8 (a 20 % reserve)`` requests
  per minute (the *poll share*). The transport tells which mechanism noticed
  each run: the kind of the last response that showed it ended before the
  client yielded it (*feed*: ``GET /v1/runs?status=..&sort=-updated_at``
  without uids; *net*, the safety net: a ``uid=`` batch or a single-run poll);
- ``naive`` (``longtail`` only, not run by default: its 429 flood takes
  minutes to simulate): the vendor's pattern in plain httpx, a task per run,
  ``GET /v1/runs/{uid}`` every 10 s, no limiter, stopped after
  ``--naive-cap-minutes`` of fake time;
- ``uid-batch bound``: an ideal round-robin poller with no latency that checks
  the 100 pending runs checked longest ago every ``60 / poll share`` s: the
  best the strategy of asking about one's own runs can do on the poll share;
- ``feed bound``: the least delay any client could reach on the poll share,
  given that one answer holds at most 100 runs: requests at ``k x 60 / poll
  share`` s, each reporting up to 100 of the runs ended before it and not
  reported yet, oldest first. In the ``foreign`` rows those runs include the
  unrelated ones: they take room in the answers too (delays are the waited
  runs' only). When runs end faster than 100 per interval, nobody can keep
  up: the row says ``overloaded`` with the backlog's peak. Oldest first
  gives the least worst delay; in an overloaded row a client that reads the
  newest first reaches a lower p50 than this bound, at the price of a much
  longer tail (p99, max).

The bounds' delays are medians over ``PHASES`` phases of their request
clock against the endings. A cell of fewer than 100 runs measures
``SMALL_GROUPS`` workspaces at once, each with its runs and its own client,
and pools their delays (its CPU and requests are per client): the p50 of
one client's 10 delays is luck more than a measure.

Each cell runs in a fresh spawned worker (its peak RSS is its own) on a
fake-clock loop (``_fake_time.py``), with ``PYTHONHASHSEED=0``: delays do
not depend on the machine and repeat exactly. The edges_async cells whose CPU
the target compares (N = 100 and 10,000, ``longtail`` and ``uniform``) run
``--repeats`` times, the others once; the table gives the delays (checked
identical over repeats), the MEDIAN client CPU (process CPU minus the time
inside the simulator and the harness's bookkeeping; each repeat's is
listed below the table) and the highest peak RSS. Absolute CPU figures do
not carry between machines, so the CPU target is a ratio of two cells
measured in the same invocation.

Targets for edges_async: no 429 anywhere; every run noticed; ``uniform`` on
Trial at N = 10,000: p50 <= 3 s and p99 <= 10 s; p50 <= 1.3 x the feed
bound in every row; ``burst``: every run noticed within 60 s; N = 10,000:
peak RSS < 150 MB; client CPU per simulated minute at N = 10,000 at most
3 x the N = 100 figure of the same plan and workload.

    python benchmarks/bench_polling.py [--plans trial,titanium]
        [--workloads longtail,uniform,foreign,burst] [--sizes 10,100,1000,10000]
        [--foreign-plans trial] [--clients edges_async,bound] [--repeats 3]
        [--naive-cap-minutes 20] [--jobs <cores>] [--seed 0]

The default run (60 cells, 76 measures) took 12.7 minutes with ``--jobs 2``
on the project's 2-core VM, shared with other work at the time; the
Titanium cells of N = 1,000 and 10,000 are most of it (the simulator builds
100 run objects for each of ~12,000 feed answers). A quick check:
``--plans trial --sizes 100,1000 --workloads uniform,burst --repeats 1``
(under a minute).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import logging
import math
import multiprocessing
import os
import resource
import shlex
import statistics
import sys
import textwrap
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

import anyio
import httpx
from _fake_time import run_in_fake_time
from _metered_transport import TERMINAL, MeteredTransport
from _polling_bounds import BATCH, feed_delays, ideal_delays

import edges_async as ea
from edges_async.testing import EdgesSimulator, RunProfile, SimulatedRun

API_KEY = "bench-key"
BASE_URL = "https://api.edges.run/v1"
SIM_START = datetime(2026, 11, 2, 9, 0, 0, tzinfo=timezone.utc)
PROFILE = RunProfile(running_median_seconds=60.0, running_sigma=1.0, running_max_seconds=1800.0)
UNIFORM_SECONDS = 1800.0  # uniform runs end within the first 30 minutes
BURST_AT, BURST_RUNS = 300.0, 1_000  # burst runs all end within [300 s, 301 s)
FOREIGN_SIZES = frozenset({1_000, 10_000})
LIMITER_HEADROOM = 0.95  # WorkspaceRateLimiter's default
POLL_RESERVE = 0.2  # the share of the budget watch_runs leaves to other calls
SMALL_GROUPS = 10  # workspaces, each with its client, pooled in a cell of under 100 runs
PHASES = 8  # phases of a bound's request clock, its delays the medians over them
NAIVE_INTERVAL = 10.0
EDGES_CAP_MINUTES = 60.0  # a safety net: a correct client is done in ~35 fake minutes
P50_RATIO_TARGET = 1.3  # p50 <= this x the feed bound's
UNIFORM_P50_TARGET, UNIFORM_P99_TARGET = 3.0, 10.0  # uniform, Trial, N = 10,000
BURST_TARGET = 60.0  # every burst run noticed within this many seconds
LARGE_N, SMALL_N, RSS_TARGET_MB, CPU_RATIO_TARGET = 10_000, 100, 150.0, 3.0
CLIENTS = ("edges_async", "naive", "bound")
WORKLOADS = ("longtail", "uniform", "foreign", "burst")
MECHANISMS = ("feed", "net", "other")

T = TypeVar("T")
Notice = Callable[[str], None]
Poller = Callable[
    [httpx.AsyncBaseTransport, ea.PlanTier, list[str], Notice, str], Coroutine[Any, Any, None]
]


def poll_share(plan: ea.PlanTier) -> float:
    """The requests per minute edges_async polls at on ``plan``."""
    return plan.requests_per_minute * LIMITER_HEADROOM * (1 - POLL_RESERVE)


# -- the clients and the bounds ---------------------------------------------------


async def watch_with_edges_async(
    transport: httpx.AsyncBaseTransport,
    plan: ea.PlanTier,
    uids: list[str],
    notice: Notice,
    key: str = API_KEY,
) -> None:
    """The SDK: one client, ``watch_runs`` over every run, in completion order."""
    async with (
        httpx.AsyncClient(transport=transport) as http,
        ea.AsyncClient(key, plan=plan, http_client=http) as client,
    ):
        async for run in client.watch_runs(uids):
            notice(run.uid)


async def poll_naively(
    transport: httpx.AsyncBaseTransport,
    plan: ea.PlanTier,
    uids: list[str],
    notice: Notice,
    key: str = API_KEY,
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

    headers = {"X-API-Key": key}
    async with (
        httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers) as http,
        anyio.create_task_group() as group,
    ):
        for uid in uids:
            group.start_soon(poll, http, uid)


POLLERS: dict[str, Poller] = {"edges_async": watch_with_edges_async, "naive": poll_naively}


# -- measuring one cell -----------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Cell:
    """One measurement: ``client`` waiting for ``runs`` runs of ``workload`` on ``plan``."""

    plan: ea.PlanTier
    workload: str
    runs: int
    client: str
    """``edges_async``, ``naive``, ``bound`` (uid batches) or ``feed-bound``."""
    seed: int
    cap_minutes: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What one cell measured (no client CPU for the bounds)."""

    cell: Cell
    noticed: int
    p50: float
    p99: float
    worst: float
    requests: int
    refused: int = 0
    minutes: float = 0.0
    """Fake minutes from seeding to the last notice (or the cap)."""
    wrong: int = 0
    """Notices of a run that had not ended, or of one already noticed."""
    by_mechanism: tuple[int, ...] | None = None
    """Runs noticed after a feed answer, a safety-net answer, neither (``MECHANISMS``)."""
    backlog_peak: int | None = None
    """The feed bound's: the most runs ended and not yet reported at a request."""
    client_cpu: float | None = None
    peak_rss_mb: float | None = None
    error: str | None = None
    cpu_spread: tuple[float, ...] = ()
    """The client CPU of each repeat (the table gives their median)."""
    delays_differ: bool = False
    """Whether repeats saw different delays (fake time should make them identical)."""

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


def groups_of(cell: Cell) -> int:
    """Workspaces the cell measures at once, each with its own runs and client.

    Below 100 runs, one client's p50 is that of a few delays, luck more
    than a measure (10 runs: a bound's p50 varies 1.5x with its phase):
    ``SMALL_GROUPS`` workspaces of ``cell.runs`` runs each pool their delays.
    """
    return SMALL_GROUPS if cell.runs < BATCH else 1


def seed_runs(
    cell: Cell,
) -> tuple[list[list[SimulatedRun]], list[list[SimulatedRun]], EdgesSimulator]:
    """Per workspace, the cell's waited runs and the unrelated ones, and their simulator."""
    # Requests are counted by MeteredTransport: a one-entry log keeps memory flat.
    sim = EdgesSimulator(
        seed=cell.seed, start_time=SIM_START, run_profile=PROFILE, max_logged_requests=1
    )
    waited: list[list[SimulatedRun]] = []
    others: list[list[SimulatedRun]] = []
    span = (BURST_AT, BURST_AT + 1) if cell.workload == "burst" else (0.0, UNIFORM_SECONDS)
    for group in range(groups_of(cell)):
        workspace = sim.add_workspace(api_key=group_key(group), plan=cell.plan)
        if cell.workload == "longtail":
            waited.append([sim.add_run(workspace) for _ in range(cell.runs)])
            others.append([])
            continue
        waited.append(sim.add_runs(workspace, cell.runs, ending_between=span))
        foreign = cell.workload == "foreign"
        others.append(sim.add_runs(workspace, cell.runs, ending_between=span) if foreign else [])
    return waited, others, sim


def group_key(group: int) -> str:
    """The API key of the cell's ``group``-th workspace."""
    return API_KEY if group == 0 else f"{API_KEY}-{group}"


def ends(runs: Sequence[SimulatedRun], origin: float) -> list[float]:
    """When each run ended, in seconds from ``origin`` (nothing cancels or resumes them)."""
    return [end[0] - origin for run in runs if (end := run.first_terminal()) is not None]


async def compute_bound(cell: Cell) -> Outcome:
    """A bound's delays on the cell's runs (fake time only to seed them)."""
    origin = anyio.current_time()
    waited, others, _ = seed_runs(cell)
    rate = poll_share(cell.plan)
    peak = 0
    # Medians over PHASES phases of the request clock against the endings:
    # with few runs, one phase's p50 is luck (10 runs: up to 1.5x apart).
    p50s, p99s, maxima = [], [], []
    for phase in (index / PHASES for index in range(PHASES)):
        delays = []
        for mine, theirs in zip(waited, others, strict=True):
            if cell.client == "feed-bound":
                found, requests, top = feed_delays(
                    ends(mine, origin), ends(theirs, origin), rate, phase
                )
                peak = max(peak, top)
            else:
                found, requests = ideal_delays(ends(mine, origin), rate, phase)
            delays += found
        p50s.append(percentile(delays, 0.5))
        p99s.append(percentile(delays, 0.99))
        maxima.append(max(delays))
    p50, p99 = statistics.median(p50s), statistics.median(p99s)
    minutes = (requests - 1) / rate
    return Outcome(
        cell,
        len(delays),
        p50,
        p99,
        statistics.median(maxima),
        requests,
        0,
        minutes,
        0,
        None,
        peak if cell.client == "feed-bound" else None,
    )


async def watch(cell: Cell) -> Outcome:
    """Seed the runs, let the cell's client wait for them, and measure it."""
    origin = anyio.current_time()
    seeded, _, sim = seed_runs(cell)
    runs = {run.uid: run for group in seeded for run in group}
    meter = MeteredTransport(sim.transport(), runs)
    delays: dict[str, float] = {}
    noticed_by = collections.Counter[str]()
    wrong = 0

    harness_cpu = 0.0  # this bookkeeping's, which no real client would pay

    def notice(uid: str) -> None:
        nonlocal wrong, harness_cpu
        started = time.process_time()
        now = anyio.current_time()
        finished = runs[uid].snapshot(now).finished  # the run's terminal step, server side
        if uid in delays or finished is None:
            wrong += 1
        else:
            delays[uid] = now - finished
            noticed_by[meter.ended_by.get(uid, "other")] += 1
        harness_cpu += time.process_time() - started

    cpu_started = time.process_time()
    with anyio.move_on_after(cell.cap_minutes * 60):
        async with anyio.create_task_group() as clients:
            for group, mine in enumerate(seeded):
                uids = [run.uid for run in mine]
                clients.start_soon(
                    POLLERS[cell.client], meter, cell.plan, uids, notice, group_key(group)
                )
    # Per client: the groups' clients share the process, the simulator and the clock.
    groups = len(seeded)
    cpu = (time.process_time() - cpu_started - meter.outside_cpu - harness_cpu) / groups
    if meter.overlaps:
        raise RuntimeError("simulator calls overlapped: its CPU time cannot be told apart")
    minutes = (anyio.current_time() - origin) / 60
    found = list(delays.values())
    p50, p99 = percentile(found, 0.5), percentile(found, 0.99)
    worst = max(found, default=math.nan)
    mechanisms = tuple(noticed_by[name] for name in MECHANISMS)
    return Outcome(
        cell, len(found), p50, p99, worst, round(meter.requests / groups), meter.refused,
        minutes, wrong, mechanisms, client_cpu=cpu,
    )  # fmt: skip


def measure(cell: Cell) -> Outcome:
    """Measure one cell on its own fake-time loop (the worker process's entry point)."""
    # The SDK logs a warning per retry: keep them off the terminal and the timings.
    logging.getLogger("edges_async").setLevel(logging.ERROR)
    compute = compute_bound if cell.client.endswith("bound") else watch
    try:
        outcome = run_in_fake_time(lambda: compute(cell))
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        nan = math.nan
        return Outcome(cell, 0, nan, nan, nan, 0, error=f"{type(exc).__name__}: {exc}")
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return dataclasses.replace(outcome, peak_rss_mb=peak_kib / 1024)


def merged(repeats: Sequence[Outcome]) -> Outcome:
    """One outcome for a cell's repeats: the first's delays, the median CPU, the highest RSS."""
    first = repeats[0]
    cpus = tuple(o.client_cpu for o in repeats if o.client_cpu is not None)
    if first.error is not None or not cpus:
        return first
    rss = max(o.peak_rss_mb or 0.0 for o in repeats)
    differ = any((o.p50, o.p99, o.worst, o.noticed) != (first.p50, first.p99, first.worst,
                 first.noticed) for o in repeats if o.error is None)  # fmt: skip
    failed = next((o.error for o in repeats if o.error is not None), None)
    return dataclasses.replace(
        first, client_cpu=statistics.median(cpus), cpu_spread=cpus, peak_rss_mb=rss,
        delays_differ=differ, error=failed,
    )  # fmt: skip


# -- the targets ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """Every cell's merged outcome, with the bounds and targets read from them."""

    outcomes: dict[Cell, Outcome]

    def bound(self, cell: Cell, kind: str) -> Outcome | None:
        """The ``bound`` or ``feed-bound`` outcome of ``cell``'s group."""
        return self.outcomes.get(dataclasses.replace(cell, client=kind, cap_minutes=0.0))

    def ours(self) -> list[Outcome]:
        """The edges_async outcomes, in cell order."""
        return [o for cell, o in self.outcomes.items() if cell.client == "edges_async"]

    def shortfalls(self, outcome: Outcome) -> list[str]:
        """The edges_async targets ``outcome`` misses (empty: it meets them all)."""
        if outcome.error is not None:
            return ["error"]
        cell, misses = outcome.cell, []
        if outcome.noticed < cell.runs * groups_of(cell) or outcome.wrong:
            misses.append("missed or wrong runs")
        if outcome.refused:
            misses.append("429s")
        feed = self.bound(cell, "feed-bound")
        if feed is None or not outcome.p50 <= P50_RATIO_TARGET * feed.p50:
            misses.append("p50 vs feed bound")
        uniform = (cell.workload, cell.plan, cell.runs) == ("uniform", ea.PlanTier.TRIAL, LARGE_N)
        if uniform and not (
            outcome.p50 <= UNIFORM_P50_TARGET and outcome.p99 <= UNIFORM_P99_TARGET
        ):
            misses.append("p50/p99")
        if cell.workload == "burst" and not outcome.worst <= BURST_TARGET:
            misses.append(f"burst > {BURST_TARGET:g} s")
        if cell.runs >= LARGE_N and not (outcome.peak_rss_mb or math.inf) < RSS_TARGET_MB:
            misses.append("RSS")
        return misses

    def cpu_ratios(self) -> list[tuple[ea.PlanTier, str, float | None, float | None]]:
        """For each plan and workload measured at N = 100 and 10,000: CPU s/min of both."""
        ratios = []
        for outcome in self.ours():
            cell = outcome.cell
            if cell.runs != LARGE_N or cell.workload not in ("longtail", "uniform"):
                continue
            small = self.outcomes.get(dataclasses.replace(cell, runs=SMALL_N))
            if small is not None:
                ratios.append(
                    (cell.plan, cell.workload, small.cpu_per_minute, outcome.cpu_per_minute)
                )
        return ratios

    def verdicts(self) -> list[str]:
        """One PASS/FAIL line per target (``n/a`` when no cell measured it)."""
        ours = self.ours()
        lines = []

        def line(target: str, checked: list[Outcome], failing: list[str]) -> None:
            verdict = "n/a (not measured)" if not checked else "FAIL" if failing else "PASS"
            detail = f": {', '.join(failing)}" if failing else ""
            lines.append(f"{verdict:<4} {target} ({len(checked)} cells){detail}")

        def name(o: Outcome) -> str:
            return f"{o.cell.plan.value}/{o.cell.workload}/{o.cell.runs}"

        line("no 429 anywhere", ours, [f"{name(o)} {o.refused}" for o in ours if o.refused])
        line(
            "every run noticed once, none wrongly",
            ours,
            [name(o) for o in ours if o.error or o.noticed < o.cell.runs or o.wrong],
        )
        uniform = [
            o for o in ours
            if (o.cell.workload, o.cell.plan, o.cell.runs)
            == ("uniform", ea.PlanTier.TRIAL, LARGE_N)
        ]  # fmt: skip
        line(
            f"uniform, Trial, N = {LARGE_N:,}: p50 <= {UNIFORM_P50_TARGET:g} s and p99 <= "
            f"{UNIFORM_P99_TARGET:g} s",
            uniform,
            [f"p50 {o.p50:.2f} s, p99 {o.p99:.2f} s" for o in uniform if "p50/p99" in
             self.shortfalls(o)],
        )  # fmt: skip
        line(
            f"p50 <= {P50_RATIO_TARGET} x the feed bound's, every row",
            ours,
            [
                f"{name(o)} {ratio_text(o, self.bound(o.cell, 'feed-bound'))}"
                for o in ours if "p50 vs feed bound" in self.shortfalls(o)
            ],
        )  # fmt: skip
        burst = [o for o in ours if o.cell.workload == "burst"]
        line(
            f"burst: every run noticed within {BURST_TARGET:g} s",
            burst,
            [f"{name(o)} last after {figure(o.worst)} s" for o in burst
             if not o.worst <= BURST_TARGET or o.noticed < o.cell.runs],
        )  # fmt: skip
        large = [o for o in ours if o.cell.runs >= LARGE_N]
        line(
            f"N = {LARGE_N:,}: peak RSS < {RSS_TARGET_MB:g} MB",
            large,
            [f"{name(o)} {figure(o.peak_rss_mb, 0)} MB" for o in large
             if not (o.peak_rss_mb or math.inf) < RSS_TARGET_MB],
        )  # fmt: skip
        ratios = self.cpu_ratios()
        failing = []
        for plan, workload, small, big in ratios:
            ratio = big / small if small and big is not None else math.inf
            if not ratio <= CPU_RATIO_TARGET:
                failing.append(f"{plan.value}/{workload} {ratio:.2f}")
        verdict = "n/a (not measured)" if not ratios else "FAIL" if failing else "PASS"
        detail = f": {', '.join(failing)}" if failing else ""
        lines.append(
            f"{verdict:<4} client CPU per sim. minute, N = {LARGE_N:,} <= {CPU_RATIO_TARGET:g} x "
            f"N = {SMALL_N} (same plan and workload; {len(ratios)} pairs){detail}"
        )
        return lines


# -- the table ------------------------------------------------------------------


COLUMNS = (
    ("plan", "<8"), ("workload", "<8"), ("N", ">6"), ("client", "<15"), ("requests", ">8"),
    ("429s", ">5"), ("noticed", ">11"), ("feed/net", ">11"), ("p50 s", ">6"), ("p99 s", ">6"),
    ("max s", ">6"), ("p50/uidb", ">8"), ("p50/feedb", ">9"), ("sim min", ">7"), ("cpu s", ">6"),
    ("cpu s/min", ">9"), ("RSS MB", ">6"), ("targets", ""),
)  # fmt: skip
NAMES = {"bound": "uid-batch bound", "feed-bound": "feed bound"}


def figure(value: float | None, decimals: int | None = None) -> str:
    """A number for the table, ``-`` when there is none."""
    if value is None or math.isnan(value):
        return "-"
    if decimals is None:  # a delay: more decimals when small
        decimals = 2 if value < 10 else 1 if value < 1000 else 0
    return f"{value:.{decimals}f}"


def ratio_text(outcome: Outcome, bound: Outcome | None) -> str:
    """``outcome``'s p50 over ``bound``'s, as ``1.23x``."""
    if bound is None or not bound.p50 > 0:
        return "-"
    return f"{outcome.p50 / bound.p50:.2f}x"


def row(report: Report, outcome: Outcome) -> str:
    """One table line."""
    cell = outcome.cell
    name = NAMES.get(cell.client, cell.client)
    if cell.client == "naive":
        name += f" (cap {cell.cap_minutes:g})"
    by = outcome.by_mechanism
    mechanisms = "-" if by is None else f"{by[0]}/{by[1]}" + (f" +{by[2]}?" if by[2] else "")
    verdict = "-"
    if cell.client == "edges_async":
        misses = report.shortfalls(outcome)
        verdict = "PASS" if not misses else "FAIL: " + ", ".join(misses)
        if outcome.delays_differ:
            verdict += " (delays differ between repeats!)"
    elif outcome.backlog_peak is not None:
        overloaded = outcome.backlog_peak > BATCH
        verdict = (
            f"{'overloaded' if overloaded else 'keeps up'}: backlog peak {outcome.backlog_peak:,}"
        )
    if outcome.error is not None:
        verdict = f"ERROR {outcome.error[:70]}"
    values = (
        cell.plan.value, cell.workload, str(cell.runs), name, str(outcome.requests),
        "-" if cell.client.endswith("bound") else str(outcome.refused),
        f"{outcome.noticed}/{cell.runs * groups_of(cell)}", mechanisms,
        figure(outcome.p50), figure(outcome.p99),
        figure(outcome.worst),
        ratio_text(outcome, report.bound(cell, "bound")),
        ratio_text(outcome, report.bound(cell, "feed-bound")),
        figure(outcome.minutes, 1), figure(outcome.client_cpu, 2),
        figure(outcome.cpu_per_minute, 4), figure(outcome.peak_rss_mb, 0), verdict,
    )  # fmt: skip
    return " ".join(format(v, spec) for v, (_, spec) in zip(values, COLUMNS, strict=True))


def print_header(args: argparse.Namespace) -> None:
    """The command line, the workloads, the budgets and the targets."""
    plans = args.plans
    shares = ", ".join(f"{p.value} {poll_share(p):g} of {p.requests_per_minute}" for p in plans)
    longtail = f"longtail: N runs seeded at t=0, running time log-normal: {PROFILE!r}"
    lines = [
        f"command: python {shlex.join(sys.argv)}",
        textwrap.fill(longtail, width=110, subsequent_indent="  "),
        f"uniform: each run ends at a seeded uniform moment in (0, {UNIFORM_SECONDS:g} s); "
        f"foreign: uniform + N unrelated runs ending alike; burst: {BURST_RUNS} runs ending in "
        f"[{BURST_AT:g}, {BURST_AT + 1:g}) s",
        f"poll share = rpm x {LIMITER_HEADROOM} x (1 - {POLL_RESERVE}) req/min: {shares}; "
        "in-process simulator, sliding-minute limit, fake time",
        "delay = noticed by the client - ended on the server (p50, p99, max over noticed runs); "
        "feed/net = runs noticed after a\n  feed answer / a safety-net answer (uid batch or "
        "single run) showed them ended",
        "uid-batch bound = ideal round robin of 100-uid batches at the poll share; feed bound = "
        "ideal feed at the poll share,\n  100 runs per answer, oldest first (foreign runs "
        "included); 'overloaded' = runs ended faster than 100 per interval",
        f"cpu = the client's (median of {args.repeats} at N = {SMALL_N} and {LARGE_N}, "
        "longtail and uniform; else one measure): process CPU\n  minus time in the simulator and "
        "the transport's bookkeeping;\n  RSS = the worker's peak, imports and "
        "simulator included (bound rows: a worker with the seeded simulator alone)",
        f"targets (edges_async): 0 429s; uniform Trial N = {LARGE_N}: p50 <= "
        f"{UNIFORM_P50_TARGET:g} s, p99 <= {UNIFORM_P99_TARGET:g} s; p50 <= {P50_RATIO_TARGET} "
        f"x feed bound;\n  burst: all within {BURST_TARGET:g} s; N = {LARGE_N}: RSS < "
        f"{RSS_TARGET_MB:g} MB; cpu s/min at N = {LARGE_N} <= {CPU_RATIO_TARGET:g} x "
        f"N = {SMALL_N}'s\n",
    ]
    print("\n".join(lines))


def print_report(report: Report, cells: Sequence[Cell]) -> None:
    """The table, in cell order, then the CPU figures and the verdicts."""
    lines = [" ".join(format(title, spec) for title, spec in COLUMNS)]
    lines.append("-" * (len(lines[0]) + 30))
    for index, cell in enumerate(cells):
        previous = cells[index - 1] if index else cell
        if (previous.plan, previous.workload, previous.runs) != (cell.plan, cell.workload,
                                                                 cell.runs):  # fmt: skip
            lines.append("")
        lines.append(row(report, report.outcomes[cell]).rstrip())
    print("\n".join(lines) + "\n")
    for outcome in report.outcomes.values():
        if len(outcome.cpu_spread) > 1 and outcome.minutes > 0:
            each = ", ".join(f"{cpu / outcome.minutes:.4f}" for cpu in outcome.cpu_spread)
            cell = outcome.cell
            print(
                f"{cell.plan.value} {cell.workload} N={cell.runs} {cell.client}: client cpu "
                f"s/min of each repeat {each} (median in the table)"
            )
    for plan, workload, small, big in report.cpu_ratios():
        ratio = f"{big / small:.2f}" if small and big is not None else "-"
        print(
            f"{plan.value} {workload}: client cpu s/min N={SMALL_N} {figure(small, 4)}, "
            f"N={LARGE_N} {figure(big, 4)}: ratio {ratio}"
        )
    print("\n" + "\n".join(report.verdicts()))


# -- running it -----------------------------------------------------------------


def cells_for(args: argparse.Namespace) -> list[Cell]:
    """Every cell, in table order."""
    clients = [c for c in CLIENTS if c in args.clients or c == "bound"]  # targets need bounds
    groups: list[tuple[ea.PlanTier, str, int]] = []
    for plan in args.plans:
        for workload in args.workloads:
            if workload == "burst":
                groups.append((plan, workload, BURST_RUNS))
            elif workload == "foreign":
                if plan in args.foreign_plans:
                    groups += [(plan, workload, n) for n in args.sizes if n in FOREIGN_SIZES]
            else:
                groups += [(plan, workload, n) for n in args.sizes]
    caps = {"naive": args.naive_cap_minutes, "edges_async": EDGES_CAP_MINUTES}
    cells = []
    for plan, workload, n in groups:
        for client in clients:
            if client == "naive" and workload != "longtail":
                continue
            kinds = ["bound", "feed-bound"] if client == "bound" else [client]
            cells += [Cell(plan, workload, n, k, args.seed, caps.get(k, 0.0)) for k in kinds]
    return cells


def cpu_compared(cell: Cell) -> bool:
    """Whether the CPU target compares ``cell``'s client CPU with another cell's."""
    return (
        cell.client == "edges_async"
        and cell.runs in (SMALL_N, LARGE_N)
        and cell.workload in ("longtail", "uniform")
    )


def run_cells(cells: Sequence[Cell], jobs: int, repeats: int) -> dict[Cell, Outcome]:
    """Measure every cell, each in a fresh spawned worker; the CPU-compared ones ``repeats`` times.

    The slowest to simulate go first, so that the pool stays busy to the end
    and most cells (N = 100 and N = 10,000 alike, whose CPU is compared) run
    beside another one: on this kind of VM (two vCPUs, likely hyperthreads) a
    busy sibling inflates CPU time by up to half. Workers get
    ``PYTHONHASHSEED=0`` (unless it is set): the SDK's polling order follows
    set iteration, which follows the hash seed, so with random seeds the
    delays of a cell varied by a few percent from one repeat to the next.
    """
    os.environ.setdefault("PYTHONHASHSEED", "0")  # spawned workers inherit it
    work = [c for c in cells for _ in range(repeats if cpu_compared(c) else 1)]

    def cost(cell: Cell) -> float:
        rate = 1.0 if cell.client.endswith("bound") else cell.plan.requests_per_minute
        return -(cell.runs * (2 if cell.workload == "foreign" else 1) * rate)

    work.sort(key=cost)
    measured: dict[Cell, list[Outcome]] = collections.defaultdict(list)
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes=jobs, maxtasksperchild=1) as pool:
        for done, outcome in enumerate(pool.imap_unordered(measure, work, chunksize=1), 1):
            measured[outcome.cell].append(outcome)
            if sys.stderr.isatty():
                print(f"\r{done}/{len(work)} measures", end="", file=sys.stderr)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return {cell: merged(measured[cell]) for cell in cells}


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
    trial, titanium = ea.PlanTier.TRIAL, ea.PlanTier.TITANIUM
    add("--plans", type=listed(ea.PlanTier), default=[trial, titanium])
    add("--workloads", type=listed(str), default=list(WORKLOADS), help=", ".join(WORKLOADS))
    add("--sizes", type=listed(int), default=[10, 100, 1_000, 10_000], help="numbers of runs")
    add("--foreign-plans", type=listed(ea.PlanTier), default=[trial], help="plans of 'foreign'")
    add("--clients", type=listed(str), default=["edges_async", "bound"], help=", ".join(CLIENTS))
    add("--repeats", type=int, default=3, help="measures of CPU-compared cells (median CPU)")
    add("--naive-cap-minutes", type=float, default=20.0, help="fake minutes the naive client gets")
    add("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)")
    add("--seed", type=int, default=0, help="the simulator's seed (the runs of every cell)")
    args = parser.parse_args()
    if not set(args.clients) <= set(CLIENTS):
        parser.error(f"--clients: choose among {', '.join(CLIENTS)}")
    if not set(args.workloads) <= set(WORKLOADS):
        parser.error(f"--workloads: choose among {', '.join(WORKLOADS)}")
    if min(args.sizes) < 1 or min(args.jobs, args.repeats) < 1 or args.naive_cap_minutes <= 0:
        parser.error("--sizes, --jobs, --repeats must be >= 1, --naive-cap-minutes > 0")

    started = time.perf_counter()
    cells = cells_for(args)
    print_header(args)
    print_report(Report(run_cells(cells, args.jobs, args.repeats)), cells)
    seconds = time.perf_counter() - started
    processes = f"{args.jobs} worker process{'es' if args.jobs > 1 else ''}"
    print(f"\n{len(cells)} cells in {seconds:.0f} s of real time ({processes})")


if __name__ == "__main__":
    main()
