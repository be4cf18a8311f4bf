"""One workspace, several processes: the shared budget, the shared poller, shared callbacks.

Real time, loopback, real processes. The simulator is served by uvicorn in a
process of its own (``_processes_simulator.py``, one per window kind); every
client is in a worker process (``_processes_worker.py``) tagging its requests,
so the simulator's log tells who sent what; a real ``redis-server`` runs on a
free port (``tests/redis_server.py``).

**Table.** For each window kind, plan (Trial, Bronze, Titanium), N = 1, 2, 4
processes on one workspace and mode (a) ``RedisCoordination`` or (b) the default
per-process ``WorkspaceRateLimiter``: each process has one ``AsyncClient`` with
``--tasks`` tasks looping on ``client.runs.status(uid)``. Every cell of a window
kind and mode runs at once (each cell its own workspace, an independent budget on the
simulator and in Redis): worker process *i* holds one client for every cell
with N > *i*, so a cell's N clients are always in N different processes. After
``--warmup`` seconds, ``--seconds`` are measured. *used* = accepted requests
per minute over the measured span, estimated from the accepted arrivals as
``(n - 1) / (last - first)`` (with Trial's 0.5/s a 20 s span holds ~10 of them:
counting them would move in steps of 1/10), as a share of the plan's per minute;
*429s* = every 429 of the cell, warm-up included; *shares* = each process's part
of the accepted requests, in %. Targets for (a): no 429 and used >= 0.93, in
every cell (the README's two impossible cells need 500 ms of network jitter;
loopback has none).

**Sections.** ``429``: one injected 429 (``Retry-After: 5``) among 4
coordinated Titanium processes: nothing accepted workspace-wide until it is
over. ``polling``: 1 and 4 coordinated processes (and 4 per-process ones, for
contrast) each wait for the same 1,000 runs: poll requests of 4 <= 1.05 x 1's.
``leader``: 3 coordinated processes wait for 300 runs; the one polling gets
``kill -9``: another polls within 15 s, the others notice every run.
``callbacks``: process A serves a ``CallbackReceiver`` (TLS, named
``app.example.com``) and launches 100 runs through the SDK with
``receiver.callback(...)`` (so the leader polls them as a safety net only); the
simulator ends them one every 0.2 s (more than one polling interval apart),
POSTing each final callback (from its own process) to A; process B waits with
``watch_runs``: latency from the POST starting to B's wait yielding, p50 / p99
per repeat, median of 3 repeats. ``redis``: 4 coordinated
Titanium processes, Redis killed for 10 s mid-run: no 429, at most the plan
while it is down, and the shared budget back (>= 0.93 of the plan over the 5 to
15 s after Redis answers again). The three sections before callbacks run at once
(each its simulator and workspaces); callbacks runs alone, and the table's
window kinds run at once, (a) then (b): about 4 minutes on 2 cores.

    python benchmarks/bench_processes.py [--quick] [--plans trial,titanium]
        [--windows sliding_minute] [--ns 1,4] [--modes redis,local]
        [--sections table,429,polling,leader,callbacks,redis]
        [--seconds 20] [--warmup 5] [--tasks 4] [--sequential-windows]
        [--mixed-modes] [--sequential-sections]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _processes_harness import (
    Request,
    Simulator,
    Worker,
    busy_share,
    cpu_busy,
    sleep_until,
)

import edges_async as ea
from tests.redis_server import RedisServer

TARGET_FRACTION = 0.93
PLANS = ("trial", "bronze", "titanium")
WINDOWS = ("fixed_minute", "sliding_minute", "per_second")
MODES = ("redis", "local")
SECTIONS = ("table", "429", "polling", "leader", "callbacks", "redis")
FAR = 3600.0  # a run that never ends within the benchmark
SECRET = "bench-processes-secret-0123"
# Callback URLs may not name a loopback address: the receiver is named by this
# host, which the simulator's sender (LoopbackTransport) maps to 127.0.0.1.
PUBLIC_HOST = "app.example.com"
LAUNCHES_PER_SECOND = 9.0  # a little under Titanium's 600/min x 0.95 headroom
# Longer than one polling interval of the leader (0.13 s on Titanium): each
# callback's confirming fetch finds the polling pace free, as when runs end one
# at a time; closer, they would share one request (and wait for it).
CALLBACK_SPACING = 0.15
CALLBACK_REPEATS = 3

verdicts: list[tuple[str, bool]] = []
# A section run in a thread of its own writes here, printed once it is over.
output = threading.local()


def say(text: str) -> None:
    """Print a line, or keep it for later in a section running beside others."""
    lines: list[str] | None = getattr(output, "lines", None)
    if lines is None:
        print(text, flush=True)
    else:
        lines.append(text)


def verdict(name: str, passed: bool, detail: str) -> None:
    """Print and remember one target's PASS/FAIL."""
    verdicts.append((name, passed))
    say(f"  {'PASS' if passed else 'FAIL'}  {name}: {detail}")


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def job(role: str, tag: str, base_url: str, redis_url: str, **rest: object) -> dict[str, object]:
    """A worker's job."""
    return {"role": role, "tag": tag, "base_url": base_url, "redis_url": redis_url, **rest}


