"""The edges_async demo: launch runs on the embedded Edges simulator, wait, print outputs.

Run it with ``nox -s demo``, or ``python examples/demo.py`` where the
``testing`` extra is installed. Nothing leaves this machine: the simulator
answers in-process, with the same routes, statuses, pagination and rate limits
as the real API.
"""

from __future__ import annotations

import time

import anyio
import httpx

import edges_async as ea
from edges_async.testing import EdgesSimulator, RunScript

API_KEY = "demo-key"
PLAN = ea.PlanTier.SILVER
ACTION = "linkedin-extract-people"
PROFILES = [
    "https://www.linkedin.com/in/ada-lovelace",
    "https://www.linkedin.com/in/alan-turing",
    "https://www.linkedin.com/in/grace-hopper",
    "https://www.linkedin.com/in/edsger-dijkstra",
]
FINAL_STATUSES = ["SUCCEEDED", "SUCCEEDED", "PARTIAL_SUCCEEDED", "FAILED"]


def build_simulator() -> EdgesSimulator:
    """A simulator with one Silver workspace whose next runs take one to four seconds."""
    simulator = EdgesSimulator(seed=2026)
    simulator.add_workspace(api_key=API_KEY, plan=PLAN)
    simulator.script_runs(
        *(
            RunScript(
                steps=(
                    ("CREATED", 0.0),
                    ("QUEUED", 0.3),
                    ("RUNNING", 0.8),
                    (final, 1.5 + 0.8 * index),
                ),
                outputs=0 if final == "FAILED" else 3,
            )
            for index, final in enumerate(FINAL_STATUSES)
        )
    )
    return simulator


async def main() -> None:
    """Launch one run per profile, wait for all of them, print what they found."""
    simulator = build_simulator()
    started = time.monotonic()
    async with (
        httpx.AsyncClient(transport=simulator.transport()) as http,
        ea.AsyncClient(API_KEY, plan=PLAN, http_client=http) as client,
    ):
        launched = [
            await client.actions.run_async(ACTION, inputs=[{"linkedin_profile_url": url}])
            for url in PROFILES
        ]
        print(f"Launched {len(launched)} runs of {ACTION} on a {PLAN.value} workspace.\n")

        def progress(run: ea.Run) -> None:
            print(f"  {time.monotonic() - started:4.1f} s  {run.uid}  {run.status!s}")

        # One poller watches every run (one list request refreshes up to 100),
        # within the plan's budget; each run comes back as soon as it ends.
        print("Status changes:")
        finished = [
            run
            async for run in client.watch_runs(
                [run.uid for run in launched], timeout=120, on_status_change=progress
            )
        ]

        print("\nFinished runs and their outputs, in the order they ended:")
        for run in finished:
            print(f"  {run.uid}  {run.status!s}, {run.output_count} outputs")
            if run.last_error is not None:
                print(f"      last_error: {run.last_error.label}: {run.last_error.message}")
            async for output in client.runs.outputs(run.uid):
                print(f"      #{output['index']} {output['full_name']}: {output['headline']}")

    requests = len(simulator.requests)
    refused = sum(1 for request in simulator.requests if request.status_code == 429)
    elapsed = time.monotonic() - started
    print(f"\n{requests} requests in {elapsed:.1f} s, {refused} refused by the rate limit (429).")


if __name__ == "__main__":
    anyio.run(main)
