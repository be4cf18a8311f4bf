"""The simulator of ``bench_processes.py``, served on loopback in a process of its own.

``python benchmarks/_processes_simulator.py <window> ['<json options>']`` serves an
``EdgesSimulator`` (rate-limit window ``<window>``) on a free 127.0.0.1 port, prints
its base URL on one line, delivers runs' callbacks, and serves until SIGTERM.
Options: ``seed``; ``public_host`` and ``trust_pem`` (callbacks to that host go to
127.0.0.1, over TLS trusting that CA: ``LoopbackTransport``), for
``bench_callbacks.py``. Beside the API,
``/_bench/...`` lets the benchmark drive and read it (never logged, no budget):

- ``POST /_bench/workspace`` ``{"api_key", "plan"}``: add a workspace;
- ``POST /_bench/runs`` ``{"api_key", "ends": [s, ...], "callback": {...} | null}``:
  seed one run per entry, RUNNING at once, SUCCEEDED ``s`` seconds later; the uids;
- ``POST /_bench/script_runs`` ``{"ends": [s, ...]}``: queue one lifecycle per entry for
  the next launches: CREATED, RUNNING after 0.2 s, SUCCEEDED after ``s``;
- ``POST /_bench/end_launches_at`` ``{"at": [t, ...]}``: the next launches, one per
  entry, end at these clock readings (CREATED, RUNNING 0.1 s later, SUCCEEDED at
  ``t``; the script is queued as each launch request comes in);
- ``POST /_bench/ended``: ``{uid: time the run ended}`` for every run;
- ``POST /_bench/fault`` ``{"path", "retry_after"}``: the next request whose path
  matches gets a 429 with that ``Retry-After``;
- ``GET /_bench/log``: every logged request as ``[time, api_key, status, process, path]``
  (``process`` is the ``X-Bench-Process`` header), and the callback deliveries as
  ``[time, run_uid, status, attempt, status_code]``; times are the loop clock, which
  is ``time.monotonic()``, the same in every process of the machine.
"""

from __future__ import annotations

import json
import math
import signal
import ssl
import sys
from collections import deque
from typing import Any

import anyio
import httpx
from starlette.types import Receive, Scope, Send

from edges_async.testing import EdgesSimulator, Fault, LoopbackTransport, RunScript, WindowKind
from edges_async.testing._server import serve_app

PROCESS_HEADER = "x-bench-process"


class Bench:
    """The simulator plus its ``/_bench`` control routes, as one ASGI app."""

    def __init__(self, window: WindowKind, seed: int) -> None:
        self.sim = EdgesSimulator(window=window, seed=seed, max_logged_requests=None)
        self.workspaces: dict[str, Any] = {}
        self.launch_ends: deque[float] = deque()  # end_launches_at, oldest first

    def handle(self, method: str, path: str, body: Any) -> Any:
        """Answer one control request."""
        if path == "/_bench/workspace":
            self.workspaces[body["api_key"]] = self.sim.add_workspace(
                api_key=body["api_key"], plan=body["plan"]
            )
            return {"ok": True}
        if path == "/_bench/runs":
            workspace = self.workspaces[body["api_key"]]
            return [
                self.sim.add_run(
                    workspace,
                    script=RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", end)), outputs=1),
                    callback=body.get("callback"),
                ).uid
                for end in body["ends"]
            ]
        if path == "/_bench/script_runs":
            self.sim.script_runs(
                *(
                    RunScript(
                        steps=(("CREATED", 0.0), ("RUNNING", 0.2), ("SUCCEEDED", end)), outputs=1
                    )
                    for end in body["ends"]
                )
            )
            return {"ok": True}
        if path == "/_bench/end_launches_at":
            self.launch_ends.extend(body["at"])
            return {"ok": True}
        if path == "/_bench/ended":
            return {run.uid: run.snapshot(math.inf).finished for run in self.sim.runs}
        if path == "/_bench/fault":
            self.sim.faults.add(
                Fault(
                    path=body["path"],
                    status=429,
                    headers={"Retry-After": str(body["retry_after"])},
                )
            )
            return {"ok": True}
        if path == "/_bench/log":
            keys = {ws.uid: key for key, ws in self.workspaces.items()}
            return {
                "requests": [
                    [
                        r.time,
                        keys.get(r.workspace_uid or ""),
                        r.status_code,
                        r.headers.get(PROCESS_HEADER),
                        r.path,
                    ]
                    for r in self.sim.requests
                ],
                "deliveries": [
                    [d.time, d.run_uid, d.status, d.attempt, d.status_code]
                    for d in self.sim.callback_deliveries
                ],
            }
        raise KeyError(f"{method} {path}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route ``/_bench`` here, the rest to the simulator."""
        if scope["type"] != "http" or not scope["path"].startswith("/_bench/"):
            if self.launch_ends and scope["path"].endswith("/run/async"):
                end = max(0.2, self.launch_ends.popleft() - anyio.current_time())
                self.sim.script_runs(
                    RunScript(
                        steps=(("CREATED", 0.0), ("RUNNING", 0.1), ("SUCCEEDED", end)), outputs=1
                    )
                )
            await self.sim(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        answer = json.dumps(
            self.handle(scope["method"], scope["path"], json.loads(raw) if raw else None)
        ).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


async def serve(window: WindowKind, options: dict[str, Any]) -> None:
    """Serve until SIGTERM, delivering callbacks."""
    bench = Bench(window, options.get("seed", 0))
    sender = None
    if "public_host" in options:
        trust = ssl.create_default_context(cafile=options["trust_pem"])
        sender = httpx.AsyncClient(
            transport=LoopbackTransport(options["public_host"], verify=trust)
        )
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with (
            serve_app(bench, host="127.0.0.1", port=0) as base_url,
            bench.sim.deliver_callbacks(http_client=sender),
        ):
            print(base_url, flush=True)
            async for _ in signals:
                break


if __name__ == "__main__":
    anyio.run(serve, WindowKind(sys.argv[1]), json.loads(sys.argv[2]) if sys.argv[2:] else {})
