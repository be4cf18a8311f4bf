"""The routes of the Edges runs API, as a Starlette app over the simulator's world.

Each request goes through authentication (``X-API-Key``), the workspace's rate
limit for the route family, validation, and its handler; an :class:`APIError`
anywhere becomes the Edges error body. Unknown routes answer a 404 error body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.routing import Route

from ._listing import list_runs
from ._live import LiveCursors, live_count, live_page
from ._outputs import CursorCodec, output_page
from ._rate_limits import Decision, RateLimits, WindowKind, retry_after_header
from ._run import TERMINAL_STATUSES, RunSpec
from ._scripts import RunScript
from ._validation import (
    parse_async_body,
    parse_list_query,
    parse_live_body,
    parse_outputs_query,
    parse_run_uid_param,
    parse_schedule_body,
)
from ._wire import APIError, json_response

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response

    from ._run import SimulatedRun
    from ._validation import AsyncLaunch
    from ._workspace import Workspace
    from ._world import World

__all__ = ["EdgesApi"]


@dataclass(frozen=True, slots=True)
class _Caller:
    workspace: Workspace
    user_uid: str


class EdgesApi:
    """The API's handlers over a :class:`World`; ``app`` is the Starlette app serving them."""

    def __init__(
        self,
        world: World,
        *,
        window: WindowKind,
        send_retry_after: bool,
        live_page_size: int = 100,
    ) -> None:
        self._world = world
        self._clock = world.clock
        key = world.rng.getrandbits(128).to_bytes(16, "big")
        self._cursors = CursorCodec(key)
        self._live_cursors = LiveCursors(key)
        self._live_page_size = live_page_size
        self._limits = RateLimits(window)
        self._send_retry_after = send_retry_after
        self._next_error_ref = 1
        self.app = self._build_app()

    @property
    def window(self) -> WindowKind:
        """The rate-limit algorithm in force."""
        return self._limits.window

    def error_ref(self) -> str:
        """A fresh ``error_ref`` for an error body."""
        ref = f"ERR-{self._next_error_ref:06d}"
        self._next_error_ref += 1
        return ref

    def cursor_for(self, run: SimulatedRun, index: int) -> str:
        """The outputs cursor of output ``index`` of ``run``."""
        return self._cursors.encode(run.id, index)

    def _build_app(self) -> Starlette:
        runs = "/v1/runs/{run_uid}"
        routes = [
            # Launches, scheduled ones too, draw on no rate-limit budget.
            self._route("/v1/actions/{action_slug}/run/async", "POST", self._launch_async, None),
            self._route(
                "/v1/actions/{action_slug}/run/schedule", "POST", self._launch_schedule, None
            ),
            self._route(
                "/v1/actions/{action_slug}/run/live",
                "POST",
                self._launch_live,
                "/v1/actions/run/live",
                live=True,
            ),
            self._route("/v1/runs", "GET", self._list_runs, "/v1/runs"),
            self._route(runs, "GET", self._get_run, "/v1/runs"),
            self._route(f"{runs}/status", "GET", self._get_status, "/v1/runs/status"),
            self._route(f"{runs}/outputs", "GET", self._get_outputs, "/v1/runs/outputs"),
            self._route(f"{runs}/resume", "POST", self._resume, "/v1/runs/resume"),
            self._route(f"{runs}/cancel", "POST", self._cancel, "/v1/runs/cancel"),
        ]
        app = Starlette(
            routes=routes,
            exception_handlers={404: self._not_found, 405: self._not_found},
        )
        app.router.redirect_slashes = False
        return app

    def _route(
        self,
        path: str,
        method: str,
        handler: Callable[[Request, _Caller], Awaitable[Response]],
        limit_type: str | None,
        *,
        live: bool = False,
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            headers: dict[str, str] = {}
            try:
                caller = self._authenticate(request)
                if limit_type is not None:
                    decision = self._limits.acquire(
                        caller.workspace.uid,
                        caller.workspace.plan,
                        live=live,
                        elapsed=self._clock.elapsed(self._clock.now()),
                    )
                    if not decision.accepted:
                        raise self._rate_limited(decision, limit_type)
                    headers["X-RateLimit-Remaining"] = str(decision.remaining)
                response = await handler(request, caller)
            except APIError as exc:
                response = exc.to_response(self.error_ref())
            for name, value in headers.items():
                response.headers[name] = value
            return response

        return Route(path, endpoint, methods=[method])

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        message = f"Route {request.method}:{request.url.path} not found"
        return APIError(404, message, scope="request").to_response(self.error_ref())

    # -- helpers -------------------------------------------------------------

    def _authenticate(self, request: Request) -> _Caller:
        api_key = request.headers.get("x-api-key")
        if not api_key:
            raise APIError(401, "Missing X-API-Key header")
        workspace = self._world.workspace_for_key(api_key)
        if workspace is None:
            raise APIError(401, "Invalid API key")
        return _Caller(workspace, workspace.user_uid_for(api_key))

    def _rate_limited(self, decision: Decision, limit_type: str) -> APIError:
        headers = {"X-RateLimit-Type": limit_type, "X-RateLimit-Remaining": "0"}
        if self._send_retry_after:
            headers["Retry-After"] = retry_after_header(decision.retry_after)
        message = f"Rate limit exceeded on {limit_type}: {decision.limit} allowed for this plan"
        return APIError(429, message, headers=headers)

    def _find_run(self, request: Request, caller: _Caller, moment: float) -> SimulatedRun:
        uid = parse_run_uid_param(request.path_params["run_uid"])
        run = self._world.run(uid)
        if run is None or run.workspace is not caller.workspace or run.is_archived(moment):
            raise APIError(404, f"Run {uid} not found", scope="input")
        return run

    # -- handlers ------------------------------------------------------------

    async def _launch_async(self, request: Request, caller: _Caller) -> Response:
        launch = parse_async_body(await request.body())
        action = request.path_params["action_slug"]
        script = self._world.script_for_launch(action, launch.input_count, launch.max_results)
        now = self._clock.now()
        run = self._create_run(caller, action, now, script, launch)
        return json_response(run.launch_object(run.snapshot(now)))

    async def _launch_schedule(self, request: Request, caller: _Caller) -> Response:
        """One run per call, SCHEDULED until its start (a cron's later occurrences are not run)."""
        scheduled = parse_schedule_body(await request.body())
        launch = scheduled.launch
        action = request.path_params["action_slug"]
        now = self._clock.now()
        wall = self._clock.wall(now)
        delay = (scheduled.start_after(wall) - wall).total_seconds()
        script = self._world.script_for_schedule(
            action, launch.input_count, launch.max_results, delay
        )
        run = self._create_run(caller, action, now, script, launch)
        return json_response(run.launch_object(run.snapshot(now)))

    def _create_run(
        self, caller: _Caller, action: str, now: float, script: RunScript, launch: AsyncLaunch
    ) -> SimulatedRun:
        spec = RunSpec(
            workspace=caller.workspace,
            user_uid=caller.user_uid,
            action_name=action,
            execution_mode="ASYNC",
            created=now,
            script=script,
            parameters=launch.parameters,
            callback=launch.callback,
            input_count=launch.input_count,
            first_input=launch.first_input,
        )
        return self._world.create_run(spec)

    async def _launch_live(self, request: Request, caller: _Caller) -> Response:
        launch = parse_live_body(await request.body())
        cursors = request.query_params.getlist("cursor")
        if len(cursors) > 1:
            raise APIError(400, "querystring/cursor must be string")
        action = request.path_params["action_slug"]
        now = self._clock.now()
        elapsed = self._clock.elapsed(now)
        total = live_count(launch, self._world.live_count(action))
        if cursors:
            try:
                start = self._live_cursors.decode(cursors[0], action, launch.body, elapsed)
            except ValueError as exc:
                raise APIError(400, f"querystring/cursor is not valid: {exc}") from exc
        else:
            start = 0
            script = RunScript(steps=(("RUNNING", 0.0), ("SUCCEEDED", 0.0)), outputs=total)
            spec = RunSpec(
                workspace=caller.workspace,
                user_uid=caller.user_uid,
                action_name=action,
                execution_mode="LIVE",
                created=now,
                script=script,
                parameters=launch.parameters,
                first_input=launch.input,
            )
            self._world.create_run(spec)
        start = min(start, total)
        stop = min(start + self._live_page_size, total)
        headers: dict[str, str] = {}
        if stop < total:
            cursor = self._live_cursors.encode(action, launch.body, stop, elapsed)
            headers["X-Pagination-Next"] = str(
                request.url.replace(query=urlencode({"cursor": cursor}))
            )
        return json_response(live_page(launch, start, stop), headers=headers)

    async def _list_runs(self, request: Request, caller: _Caller) -> Response:
        query = parse_list_query(request.query_params.multi_items())
        runs = self._world.runs_of(caller.workspace)
        return json_response(list_runs(runs, query, self._clock.now()))

    async def _get_run(self, request: Request, caller: _Caller) -> Response:
        now = self._clock.now()
        run = self._find_run(request, caller, now)
        return json_response(run.run_object(run.snapshot(now)))

    async def _get_status(self, request: Request, caller: _Caller) -> Response:
        now = self._clock.now()
        run = self._find_run(request, caller, now)
        return json_response(run.status_object(run.snapshot(now)))

    async def _get_outputs(self, request: Request, caller: _Caller) -> Response:
        now = self._clock.now()
        run = self._find_run(request, caller, now)
        query = parse_outputs_query(request.query_params.multi_items())
        if run.execution_mode != "ASYNC":
            raise APIError(
                400,
                f"Outputs are not available for {run.execution_mode} runs: a live action "
                "returns its results in its response",
            )
        visible = run.output_count_at(now)
        if query.offset is not None:
            start = min(query.offset, visible)
            stop = min(start + query.limit, visible)
            return json_response(output_page(run.output_seed, start, stop))
        start = 0
        if query.cursor is not None:
            try:
                start = min(self._cursors.decode(query.cursor, run.id), visible)
            except ValueError as exc:
                raise APIError(400, f"querystring/cursor is not valid: {exc}") from exc
        stop = min(start + query.limit, visible)
        headers: dict[str, str] = {}
        if stop < visible:
            cursor = self._cursors.encode(run.id, stop)
            next_query = urlencode({"limit": query.limit, "cursor": cursor})
            headers["X-Pagination-Next"] = str(request.url.replace(query=next_query))
        return json_response(output_page(run.output_seed, start, stop), headers=headers)

    async def _resume(self, request: Request, caller: _Caller) -> Response:
        now = self._clock.now()
        run = self._find_run(request, caller, now)
        status = run.snapshot(now).status
        if status != "BLOCKED":
            raise APIError(
                422,
                f"Run {run.uid} cannot be resumed: its status is {status}; "
                "only BLOCKED runs can be resumed",
                label="RESUME_REFUSED",
                scope="run",
            )
        run.resume(now)
        return json_response(run.run_object(run.snapshot(now)))

    async def _cancel(self, request: Request, caller: _Caller) -> Response:
        now = self._clock.now()
        run = self._find_run(request, caller, now)
        if run.execution_mode != "ASYNC":
            raise APIError(
                400,
                f"Run {run.uid} is a {run.execution_mode} run: only async and scheduled "
                "runs can be cancelled",
            )
        status = run.snapshot(now).status
        if status in TERMINAL_STATUSES:
            raise APIError(
                422,
                f"Run {run.uid} cannot be cancelled: it is already {status}",
                label="CANCEL_REFUSED",
                scope="run",
            )
        run.cancel(now)
        return json_response(run.run_object(run.snapshot(now)))

    def __repr__(self) -> str:
        return f"EdgesApi(window={self.window.value!r}, world={self._world!r})"
