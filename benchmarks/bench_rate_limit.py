"""How much of the plan's rate limit each client uses, and how many 429s it draws.

For every plan, server window kind (``WindowKind.FIXED_MINUTE``,
``SLIDING_MINUTE``, ``PER_SECOND``) and network delay jitter, 100 tasks share
one client and loop on ``client.runs.status(uid)`` against the in-process
simulator for a 1-minute warm-up plus 10 measured minutes of fake time. Each
cell runs four clients, all the SDK's ``AsyncClient`` retrying a refused
request after its ``Retry-After`` as it does, with different limiters:

- ``edges_async``: the SDK's default limiter (``limiter=None``), which also
  pauses every other task after a 429 and slows down;
- ``naive aiolimiter``: ``aiolimiter.AsyncLimiter(rpm, 60)``, feedback ignored;
- ``even aiolimiter``: ``aiolimiter.AsyncLimiter(1, 60 / rate)``, one request
  every ``60 / rate`` seconds at the SDK's rate (``rate`` = 0.95 x rpm), feedback
  ignored: aiolimiter has no public way to pause or slow down after a 429;
- ``no limiter, retry on 429``: a limiter that never waits.

The jitter delays every request and every response by an independent random
one-way delay, uniform in [0, jitter]. Each cell runs on a fresh event loop
with a fake clock (``benchmarks/_fake_time.py``), so results do not depend on
the machine's speed, and the same arguments give the same table.

    python benchmarks/bench_rate_limit.py [--plans trial,titanium] [--windows per_second]
        [--jitters 0,50,500] [--clients edges_async,aiolimiter,aiolimiter-even,no-limiter]
        [--minutes 10] [--warmup 1] [--tasks 100] [--jobs <cores>]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import os
import random
import sys
import textwrap
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TypeVar

import anyio
import httpx
from _fake_time import run_in_fake_time
from aiolimiter import AsyncLimiter

import edges_async as ea
from edges_async.testing import EdgesSimulator, NoRateLimit, WindowKind

API_KEY = "bench-key"
SIM_START = datetime(2026, 11, 2, 9, 0, 0, tzinfo=timezone.utc)
# The simulator always sends Retry-After (1 s or more), which the SDK honours
# instead of its exponential backoff: a request that never gives up keeps the
# load saturating, so the retry budget is effectively unlimited.
MAX_RETRIES = 10_000
# The share of the plan the SDK's default WorkspaceRateLimiter uses; the even
# aiolimiter baseline gets the same, so the two differ only in how they pace.
SDK_HEADROOM = 0.95
TARGET_FRACTION = 0.93
WINDOWS = (WindowKind.FIXED_MINUTE, WindowKind.SLIDING_MINUTE, WindowKind.PER_SECOND)
JITTERS_MS = (0, 50, 500)

T = TypeVar("T")


# -- the clients under test ----------------------------------------------------


class NaiveAiolimiter:
    """``AsyncLimiter(rpm, 60)``: the plan's minute as one leaky bucket; learns nothing."""

    __slots__ = ("_limiter",)

    def __init__(self, per_minute: int) -> None:
        # Built inside the cell's running loop: aiolimiter binds to one loop.
        self._limiter = AsyncLimiter(per_minute, 60)

    async def acquire(self, request: httpx.Request) -> None:
        """Wait for room in the bucket."""
        await self._limiter.acquire()

    def feedback(self, request: httpx.Request, response: httpx.Response | None) -> None:
        """Ignore the server's answer."""


