"""``RunScript``: the exact lifecycle a test gives one simulated run."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["RunScript"]


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