# -- the table -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    """One workspace: plan, window, N processes, mode."""

    plan: str
    window: str
    n: int
    mode: str

    @property
    def api_key(self) -> str:
        """The cell's workspace key."""
        return f"bench-{self.window}-{self.plan}-{self.n}-{self.mode}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the simulator saw of one cell."""

    cell: Cell
    used: float
    refused: int
    shares: tuple[float, ...]
    accepted: int

    @property
    def passed(self) -> bool:
        """No 429 and enough of the plan used."""
        return self.refused == 0 and self.used >= TARGET_FRACTION


def outcome(cell: Cell, requests: list[Request], start: float, end: float) -> Outcome:
    """Measure one cell from the simulator's log."""
    mine = [r for r in requests if r.api_key == cell.api_key]
    accepted = sorted(
        (r.time, r.process or "?") for r in mine if r.status == 200 and start <= r.time < end
    )
    rpm = ea.PlanTier(cell.plan).requests_per_minute
    span = accepted[-1][0] - accepted[0][0] if len(accepted) > 1 else 0.0
    used = (len(accepted) - 1) / span * 60 / rpm if span > 0 else 0.0
    by_process = Counter(process for _, process in accepted)
    shares = tuple(by_process[f"p{i}"] / max(1, len(accepted)) for i in range(cell.n))
    refused = sum(1 for r in mine if r.status == 429)
    return Outcome(cell, used, refused, shares, len(accepted))


def start_cells(sim: Simulator, cells: Sequence[Cell], redis_url: str, tasks: int) -> list[Worker]:
    """Seed each cell's workspace and run; start worker i with every cell of N > i."""
    uids = {}
    for cell in cells:
        sim.workspace(cell.api_key, cell.plan)
        uids[cell] = sim.runs(cell.api_key, [FAR])[0]
    workers = []
    for i in range(max(cell.n for cell in cells)):
        mine = [
            {
                "api_key": cell.api_key,
                "plan": cell.plan,
                "coordinated": cell.mode == "redis",
                "run_uid": uids[cell],
            }
            for cell in cells
            if cell.n > i
        ]
        workers.append(
            Worker(job("load", f"p{i}", sim.base_url, redis_url, cells=mine, tasks=tasks))
        )
    return workers


def run_table(args: argparse.Namespace, redis_url: str) -> dict[Cell, Outcome]:
    """Measure every cell, one window kind at a time (or all at once)."""
    groups = [[w] for w in args.windows] if args.sequential_windows else [args.windows]
    # (b)'s refused retries share the workers' loops and the 2 cores with (a):
    # by default each mode is measured in a phase of its own.
    phases = [args.modes] if args.mixed_modes else [[m] for m in args.modes]
    outcomes: dict[Cell, Outcome] = {}
    for windows, modes in ((w, m) for w in groups for m in phases):
        started = time.monotonic()
        sims = {w: Simulator(w) for w in windows}
        cells = {
            w: [Cell(p, w, n, m) for p in args.plans for n in args.ns for m in modes]
            for w in windows
        }
        workers = [
            worker
            for w in windows
            for worker in start_cells(sims[w], cells[w], redis_url, args.tasks)
        ]
        for worker in workers:
            if worker.line() != "ready":
                raise RuntimeError("a worker did not start")
        start = time.monotonic() + args.warmup
        sleep_until(start)
        before = cpu_busy()
        end = start + args.seconds
        sleep_until(end)
        busy = busy_share(before, cpu_busy())
        for w in windows:
            requests, _ = sims[w].log()
            for cell in cells[w]:
                outcomes[cell] = outcome(cell, requests, start, end)
        for worker in workers:
            worker.stop()
        for sim in sims.values():
            sim.close()
        print(
            f"  measured {', '.join(windows)} ({', '.join(modes)}): {len(workers)} workers, "
            f"{sum(len(c) for c in cells.values())} cells at once, machine CPU busy "
            f"{busy:.0%} while measuring, {time.monotonic() - started:.0f} s",
            flush=True,
        )
    return outcomes