class EvenAiolimiter:
    """``AsyncLimiter(1, 60 / rate)``: one request per interval, at the SDK's rate; learns nothing.

    A one-token bucket never bursts, so this is aiolimiter written for a plan
    whose per-second cap forbids bursts, at the same 95 % of the plan as the
    SDK. Its rate is fixed at construction, and it offers no public way to
    pause every task after a 429: only the refused task waits ``Retry-After``
    (the client's retry), while the bucket keeps letting the others through.
    """

    __slots__ = ("_limiter",)

    def __init__(self, per_minute: int) -> None:
        # Built inside the cell's running loop: aiolimiter binds to one loop.
        self._limiter = AsyncLimiter(1, 60 / (per_minute * SDK_HEADROOM))

    async def acquire(self, request: httpx.Request) -> None:
        """Wait for the next interval."""
        await self._limiter.acquire()

    def feedback(self, request: httpx.Request, response: httpx.Response | None) -> None:
        """Ignore the server's answer."""


def limiter_for(client: str, plan: ea.PlanTier) -> ea.RateLimiter | None:
    """The limiter ``client`` is built with; ``None`` leaves the SDK its default."""
    if client == "aiolimiter":
        return NaiveAiolimiter(plan.requests_per_minute)
    if client == "aiolimiter-even":
        return EvenAiolimiter(plan.requests_per_minute)
    if client == "no-limiter":
        return NoRateLimit()
    return None


# CLI name -> column title, in table order.
CLIENTS: dict[str, str] = {
    "edges_async": "edges_async",
    "aiolimiter": "naive aiolimiter",
    "aiolimiter-even": "even aiolimiter",
    "no-limiter": "no limiter, retry on 429",
}


# -- the network ---------------------------------------------------------------


class JitteredTransport(httpx.AsyncBaseTransport):
    """Delays each request, then each response, by a random one-way delay in [0, jitter] s.

    The two directions draw from independent seeded generators: the n-th
    request and the n-th response of a row get the same delays whichever
    client sends them. The sleeps are on the event loop, so fake time applies.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, jitter: float, seed: int) -> None:
        self._inner = inner
        self._jitter = jitter
        self._outbound = random.Random(seed)
        self._inbound = random.Random(seed + 1)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Carry ``request`` to the simulator and its response back, each way delayed."""
        if self._jitter > 0:
            await anyio.sleep(self._outbound.uniform(0.0, self._jitter))
        response = await self._inner.handle_async_request(request)
        if self._jitter > 0:
            await anyio.sleep(self._inbound.uniform(0.0, self._jitter))
        return response

    async def aclose(self) -> None:
        """Close the simulator's transport."""
        await self._inner.aclose()


# -- one cell ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    """One measurement: a client against one plan, window kind and jitter."""

    plan: ea.PlanTier
    window: WindowKind
    jitter_ms: int
    client: str
    tasks: int
    warmup: float
    """Seconds of fake time before the measured span."""
    measured: float
    """Seconds of fake time measured."""

    @property
    def seed(self) -> int:
        """The same seed for every client of a row, so they meet the same network."""
        return zlib.crc32(f"{self.plan.value}/{self.window.value}/{self.jitter_ms}".encode())


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the server saw of one cell, and what it cost to simulate."""

    cell: Cell
    accepted: int
    """200s answered to requests that arrived within the measured span."""
    refused: int
    """429s answered over the whole run, warm-up included."""
    refused_in_warmup: int
    gave_up: int
    """Requests that ran out of retries (``RateLimitError``): should stay 0."""
    real_seconds: float

    @property
    def fraction(self) -> float:
        """Accepted requests per minute as a fraction of the plan's requests per minute."""
        minutes = self.cell.measured / 60
        return self.accepted / (minutes * self.cell.plan.requests_per_minute)

    @property
    def passed(self) -> bool:
        """Whether the cell meets both targets: no 429 at all, and enough of the plan used."""
        return self.refused == 0 and self.fraction >= TARGET_FRACTION


