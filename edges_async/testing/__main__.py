"""Run the Edges simulator as a local server.

    python -m edges_async.testing --port 8765 [--host 127.0.0.1] [--api-key KEY]
                                  [--plan trial] [--window sliding_minute] [--seed 0]

It prints the base URL and the API key to use (``sim-key`` unless ``--api-key``
is given); Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING

import anyio

from edges_async._plans import PlanTier

from ._rate_limits import WindowKind
from ._server import run_until_stopped
from ._simulator import EdgesSimulator

if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_API_KEY = "sim-key"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edges_async.testing",
        description="Serve a simulated Edges runs API on a local port.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind, 0 for any free one")
    parser.add_argument(
        "--api-key",
        default=DEFAULT_API_KEY,
        help=f"the workspace's API key (default {DEFAULT_API_KEY!r})",
    )
    parser.add_argument(
        "--plan",
        default=PlanTier.TRIAL.value,
        choices=[tier.value for tier in PlanTier],
        help="the workspace's plan, which sets its rate limits (default trial)",
    )
    parser.add_argument(
        "--window",
        default=WindowKind.SLIDING_MINUTE.value,
        choices=[kind.value for kind in WindowKind],
        help="the rate-limit algorithm (default sliding_minute)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of run lifecycles and outputs")
    return parser


def serve_simulator(
    *, host: str, port: int, api_key: str, plan: str, window: str, seed: int = 0
) -> int:
    """Serve a simulator with one workspace until Ctrl-C; print its base URL and key first.

    The job of ``python -m edges_async.testing`` and of ``edges simulator``:
    ``plan`` is a :class:`PlanTier` value, ``window`` a :class:`WindowKind` one.
    Returns the exit status (0).
    """
    sim = EdgesSimulator(seed=seed, window=WindowKind(window), max_logged_requests=10_000)
    sim.add_workspace(api_key=api_key, plan=plan)

    def announce(base_url: str) -> None:
        print(f"Edges simulator listening on {base_url}", flush=True)
        print(f"API key: {api_key}  (plan {plan}, window {window})", flush=True)
        print("Press Ctrl-C to stop.", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(lambda: run_until_stopped(sim, host=host, port=port, on_ready=announce))
    print("Edges simulator stopped.", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and serve until Ctrl-C."""
    args = _parser().parse_args(argv)
    return serve_simulator(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        plan=args.plan,
        window=args.window,
        seed=args.seed,
    )


if __name__ == "__main__":
    sys.exit(main())