def cell_text(o: Outcome | None) -> str:
    """used / 429s / shares."""
    if o is None:
        return "-"
    shares = "/".join(f"{s * 100:.0f}" for s in o.shares)
    return f"{o.used:5.3f} {o.refused:4d}  {shares}"


def print_table(args: argparse.Namespace, outcomes: dict[Cell, Outcome]) -> None:
    """One table: a row per window, plan and N; (a) and (b) side by side."""
    print(
        f"\nused = accepted/min over {args.seconds:g} s measured (after {args.warmup:g} s "
        "warm-up) / plan; 429s = all, warm-up included; shares = % of accepted per process"
    )
    head = (
        f"{'window':<15} {'plan':<9} {'N':>2} | {'(a) RedisCoordination':<30} "
        "| (b) per-process limiter"
    )
    print(head)
    print(f"{'':<15} {'':<9} {'':>2} | {'used  429s  shares':<30} | used  429s  shares")
    print("-" * (len(head) + 10))
    for w in args.windows:
        for p in args.plans:
            for n in args.ns:
                a = outcomes.get(Cell(p, w, n, "redis"))
                b = outcomes.get(Cell(p, w, n, "local"))
                mark = "" if a is None or a.passed else "  <- FAIL"
                print(f"{w:<15} {p:<9} {n:>2} | {cell_text(a):<30} | {cell_text(b)}{mark}")
    coordinated = [o for o in outcomes.values() if o.cell.mode == "redis"]
    if coordinated:
        worst = min(coordinated, key=lambda o: o.used)
        refused = sum(o.refused for o in coordinated)
        met = sum(o.passed for o in coordinated)
        verdict(
            "table (a): 0 429s and used >= 0.93 in every cell",
            met == len(coordinated),
            f"{met}/{len(coordinated)} cells; {refused} 429s; worst used {worst.used:.3f} "
            f"({worst.cell.window} {worst.cell.plan} N={worst.cell.n})",
        )
    local = [o for o in outcomes.values() if o.cell.mode == "local" and o.cell.n > 1]
    if local:
        print(
            f"  (b) with N > 1, for contrast: {sum(o.refused for o in local)} 429s over "
            f"{len(local)} cells, {sum(not o.passed for o in local)} cells missing a target"
        )


# -- sections ------------------------------------------------------------------


def status_path(uid: str) -> str:
    """The status route of a run."""
    return f"/v1/runs/{uid}/status"


