"""`edges runs export`: exact counts as JSON Lines and CSV, resumed after a kill, atomic on Ctrl-C.

The console script runs in subprocesses against the simulator served on
loopback from this process (see ``tests/test_cli.py``). A slow first attempt
(the Bronze plan's pace: about one page of 500 outputs a second) is stopped
after its first page; the second runs at Titanium's pace.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edges_async.testing import RunScript

from .test_cli import EDGES, Served, cli_env, edges_at_once, run_on_terminal, serve_simulator

BIG = RunScript(steps=(("SUCCEEDED", 0.0),), outputs=2_600)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """One simulator on loopback for the module's tests."""
    yield from serve_simulator()


def line_count(path: Path) -> int:
    """Lines in ``path`` so far, 0 if it is not there yet."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def start_export(served: Served, key: str, *args: str, plan: str) -> subprocess.Popen[str]:
    """``edges runs export ARGS`` started, at ``plan``'s pace."""
    return subprocess.Popen(
        [*EDGES, "runs", "export", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(served, key, EDGES_PLAN=plan),
    )


def stop_once_written(process: subprocess.Popen[str], part: Path, sig: signal.Signals) -> str:
    """Send ``sig`` once ``part`` holds a first page; return the process's stderr."""
    try:
        deadline = time.monotonic() + 20
        while line_count(part) < 500:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no page was ever written"
            time.sleep(0.02)
        process.send_signal(sig)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return err


def test_export_writes_every_output_as_json_lines_and_csv(served: Served, tmp_path: Path) -> None:
    """-o FILE.jsonl, -o FILE.csv and stdout each hold every output exactly once, in order."""
    workspace, key = served.workspace()
    run = served.add_run(workspace, RunScript(steps=(("SUCCEEDED", 0.0),), outputs=1_234))
    jsonl, table = tmp_path / "out.jsonl", tmp_path / "out.csv"
    to_jsonl, to_csv, to_stdout = edges_at_once(
        served,
        key,
        ("runs", "export", run, "-o", str(jsonl)),
        ("runs", "export", run, "-o", str(table)),
        ("runs", "export", run, "--format", "jsonl"),
    )
    for done in (to_jsonl, to_csv, to_stdout):
        assert done.returncode == 0, done.stderr
    lines = jsonl.read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == list(range(1_234))
    assert to_stdout.stdout.splitlines() == lines
    with table.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["index"]) for row in rows] == list(range(1_234))
    assert rows[0]["full_name"] == json.loads(lines[0])["full_name"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.csv", "out.jsonl"]
    assert to_csv.stderr == f"Exported 1234 outputs of run {run} to {table} (csv).\n"


def test_export_killed_mid_way_resumes_with_every_output_once(
    served: Served, tmp_path: Path
) -> None:
    """SIGTERM after the first page: no file yet; the rerun ends with each output exactly once."""
    workspace, key = served.workspace()
    run = served.add_run(workspace, BIG)
    target = tmp_path / "outputs.jsonl"
    first = start_export(served, key, run, "-o", str(target), plan="bronze")
    stop_once_written(first, Path(f"{target}.part"), signal.SIGTERM)
    assert first.returncode == -signal.SIGTERM
    assert not target.exists()
    second = start_export(served, key, run, "-o", str(target), plan="titanium")
    _, err = second.communicate(timeout=30)
    assert second.returncode == 0, err
    indexes = [json.loads(line)["index"] for line in target.read_text().splitlines()]
    assert indexes == list(range(BIG.outputs))
    assert os.listdir(tmp_path) == ["outputs.jsonl"]


def test_ctrl_c_during_a_csv_export_exits_130_and_renames_nothing(
    served: Served, tmp_path: Path
) -> None:
    """SIGINT mid-export: status 130, no CSV in place; the rerun finishes it, exact count."""
    workspace, key = served.workspace()
    run = served.add_run(workspace, BIG)
    target = tmp_path / "outputs.csv"
    staged_part = tmp_path / f".outputs.csv.{run}.jsonl.part"
    first = start_export(served, key, run, "-o", str(target), plan="bronze")
    err = stop_once_written(first, staged_part, signal.SIGINT)
    assert (first.returncode, err) == (130, "edges: interrupted\n")
    assert not target.exists()
    assert staged_part.exists()
    second = start_export(served, key, run, "-o", str(target), plan="titanium")
    _, err = second.communicate(timeout=30)
    assert second.returncode == 0, err
    with target.open(newline="") as file:
        indexes = [int(row["index"]) for row in csv.DictReader(file)]
    assert indexes == list(range(BIG.outputs))
    assert os.listdir(tmp_path) == ["outputs.csv"]


def test_export_progress_is_drawn_on_a_terminal(served: Served, tmp_path: Path) -> None:
    """With stderr a (pseudo) terminal, the export draws outputs written out of output_count."""
    workspace, key = served.workspace()
    run = served.add_run(workspace, RunScript(steps=(("SUCCEEDED", 0.0),), outputs=1_500))
    done = run_on_terminal(
        [*EDGES, "runs", "export", run, "-o", str(tmp_path / "out.jsonl")],
        cli_env(served, key, TERM="xterm"),
    )
    assert done.returncode == 0
    screen = done.drawn
    assert f"Exporting run {run}" in screen
    assert "1,500/1,500 outputs" in screen
