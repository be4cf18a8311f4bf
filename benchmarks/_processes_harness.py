"""The processes of ``bench_processes.py``: the simulator's, the workers', and their logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def python(script: str, *arguments: str) -> subprocess.Popen[str]:
    """A Python process running ``benchmarks/<script>`` with ``arguments``, stdin/out piped."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(HERE / script), *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def line_from(process: subprocess.Popen[str]) -> str:
    """The process's next line on stdout (it died: ``RuntimeError``)."""
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"process {process.args!r} ended (status {process.wait()})")
    return line.strip()


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the simulator logged it."""

    time: float
    api_key: str | None
    status: int | None
    process: str | None
    path: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """One callback delivery attempt."""

    time: float
    run_uid: str
    status: str
    attempt: int
    status_code: int | None


class Simulator:
    """``_processes_simulator.py``: one window kind, served on loopback, driven over HTTP."""

    def __init__(self, window: str, options: dict[str, Any] | None = None) -> None:
        self.process = python("_processes_simulator.py", window, json.dumps(options or {}))
        self.base_url = line_from(self.process)
        self.origin = self.base_url.removesuffix("/v1")
        self.http = httpx.Client(base_url=self.origin, timeout=60)

    def control(self, path: str, body: Any = None) -> Any:
        """One ``/_bench`` control request; its JSON answer."""
        answer = self.http.post(f"/_bench/{path}", json=body)
        answer.raise_for_status()
        return answer.json()

    def workspace(self, api_key: str, plan: str) -> None:
        """Add a workspace."""
        self.control("workspace", {"api_key": api_key, "plan": plan})

    def end_launches_at(self, moments: list[float]) -> None:
        """The next launches (one each) end at these ``time.monotonic()`` moments."""
        self.control("end_launches_at", {"at": moments})

    def runs(self, api_key: str, ends: list[float], callback: Any = None) -> list[str]:
        """Seed runs ending ``ends`` seconds from now; their uids."""
        uids: list[str] = self.control(
            "runs", {"api_key": api_key, "ends": ends, "callback": callback}
        )
        return uids

    def fault_429(self, path: str, retry_after: int) -> None:
        """The next request matching ``path`` gets a 429 with ``Retry-After``."""
        self.control("fault", {"path": path, "retry_after": retry_after})

    def log(self) -> tuple[list[Request], list[Delivery]]:
        """Every request and callback delivery so far."""
        answer = self.control("log")
        return (
            [Request(*row) for row in answer["requests"]],
            [Delivery(*row) for row in answer["deliveries"]],
        )

    def close(self) -> None:
        """Stop the server."""
        self.http.close()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Worker:
    """``_processes_worker.py`` with one job."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.tag: str = job["tag"]
        self.process = python("_processes_worker.py", json.dumps(job))

    def line(self) -> str:
        """The next line it says."""
        return line_from(self.process)

    def send(self, line: str) -> None:
        """One line to its stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def result(self) -> Any:
        """Its last line, JSON, once it has exited by itself."""
        return json.loads(self.line())

    def stop(self) -> Any:
        """SIGTERM; the JSON it says on the way out (``None`` if it was already dead)."""
        if self.process.poll() is not None:
            return None
        self.process.send_signal(signal.SIGTERM)
        result = json.loads(line) if (line := self.drain()) else None
        self.process.wait(timeout=30)
        return result

    def drain(self) -> str:
        """Its remaining output's last line."""
        assert self.process.stdout is not None
        lines = self.process.stdout.read().strip().splitlines()
        return lines[-1] if lines else ""

    def kill(self) -> None:
        """``kill -9``."""
        self.process.kill()
        self.process.wait()


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine so far, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[float, float], after: tuple[float, float]) -> float:
    """The share of the machine's CPU time that was busy between two readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


def sleep_until(moment: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``moment``."""
    time.sleep(max(0.0, moment - time.monotonic()))
