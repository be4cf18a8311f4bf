"""Logs: a DEBUG line per HTTP attempt, retries and 429 pauses above it, ``EDGES_LOG``.

The ``EDGES_LOG`` tests run a tiny client in a real subprocess, so the logging
setup of this test process is never touched.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edges_async as ea
from edges_async.testing import EdgesSimulator, Fault, RunScript, Workspace

from .conftest import API_KEY

CALLBACK_SECRET = "cb-secret-7f3a9c1e5b"
ATTEMPT = re.compile(
    r"^(?P<method>[A-Z]+) (?P<target>\S+) -> (?P<result>\S+) in (?P<elapsed>\d+\.\d) ms "
    r"\(rate limiter wait (?P<waited>\d+\.\d) ms, attempt (?P<attempt>\d+) of (?P<of>\d+)\)$"
)


def attempts(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    """The fields of every per-attempt DEBUG line, in order."""
    found = []
    for record in caplog.records:
        match = ATTEMPT.match(record.getMessage())
        if record.name == "edges_async" and record.levelno == logging.DEBUG and match:
            found.append(match.groupdict())
    return found


@pytest.fixture
async def uid(simulator: EdgesSimulator, workspace: Workspace) -> str:
    """The uid of a run of ``workspace`` that has already succeeded."""
    return simulator.add_run(workspace, script=RunScript(steps=(("SUCCEEDED", 0.0),))).uid


async def test_each_attempt_is_logged_at_debug(
    simulator: EdgesSimulator,
    client: ea.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    uid: str,
) -> None:
    """A failed attempt and its retry: one line each, with status, times and attempt number."""
    simulator.faults.add(Fault(path=f"/runs/{uid}$", status=500, delay=2.5))
    caplog.set_level(logging.DEBUG, logger="edges_async")
    await client.runs.get(uid)
    path = f"/v1/runs/{uid}"
    assert attempts(caplog) == [
        {"method": "GET", "target": path, "result": "500", "elapsed": "2500.0", "waited": "0.0"}
        | {"attempt": "1", "of": "4"},
        {"method": "GET", "target": path, "result": "200", "elapsed": "0.0", "waited": "0.0"}
        | {"attempt": "2", "of": "4"},
    ]


async def test_the_line_shows_the_query_and_the_limiters_wait(
    client: ea.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The query string is logged, and the wait the pacer imposed on a request right behind."""
    caplog.set_level(logging.DEBUG, logger="edges_async")
    assert [run async for run in client.runs.list(status="RUNNING", action_name="a-b")] == []
    assert [run async for run in client.runs.list(status="RUNNING", action_name="a-b")] == []
    first, second = attempts(caplog)
    assert first["target"].startswith("/v1/runs?")
    assert "status=RUNNING" in first["target"]
    assert "action_name=a-b" in first["target"]
    assert (first["waited"], second["waited"]) == ("0.0", "105.3")  # 60 s / (600 * 0.95)


async def test_an_attempt_without_a_response_logs_the_error_kind(
    simulator: EdgesSimulator,
    client: ea.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    uid: str,
) -> None:
    """A connection refused shows as its kind where the status would be."""
    simulator.faults.add(Fault(path="/status$", refuse=True))
    caplog.set_level(logging.DEBUG, logger="edges_async")
    await client.runs.status(uid)
    assert [line["result"] for line in attempts(caplog)] == ["ConnectError", "200"]


async def test_nothing_is_logged_by_default(
    client: ea.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    uid: str,
) -> None:
    """Without any setup no DEBUG record is made; at INFO a plain success logs nothing."""
    assert not logging.getLogger("edges_async").isEnabledFor(logging.DEBUG)
    await client.runs.get(uid)
    assert caplog.records == []
    caplog.set_level(logging.INFO, logger="edges_async")
    await client.runs.get(uid)
    await client.runs.status(uid)
    assert caplog.records == []


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (Fault(status=500), "after 500 in"),
        (Fault(refuse=True), "after ConnectError in"),
    ],
)
async def test_a_retry_is_logged_above_debug(
    simulator: EdgesSimulator,
    client: ea.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    uid: str,
    fault: Fault,
    says: str,
) -> None:
    """Each retry logs what failed, the delay and the retry number, at INFO."""
    simulator.faults.add(fault)
    caplog.set_level(logging.INFO, logger="edges_async")
    await client.runs.get(uid)
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert message.startswith(f"Retrying GET https://api.edges.run/v1/runs/{uid} {says} ")
    assert re.search(r" in \d+\.\d\d s \(retry 1 of 3\)$", message)


async def test_a_429_pause_is_logged_above_debug(
    simulator: EdgesSimulator,
    client: ea.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    uid: str,
) -> None:
    """A 429 logs the workspace's pause and the retry after Retry-After, at INFO."""
    simulator.faults.add(Fault(status=429, headers={"Retry-After": "7"}))
    caplog.set_level(logging.INFO, logger="edges_async")
    await client.runs.get(uid)
    messages = [record.getMessage() for record in caplog.records]
    assert all(record.levelno == logging.INFO for record in caplog.records)
    assert len(messages) == 2
    assert messages[0].startswith("Rate limited (429): pausing the workspace's ")
    assert " for 7.0 s, pacing at " in messages[0]
    assert messages[1] == (
        f"Retrying GET https://api.edges.run/v1/runs/{uid} after 429 in 7.00 s (retry 1 of 3)"
    )