def section_429(sim: Simulator, redis_url: str, quick: bool) -> None:
    """4 coordinated Titanium processes; one injected 429 pauses all of them."""
    retry_after = 5
    key = "bench-429"
    sim.workspace(key, "titanium")
    uid = sim.runs(key, [FAR])[0]
    cells = [{"api_key": key, "plan": "titanium", "coordinated": True, "run_uid": uid}]
    workers = [
        Worker(job("load", f"p{i}", sim.base_url, redis_url, cells=cells, tasks=4))
        for i in range(4)
    ]
    for worker in workers:
        worker.line()
    time.sleep(5)
    sim.fault_429(uid, retry_after)
    time.sleep(retry_after + 5)
    requests, _ = sim.log()
    for worker in workers:
        worker.stop()
    mine = [r for r in requests if r.api_key == key or r.path == status_path(uid)]
    refused = [r for r in mine if r.status == 429]
    if not refused:
        verdict("one 429 pauses the workspace", False, "the fault was never hit")
        return
    hit = refused[0].time
    after = sorted(r.time for r in mine if r.status == 200 and r.time > hit)
    early = [t for t in after if t < hit + retry_after]
    in_flight = [t for t in early if t < hit + 0.05]
    gap = after[0] - hit if after else math.inf
    late = [t for t in after if t >= hit + retry_after]
    resumed = late[0] - hit if late else math.inf
    verdict(
        f"one injected 429 (Retry-After {retry_after}) -> nothing accepted for its Retry-After",
        len(early) - len(in_flight) == 0 and len(refused) == 1,
        f"{len(early)} accepted within {retry_after} s of it ({len(in_flight)} already in "
        f"flight, < 50 ms after); first accepted after {gap:.3f} s, first past the pause "
        f"{resumed:.3f} s; 429s {len(refused)} (1 injected)",
    )


def section_waits(sim: Simulator, redis_url: str, quick: bool, polling: bool, leader: bool) -> None:
    """The polling and leader-kill sections, at once (separate workspaces)."""
    rng = random.Random(0)
    count = 300 if quick else 1000
    ends = [rng.uniform(5.0, 20.0) for _ in range(count)]
    groups: dict[str, list[Worker]] = {}
    uids: dict[str, list[str]] = {}
    plan = "titanium"
    layouts = []
    if polling:
        layouts += [
            ("poll-1-redis", 1, True),
            ("poll-4-redis", 4, True),
            ("poll-4-local", 4, False),
        ]
    if leader:
        layouts.append(("leader", 3, True))
    for key, n, coordinated in layouts:
        sim.workspace(key, plan)
        if key == "leader":
            uids[key] = sim.runs(key, [rng.uniform(5.0, 40.0) for _ in range(300)])
        else:
            uids[key] = sim.runs(key, ends)
        groups[key] = [
            Worker(
                job(
                    "wait",
                    f"{key}-{i}",
                    sim.base_url,
                    redis_url,
                    api_key=key,
                    plan=plan,
                    coordinated=coordinated,
                    uids=uids[key],
                )
            )
            for i in range(n)
        ]
    for workers in groups.values():
        for worker in workers:
            worker.line()
    killed: tuple[str, float] | None = None
    if leader:
        time.sleep(8)
        requests, _ = sim.log()
        recent = Counter(
            r.process
            for r in requests
            if r.api_key == "leader"
            and r.time > time.monotonic() - 3
            and r.path.startswith("/v1/runs")
        )
        if recent:
            tag = recent.most_common(1)[0][0]
            victim = next(w for w in groups["leader"] if w.tag == tag)
            victim.kill()
            killed = (victim.tag, time.monotonic())
    noticed: dict[str, list[dict[str, float] | None]] = {}
    for key, workers in groups.items():
        noticed[key] = [
            None if killed and w.tag == killed[0] else w.result()["noticed"] for w in workers
        ]
    requests, _ = sim.log()

    def polls(key: str) -> int:
        return sum(1 for r in requests if r.api_key == key and r.path.startswith("/v1/runs"))

    if polling:
        one, four, local = polls("poll-1-redis"), polls("poll-4-redis"), polls("poll-4-local")
        complete = all(
            result is not None and len(result) == count
            for key in ("poll-1-redis", "poll-4-redis")
            for result in noticed[key]
        )
        verdict(
            f"4 processes waiting for the same {count:,} runs: polls <= 1.05 x 1 process's",
            four <= 1.05 * one and complete,
            f"4 coordinated: {four:,} poll requests, 1 process: {one:,} ({four / one:.2f} x); "
            f"4 per-process (no Redis): {local:,} ({local / one:.2f} x); every wait "
            f"{'complete' if complete else 'INCOMPLETE'}",
        )
    if leader:
        if killed is None:
            verdict("kill -9 of the leader: takeover <= 15 s", False, "no leader found polling")
            return
        tag, at = killed
        later = sorted(
            r.time
            for r in requests
            if r.api_key == "leader"
            and r.process != tag
            and r.path.startswith("/v1/runs")
            and r.time > at
        )
        takeover = later[0] - at if later else math.inf
        survivors = [result for result in noticed["leader"] if result is not None]
        lost = sum(300 - len(result) for result in survivors)
        verdict(
            "kill -9 of the leader: another polls within 15 s, no wait lost",
            takeover <= 15 and lost == 0,
            f"leader {tag} killed; first poll by another {takeover:.1f} s later; "
            f"{len(survivors)} survivors noticed {sum(len(r) for r in survivors)}/"
            f"{300 * len(survivors)} runs",
        )


