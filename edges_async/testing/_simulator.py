"""``EdgesSimulator``: the Edges runs API as an ASGI app, and the handles tests hold it by.

A request meets the fault rules first, then the API's routes (:mod:`._routes`);
either way it ends in the request log (:mod:`._fault_injection`, :mod:`._log`).
Run state lives in :mod:`._world` and :mod:`._run` and is computed from the
clock at request time.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import TYPE_CHECKING, Any

import anyio

from edges_async._backoff import to_seconds, utc_now
from edges_async._plans import PlanTier

from ._callbacks import CallbackSender
from ._clock import SimClock
from ._fault_injection import FaultInjector, SimulatorTransport
from ._faults import FaultSet
from ._log import RequestLog
from ._profiles import RunProfile
from ._rate_limits import WindowKind
from ._routes import EdgesApi
from ._run import RunSpec
from ._scripts import RunScript
from ._server import serve_app
from ._world import World

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from contextlib import AbstractAsyncContextManager
    from datetime import datetime

    import httpx
    from starlette.types import Receive, Scope, Send

    from ._callbacks import CallbackDelivery
    from ._log import RecordedRequest
    from ._run import SimulatedRun
    from ._workspace import Workspace

__all__ = ["EdgesSimulator"]


class EdgesSimulator:
    """A faithful, in-memory Edges runs API: an ASGI app for tests, demos and benchmarks.

    Status changes follow each run's timeline on the simulator's clock
    (``anyio.current_time`` by default, so fake loop time drives it); rate
    limits, faults and the request log are there to test clients against.
    Use it in process with :meth:`transport` or on a real socket with
    :meth:`serve`. All options are keyword-only:

    - ``clock``: a callable giving seconds; ``start_time``: the wall time its
      first reading maps to (default: now, UTC). The first reading is also
      where the fixed rate-limit minutes start. Under looptime, seed runs in
      the test rather than in a fixture: fixtures run before fake time starts.
    - ``seed``: seeds uids, random lifecycles and outputs.
    - ``window``: the rate-limit algorithm (:class:`WindowKind`).
    - ``send_retry_after``: whether 429 answers carry ``Retry-After``.
    - ``run_profile``: the knobs of random lifecycles (:class:`RunProfile`).
    - ``max_logged_requests``: keep only the newest that many entries of the
      request log (default: all of them; a long-lived server wants a bound).
    - ``callback_retry_delays``: the waits (seconds or timedelta) before each
      retry of a failed callback delivery; once they are spent it is given up.
    - ``live_page_size``: the most results one live answer holds; a longer
      one continues at its ``X-Pagination-Next`` URL.

    Besides async launches, ``POST /v1/actions/{slug}/run/schedule`` makes one
    run per call, SCHEDULED until its start: ``schedule_at``, or the ``cron``'s
    next occurrence in ``timezone``. A cron schedule's later occurrences are
    not simulated. A ``schedule_at`` already past starts the run at once.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        start_time: datetime | None = None,
        seed: int = 0,
        window: WindowKind | str = WindowKind.SLIDING_MINUTE,
        send_retry_after: bool = True,
        run_profile: RunProfile | None = None,
        max_logged_requests: int | None = None,
        callback_retry_delays: Sequence[float | timedelta] = (1.0, 2.0, 4.0, 8.0, 16.0),
        live_page_size: int = 100,
    ) -> None:
        if start_time is not None and start_time.tzinfo is None:
            raise ValueError("start_time must be an aware datetime")
        start = start_time.astimezone(timezone.utc) if start_time is not None else utc_now()
        self._clock = SimClock(clock if clock is not None else anyio.current_time, start)
        profile = run_profile if run_profile is not None else RunProfile()
        self._world = World(clock=self._clock, seed=seed, profile=profile)
        if live_page_size < 1:
            raise ValueError(f"live_page_size must be >= 1, got {live_page_size}")
        self._api = EdgesApi(
            self._world,
            window=WindowKind(window),
            send_retry_after=send_retry_after,
            live_page_size=live_page_size,
        )
        self._callbacks = CallbackSender(self._world.callbacks, self._clock, callback_retry_delays)
        self._log = RequestLog(self._world.workspace_for_key, max_logged_requests)
        self.faults = FaultSet()
        """The fault rules: ``sim.faults.add(Fault(...))``, ``sim.faults.clear()``."""
        self._entry = FaultInjector(
            self._api.app,
            faults=self.faults,
            log=self._log,
            clock=self._clock,
            error_ref=self._api.error_ref,
        )

    # -- setting up ----------------------------------------------------------

    def add_workspace(self, *, api_key: str, plan: PlanTier | str = PlanTier.TRIAL) -> Workspace:
        """Create a workspace on ``plan`` whose first member authenticates with ``api_key``."""
        return self._world.add_workspace(api_key, plan)

    def add_api_key(self, workspace: Workspace, api_key: str) -> str:
        """Add a member with its own API key to ``workspace``; returns the member's user uid."""
        return self._world.add_api_key(workspace, api_key)

    def script_runs(self, *scripts: RunScript, action: str | None = None) -> None:
        """Queue lifecycles for the next async launches (of ``action`` only, if given), FIFO.

        A launch takes the oldest script queued for its action, else the oldest
        queued for any action, else gets a seeded random lifecycle.
        """
        self._world.queue_scripts(scripts, action)

    def script_live(self, action: str, results: int) -> None:
        """Make live runs of ``action`` answer ``results`` results (default: 1 to 3 by input).

        ``parameters.max_results`` still caps them; beyond ``live_page_size``
        the answer comes in pages.
        """
        if results < 0:
            raise ValueError(f"results cannot be negative, got {results}")
        self._world.script_live(action, results)

    def add_run(
        self,
        workspace: Workspace,
        *,
        action_name: str = "linkedin-extract-people",
        script: RunScript | None = None,
        execution_mode: str = "ASYNC",
        inputs: Sequence[Mapping[str, Any]] | None = None,
        parameters: Mapping[str, Any] | None = None,
        callback: Mapping[str, Any] | None = None,
        age: float | timedelta | None = None,
    ) -> SimulatedRun:
        """Seed a run directly, created now, or ``age`` (seconds or timedelta) ago.

        Without ``script`` the run gets a seeded random lifecycle. A run older
        than 90 days is archived: 404, and left out of lists. ``callback``
        (``{"url", "headers", "on"}``) is not validated, so a test may point it
        at a plain-HTTP receiver.
        """
        if execution_mode not in ("ASYNC", "LIVE"):
            raise ValueError("execution_mode must be 'ASYNC' or 'LIVE'")
        seconds = to_seconds(age or 0.0)
        input_count = len(inputs) if inputs is not None else 1
        if script is None:
            max_results = (parameters or {}).get("max_results")
            capped = max_results if isinstance(max_results, int) else None
            script = self._world.random_script(input_count, capped)
        spec = RunSpec(
            workspace=workspace,
            user_uid=workspace.user_uid,
            action_name=action_name,
            execution_mode=execution_mode,
            created=self._clock.now() - seconds,
            script=script,
            parameters=parameters,
            callback=callback,
            input_count=input_count,
            first_input=inputs[0] if inputs else None,
        )
        return self._world.create_run(spec)

    def add_runs(
        self,
        workspace: Workspace,
        count: int,
        *,
        ending_between: tuple[float | timedelta, float | timedelta],
    ) -> list[SimulatedRun]:
        """Seed ``count`` runs, created now, each ending at a random moment in ``ending_between``.

        The moments (seconds or timedelta from now) are seeded and uniform
        between the two bounds; each run is RUNNING after a second (or half its
        life, if shorter) and ends in the terminal status, with the outputs, of
        a random lifecycle (``run_profile``). For load tests: runs ending at a
        steady pace, a workspace busy with runs nobody waits for, or a burst
        (``ending_between=(300, 301)``: all within one second, five minutes on).
        """
        low, high = (to_seconds(bound) for bound in ending_between)
        if count < 0 or not 0 <= low <= high:
            raise ValueError("need count >= 0 and ending_between with 0 <= low <= high")
        runs = []
        for _ in range(count):
            drawn = self._world.random_script(1, None)
            end = self._world.rng.uniform(low, high)
            steps = (("CREATED", 0.0), ("RUNNING", min(1.0, end / 2)), (drawn.steps[-1][0], end))
            runs.append(self.add_run(workspace, script=RunScript(steps, drawn.outputs)))
        return runs

    # -- inspecting ----------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The request log, in the order the answers were given (clear it at will)."""
        return self._log.entries

    @property
    def callback_deliveries(self) -> list[CallbackDelivery]:
        """Every callback delivery attempt, in the order they ended (clear it at will)."""
        return self._callbacks.deliveries

    @property
    def runs(self) -> list[SimulatedRun]:
        """Every run, archived ones included, in creation order."""
        return self._world.runs

    @property
    def workspaces(self) -> list[Workspace]:
        """Every workspace, in creation order."""
        return self._world.workspaces

    def get_run(self, uid: str) -> SimulatedRun:
        """The run with this uid (``KeyError`` if there is none)."""
        run = self._world.run(uid.lower())
        if run is None:
            raise KeyError(uid)
        return run

    def cursor_for(self, run: SimulatedRun, index: int) -> str:
        """The outputs cursor the API hands out for output ``index`` of ``run``.

        For tests that start paging in the middle of a run, as a client
        resuming after a crash would.
        """
        if index < 0:
            raise ValueError("index cannot be negative")
        return self._api.cursor_for(run, index)

    # -- connecting ----------------------------------------------------------

    def transport(self) -> httpx.AsyncBaseTransport:
        """An in-process httpx transport to this simulator, with network-like faults.

        >>> client = httpx.AsyncClient(transport=sim.transport(), base_url="https://api.edges.run")
        """
        return SimulatorTransport(self, self.faults)

    def serve(self, *, host: str = "127.0.0.1", port: int = 0) -> AbstractAsyncContextManager[str]:
        """Serve the simulator with uvicorn in the running event loop while the block runs.

        Yields the base URL, e.g. ``"http://127.0.0.1:54321/v1"``; ``port=0``
        picks a free port. Leaving the block shuts the server down gracefully.
        """
        return serve_app(self, host=host, port=port)

    def deliver_callbacks(
        self, http_client: httpx.AsyncClient | None = None
    ) -> AbstractAsyncContextManager[None]:
        """POST runs' callbacks to their ``callback.url`` while the block runs.

        Each callback goes out at its moment on the simulator's clock (slept
        on the event loop, so fake time drives it), in order within a run; a
        failed one is retried after each of ``callback_retry_delays`` with the
        same ``callback_ref_uid``. Runs launched during the block are picked up
        at once; callbacks that fell due before it are sent when it starts. A
        cancelled run gets none after its cancel. Every attempt is logged in
        :attr:`callback_deliveries`. Leaving the block stops sending (a callback
        cut short is sent again by the next block). ``http_client`` defaults to
        a fresh ``httpx.AsyncClient``, closed at the end; a given one is not.

        The body: ``{"callback_ref_uid", "run": {"run_uid", "batch_uid",
        "status"}, "input", "custom_data", "error", "results"}``, with
        ``results`` the outputs of a partial (``on: "all"``) callback, else null.

        >>> async with sim.deliver_callbacks():
        ...     await anyio.sleep(60)
        """
        return self._callbacks.deliver(http_client)

    # -- ASGI ----------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point: faults, then the routes (:class:`FaultInjector`)."""
        await self._entry(scope, receive, send)

    def __repr__(self) -> str:
        return (
            f"EdgesSimulator(window={self._api.window.value!r}, "
            f"workspaces={len(self._world.workspaces)}, runs={len(self._world.runs)}, "
            f"faults={len(self.faults)}, requests={len(self._log)}, "
            f"callback_attempts={len(self._callbacks.deliveries)})"
        )
