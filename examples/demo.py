"""The edges_async demo: 200 inputs as 5 runs on a Trial workspace, watched, exported, summed up.

Run it with ``nox -s demo``, or ``python examples/demo.py [OUT_DIR]`` where the
``testing`` extra is installed (and ``cli``, for the live display). Nothing
leaves this machine: the simulator answers in-process, with the same routes,
statuses, pagination and rate limits as the real API — Trial's 30 requests a
minute included.

It launches the runs, waits for all of them with one ``watch_runs`` (one
request asks about every pending run), exports each run's outputs to JSON
Lines as soon as it ends, and prints what it cost against the plan's budget,
beside what polling each run every 5 seconds would have cost.
"""

from __future__ import annotations

import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

import edges_async as ea
from edges_async.testing import EdgesSimulator, RunScript

API_KEY = "demo-key"
PLAN = ea.PlanTier.TRIAL
ACTION = "linkedin-extract-people"
INPUTS = 200
RUNS = 5
OUTPUTS_PER_INPUT = 2
VENDOR_POLL_SECONDS = 5.0  # the vendor's guide: GET each run every few seconds until it ends
FINAL_STATUSES = ["SUCCEEDED", "SUCCEEDED", "PARTIAL_SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]


def batch_inputs() -> list[list[dict[str, Any]]]:
    """The 200 profile URLs to enrich, cut into 5 runs of 40."""
    urls = [
        {"linkedin_profile_url": f"https://www.linkedin.com/in/demo-{n:03d}"} for n in range(INPUTS)
    ]
    size, extra = divmod(INPUTS, RUNS)
    batches, start = [], 0
    for index in range(RUNS):
        end = start + size + (1 if index < extra else 0)
        batches.append(urls[start:end])
        start = end
    return batches


def build_simulator(batches: list[list[dict[str, Any]]]) -> EdgesSimulator:
    """A simulator with one Trial workspace whose next runs take 6 to 14 seconds."""
    simulator = EdgesSimulator(seed=2026)
    simulator.add_workspace(api_key=API_KEY, plan=PLAN)
    simulator.script_runs(
        *(
            RunScript(
                steps=(
                    ("CREATED", 0.0),
                    ("QUEUED", 0.5),
                    ("RUNNING", 1.5),
                    (final, 6.0 + 2 * index),
                ),
                outputs=len(batch)
                * OUTPUTS_PER_INPUT
                // (2 if final == "PARTIAL_SUCCEEDED" else 1),
            )
            for index, (final, batch) in enumerate(zip(FINAL_STATUSES, batches, strict=True))
        )
    )
    return simulator


@dataclass
class Progress:
    """The wait's progress: a live bar on a terminal (stderr), else one line per ended run."""

    total: int
    started: float
    ended: list[ea.Run] = field(default_factory=list)
    _bar: Any = None

    def __enter__(self) -> Progress:
        try:
            import rich.progress  # the cli extra
        except ImportError:
            return self
        if sys.stderr.isatty():
            self._bar = rich.progress.Progress(
                rich.progress.TextColumn("Waiting for runs"),
                rich.progress.BarColumn(),
                rich.progress.MofNCompleteColumn(),
                rich.progress.TimeElapsedColumn(),
                rich.progress.TextColumn("{task.fields[last]}"),
                console=rich.console.Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("runs", total=self.total, last="")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def run_ended(self, run: ea.Run) -> None:
        """Count ``run``, which has just ended."""
        self.ended.append(run)
        elapsed = anyio.current_time() - self.started
        text = f"{run.uid}  {run.status!s}, {run.output_count} outputs"
        if self._bar is not None:
            self._bar.update(self._task, completed=len(self.ended), last=text)
        else:
            print(f"  {elapsed:5.1f} s  {len(self.ended)}/{self.total} ended  {text}", flush=True)


def vendor_pattern(runs: list[ea.Run]) -> tuple[int, float]:
    """Requests and peak rate (per minute) of GET-every-5-s on each run until it ends.

    From the runs' own timestamps: a run pending ``d`` seconds is asked about
    ``floor(d / 5) + 1`` times; while ``k`` runs are pending together, that is
    ``k * 12`` requests a minute.
    """
    spans = [
        (run.created_at.timestamp(), run.finished_at.timestamp())
        for run in runs
        if run.created_at is not None and run.finished_at is not None
    ]
    requests = sum(math.floor((end - start) / VENDOR_POLL_SECONDS) + 1 for start, end in spans)
    peak = max(sum(start <= moment < end for start, end in spans) for moment, _ in spans)
    return requests, peak * 60 / VENDOR_POLL_SECONDS


async def main(out_dir: Path | None = None) -> None:
    """Launch 5 runs over 200 inputs, wait for them, export their outputs, sum up the cost."""
    batches = batch_inputs()
    simulator = build_simulator(batches)
    out = out_dir if out_dir is not None else Path(tempfile.mkdtemp(prefix="edges-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    started = anyio.current_time()
    async with (
        httpx.AsyncClient(transport=simulator.transport()) as http,
        ea.AsyncClient(API_KEY, plan=PLAN, http_client=http) as client,
    ):
        launched = [await client.actions.run_async(ACTION, inputs=batch) for batch in batches]
        print(
            f"Launched {INPUTS} inputs as {len(launched)} runs of {ACTION} on a "
            f"{PLAN.value} workspace ({PLAN.requests_per_minute} requests/min).",
            flush=True,
        )

        async def export(run: ea.Run) -> None:
            await client.runs.export_outputs(run.uid, out / f"{run.uid}.jsonl")

        # One poller asks about every pending run in one request, within the
        # plan's budget; each run comes back as soon as it ends and is
        # exported at once, while the others are still running.
        with Progress(len(launched), started) as progress:
            async with (
                anyio.create_task_group() as exports,
                client.watch_runs([run.uid for run in launched], timeout=300) as runs,
            ):
                async for run in runs:
                    progress.run_ended(run)
                    exports.start_soon(export, run)

    elapsed = anyio.current_time() - started
    finished = progress.ended
    files = sorted(out.glob("*.jsonl"))
    exported = sum(len(path.read_text().splitlines()) for path in files)
    runs_requests = [r.path for r in simulator.requests if r.path.startswith("/v1/runs")]
    polls = sum(1 for path in runs_requests if path == "/v1/runs" or path.endswith("/status"))
    pages = sum(1 for path in runs_requests if path.endswith("/outputs"))
    refused = sum(1 for request in simulator.requests if request.status_code == 429)
    budget = PLAN.requests_per_minute * elapsed / 60
    vendor_requests, vendor_peak = vendor_pattern(finished)
    statuses = ", ".join(
        f"{sum(1 for run in finished if run.status == status)} {status}"
        for status in dict.fromkeys(str(run.status) for run in finished)
    )
    print(
        f"""
Summary
  runs:      {len(finished)} over {INPUTS} inputs, all ended: {statuses}
  outputs:   {exported} exported to {len(files)} JSON Lines files in {out}
  time:      {elapsed:.1f} s
  requests:  {len(runs_requests)} on /v1/runs ({polls} polls asking about every pending run at \
once, {pages} pages of outputs,
             {len(runs_requests) - polls - pages} fetches of a run) where the plan allows \
{budget:.1f} in {elapsed:.0f} s; {refused} refused (429)
  vendor:    polling each run every {VENDOR_POLL_SECONDS:.0f} s until it ends would have \
sent {vendor_requests} status requests for these runs,
             at up to {vendor_peak:.0f}/min while they ran together: \
{vendor_peak / PLAN.requests_per_minute:.1f}x the {PLAN.value} budget, so 429s, \
before a single export""",
        flush=True,
    )


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]) if len(sys.argv) > 1 else None)
