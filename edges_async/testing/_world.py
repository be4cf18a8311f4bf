"""The simulator's registry: workspaces, API keys, runs and the scripts waiting for launches."""

from __future__ import annotations

import collections
import dataclasses
import random
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from edges_async._plans import PlanTier

from ._callback_plans import CallbackOutbox
from ._profiles import random_script
from ._run import SimulatedRun
from ._workspace import Workspace

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._clock import SimClock
    from ._profiles import RunProfile
    from ._run import RunSpec
    from ._scripts import RunScript

__all__ = ["World"]


class World:
    """Everything the simulated API knows, and the seeded randomness that made it."""

    __slots__ = (
        "_by_key",
        "_live_counts",
        "_next_run_id",
        "_profile",
        "_runs",
        "_scripts",
        "_workspace_runs",
        "_workspaces",
        "callbacks",
        "clock",
        "rng",
    )

    def __init__(self, *, clock: SimClock, seed: int, profile: RunProfile) -> None:
        self.clock = clock
        self.rng = random.Random(seed)
        self._profile = profile
        self._workspaces: dict[str, Workspace] = {}
        self._by_key: dict[str, Workspace] = {}
        self._runs: dict[str, SimulatedRun] = {}
        self._workspace_runs: dict[str, list[SimulatedRun]] = {}
        self._scripts: dict[str | None, collections.deque[RunScript]] = {}
        self._live_counts: dict[str, int] = {}
        self._next_run_id = 1
        self.callbacks = CallbackOutbox(seed)
        """The runs with callbacks still to send."""

    def new_uid(self) -> str:
        """A seeded random uuid4."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # -- workspaces ----------------------------------------------------------

    def add_workspace(self, api_key: str, plan: PlanTier | str) -> Workspace:
        """A new workspace whose first member has ``api_key``."""
        workspace = Workspace(self.new_uid(), PlanTier(plan))
        self._workspaces[workspace.uid] = workspace
        self.add_api_key(workspace, api_key)
        return workspace

    def add_api_key(self, workspace: Workspace, api_key: str) -> str:
        """Add a member with ``api_key``; returns its user uid."""
        if not api_key:
            raise ValueError("an API key cannot be empty")
        if api_key in self._by_key:
            raise ValueError("this API key already belongs to a workspace")
        user_uid = self.new_uid()
        workspace._add_member(api_key, user_uid)
        self._by_key[api_key] = workspace
        return user_uid

    def workspace_for_key(self, api_key: str) -> Workspace | None:
        """The workspace an API key authenticates as."""
        return self._by_key.get(api_key)

    @property
    def workspaces(self) -> list[Workspace]:
        """Every workspace, in creation order."""
        return list(self._workspaces.values())

    # -- runs ----------------------------------------------------------------

    def queue_scripts(self, scripts: Sequence[RunScript], action: str | None) -> None:
        """Queue lifecycles for the next launches (of ``action`` only, if given)."""
        self._scripts.setdefault(action, collections.deque()).extend(scripts)

    def script_for_launch(
        self, action: str, input_count: int, max_results: int | None
    ) -> RunScript:
        """The oldest script queued for ``action``, else for any action, else a random one."""
        for key in (action, None):
            queue = self._scripts.get(key)
            if queue:
                return queue.popleft()
        return self.random_script(input_count, max_results)

    def script_for_schedule(
        self, action: str, input_count: int, max_results: int | None, delay: float
    ) -> RunScript:
        """A launch's script, SCHEDULED for its first ``delay`` seconds and shifted after them."""
        script = self.script_for_launch(action, input_count, max_results)
        if delay <= 0:
            return script
        postponed = script.postponed_until
        if isinstance(postponed, timedelta):
            postponed += timedelta(seconds=delay)
        steps = (("SCHEDULED", 0.0), *((status, at + delay) for status, at in script.steps))
        return dataclasses.replace(script, steps=steps, postponed_until=postponed)

    def script_live(self, action: str, results: int) -> None:
        """Make every live run of ``action`` answer ``results`` results."""
        self._live_counts[action] = results

    def live_count(self, action: str) -> int | None:
        """How many results live runs of ``action`` answer, if scripted."""
        return self._live_counts.get(action)

    def random_script(self, input_count: int, max_results: int | None) -> RunScript:
        """A seeded random lifecycle from the run profile."""
        rng = random.Random(self.rng.getrandbits(64))
        return random_script(rng, self._profile, input_count, max_results)

    def create_run(self, spec: RunSpec) -> SimulatedRun:
        """Register a new run made from ``spec``; a run with a ``callback`` joins the outbox."""
        run_id, uid = self._next_run_id, self.new_uid()
        run = SimulatedRun(clock=self.clock, run_id=run_id, uid=uid, spec=spec)
        self._next_run_id += 1
        self._runs[run.uid] = run
        self._workspace_runs.setdefault(spec.workspace.uid, []).append(run)
        if run.callback is not None:
            self.callbacks.add(run)
        return run

    def run(self, uid: str) -> SimulatedRun | None:
        """The run with this (lower-case) uid, if any."""
        return self._runs.get(uid)

    @property
    def runs(self) -> list[SimulatedRun]:
        """Every run, in creation order."""
        return list(self._runs.values())

    def runs_of(self, workspace: Workspace) -> list[SimulatedRun]:
        """A workspace's runs, in creation order."""
        return self._workspace_runs.get(workspace.uid, [])

    def __repr__(self) -> str:
        return f"World(workspaces={len(self._workspaces)}, runs={len(self._runs)})"
