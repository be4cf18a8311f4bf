"""What the simulator POSTs to a run's ``callback.url``, and when: one plan per run.

A run launched with a ``callback`` gets a :class:`CallbackPlan`. The plan
reads the run's timeline to say which callback comes next and at which clock
reading, one at a time, so a cancel (which cuts the timeline) is seen at once:

- ``on: "final"`` (the default): one callback at the run's first terminal
  step, with that status and ``results`` null.
- ``on: "all"``: first the run's outputs in chunks of at most
  :data:`CHUNK_SIZE`, each as run status ``RUNNING`` at the moment the chunk's
  last output becomes visible; then the final callback. Every output visible
  at the first terminal step is in exactly one chunk; outputs a resumed
  ``BLOCKED`` run adds afterwards are not sent (its final callback is gone).

All plans wait in a :class:`CallbackOutbox`, a heap keyed by the next
callback's due time, which the sender (:mod:`._callbacks`) drains.
"""

from __future__ import annotations

import heapq
import itertools
import random
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._outputs import output_page
from ._wire import dump_json

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._run import SimulatedRun

__all__ = ["CHUNK_SIZE", "CallbackOutbox", "CallbackPlan", "DueCallback"]

#: The most outputs one partial (``on: "all"``) callback carries.
CHUNK_SIZE = 10


@dataclass(frozen=True, slots=True)
class DueCallback:
    """One callback of a run: when it is due, what it says, and its de-duplication key."""

    due: float
    status: str
    callback_ref_uid: str
    results: tuple[int, int] | None
    """The range of output indexes it carries (``on: "all"`` partials), else ``None``."""


class CallbackPlan:
    """The callbacks one run still has to get, produced one at a time."""

    __slots__ = ("_covered", "_final_sent", "_new_uid", "batch_uid", "headers", "run", "upcoming")

    def __init__(self, run: SimulatedRun, batch_uid: str, new_uid: Callable[[], str]) -> None:
        callback = run.callback or {}
        self.run = run
        self.batch_uid = batch_uid
        self.headers: dict[str, str] = {
            **{str(name): str(value) for name, value in (callback.get("headers") or {}).items()},
            "Content-Type": "application/json",
            "User-Agent": "EdgesSimulator",
        }
        self._new_uid = new_uid
        self._covered = 0 if callback.get("on", "final") == "all" else None
        self._final_sent = False
        self.upcoming: DueCallback | None = None
        self._prepare()

    @property
    def url(self) -> str:
        """Where the callbacks go."""
        return str((self.run.callback or {})["url"])

    @property
    def finished(self) -> bool:
        """Whether the run has no callback left (all sent, or cancelled)."""
        return self.upcoming is None or self.run.cancelled_at is not None

    def done(self) -> None:
        """Mark the upcoming callback as delivered (or given up) and prepare the next one."""
        sent = self.upcoming
        if sent is None:
            return
        if sent.results is not None:
            self._covered = sent.results[1]
        else:
            self._final_sent = True
        self._prepare()

    def _prepare(self) -> None:
        run = self.run
        terminal = run.first_terminal()
        self.upcoming = None
        if run.cancelled_at is not None or self._final_sent:
            return
        if self._covered is not None:
            total = (
                run.output_count_at(terminal[0])
                if terminal is not None
                else run.final_output_count()
            )
            if self._covered < total:
                stop = min(self._covered + CHUNK_SIZE, total)
                due = run.output_time(stop)
                assert due is not None  # stop <= total, which the timeline reaches
                self.upcoming = DueCallback(due, "RUNNING", self._new_uid(), (self._covered, stop))
                return
        if terminal is not None:
            self.upcoming = DueCallback(terminal[0], terminal[1], self._new_uid(), None)

    def body(self) -> bytes:
        """The JSON body of the upcoming callback."""
        upcoming = self.upcoming
        assert upcoming is not None
        run = self.run
        results: list[dict[str, Any]] | None = None
        if upcoming.results is not None:
            results = output_page(run.output_seed, *upcoming.results)
        first_input = run.first_input
        error = run.snapshot(upcoming.due).last_error
        return dump_json(
            {
                "callback_ref_uid": upcoming.callback_ref_uid,
                "run": {
                    "run_uid": run.uid,
                    "batch_uid": self.batch_uid,
                    "status": upcoming.status,
                },
                "input": first_input,
                "custom_data": first_input.get("custom_data") if first_input else None,
                "error": dict(error) if error is not None else None,
                "results": results,
            }
        )

    def __repr__(self) -> str:
        return f"CallbackPlan(run={self.run.uid!r}, upcoming={self.upcoming!r})"


class CallbackOutbox:
    """Every plan with a callback still to send, in a heap by due time.

    ``on_due_changed`` is called when a plan joins, so a sleeping sender can
    wake and look at the new earliest due time. The ``callback_ref_uid`` and
    ``batch_uid`` values come from a random stream seeded from the simulator's
    seed, apart from the one that makes run uids, so delivering callbacks does
    not change which uids later runs get.
    """

    __slots__ = ("_heap", "_order", "_rng", "on_due_changed")

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"edges-simulator-callbacks:{seed}")
        self._heap: list[tuple[float, int, CallbackPlan]] = []
        self._order = itertools.count()
        self.on_due_changed: Callable[[], None] | None = None

    def _new_uid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def add(self, run: SimulatedRun) -> None:
        """Plan the callbacks of a new run that asked for them."""
        self.push(CallbackPlan(run, self._new_uid(), self._new_uid))

    def push(self, plan: CallbackPlan) -> None:
        """Put a plan back in line for its upcoming callback (dropped if it has none)."""
        if plan.finished:
            return
        assert plan.upcoming is not None
        heapq.heappush(self._heap, (plan.upcoming.due, next(self._order), plan))
        if self.on_due_changed is not None:
            self.on_due_changed()

    def next_due(self) -> float | None:
        """The due time of the earliest waiting callback."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[CallbackPlan]:
        """Take out the plans whose upcoming callback is due at ``now``, earliest first."""
        due: list[CallbackPlan] = []
        while self._heap and self._heap[0][0] <= now:
            plan = heapq.heappop(self._heap)[2]
            if not plan.finished:
                due.append(plan)
        return due

    def __len__(self) -> int:
        return len(self._heap)

    def __repr__(self) -> str:
        return f"CallbackOutbox(waiting={len(self._heap)}, next_due={self.next_due()!r})"
