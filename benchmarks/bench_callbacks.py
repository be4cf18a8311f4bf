"""Callbacks that wake waiters: from the simulator's final callback to ``watch_runs`` returning.

Real time, real loopback sockets, two processes: the simulator served by uvicorn
(plain HTTP on loopback) with its callback sender, in a process of its own
(``_processes_simulator.py``: the sender no longer shares the waiter's
saturated event loop); here, the client, the receiver (``CallbackReceiver``) served by
uvicorn over TLS with a ``trustme`` certificate, and the simulator's callback
sender POSTing ``https://app.example.com:<port>/edges/callbacks`` (mapped to
127.0.0.1 by ``LoopbackTransport``) with the shared
secret. ``--runs`` runs are launched with ``receiver.callback(...)`` (final
only) and last 2 to 12 s; one ``watch_runs`` waits for all of them.

- *callback delay*: when ``watch_runs`` yielded a run minus when the simulator
  started POSTing its final callback (both loops' clock is ``time.monotonic()``),
  or minus when the wait began, for a run that ended while the 1,000 runs
  were still being launched (the same rule for polling alone);
- *status requests*: the list and ``/status`` polls the client sent while
  waiting; the same runs are then waited for again with polling alone
  (launched without a callback), to show what the callbacks saved, and with
  what detection delay polling alone does it (notice minus server end);
- *stuck*: waits still going 60 s after the last run ended, then given up (a
  wait the SDK never ends; the benchmark used to hang on it); *unsent*: runs
  whose wait ended before the simulator logged their final callback (not in
  the delays).

A wait hands out the full run, so a final callback is followed by one fetch
of the run: a poll, ahead of every other run but within the polling budget
(runs whose callbacks land within one polling interval share it). Targets,
against polling alone in the same run: callback delay p99 at most half of
polling's, with no more status requests, and no wait stuck. The client's
limiter is off for the launches (1,000 launches would otherwise take 105 s of
the Titanium budget, and launching is not what this measures); polling keeps
its own pace.

Each mode runs ``--repeats`` times, alternating; the table shows each run's
p50 / p99 / max and their medians, and the targets are judged on the medians.

    python benchmarks/bench_callbacks.py [--runs 1000] [--seed 0] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import httpx
import trustme
from _processes_harness import Request, Simulator

import edges_async as ea
from edges_async.callbacks import CallbackReceiver
from edges_async.testing import NoRateLimit
from edges_async.testing._server import serve_origin

API_KEY = "bench-callbacks"
SECRET = "bench-callback-secret-0123"
PATH = "/edges/callbacks"
# Callback URLs may not name a loopback address (Edges could never reach one):
# the receiver is named by this host, which the sender's transport maps to 127.0.0.1.
PUBLIC_HOST = "app.example.com"
P99_TARGET_RATIO = 0.5  # callbacks' p99 delay / polling alone's, at most
# A wait still going this long after the last run ended is stuck: it is ended
# and counted (the safety net polls a covered run every 30 s).
STUCK_AFTER = 60.0


@contextlib.asynccontextmanager
async def serve_tls(app: Any, ca: trustme.CA) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn over TLS on a free loopback port; yield its origin."""
    cert = ca.issue_cert("127.0.0.1", "localhost", PUBLIC_HOST)
    with cert.private_key_and_cert_chain_pem.tempfile() as pem:
        async with serve_origin(app, certfile=pem) as origin:
            yield origin


def ends(runs: int, seed: int) -> list[float]:
    """When each run ends, 2 to 12 s after its launch (created, running after 0.2 s)."""
    rng = random.Random(seed)
    return [rng.uniform(2.0, 12.0) for _ in range(runs)]


def polls(requests: list[Request]) -> int:
    """Status requests the simulator answered: runs list and /status."""
    return sum(
        1 for request in requests if request.path == "/v1/runs" or request.path.endswith("/status")
    )


@dataclass(frozen=True)
class Outcome:
    """One mode's measures."""

    mode: str
    runs: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    status_requests: int
    seconds: float
    stuck: int  # waits still going STUCK_AFTER s after the last run ended
    unsent: int  # runs whose wait ended with no final callback POSTed yet


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