async def test_log_lines_never_show_a_secret(
    simulator: EdgesSimulator,
    client: ea.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Launches with a callback secret, 429s, 500s, secrets in a query: no line shows one."""
    for name in ("edges_async", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    callback = ea.Callback(
        url="https://hooks.example.com/edges", headers={"X-Hook-Secret": CALLBACK_SECRET}
    )
    simulator.faults.add(Fault(method="POST", status=500))
    with pytest.raises(ea.InternalServerError):
        await client.actions.run_async("some-action", inputs=[{"a": 1}], callback=callback)
    await client.actions.run_async("some-action", inputs=[{"a": 1}], callback=callback)
    simulator.faults.add(Fault(method="GET", status=429, headers={"Retry-After": "1"}))
    simulator.faults.add(Fault(method="GET", status=500))
    for secret in (API_KEY, CALLBACK_SECRET):
        assert [run async for run in client.runs.list(action_name=secret)] == []
    lines = [record.getMessage() for record in caplog.records]
    assert len(attempts(caplog)) == 6
    assert sum("[redacted]" in line["target"] for line in attempts(caplog)) == 4
    assert [line for line in lines if API_KEY in line or CALLBACK_SECRET in line] == []


# -- EDGES_LOG, in a subprocess ---------------------------------------------------------

CHILD = """
import asyncio, json, logging, sys

import httpx

import edges_async as ea
from edges_async.testing import EdgesSimulator, NoRateLimit

setup = sys.argv[1]
if setup == "root":
    logging.basicConfig(level=logging.WARNING)
elif setup == "own":
    logging.getLogger("edges_async").addHandler(logging.NullHandler())
logger = logging.getLogger("edges_async")
report = {"after_import": len(logger.handlers)}


async def main() -> None:
    simulator = EdgesSimulator(seed=0)
    simulator.add_workspace(api_key=sys.argv[2], plan="titanium")
    key = sys.argv[2]
    async with httpx.AsyncClient(transport=simulator.transport()) as http:
        for _ in range(2):
            async with ea.AsyncClient(key, http_client=http, limiter=NoRateLimit()) as client:
                assert [run async for run in client.runs.list(action_name=key)] == []


asyncio.run(main())
report["handlers"] = [type(handler).__name__ for handler in logger.handlers]
report["levels"] = [logging.getLevelName(handler.level) for handler in logger.handlers]
report["logger_level"] = logging.getLevelName(logger.level)
print(json.dumps(report))
"""


def run_child(edges_log: str | None, setup: str = "none") -> tuple[dict[str, object], str]:
    """Run CHILD with ``EDGES_LOG`` set so (or unset): what it reports, and its stderr."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("EDGES_")}
    if edges_log is not None:
        env["EDGES_LOG"] = edges_log
    done = subprocess.run(
        [sys.executable, "-c", CHILD, setup, API_KEY],
        env=env,
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report, done.stderr


def test_edges_log_debug_installs_one_stderr_handler() -> None:
    """EDGES_LOG=debug: after two clients, one StreamHandler at DEBUG, and the lines on stderr."""
    report, stderr = run_child("debug")
    assert report == {
        "after_import": 0,  # nothing at import: apps configure logging after importing
        "handlers": ["StreamHandler"],
        "levels": ["DEBUG"],
        "logger_level": "DEBUG",
    }
    lines = stderr.splitlines()
    assert len(lines) == 2  # one GET per client
    assert all(" DEBUG edges_async: GET /v1/runs?" in line for line in lines)
    assert all("action_name=[redacted]" in line for line in lines)
    assert API_KEY not in stderr


def test_edges_log_info_logs_nothing_for_a_plain_success() -> None:
    """EDGES_LOG=INFO (any case): a handler at INFO, and no line for requests that succeed."""
    report, stderr = run_child("INFO")
    assert (report["handlers"], report["levels"]) == (["StreamHandler"], ["INFO"])
    assert stderr == ""


@pytest.mark.parametrize("setup", ["root", "own"])
def test_edges_log_leaves_an_applications_setup_alone(setup: str) -> None:
    """A handler on the root logger or on edges_async: EDGES_LOG adds nothing."""
    report, stderr = run_child("debug", setup)
    assert report["handlers"] == ([] if setup == "root" else ["NullHandler"])
    assert report["logger_level"] == "NOTSET"
    assert stderr == ""


@pytest.mark.parametrize("value", [None, "", "verbose", "1"])
def test_other_values_are_ignored_silently(value: str | None) -> None:
    """Unset, empty or unknown: no handler, no error, nothing on stderr (as OPENAI_LOG)."""
    report, stderr = run_child(value)
    assert report["handlers"] == []
    assert stderr == ""
