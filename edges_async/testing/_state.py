"""The simulator's world: its clock, workspaces, runs and their timelines.

A run never changes in the background. It holds a *timeline*: the clock times
at which its status changes, and knots of a piecewise-linear output count.
Every read computes the status and the visible outputs at the clock's current
reading, so no task has to tick, and fake loop time (looptime) drives it.
"""

from __future__ import annotations

import bisect
import itertools
import math
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from edges_async._plans import PlanTier

from ._wire import format_time

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "ARCHIVE_AFTER_SECONDS",
    "KNOWN_ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "RunProfile",
    "RunScript",
    "RunSnapshot",
    "SimClock",
    "SimulatedRun",
    "Workspace",
    "random_script",
    "utc_now",
]

TERMINAL_STATUSES = frozenset(
    {"SUCCEEDED", "PARTIAL_SUCCEEDED", "FAILED", "STOPPED", "BLOCKED", "INVALID"}
)
KNOWN_ACTIVE_STATUSES = frozenset({"CREATED", "QUEUED", "SCHEDULED", "RUNNING"})

#: Runs are archived (404, left out of lists) once older than this.
ARCHIVE_AFTER_SECONDS = 90 * 86_400.0

# After POST /resume: SCHEDULED at once, then QUEUED, RUNNING, SUCCEEDED at these offsets.
_RESUME_STEPS: tuple[tuple[str, float], ...] = (
    ("SCHEDULED", 0.0),
    ("QUEUED", 1.0),
    ("RUNNING", 2.0),
    ("SUCCEEDED", 5.0),
)

_DEFAULT_FAILURE: dict[str, Any] = {
    "label": "NO_RESULT",
    "message": "No result found for the given input",
    "params": {},
}


class SimClock:
    """The simulator's clock: seconds from a callable, mapped onto wall time.

    The first reading is the origin: it maps to ``start_time``, and the fixed
    rate-limit windows count minutes from it. Nothing reads the clock before the
    first request or seeded run, so a simulator can be built outside an event loop.
    """

    __slots__ = ("_origin", "_read", "start_time")

    def __init__(self, read: Callable[[], float], start_time: datetime) -> None:
        self._read = read
        self._origin: float | None = None
        self.start_time = start_time

    def now(self) -> float:
        """The clock's current reading."""
        moment = self._read()
        if self._origin is None:
            self._origin = moment
        return moment

    def elapsed(self, moment: float) -> float:
        """Seconds from the first reading to ``moment``."""
        if self._origin is None:
            self.now()
        assert self._origin is not None
        return moment - self._origin

    def wall(self, moment: float) -> datetime:
        """The wall-clock time (aware, UTC) of a clock reading."""
        return self.start_time + timedelta(seconds=self.elapsed(moment))

    def __repr__(self) -> str:
        return f"SimClock(origin={self._origin!r}, start_time={self.start_time.isoformat()})"


@dataclass(frozen=True, slots=True)
class RunScript:
    """The exact lifecycle of one simulated run.

    ``steps`` are ``(status, seconds after creation)`` pairs, in order, the
    first at 0. A status may be any string (``"ARCHIVING"``, ``"pending"``) or
    ``None``, to test a client against values it does not know.

    ``outputs`` appear linearly from the first ``RUNNING`` step to the first
    terminal step and are all visible from the terminal step on; without a
    terminal step they all appear at the last step. ``last_error`` shows from
    that step on (a ``FAILED`` run gets a ``NO_RESULT`` error if none is given).
    ``postponed_until`` is a datetime, or a timedelta after creation.
    ``resume_outputs`` are the outputs a ``BLOCKED`` run adds once resumed.

    Example: ``RunScript(steps=(("CREATED", 0), ("RUNNING", 1), ("FAILED", 5)), outputs=0)``
    is a run that fails five seconds after its launch.
    """

    steps: Sequence[tuple[str | None, float]] = (
        ("CREATED", 0.0),
        ("QUEUED", 1.0),
        ("RUNNING", 2.0),
        ("SUCCEEDED", 10.0),
    )
    outputs: int = 10
    postponed_until: datetime | timedelta | None = None
    last_error: Mapping[str, Any] | None = None
    resume_outputs: int = 0

    def __post_init__(self) -> None:
        steps = tuple((status, float(offset)) for status, offset in self.steps)
        if not steps:
            raise ValueError("a RunScript needs at least one step")
        if steps[0][1] != 0.0:
            raise ValueError("the first step of a RunScript must be at 0 seconds")
        if any(later[1] < earlier[1] for earlier, later in itertools.pairwise(steps)):
            raise ValueError("RunScript steps must be in time order")
        if self.outputs < 0 or self.resume_outputs < 0:
            raise ValueError("output counts cannot be negative")
        if isinstance(self.postponed_until, datetime) and self.postponed_until.tzinfo is None:
            raise ValueError("postponed_until must be an aware datetime")
        object.__setattr__(self, "steps", steps)


