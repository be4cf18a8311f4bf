"""``RunProfile``: the knobs of the seeded random lifecycles of runs launched without a script."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._scripts import RunScript

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping

__all__ = ["RunProfile", "random_script"]


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