async def measure(runs: int, seed: int, *, with_callbacks: bool) -> Outcome:
    """Launch ``runs`` runs, wait for them all, and measure the delays and the polls.

    The simulator and its callback sender run in a process of their own
    (``_processes_simulator.py``); this process holds the client, the TLS
    receiver and the wait. Both processes' loop clocks are ``time.monotonic()``.
    """
    ca = trustme.CA()
    noticed: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        trust_pem = f"{folder}/ca.pem"
        ca.cert_pem.write_to_path(trust_pem)
        options = {"seed": seed, "public_host": PUBLIC_HOST, "trust_pem": trust_pem}
        simulator = await anyio.to_thread.run_sync(lambda: Simulator("sliding_minute", options))
        try:
            simulator.workspace(API_KEY, "titanium")
            simulator.control("script_runs", {"ends": ends(runs, seed)})
            async with ea.AsyncClient(
                API_KEY, plan="titanium", base_url=simulator.base_url, limiter=NoRateLimit()
            ) as client:
                receiver = CallbackReceiver(client, secret=SECRET)
                async with serve_tls(receiver, ca) as origin:
                    url = f"https://{PUBLIC_HOST}:{httpx.URL(origin).port}{PATH}"
                    callback = receiver.callback(url) if with_callbacks else None
                    uids = [
                        (
                            await client.actions.run_async("bench", inputs=[{}], callback=callback)
                        ).uid
                        for _ in range(runs)
                    ]
                    before = polls((await anyio.to_thread.run_sync(simulator.log))[0])
                    started = anyio.current_time()
                    with anyio.move_on_after(max(ends(runs, seed)) + STUCK_AFTER):
                        async for run in client.watch_runs(uids):
                            noticed[run.uid] = anyio.current_time()
                    took = anyio.current_time() - started
            requests, deliveries = await anyio.to_thread.run_sync(simulator.log)
            status_requests = polls(requests) - before
            ended: dict[str, float | None] = simulator.control("ended")
        finally:
            await anyio.to_thread.run_sync(simulator.close)
    ended_here = [uid for uid in uids if uid in noticed]
    unsent = 0
    if with_callbacks:
        sent = {d.run_uid: d.time for d in deliveries if d.attempt == 1}
        unsent = sum(1 for uid in ended_here if uid not in sent)
        # A run that ended while the runs were still being launched was told
        # before anyone waited: its delay counts from the wait's start.
        delays = [
            (noticed[uid] - max(sent[uid], started)) * 1000 for uid in ended_here if uid in sent
        ]
        mode = "callbacks (final) + safety-net polling"
    else:
        delays = [(noticed[uid] - max(ended[uid] or 0.0, started)) * 1000 for uid in ended_here]
        mode = "polling alone"
    return Outcome(
        mode,
        runs,
        percentile(delays, 0.5),
        percentile(delays, 0.99),
        max(delays, default=math.nan),
        status_requests,
        took,
        runs - len(ended_here),
        unsent,
    )


def table(outcomes: list[Outcome]) -> str:
    """One line per mode and repeat, then each mode's medians."""
    lines = [
        f"{'mode':<40} {'run':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'status requests':>16} {'wall s':>7} {'stuck':>6} {'unsent':>7}",
        "-" * 112,
    ]
    for mode in dict.fromkeys(o.mode for o in outcomes):
        mine = [o for o in outcomes if o.mode == mode]
        lines.extend(
            f"{o.mode:<40} {i:>4} {o.p50_ms:>8.1f} {o.p99_ms:>8.1f} {o.max_ms:>8.1f} "
            f"{o.status_requests:>16,} {o.seconds:>7.1f} {o.stuck:>6} {o.unsent:>7}"
            for i, o in enumerate(mine, 1)
        )
        lines.append(
            f"{mode:<40} {'med.':>4} {median(mine, 'p50_ms'):>8.1f} "
            f"{median(mine, 'p99_ms'):>8.1f} {median(mine, 'max_ms'):>8.1f} "
            f"{median(mine, 'status_requests'):>16,.0f} {median(mine, 'seconds'):>7.1f}"
        )
    return "\n".join(lines)


def median(outcomes: list[Outcome], field: str) -> float:
    """The median of one measure over repeats."""
    return statistics.median(float(getattr(o, field)) for o in outcomes)


def main() -> int:
    """Measure both modes ``--repeats`` times, alternating; print the table and the verdict."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each mode (medians)")
    args = parser.parse_args()
    if args.runs < 1 or args.repeats < 1:
        parser.error("--runs and --repeats must be >= 1")
    print(
        f"command: python benchmarks/bench_callbacks.py --runs {args.runs} --seed {args.seed} "
        f"--repeats {args.repeats}"
    )
    print("delay: callbacks = watch_runs yielded - final callback POST started;")
    print("       polling alone = watch_runs yielded - run ended on the server")
    print("simulator and callback sender in their own process; client, receiver, wait in this one")
    started = time.monotonic()
    outcomes = []
    for _ in range(args.repeats):
        outcomes.append(anyio.run(lambda: measure(args.runs, args.seed, with_callbacks=True)))
        outcomes.append(anyio.run(lambda: measure(args.runs, args.seed, with_callbacks=False)))
    print(table(outcomes))
    callbacks = [o for o in outcomes if o.mode != "polling alone"]
    polling = [o for o in outcomes if o.mode == "polling alone"]
    ratio = median(callbacks, "p99_ms") / median(polling, "p99_ms")
    requests = median(callbacks, "status_requests"), median(polling, "status_requests")
    stuck = sum(o.stuck for o in outcomes)
    met = ratio <= P99_TARGET_RATIO and requests[0] <= requests[1] and stuck == 0
    verdict = "PASS" if met else "FAIL"
    print(
        f"\nmedians over {args.repeats} runs: p99 delay, callbacks / polling alone: {ratio:.2f} "
        f"(target <= {P99_TARGET_RATIO:g}); p50: "
        f"{median(callbacks, 'p50_ms') / median(polling, 'p50_ms'):.2f}; status requests "
        f"{requests[0]:,.0f} vs {requests[1]:,.0f}; waits stuck {stuck}: {verdict}; "
        f"{time.monotonic() - started:.0f} s wall"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
