"""Callbacks that wake waiters: from the simulator's final callback to ``watch_runs`` returning.

Real time, real loopback sockets, one process: the simulator served by uvicorn
(plain HTTP on loopback), the receiver (``CallbackReceiver``) served by
uvicorn over TLS with a ``trustme`` certificate, and the simulator's callback
sender POSTing ``https://app.example.com:<port>/edges/callbacks`` (mapped to
127.0.0.1 by ``LoopbackTransport``) with the shared
secret. ``--runs`` runs are launched with ``receiver.callback(...)`` (final
only) and last 2 to 12 s; one ``watch_runs`` waits for all of them.

- *callback delay*: when ``watch_runs`` yielded a run minus when the simulator
  started POSTing its final callback (both on this process's loop clock);
- *status requests*: the list and ``/status`` polls the client sent while
  waiting; the same runs are then waited for again with polling alone
  (launched without a callback), to show what the callbacks saved, and with
  what detection delay polling alone does it (notice minus server end).

A wait hands out the full run, so a final callback is followed by one fetch
of the run: a poll, ahead of every other run but within the polling budget
(runs whose callbacks land within one polling interval share it). Targets,
against polling alone in the same run: callback delay p99 at most half of
polling's, with no more status requests. The client's limiter is off for the
launches (1,000 launches would otherwise take 105 s of the Titanium budget,
and launching is not what this measures); polling keeps its own pace.

    python benchmarks/bench_callbacks.py [--runs 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import trustme

import edges_async as ea
from edges_async.callbacks import CallbackReceiver
from edges_async.testing import EdgesSimulator, LoopbackTransport, NoRateLimit, RunScript
from edges_async.testing._server import serve_origin

API_KEY = "bench-callbacks"
SECRET = "bench-callback-secret-0123"
PATH = "/edges/callbacks"
# Callback URLs may not name a loopback address (Edges could never reach one):
# the receiver is named by this host, which the sender's transport maps to 127.0.0.1.
PUBLIC_HOST = "app.example.com"
P99_TARGET_RATIO = 0.5  # callbacks' p99 delay / polling alone's, at most


@contextlib.asynccontextmanager
async def serve_tls(app: Any, ca: trustme.CA) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn over TLS on a free loopback port; yield its origin."""
    cert = ca.issue_cert("127.0.0.1", "localhost", PUBLIC_HOST)
    with cert.private_key_and_cert_chain_pem.tempfile() as pem:
        async with serve_origin(app, certfile=pem) as origin:
            yield origin


def scripts(runs: int, seed: int) -> list[RunScript]:
    """Runs of 2 to 12 s: created, running after 0.2 s, SUCCEEDED at the end."""
    rng = random.Random(seed)
    return [
        RunScript(
            steps=(("CREATED", 0.0), ("RUNNING", 0.2), ("SUCCEEDED", rng.uniform(2.0, 12.0))),
            outputs=1,
        )
        for _ in range(runs)
    ]


def polls(simulator: EdgesSimulator) -> int:
    """Status requests the simulator answered: runs list and /status."""
    return sum(
        1
        for request in simulator.requests
        if request.path == "/v1/runs" or request.path.endswith("/status")
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


async def measure(runs: int, seed: int, *, with_callbacks: bool) -> Outcome:
    """Launch ``runs`` runs, wait for them all, and measure the delays and the polls."""
    simulator = EdgesSimulator(seed=seed, max_logged_requests=None)
    simulator.add_workspace(api_key=API_KEY, plan="titanium")
    simulator.script_runs(*scripts(runs, seed))
    ca = trustme.CA()
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    noticed: dict[str, float] = {}
    async with (
        simulator.serve() as base_url,
        ea.AsyncClient(
            API_KEY, plan="titanium", base_url=base_url, limiter=NoRateLimit()
        ) as client,
    ):
        receiver = CallbackReceiver(client, secret=SECRET)
        async with (
            serve_tls(receiver, ca) as origin,
            httpx.AsyncClient(transport=LoopbackTransport(PUBLIC_HOST, verify=trust)) as sender,
            simulator.deliver_callbacks(http_client=sender),
        ):
            url = f"https://{PUBLIC_HOST}:{httpx.URL(origin).port}{PATH}"
            callback = receiver.callback(url) if with_callbacks else None
            uids = [
                (await client.actions.run_async("bench", inputs=[{}], callback=callback)).uid
                for _ in range(runs)
            ]
            before, started = polls(simulator), anyio.current_time()
            async for run in client.watch_runs(uids):
                noticed[run.uid] = anyio.current_time()
            took = anyio.current_time() - started
            status_requests = polls(simulator) - before
    if with_callbacks:
        sent = {
            delivery.run_uid: delivery.time
            for delivery in simulator.callback_deliveries
            if delivery.attempt == 1
        }
        delays = [(noticed[uid] - sent[uid]) * 1000 for uid in uids]
        mode = "callbacks (final) + safety-net polling"
    else:
        ended = {run.uid: run.snapshot(math.inf).finished for run in simulator.runs}
        delays = [(noticed[uid] - (ended[uid] or 0.0)) * 1000 for uid in uids]
        mode = "polling alone"
    return Outcome(
        mode,
        runs,
        percentile(delays, 0.5),
        percentile(delays, 0.99),
        max(delays),
        status_requests,
        took,
    )


def table(outcomes: list[Outcome]) -> str:
    lines = [
        f"{'mode':<40} {'runs':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'status requests':>16} {'wall s':>7}",
        "-" * 98,
    ]
    lines.extend(
        f"{o.mode:<40} {o.runs:>5} {o.p50_ms:>8.1f} {o.p99_ms:>8.1f} {o.max_ms:>8.1f} "
        f"{o.status_requests:>16,} {o.seconds:>7.1f}"
        for o in outcomes
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    print(f"command: python benchmarks/bench_callbacks.py --runs {args.runs} --seed {args.seed}")
    print("delay: callbacks = watch_runs yielded - final callback POST started;")
    print("       polling alone = watch_runs yielded - run ended on the server")
    outcomes = [
        anyio.run(lambda: measure(args.runs, args.seed, with_callbacks=True)),
        anyio.run(lambda: measure(args.runs, args.seed, with_callbacks=False)),
    ]
    print(table(outcomes))
    callbacks, polling = outcomes
    ratio = callbacks.p99_ms / polling.p99_ms
    cheaper = callbacks.status_requests <= polling.status_requests
    verdict = "PASS" if ratio <= P99_TARGET_RATIO and cheaper else "FAIL"
    print(
        f"\np99 delay, callbacks / polling alone: {ratio:.2f} (target <= {P99_TARGET_RATIO:g}); "
        f"p50: {callbacks.p50_ms / polling.p50_ms:.2f}; status requests "
        f"{callbacks.status_requests:,} vs {polling.status_requests:,}: {verdict}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
