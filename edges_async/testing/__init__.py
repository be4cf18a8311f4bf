"""A faithful, in-memory simulator of the Edges runs API, to test Edges clients against.

``EdgesSimulator`` is an ASGI app implementing the server side of the API:
runs whose status moves on the event loop's clock, cursor-paginated outputs,
per-workspace rate limits, fault injection and a request log; scheduled
launches, paged live answers, and callbacks POSTed to their URLs while
``sim.deliver_callbacks()`` runs. Use it in process, or serve it on a loopback
port (also ``python -m edges_async.testing``)::

    import httpx
    from edges_async.testing import EdgesSimulator, RunScript

    sim = EdgesSimulator(seed=1)
    sim.add_workspace(api_key="sim-key", plan="trial")
    sim.script_runs(RunScript(steps=(("CREATED", 0), ("RUNNING", 1), ("SUCCEEDED", 5)), outputs=3))
    async with httpx.AsyncClient(
        transport=sim.transport(),
        base_url="https://api.edges.run",
        headers={"X-API-Key": "sim-key"},
    ) as http:
        launched = await http.post(
            "/v1/actions/linkedin-extract-people/run/async", json={"inputs": [{}]}
        )
        run_uid = launched.json()["run_uid"]

    async with sim.serve(port=0) as base_url:  # "http://127.0.0.1:<port>/v1"
        ...

It needs the ``testing`` extra (``pip install edges-async[testing]``) for
Starlette and uvicorn.
"""

from __future__ import annotations

from .._limiter import NoRateLimit as NoRateLimit
from ._callbacks import CallbackDelivery as CallbackDelivery
from ._faults import Fault as Fault
from ._log import RecordedRequest as RecordedRequest
from ._loopback import LoopbackTransport as LoopbackTransport
from ._profiles import RunProfile as RunProfile
from ._rate_limits import WindowKind as WindowKind
from ._run import SimulatedRun as SimulatedRun
from ._scripts import RunScript as RunScript
from ._simulator import EdgesSimulator as EdgesSimulator
from ._workspace import Workspace as Workspace

__all__ = [
    "CallbackDelivery",
    "EdgesSimulator",
    "Fault",
    "LoopbackTransport",
    "NoRateLimit",
    "RecordedRequest",
    "RunProfile",
    "RunScript",
    "SimulatedRun",
    "WindowKind",
    "Workspace",
]