@dataclass(frozen=True, slots=True)
class Tls:
    """A CA the simulator's callback sender trusts, and the receiver's certificate."""

    trust_pem: str
    cert_pem: str

    @classmethod
    def make(cls, folder: str) -> Tls:
        """Write both PEM files into ``folder``."""
        ca = trustme.CA()
        tls = cls(f"{folder}/ca.pem", f"{folder}/receiver.pem")
        ca.cert_pem.write_to_path(tls.trust_pem)
        cert = ca.issue_cert(PUBLIC_HOST, "127.0.0.1")
        cert.private_key_and_cert_chain_pem.write_to_path(tls.cert_pem)
        return tls


@dataclass(frozen=True, slots=True)
class CallbackRun:
    """One repeat of the callbacks section."""

    delays: list[float]  # ms, POST started -> B yields
    count: int
    early: int  # runs whose callback came before B waited (not measured)
    polls: int  # status requests while B waited (the leader's safety net)


def callbacks_once(
    sim: Simulator, redis_url: str, tls: Tls, key: str, count: int, *, alone: bool = False
) -> CallbackRun:
    """A launches ``count`` runs with callbacks to itself; they end one at a time; B waits.

    ``alone``: the baseline, one process without Redis that receives and waits.
    """
    sim.workspace(key, "titanium")
    coordinated = {"api_key": key, "plan": "titanium", "coordinated": not alone}
    receiver = Worker(
        job(
            "receive",
            "A",
            sim.base_url,
            redis_url,
            **coordinated,
            secret=SECRET,
            certfile=tls.cert_pem,
            public_host=PUBLIC_HOST,
            wait_here=alone,
        )
    )
    waiter = None if alone else Worker(job("wait", "B", sim.base_url, redis_url, **coordinated))
    try:
        receiver.line()
        if waiter is not None:
            waiter.line()
        # Launches go at the plan's pace (9.5/s on Titanium); the first run
        # ends 2 s after the last launch, then one every CALLBACK_SPACING s.
        first = time.monotonic() + count / LAUNCHES_PER_SECOND + 2.0
        sim.end_launches_at([first + CALLBACK_SPACING * i for i in range(count)])
        receiver.send(json.dumps(count))
        uids: list[str] = json.loads(receiver.line())
        if waiter is not None:
            waiter.send(json.dumps(uids))
            result = waiter.result()
        else:
            result = json.loads(receiver.line())
    finally:
        receiver.stop()
        if waiter is not None and waiter.process.poll() is None:
            waiter.kill()
    noticed: dict[str, float] = result["noticed"]
    since: float = result["since"]
    requests, deliveries = sim.log()
    sent = {d.run_uid: d.time for d in deliveries if d.attempt == 1 and d.status == "SUCCEEDED"}
    measured = [uid for uid in uids if uid in noticed and sent.get(uid, -math.inf) > since]
    polls = sum(
        1
        for r in requests
        if r.api_key == key and r.path.startswith("/v1/runs") and r.time >= since
    )
    return CallbackRun(
        [(noticed[uid] - sent[uid]) * 1000 for uid in measured],
        count,
        sum(1 for uid in uids if uid in sent and sent[uid] <= since),
        polls,
    )