def _default_weights() -> dict[str, float]:
    return {
        "SUCCEEDED": 0.80,
        "PARTIAL_SUCCEEDED": 0.06,
        "FAILED": 0.06,
        "BLOCKED": 0.03,
        "STOPPED": 0.03,
        "INVALID": 0.02,
    }


@dataclass(frozen=True, slots=True)
class RunProfile:
    """Knobs for the random lifecycle of runs launched without a script.

    A run is CREATED, QUEUED after ``created_seconds``, RUNNING after a further
    ``queued_seconds`` (both uniform ranges), and ends after a log-normal running
    time (median ``running_median_seconds``, shape ``running_sigma``, capped at
    ``running_max_seconds``) in a terminal status drawn with ``terminal_weights``.
    It makes ``outputs_per_input`` (a uniform range) outputs per input, capped by
    ``parameters.max_results`` per input; PARTIAL_SUCCEEDED, BLOCKED and STOPPED
    runs keep 20-90 % of them, FAILED and INVALID runs none.
    """

    created_seconds: tuple[float, float] = (0.1, 0.5)
    queued_seconds: tuple[float, float] = (0.5, 3.0)
    running_median_seconds: float = 20.0
    running_sigma: float = 1.0
    running_max_seconds: float = 1800.0
    terminal_weights: Mapping[str, float] = field(default_factory=_default_weights)
    outputs_per_input: tuple[float, float] = (1.0, 5.0)

    def __post_init__(self) -> None:
        for low, high in (self.created_seconds, self.queued_seconds, self.outputs_per_input):
            if not 0 <= low <= high:
                raise ValueError("ranges must satisfy 0 <= low <= high")
        if self.running_median_seconds <= 0 or self.running_max_seconds <= 0:
            raise ValueError("running times must be positive")
        if not self.terminal_weights or min(self.terminal_weights.values()) < 0:
            raise ValueError("terminal_weights needs at least one non-negative weight")
        if sum(self.terminal_weights.values()) <= 0:
            raise ValueError("terminal_weights must not all be zero")


def random_script(
    rng: random.Random, profile: RunProfile, input_count: int, max_results: int | None
) -> RunScript:
    """A seeded random lifecycle for a run of ``input_count`` inputs."""
    queued = rng.uniform(*profile.created_seconds)
    running = queued + rng.uniform(*profile.queued_seconds)
    statuses = list(profile.terminal_weights)
    terminal = rng.choices(statuses, weights=[profile.terminal_weights[s] for s in statuses])[0]
    duration = min(
        profile.running_max_seconds,
        rng.lognormvariate(math.log(profile.running_median_seconds), profile.running_sigma),
    )
    per_input = rng.uniform(*profile.outputs_per_input)
    if max_results is not None:
        per_input = min(per_input, float(max_results))
    total = round(input_count * per_input)
    if terminal == "INVALID":
        return RunScript(steps=(("CREATED", 0.0), ("INVALID", queued)), outputs=0)
    if terminal == "FAILED":
        total = 0
    elif terminal != "SUCCEEDED":
        total = round(total * rng.uniform(0.2, 0.9))
    steps = (
        ("CREATED", 0.0),
        ("QUEUED", queued),
        ("RUNNING", running),
        (terminal, running + duration),
    )
    return RunScript(steps=steps, outputs=total)