def best_clean_fraction(plan: ea.PlanTier, window: WindowKind, jitter_ms: int) -> float | None:
    """The most of the plan any client can use without a single 429, where jitter caps it.

    Only the ``PER_SECOND`` window caps it, on plans of at most one request per
    second: the simulator's bucket then holds a single token, so two accepted
    requests must *arrive* ``1 / rps`` apart, while each arrives an unseen
    delay in [0, jitter] after it was sent. A client sure never to be refused
    sends each request ``1 / rps`` after the latest moment the previous one
    can have arrived: ``min(sent + jitter, response received)``, which with
    uniform delays is on average ``5/6 * jitter`` after it was sent. ``None``
    where nothing but the plan's rate caps a client.
    """
    rps = plan.requests_per_second
    if window is not WindowKind.PER_SECOND or rps > 1 or jitter_ms == 0:
        return None
    interval = 1 / rps
    return interval / (interval + 5 / 6 * jitter_ms / 1000)


def infeasible(cell: Cell) -> bool:
    """Whether no client at all can meet both targets in ``cell``'s row."""
    best = best_clean_fraction(cell.plan, cell.window, cell.jitter_ms)
    return best is not None and best < TARGET_FRACTION


async def saturate(cell: Cell) -> Outcome:
    """Run ``cell.tasks`` pollers on one client until the measured span ends; read the log."""
    started = time.perf_counter()
    sim = EdgesSimulator(window=cell.window, start_time=SIM_START, seed=cell.seed)
    workspace = sim.add_workspace(api_key=API_KEY, plan=cell.plan)
    # The run's creation is the simulator clock's first reading, where its
    # fixed minutes start: the measured span is whole fixed minutes.
    origin = anyio.current_time()
    run = sim.add_run(workspace)
    measure_from = origin + cell.warmup
    measure_to = measure_from + cell.measured
    gave_up = 0

    async def poll(client: ea.AsyncClient) -> None:
        """One status request, retried by the client; count it if it runs out of retries."""
        nonlocal gave_up
        try:
            await client.runs.status(run.uid)
        except ea.RateLimitError:
            gave_up += 1

    async def poll_forever(client: ea.AsyncClient) -> None:
        """Poll until cancelled at the end of the measured span."""
        while True:
            await poll(client)

    transport = JitteredTransport(sim.transport(), cell.jitter_ms / 1000, cell.seed)
    async with (
        httpx.AsyncClient(transport=transport) as http,
        ea.AsyncClient(
            API_KEY,
            plan=cell.plan,
            http_client=http,
            limiter=limiter_for(cell.client, cell.plan),
            max_retries=MAX_RETRIES,
            backoff=ea.Backoff(rng=random.Random(cell.seed)),
        ) as client,
        anyio.create_task_group() as group,
    ):
        for _ in range(cell.tasks):
            group.start_soon(poll_forever, client)
        await anyio.sleep_until(measure_to)
        group.cancel_scope.cancel()

    accepted = refused = refused_in_warmup = 0
    for request in sim.requests:
        if request.status_code == 200 and measure_from <= request.time < measure_to:
            accepted += 1
        elif request.status_code == 429:
            refused += 1
            refused_in_warmup += request.time < measure_from
    return Outcome(
        cell, accepted, refused, refused_in_warmup, gave_up, time.perf_counter() - started
    )


def measure(cell: Cell) -> Outcome:
    """Measure one cell on its own fake-time event loop (also the worker-process entry point)."""
    # One warning per retry is the SDK's right behaviour, and thousands of
    # them here: keep them off the terminal (and out of the timings).
    logging.getLogger("edges_async").setLevel(logging.ERROR)
    return run_in_fake_time(lambda: saturate(cell))


# -- the table -----------------------------------------------------------------


def cell_text(outcome: Outcome) -> str:
    """One client's entry in a row: fraction used, 429s, and a mark when a target is missed."""
    mark = "" if outcome.passed else "FAIL"
    return f"{outcome.fraction:>6.3f} {outcome.refused:>6} {mark}"


