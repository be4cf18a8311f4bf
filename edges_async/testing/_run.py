"""``SimulatedRun``: one run's timeline, read at any clock reading, and its wire shapes.

A run never changes in the background. It holds a *timeline*: the clock times
at which its status changes, and knots of a piecewise-linear output count.
Every read computes the status and the visible outputs at the clock's current
reading, so no task has to tick, and fake loop time (looptime) drives it.
A run is made from a :class:`RunSpec`: what its launch (or a test) asked for.
"""

from __future__ import annotations

import bisect
import math
import zlib
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ._wire import format_time

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from ._clock import SimClock
    from ._scripts import RunScript
    from ._workspace import Workspace

__all__ = [
    "ARCHIVE_AFTER_SECONDS",
    "KNOWN_ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "RunSnapshot",
    "RunSpec",
    "SimulatedRun",
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


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSpec:
    """What a new run is made of: its owner, action, mode, start, script and launch body."""

    workspace: Workspace
    user_uid: str
    action_name: str
    execution_mode: str
    created: float
    """The clock reading the run was created at."""
    script: RunScript
    parameters: Mapping[str, Any] | None = None
    callback: Mapping[str, Any] | None = None
    input_count: int = 1
    first_input: Mapping[str, Any] | None = None
    """The run's first input object, as launched (callbacks carry it)."""


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

    def __init__(self, *, clock: SimClock, run_id: int, uid: str, spec: RunSpec) -> None:
        self._clock = clock
        self.id = run_id
        self.uid = uid
        self.workspace = spec.workspace
        self.user_uid = spec.user_uid
        self.action_name = spec.action_name
        self.execution_mode = spec.execution_mode
        self.created = created = spec.created
        self.parameters: dict[str, Any] = dict(spec.parameters or {})
        self.callback: dict[str, Any] | None = (
            dict(spec.callback) if spec.callback is not None else None
        )
        self.input_count = spec.input_count
        self.first_input: dict[str, Any] | None = (
            dict(spec.first_input) if spec.first_input is not None else None
        )
        """The run's first input object, as launched (callbacks carry it)."""
        self.cancelled_at: float | None = None
        """The clock reading of ``POST /cancel``, if the run was cancelled."""
        self.output_seed = int(uid.replace("-", ""), 16)
        script = spec.script
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