class Workspace:
    """A simulated Edges workspace: its uid, plan and members' API keys.

    Each API key is one member (a ``user_uid``); runs launched with a key
    belong to that member. The first key's member owns runs seeded with
    :meth:`EdgesSimulator.add_run`.
    """

    __slots__ = ("_members", "plan", "uid")

    def __init__(self, uid: str, plan: PlanTier) -> None:
        self.uid = uid
        self.plan = plan
        self._members: dict[str, str] = {}

    @property
    def api_keys(self) -> tuple[str, ...]:
        """The API keys that authenticate as this workspace."""
        return tuple(self._members)

    @property
    def user_uid(self) -> str:
        """The uid of the workspace's first member (its first API key)."""
        return next(iter(self._members.values()))

    def user_uid_for(self, api_key: str) -> str:
        """The uid of the member an API key belongs to (``KeyError`` if none)."""
        return self._members[api_key]

    def _add_member(self, api_key: str, user_uid: str) -> None:
        self._members[api_key] = user_uid

    def __repr__(self) -> str:
        return f"Workspace(uid={self.uid!r}, plan={self.plan.value!r}, keys={len(self._members)})"


@dataclass(slots=True)
class RunSnapshot:
    """A run as seen at one clock reading (internal)."""

    status: str | None
    started: float | None
    finished: float | None
    updated: float
    output_count: int
    last_error: Mapping[str, Any] | None