def table_line(lead: str, entries: Sequence[str], widths: Sequence[int]) -> str:
    """A table line: the row's lead, then one padded entry per client."""
    return (lead + "".join(f" | {e:<{w}}" for e, w in zip(entries, widths, strict=True))).rstrip()


def where(cell: Cell) -> str:
    """A cell's row, in words; ``*`` when no client can meet both targets there."""
    return f"{cell.plan.value} {cell.window.value} {cell.jitter_ms} ms" + (
        "*" if infeasible(cell) else ""
    )


def print_report(
    outcomes: dict[Cell, Outcome],
    rows: Sequence[tuple[ea.PlanTier, WindowKind, int]],
    clients: Sequence[str],
    args: argparse.Namespace,
) -> None:
    """Print the header, the table (one row per plan, window and jitter) and the summaries."""
    print(
        f"GET /v1/runs/{{uid}}/status from {args.tasks} tasks sharing one client, "
        "simulator in-process, fake time\n"
        f"per cell: {args.warmup:g} min warm-up (not measured), then {args.minutes:g} min "
        "measured; network delay uniform in [0, jitter] each way\n"
        "used = requests the server accepted (200) in the measured span, per minute, "
        "/ the plan's requests per minute\n"
        "429s = every 429 the server answered, warm-up included\n"
        f"targets: 0 429s and used >= {TARGET_FRACTION} in every cell (FAIL marks a miss)\n"
    )
    titles = [CLIENTS[name] for name in clients]
    widths = [max(len("0.000 000000 FAIL"), len(title)) for title in titles]
    lead = f"{'plan':<9} {'window':<15} {'jitter':>8}"
    print(table_line(" " * len(lead), titles, widths))
    print(table_line(lead, [f"{'used':>6} {'429s':>6}"] * len(clients), widths))
    print("-" * (len(lead) + sum(w + 3 for w in widths)))
    for index, (plan, window, jitter_ms) in enumerate(rows):
        if index and rows[index - 1][0] is not plan:
            print()
        entries = [outcomes[cell_for(plan, window, jitter_ms, name, args)] for name in clients]
        mark = "*" if infeasible(entries[0].cell) else " "
        row_lead = f"{plan.value:<9} {window.value:<15} {jitter_ms:>4} ms{mark}"
        print(table_line(row_lead, [cell_text(o) for o in entries], widths))
    bounds = {
        (plan, jitter_ms): best_clean_fraction(plan, window, jitter_ms)
        for plan, window, jitter_ms in rows
        if infeasible(cell_for(plan, window, jitter_ms, clients[0], args))
    }
    if bounds:
        note = (
            "* no client can meet both targets: with the per_second window these plans' "
            "bucket holds one token, so accepted requests must arrive 1/rps apart, and a "
            "client that is never refused must leave room for the unseen network delay; "
            "the best such client uses at most "
            + ", ".join(f"{b:.2f} ({p.value}, {j} ms)" for (p, j), b in bounds.items())
            + " of the plan."
        )
        print("\n" + textwrap.fill(note, width=100, subsequent_indent="  "))
    print()
    for name, title in zip(clients, titles, strict=True):
        mine = [o for o in outcomes.values() if o.cell.client == name]
        worst = min(mine, key=lambda o: o.fraction)
        misses = [o for o in mine if not o.passed]
        in_starred = sum(infeasible(o.cell) for o in misses)
        gave_up = sum(o.gave_up for o in mine)
        indent = " " * 27
        print(
            f"{title + ':':<26} {len(mine) - len(misses)}/{len(mine)} cells meet both targets"
            + (
                f" ({in_starred} of the {len(misses)} misses in * rows)"
                if bounds and misses
                else ""
            )
        )
        print(
            f"{indent}worst used {worst.fraction:.3f} ({where(worst.cell)}); "
            f"{sum(o.refused for o in mine)} 429s, {sum(o.refused_in_warmup for o in mine)} "
            "of them in warm-ups"
            + (f"; {gave_up} requests ran out of retries" if gave_up else "")
            + f"; {sum(o.real_seconds for o in mine):.0f} s real"
        )
        if 0 < len(misses) <= 6 and len(misses) < len(mine):
            print(f"{indent}missed: " + ", ".join(where(o.cell) for o in misses))