def section_callbacks(sim: Simulator, redis_url: str, quick: bool, tls: Tls) -> None:
    """Process A launches runs with callbacks to its receiver; process B waits for them."""
    count = 40 if quick else 100
    runs = []
    for repeat in range(CALLBACK_REPEATS):
        run = callbacks_once(sim, redis_url, tls, f"bench-callbacks-{repeat}", count)
        runs.append(run)
        say(
            f"    repeat {repeat + 1}: {len(run.delays)}/{count} runs measured ({run.early} "
            f"ended before B waited); POST started -> B yields: p50 "
            f"{percentile(run.delays, 0.5):.1f} ms, p99 {percentile(run.delays, 0.99):.1f} ms, "
            f"max {max(run.delays, default=math.nan):.1f} ms; {run.polls} status requests "
            "while B waited"
        )
    alone = []
    for repeat in range(CALLBACK_REPEATS):
        run = callbacks_once(sim, redis_url, tls, f"bench-alone-{repeat}", count, alone=True)
        alone.append(run)
        say(
            f"    baseline {repeat + 1}, one process without Redis (receives and waits): p50 "
            f"{percentile(run.delays, 0.5):.1f} ms, p99 {percentile(run.delays, 0.99):.1f} ms"
        )
    p50 = statistics.median(percentile(run.delays, 0.5) for run in runs)
    p99 = statistics.median(percentile(run.delays, 0.99) for run in runs)
    alone_p50 = statistics.median(percentile(run.delays, 0.5) for run in alone)
    alone_p99 = statistics.median(percentile(run.delays, 0.99) for run in alone)
    say(
        f"  (what coordination adds, same workload, medians: p50 +{p50 - alone_p50:.1f} ms, "
        f"p99 +{p99 - alone_p99:.1f} ms over one process's {alone_p50:.1f} / {alone_p99:.1f} ms)"
    )
    complete = all(len(run.delays) == count for run in runs)
    verdict(
        "a callback taken by process A wakes a waiter in process B: p99 < 10 ms",
        complete and p99 < 10,
        f"medians over {CALLBACK_REPEATS} repeats of {count} runs launched by A with "
        f"receiver.callback(...), one ending every {CALLBACK_SPACING:g} s: p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms; every run measured: {'yes' if complete else 'NO'}",
    )


def section_redis(sim: Simulator, quick: bool) -> None:
    """4 coordinated Titanium processes; Redis killed for 10 s, then back."""
    redis = RedisServer()
    redis.start()
    key = "bench-redis-down"
    sim.workspace(key, "titanium")
    uid = sim.runs(key, [FAR])[0]
    cells = [{"api_key": key, "plan": "titanium", "coordinated": True, "run_uid": uid}]
    workers = [
        Worker(job("load", f"p{i}", sim.base_url, redis.url, cells=cells, tasks=4))
        for i in range(4)
    ]
    try:
        for worker in workers:
            worker.line()
        time.sleep(10)
        down = time.monotonic()
        redis.stop(kill=True)
        time.sleep(10)
        redis.start()
        up = time.monotonic()
        time.sleep(15)
        requests, _ = sim.log()
        health = [worker.stop()["health"] for worker in workers]
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.kill()
        redis.stop()
    mine = [r for r in requests if r.api_key == key]
    refused = sum(1 for r in mine if r.status == 429)
    rpm = ea.PlanTier.TITANIUM.requests_per_minute

    def rate(start: float, stop: float) -> float:
        accepted = sum(1 for r in mine if r.status == 200 and start <= r.time < stop)
        return accepted / (stop - start) * 60 / rpm

    back = [
        min((t for t, healthy in changes if healthy and t >= up), default=math.inf)
        for changes in health
    ]
    went_down = sum(any(not healthy for _, healthy in changes) for changes in health)
    resumed = max(back) - up
    before, during, after = rate(down - 10, down), rate(down, up), rate(up + 5, up + 15)
    verdict(
        "Redis killed 10 s: within the plan while down, >= 0.93 of it 5-15 s after it is back",
        refused == 0 and during <= 1.0 and after >= TARGET_FRACTION,
        f"429s {refused}; used before {before:.3f}, while down {during:.3f}, 0-5 s after "
        f"{rate(up, up + 5):.3f}, 5-15 s after {after:.3f} of the plan; {went_down}/4 "
        f"processes saw Redis fail; back on Redis {resumed:.2f} s after it answered "
        f"(each: {', '.join(f'{b - up:.2f}' for b in back)} s)",
    )


# -- main ----------------------------------------------------------------------