class SimulatedRun:
    """One run in the simulator, with its timeline.

    ``status`` and ``output_count`` read the simulator's clock, like the API
    does; :meth:`as_dict` gives the Run object ``GET /v1/runs/{uid}`` would answer.
    """

    __slots__ = (
        "_clock",
        "_error",
        "_error_at",
        "_knots",
        "_statuses",
        "_times",
        "action_name",
        "callback",
        "cancelled_at",
        "created",
        "execution_mode",
        "first_input",
        "id",
        "input_count",
        "output_seed",
        "parameters",
        "postponed_until",
        "resume_outputs",
        "uid",
        "user_uid",
        "workspace",
    )

    def __init__(
        self,
        *,
        clock: SimClock,
        run_id: int,
        uid: str,
        workspace: Workspace,
        user_uid: str,
        action_name: str,
        execution_mode: str,
        created: float,
        script: RunScript,
        parameters: Mapping[str, Any] | None = None,
        callback: Mapping[str, Any] | None = None,
        input_count: int = 1,
        first_input: Mapping[str, Any] | None = None,
    ) -> None:
        self._clock = clock
        self.id = run_id
        self.uid = uid
        self.workspace = workspace
        self.user_uid = user_uid
        self.action_name = action_name
        self.execution_mode = execution_mode
        self.created = created
        self.parameters: dict[str, Any] = dict(parameters or {})
        self.callback: dict[str, Any] | None = dict(callback) if callback is not None else None
        self.input_count = input_count
        self.first_input: dict[str, Any] | None = (
            dict(first_input) if first_input is not None else None
        )
        """The run's first input object, as launched (callbacks carry it)."""
        self.cancelled_at: float | None = None
        """The clock reading of ``POST /cancel``, if the run was cancelled."""
        self.output_seed = int(uid.replace("-", ""), 16)
        self.resume_outputs = script.resume_outputs
        self._times = [created + offset for _, offset in script.steps]
        self._statuses = [status for status, _ in script.steps]
        finish = next(
            (i for i, status in enumerate(self._statuses) if status in TERMINAL_STATUSES),
            len(self._statuses) - 1,
        )
        running = next(
            (i for i, status in enumerate(self._statuses[:finish]) if status == "RUNNING"), None
        )
        if running is not None and self._times[running] < self._times[finish]:
            self._knots = [(self._times[running], 0), (self._times[finish], script.outputs)]
        else:
            self._knots = [(self._times[finish], script.outputs)]
        error = script.last_error
        if error is None and self._statuses[finish] == "FAILED":
            error = _DEFAULT_FAILURE
        self._error: dict[str, Any] | None = dict(error) if error is not None else None
        self._error_at = self._times[finish]
        postponed = script.postponed_until
        if isinstance(postponed, timedelta):
            postponed = clock.wall(created) + postponed
        self.postponed_until = postponed

    # -- reading -------------------------------------------------------------

    @property
    def created_at(self) -> datetime:
        """When the run was created (wall time)."""
        return self._clock.wall(self.created)

    @property
    def status(self) -> str | None:
        """The run's status now."""
        return self.snapshot(self._clock.now()).status

    @property
    def output_count(self) -> int:
        """How many outputs are visible now."""
        return self.output_count_at(self._clock.now())

    def as_dict(self) -> dict[str, Any]:
        """The Run object the API answers for this run now."""
        return self.run_object(self.snapshot(self._clock.now()))

    def is_archived(self, moment: float) -> bool:
        """Whether the run is older than the 90-day retention at ``moment``."""
        return moment - self.created > ARCHIVE_AFTER_SECONDS

    def snapshot(self, moment: float) -> RunSnapshot:
        """The run's state at clock reading ``moment``."""
        last = max(0, bisect.bisect_right(self._times, moment) - 1)
        started: float | None = None
        finished: float | None = None
        for i in range(last + 1):
            status = self._statuses[i]
            if status == "RUNNING" and started is None:
                started = self._times[i]
            if status in TERMINAL_STATUSES:
                if finished is None:
                    finished = self._times[i]
            elif status in KNOWN_ACTIVE_STATUSES:
                finished = None
        error = self._error if self._error is not None and moment >= self._error_at else None
        return RunSnapshot(
            status=self._statuses[last],
            started=started,
            finished=finished,
            updated=self._times[last],
            output_count=self.output_count_at(moment),
            last_error=error,
        )

    def output_count_at(self, moment: float) -> int:
        """How many outputs are visible at clock reading ``moment``."""
        previous_time, previous_count = -math.inf, 0
        for knot_time, knot_count in self._knots:
            if moment < knot_time:
                if previous_time == -math.inf:
                    return previous_count
                share = (moment - previous_time) / (knot_time - previous_time)
                grown = int((knot_count - previous_count) * share)
                return min(knot_count, previous_count + grown)
            previous_time, previous_count = knot_time, knot_count
        return previous_count

    def first_terminal(self) -> tuple[float, str] | None:
        """The clock reading and status of the run's first terminal step, if it has one."""
        for moment, status in zip(self._times, self._statuses, strict=True):
            if status in TERMINAL_STATUSES:
                return moment, status
        return None

    def final_output_count(self) -> int:
        """How many outputs the run will have once its timeline has played out."""
        return self._knots[-1][1]

    def output_time(self, count: int) -> float | None:
        """The first clock reading at which at least ``count`` outputs are visible, if any.

        The inverse of :meth:`output_count_at`; the linear guess is nudged by
        an ulp or two either way, so floating-point rounding cannot make it
        early or late.
        """
        previous_time, previous_count = -math.inf, 0
        for knot_time, knot_count in self._knots:
            if knot_count >= count:
                if previous_time == -math.inf or knot_time == previous_time:
                    return knot_time
                span = knot_time - previous_time
                guess = previous_time + (count - previous_count) * span / (
                    knot_count - previous_count
                )
                guess = min(max(guess, previous_time), knot_time)
                while guess < knot_time and self.output_count_at(guess) < count:
                    guess = math.nextafter(guess, math.inf)
                while guess > previous_time:
                    earlier = math.nextafter(guess, -math.inf)
                    if self.output_count_at(earlier) < count:
                        break
                    guess = earlier
                return guess
            previous_time, previous_count = knot_time, knot_count
        return None

    # -- changing ------------------------------------------------------------

    def cancel(self, moment: float) -> None:
        """Stop the run at ``moment``: STOPPED now, outputs frozen, no callbacks from then on."""
        self.cancelled_at = moment
        visible = self.output_count_at(moment)
        keep = bisect.bisect_right(self._times, moment)
        del self._times[keep:], self._statuses[keep:]
        self._times.append(moment)
        self._statuses.append("STOPPED")
        self._knots = [knot for knot in self._knots if knot[0] <= moment]
        self._knots.append((moment, visible))
        if self._error_at > moment:
            self._error = None

    def resume(self, moment: float) -> None:
        """Resume a BLOCKED run: SCHEDULED now, then QUEUED, RUNNING and SUCCEEDED."""
        visible = self.output_count_at(moment)
        for status, offset in _RESUME_STEPS:
            self._times.append(moment + offset)
            self._statuses.append(status)
        running_at, done_at = moment + _RESUME_STEPS[2][1], moment + _RESUME_STEPS[3][1]
        self._knots += [(running_at, visible), (done_at, visible + self.resume_outputs)]
        self.resume_outputs = 0
        self._error = None

    # -- wire shapes ---------------------------------------------------------

    def _time(self, moment: float | None) -> str | None:
        return None if moment is None else format_time(self._clock.wall(moment))

    def run_object(self, snap: RunSnapshot) -> dict[str, Any]:
        """The Run object of ``GET /v1/runs/{uid}``."""
        return {
            "id": self.id,
            "uid": self.uid,
            "action_id": zlib.crc32(self.action_name.encode()),
            "action_name": self.action_name,
            "user_uid": self.user_uid,
            "workspace_uid": self.workspace.uid,
            "scheduled_run_uid": None,
            "execution_mode": self.execution_mode,
            "status": snap.status,
            "retry_count": 0,
            "last_error": dict(snap.last_error) if snap.last_error is not None else None,
            "parameters": dict(self.parameters),
            "callback": {"url": self.callback["url"]} if self.callback is not None else None,
            "output_count": snap.output_count,
            "postponed_until": format_time(self.postponed_until),
            "started_at": self._time(snap.started),
            "finished_at": self._time(snap.finished),
            "synced_at": None,
            "created_at": self._time(self.created),
            "updated_at": self._time(snap.updated),
        }

    def status_object(self, snap: RunSnapshot) -> dict[str, Any]:
        """The light shape of ``GET /v1/runs/{uid}/status``."""
        return {
            "id": self.id,
            "uid": self.uid,
            "status": snap.status,
            "postponed_until": format_time(self.postponed_until),
            "started_at": self._time(snap.started),
            "finished_at": self._time(snap.finished),
            "created_at": self._time(self.created),
            "updated_at": self._time(snap.updated),
        }

    def launch_object(self, snap: RunSnapshot) -> dict[str, Any]:
        """The answer of ``POST /v1/actions/{slug}/run/async``."""
        return {
            "run_id": self.id,
            "run_uid": self.uid,
            "workspace_uid": self.workspace.uid,
            "user_uid": self.user_uid,
            "action_name": self.action_name,
            "status": snap.status,
            "postponed_until": format_time(self.postponed_until),
            "created_at": self._time(self.created),
            "updated_at": self._time(snap.updated),
        }

    def __repr__(self) -> str:
        return (
            f"SimulatedRun(uid={self.uid!r}, action_name={self.action_name!r}, "
            f"execution_mode={self.execution_mode!r})"
        )


def utc_now() -> datetime:
    """The current wall time, aware and in UTC."""
    return datetime.now(timezone.utc)