def cell_for(
    plan: ea.PlanTier, window: WindowKind, jitter_ms: int, client: str, args: argparse.Namespace
) -> Cell:
    """The cell for one row and client, with the run's load and durations."""
    return Cell(plan, window, jitter_ms, client, args.tasks, args.warmup * 60, args.minutes * 60)


# -- running it ----------------------------------------------------------------


def run_cells(cells: Sequence[Cell], jobs: int) -> Iterator[Outcome]:
    """Measure every cell, in this process or spread over ``jobs`` worker processes."""
    if jobs <= 1:
        outcomes: Iterator[Outcome] = map(measure, cells)
        for done, outcome in enumerate(outcomes, 1):
            show_progress(done, len(cells))
            yield outcome
        return
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        for done, outcome in enumerate(pool.map(measure, cells), 1):
            show_progress(done, len(cells))
            yield outcome


def show_progress(done: int, total: int) -> None:
    """Count the cells measured so far on the terminal (not when stderr is redirected)."""
    if sys.stderr.isatty():
        end = "\n" if done == total else ""
        print(f"\r{done}/{total} cells measured", end=end, file=sys.stderr, flush=True)


def subset(parse: Callable[[str], T], allowed: Sequence[T] | None) -> Callable[[str], list[T]]:
    """An argparse type: comma-separated values (among ``allowed``, if given), in order."""

    def convert(text: str) -> list[T]:
        values = []
        for item in text.split(","):
            try:
                value = parse(item.strip())
            except ValueError:
                raise argparse.ArgumentTypeError(f"{item.strip()!r} is not valid") from None
            if allowed is not None and value not in allowed:
                raise argparse.ArgumentTypeError(f"{item.strip()!r} is not one of {allowed}")
            values.append(value)
        return values

    return convert


def milliseconds(text: str) -> int:
    """A jitter in whole milliseconds, zero or more."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def main() -> None:
    """Parse the command line, measure every cell and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    plans = list(ea.PlanTier)
    parser.add_argument(
        "--plans", type=subset(ea.PlanTier, plans), default=plans, help="default: all 7"
    )
    parser.add_argument(
        "--windows",
        type=subset(WindowKind, WINDOWS),
        default=list(WINDOWS),
        help="among " + ", ".join(w.value for w in WINDOWS),
    )
    parser.add_argument(
        "--jitters",
        type=subset(milliseconds, None),
        default=list(JITTERS_MS),
        help="network delay jitters in ms (default: 0,50,500)",
    )
    parser.add_argument(
        "--clients",
        type=subset(str, list(CLIENTS)),
        default=list(CLIENTS),
        help="among " + ", ".join(CLIENTS),
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="measured fake minutes")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured fake minutes first")
    parser.add_argument("--tasks", type=int, default=100, help="concurrent pollers per client")
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per core; the table is the same)",
    )
    args = parser.parse_args()
    if args.minutes <= 0 or args.warmup < 0 or args.tasks < 1:
        parser.error("--minutes must be > 0, --warmup >= 0 and --tasks >= 1")

    rows = [(p, w, j) for p in args.plans for w in args.windows for j in args.jitters]
    cells = [cell_for(*row, client, args) for row in rows for client in args.clients]
    started = time.perf_counter()
    outcomes = {outcome.cell: outcome for outcome in run_cells(cells, args.jobs)}
    print_report(outcomes, rows, args.clients, args)
    print(
        f"\n{len(cells)} cells in {time.perf_counter() - started:.0f} s of real time "
        f"({args.jobs} process{'es' if args.jobs > 1 else ''})"
    )


if __name__ == "__main__":
    main()