def with_simulator(body: Callable[[Simulator], None], options: dict[str, str]) -> None:
    """Run ``body`` with a simulator (sliding_minute) of its own."""
    sim = Simulator("sliding_minute", options)
    try:
        body(sim)
    finally:
        sim.close()


def run_sections(args: argparse.Namespace, rest: list[str], redis_url: str) -> None:
    """429, polling/leader and redis at once (each its simulator); then callbacks alone.

    The callbacks section measures milliseconds: it runs with nothing beside it.
    """
    parts: list[tuple[str, Callable[[Simulator], None]]] = []
    if "429" in rest:
        parts.append(("429", lambda sim: section_429(sim, redis_url, args.quick)))
    if "polling" in rest or "leader" in rest:
        polling, leader = "polling" in rest, "leader" in rest
        parts.append(
            ("waits", lambda sim: section_waits(sim, redis_url, args.quick, polling, leader))
        )
    if "redis" in rest:
        parts.append(("redis", lambda sim: section_redis(sim, args.quick)))
    if args.sequential_sections:
        for _, body in parts:
            with_simulator(body, {})
    elif parts:
        started = time.monotonic()
        buffers: dict[str, list[str]] = {}
        errors: list[BaseException] = []

        def run(name: str, body: Callable[[Simulator], None]) -> None:
            output.lines = buffers[name] = []
            try:
                with_simulator(body, {})
            except BaseException as exc:  # reported once every section is over
                errors.append(exc)

        threads = [threading.Thread(target=run, args=part) for part in parts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for name, _ in parts:
            for line in buffers[name]:
                print(line, flush=True)
        print(
            f"  ({', '.join(name for name, _ in parts)} at once: "
            f"{time.monotonic() - started:.0f} s)",
            flush=True,
        )
        if errors:
            raise errors[0]
    if "callbacks" in rest:
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as folder:
            tls = Tls.make(folder)
            options = {"public_host": PUBLIC_HOST, "trust_pem": tls.trust_pem}
            with_simulator(lambda sim: section_callbacks(sim, redis_url, args.quick, tls), options)
        print(f"  (callbacks alone: {time.monotonic() - started:.0f} s)", flush=True)


def subset(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: comma-separated values among ``allowed``."""

    def convert(text: str) -> list[str]:
        values = [item.strip() for item in text.split(",")]
        for value in values:
            if value not in allowed:
                raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(allowed)}")
        return values

    return convert


def main() -> int:
    """Parse the command line, run the table and the sections, print PASS/FAIL."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--plans", type=subset(PLANS), default=list(PLANS))
    parser.add_argument("--windows", type=subset(WINDOWS), default=list(WINDOWS))
    parser.add_argument("--ns", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    parser.add_argument("--modes", type=subset(MODES), default=list(MODES))
    parser.add_argument("--sections", type=subset(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--seconds", type=float, default=20.0, help="measured per table cell")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--tasks", type=int, default=4, help="tasks per client")
    parser.add_argument(
        "--sequential-windows", action="store_true", help="one window kind's cells at a time"
    )
    parser.add_argument(
        "--sequential-sections",
        action="store_true",
        help="429, polling/leader and redis one after another (else at once)",
    )
    parser.add_argument(
        "--mixed-modes", action="store_true", help="(a) and (b) cells at once (CPU contention)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="sliding_minute only, 15 s cells, fewer runs"
    )
    args = parser.parse_args()
    if args.quick:
        args.windows, args.seconds, args.warmup = ["sliding_minute"], 15.0, 5.0
    started = time.monotonic()
    print("command: python benchmarks/bench_processes.py " + " ".join(sys.argv[1:]), flush=True)
    redis = RedisServer()
    redis.start()
    try:
        if "table" in args.sections:
            print_table(args, run_table(args, redis.url))
        rest = [s for s in args.sections if s != "table"]
        if rest:
            print("\nsections (simulator: sliding_minute; Titanium):", flush=True)
            run_sections(args, rest, redis.url)
    finally:
        redis.stop()
    failed = [name for name, passed in verdicts if not passed]
    print(
        f"\n{len(verdicts) - len(failed)}/{len(verdicts)} targets met; "
        f"{time.monotonic() - started:.0f} s wall",
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
