"""Reading a million run outputs: the SDK's pagination against a plain httpx loop.

One finished run with ``--outputs`` outputs (1,000,000: 2,000 pages of 500) is
served by the simulator (rate limit off) with uvicorn on a loopback port, in a
process of its own so its CPU and memory stay apart from the client's. Each
client variant then runs in a fresh process of its own:

- ``(a)`` the SDK, item by item: ``client.runs.outputs(run_uid, page_size=500)``;
- ``(b)`` the loop a user would write with httpx: GET
  ``{base}/runs/{uid}/outputs?limit=500`` with ``X-API-Key``, ``response.json()``,
  then the full URL in ``X-Pagination-Next`` until it is absent;
- ``(c)`` a consumer that writes each page to a slow sink, once on the SDK with
  ``client.runs.output_pages(run_uid, page_size=500, read_ahead=1)`` and once on
  the loop of (b). The sink stands for a batch insert into a remote database:
  ``await anyio.sleep(--consumer-delay-ms / 1000)`` per page, a round trip that
  costs this process no CPU, so fetching the next page can overlap it.

Every variant checks that it saw exactly the run's outputs, ``index`` 0, 1, 2...
in order, and fails loudly otherwise. The SDK uses a no-op limiter (the server's
limit is off; this measures pagination, not pacing). Before timing, each
variant makes one ``/status`` request, so the connection is open and lazy
imports are done; then it reads its RSS. Peak RSS growth is the process's
``ru_maxrss`` after the last page minus that RSS. The variants run one after
the other, alternating (each round starting with the next one), for
``--rounds`` rounds: the table shows each one's best round (its wall time, and
the CPU seconds the client and the server process spent in it), its slowest
round's time (the spread is the machine's noise) and its largest RSS growth.

Targets: (a) takes at most 1.15x the time of (b); the SDK variants grow peak
RSS by less than 100 MB; with the slow sink, the SDK with read-ahead is faster
than the plain loop.

    python benchmarks/bench_outputs.py [--outputs 1000000] [--page-size 500]
        [--rounds 3] [--consumer-delay-ms 5]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import httpx

import edges_async as ea
from edges_async.testing import EdgesSimulator, NoRateLimit, RunScript, WindowKind

API_KEY = "bench-key"
SIM_SEED = 0
RATIO_TARGET = 1.15
RSS_TARGET_MB = 100.0
VARIANTS: dict[str, str] = {
    "sdk": "(a) SDK outputs()",
    "httpx": "(b) plain httpx loop",
    "sdk-read-ahead-sink": "(c) SDK read_ahead=1 + sink",
    "httpx-sink": "(c) plain httpx + sink",
}
SDK_VARIANTS = ("sdk", "sdk-read-ahead-sink")


class OutOfOrder(Exception):
    """Raised when a variant sees an output other than the next expected one."""


# -- the server process ------------------------------------------------------


async def serve(outputs: int) -> None:
    """Serve one finished run of ``outputs`` outputs; print its base URL and uid as JSON.

    Runs until the parent terminates this process (uvicorn stops on SIGTERM)
    or closes its stdin, so an orphaned server does not linger.
    """
    sim = EdgesSimulator(seed=SIM_SEED, window=WindowKind.UNLIMITED)
    workspace = sim.add_workspace(api_key=API_KEY, plan="titanium")
    run = sim.add_run(workspace, script=RunScript(steps=(("SUCCEEDED", 0.0),), outputs=outputs))
    async with sim.serve(port=0) as base_url:
        print(json.dumps({"base_url": base_url, "run_uid": run.uid}), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)


def cpu_seconds_of(pid: int) -> float | None:
    """User + system CPU seconds process ``pid`` has used so far (``None`` off Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the client processes ----------------------------------------------------


def current_rss_kib() -> int:
    """This process's resident set size now, in KiB (its peak so far off Linux)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        return peak_rss_kib()
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def peak_rss_kib() -> int:
    """This process's peak resident set size, in KiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cpu_seconds() -> float:
    """User + system CPU seconds this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def check_items(items: Iterable[dict[str, Any]], expected: int) -> int:
    """Check the items carry indexes ``expected``, ``expected + 1``...; return the next one."""
    for item in items:
        if item.get("index") != expected:
            raise OutOfOrder(f"expected output {expected}, got index {item.get('index')!r}")
        expected += 1
    return expected


async def plain_pages(
    http: httpx.AsyncClient, base_url: str, run_uid: str, page_size: int
) -> AsyncIterator[list[dict[str, Any]]]:
    """The pages of outputs as a user would fetch them with httpx alone."""
    url: str | None = f"{base_url}/runs/{run_uid}/outputs?limit={page_size}"
    while url is not None:
        response = await http.get(url, headers={"X-API-Key": API_KEY})
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()
        yield items
        url = response.headers.get("X-Pagination-Next")


async def measure_variant(
    variant: str, base_url: str, run_uid: str, page_size: int, sink_delay: float
) -> dict[str, Any]:
    """Read every output with ``variant``; its count, seconds, CPU and RSS as a JSON-able dict."""

    async def sink(items: list[dict[str, Any]]) -> None:
        # A batch write to a remote store: a round trip, no CPU here.
        await anyio.sleep(sink_delay)

    async def timed(read: Callable[[], Awaitable[int]]) -> dict[str, Any]:
        gc.collect()
        rss_before = current_rss_kib()
        cpu_before = cpu_seconds()
        start = time.perf_counter()
        seen = await read()
        seconds = time.perf_counter() - start
        return {
            "variant": variant,
            "outputs": seen,
            "seconds": seconds,
            "client_cpu": cpu_seconds() - cpu_before,
            "rss_before_kib": rss_before,
            "rss_growth_kib": peak_rss_kib() - rss_before,
        }

    if variant in SDK_VARIANTS:
        async with ea.AsyncClient(
            API_KEY, plan="titanium", base_url=base_url, limiter=NoRateLimit()
        ) as client:
            await client.runs.status(run_uid)

            async def sdk_items() -> int:
                seen = 0
                async for output in client.runs.outputs(run_uid, page_size=page_size):
                    if output.get("index") != seen:
                        raise OutOfOrder(
                            f"expected output {seen}, got index {output.get('index')!r}"
                        )
                    seen += 1
                return seen

            async def sdk_read_ahead_sink() -> int:
                pages = client.runs.output_pages(run_uid, page_size=page_size, read_ahead=1)
                seen = 0
                async for page in pages:
                    seen = check_items(page.items, seen)
                    await sink(page.items)
                return seen

            return await timed(sdk_items if variant == "sdk" else sdk_read_ahead_sink)

    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{base_url}/runs/{run_uid}/status", headers={"X-API-Key": API_KEY}
        )
        response.raise_for_status()

        async def plain(consume: bool) -> int:
            seen = 0
            async for items in plain_pages(http, base_url, run_uid, page_size):
                seen = check_items(items, seen)
                if consume:
                    await sink(items)
            return seen

        return await timed(lambda: plain(variant == "httpx-sink"))


def variant_main(args: argparse.Namespace) -> int:
    """Measure one variant; print its report, or its error, as one JSON line."""
    try:
        report = anyio.run(
            measure_variant,
            args.variant,
            args.base_url,
            args.run_uid,
            args.page_size,
            args.consumer_delay_ms / 1000,
        )
    except Exception as exc:
        traceback.print_exc()
        print(json.dumps({"error": " ".join(f"{type(exc).__name__}: {exc}".split())}), flush=True)
        return 1
    print(json.dumps(report), flush=True)
    return 0


# -- the parent --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One variant's round: what its process reported, and the server's CPU meanwhile."""

    seconds: float
    client_cpu: float
    server_cpu: float | None
    rss_growth_mb: float


@dataclass(frozen=True, slots=True)
class Summary:
    """A variant over all its rounds: the best round, the slowest time, the largest RSS growth."""

    best: Sample
    slowest: float
    rss_growth_mb: float

    @classmethod
    def of(cls, samples: list[Sample]) -> Summary:
        """Summarise a variant's rounds (at least one)."""
        return cls(
            best=min(samples, key=lambda sample: sample.seconds),
            slowest=max(sample.seconds for sample in samples),
            rss_growth_mb=max(sample.rss_growth_mb for sample in samples),
        )


def start_server(outputs: int) -> tuple[subprocess.Popen[str], str, str]:
    """Start the simulator's process; the process, base URL and run uid."""
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--outputs", str(outputs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    if not line:
        stop_server(server)
        raise SystemExit(f"the simulator's process exited with {server.returncode} before serving")
    ready = json.loads(line)
    return server, str(ready["base_url"]), str(ready["run_uid"])


def stop_server(server: subprocess.Popen[str]) -> None:
    """Terminate the simulator's process and wait for it (kill it if it lingers)."""
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    for pipe in (server.stdin, server.stdout):
        if pipe is not None:
            pipe.close()


def run_variant(
    variant: str, server_pid: int, base_url: str, run_uid: str, args: argparse.Namespace
) -> Sample | str:
    """Run one variant in a fresh process; its sample, or why it failed."""
    command = [
        sys.executable,
        __file__,
        "--variant",
        variant,
        "--base-url",
        base_url,
        "--run-uid",
        run_uid,
        "--page-size",
        str(args.page_size),
        "--consumer-delay-ms",
        str(args.consumer_delay_ms),
    ]
    server_before = cpu_seconds_of(server_pid)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    server_after = cpu_seconds_of(server_pid)
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines else {}
    if done.returncode != 0 or "error" in report:
        sys.stderr.write(done.stderr)
        return str(report.get("error", f"exit status {done.returncode}"))
    if report["outputs"] != args.outputs:
        return f"saw {report['outputs']} outputs, not {args.outputs}"
    server_cpu = (
        server_after - server_before
        if server_before is not None and server_after is not None
        else None
    )
    return Sample(
        seconds=float(report["seconds"]),
        client_cpu=float(report["client_cpu"]),
        server_cpu=server_cpu,
        rss_growth_mb=report["rss_growth_kib"] / 1024,
    )


def verdict(ok: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if ok else "FAIL"


def print_report(
    args: argparse.Namespace, summaries: dict[str, Summary], errors: dict[str, str]
) -> bool:
    """Print the table and the targets; whether every variant ran and every target passed."""
    pages = -(-args.outputs // args.page_size)
    print(
        f"{args.outputs:,} outputs in {pages:,} pages of {args.page_size}, loopback uvicorn, "
        f"sink {args.consumer_delay_ms:g} ms/page, best of {args.rounds} rounds\n"
    )
    header = (
        f"{'variant':<29} {'wall':>8} {'slowest':>8} {'outputs/s':>10} {'client CPU':>11} "
        f"{'server CPU':>11} {'peak RSS +':>11}"
    )
    print(header)
    print("-" * len(header))
    for variant, label in VARIANTS.items():
        if variant in errors:
            print(f"{label:<29} FAILED: {errors[variant]}")
            continue
        summary = summaries[variant]
        sample = summary.best
        server = f"{sample.server_cpu:>9.2f} s" if sample.server_cpu is not None else f"{'?':>11}"
        print(
            f"{label:<29} {sample.seconds:>6.2f} s {summary.slowest:>6.2f} s "
            f"{args.outputs / sample.seconds:>10,.0f} {sample.client_cpu:>9.2f} s {server} "
            f"{summary.rss_growth_mb:>8.1f} MB"
        )
    print()

    def seconds(variant: str) -> float | None:
        return summaries[variant].best.seconds if variant in summaries else None

    results: list[bool] = []
    sdk, plain = seconds("sdk"), seconds("httpx")
    ok = sdk is not None and plain is not None and sdk <= RATIO_TARGET * plain
    detail = f"{sdk / plain:.3f}x" if sdk is not None and plain is not None else "not measured"
    print(f"{verdict(ok)}  (a) SDK time <= {RATIO_TARGET}x plain httpx (b): {detail}")
    results.append(ok)
    for variant in SDK_VARIANTS:
        grown = summaries[variant].rss_growth_mb if variant in summaries else None
        ok = grown is not None and grown < RSS_TARGET_MB
        detail = f"{grown:.1f} MB" if grown is not None else "not measured"
        print(
            f"{verdict(ok)}  {VARIANTS[variant]}: peak RSS growth < {RSS_TARGET_MB:g} MB: {detail}"
        )
        results.append(ok)
    ahead, serial = seconds("sdk-read-ahead-sink"), seconds("httpx-sink")
    ok = ahead is not None and serial is not None and ahead < serial
    detail = (
        f"{ahead:.2f} s vs {serial:.2f} s ({serial / ahead:.2f}x)"
        if ahead is not None and serial is not None
        else "not measured"
    )
    print(f"{verdict(ok)}  (c) SDK read-ahead faster than plain httpx with the sink: {detail}")
    results.append(ok)
    return not errors and all(results)


def main(args: argparse.Namespace) -> int:
    """Start the server, run every variant in alternating rounds, print the table."""
    started = time.perf_counter()
    samples: dict[str, list[Sample]] = {variant: [] for variant in VARIANTS}
    errors: dict[str, str] = {}
    server, base_url, run_uid = start_server(args.outputs)
    try:
        names = list(VARIANTS)
        for round_number in range(1, args.rounds + 1):
            # Each round starts with the next variant, so none always goes first.
            shift = (round_number - 1) % len(names)
            for variant in names[shift:] + names[:shift]:
                if variant in errors:
                    continue
                outcome = run_variant(variant, server.pid, base_url, run_uid, args)
                if isinstance(outcome, str):
                    print(f"round {round_number}: {variant} FAILED: {outcome}", file=sys.stderr)
                    errors[variant] = outcome
                else:
                    samples[variant].append(outcome)
                    print(
                        f"round {round_number}: {variant:<20} {outcome.seconds:6.2f} s",
                        file=sys.stderr,
                    )
    finally:
        stop_server(server)
    summaries = {
        variant: Summary.of(runs)
        for variant, runs in samples.items()
        if runs and variant not in errors
    }
    passed = print_report(args, summaries, errors)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")
    return 0 if passed else 1


def parse_args() -> argparse.Namespace:
    """The command line; ``--serve`` and ``--variant`` are the child processes' modes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=int, default=1_000_000, help="outputs of the run")
    parser.add_argument("--page-size", type=int, default=500, help="outputs per page (1..500)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per variant")
    parser.add_argument(
        "--consumer-delay-ms",
        type=float,
        default=5.0,
        help="the slow sink's time per page in (c), in milliseconds",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--run-uid", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.outputs < 1 or args.rounds < 1 or not 1 <= args.page_size <= 500:
        parser.error("--outputs and --rounds must be at least 1, --page-size 1 to 500")
    if args.consumer_delay_ms < 0:
        parser.error("--consumer-delay-ms cannot be negative")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve:
        anyio.run(serve, arguments.outputs)
    elif arguments.variant is not None:
        sys.exit(variant_main(arguments))
    else:
        sys.exit(main(arguments))
