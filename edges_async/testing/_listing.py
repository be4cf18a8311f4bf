"""``GET /v1/runs``: filtering, sorting and offset paging of a workspace's runs.

A list request may read every run of the workspace, so the per-run work is
kept small: the attribute filters first, then the run's status read straight
off its timeline (:func:`_selected`), and the full snapshot (outputs, error,
start and finish) only for the runs of the page. Sorting on fields a run knows
without a snapshot (``created_at``, ``updated_at``, ``id``, the usual ones)
picks the page with a heap instead of sorting every row.

The change-feed query (``sort=-updated_at`` without a uid filter: the runs
that changed most recently first) reads no more runs than its page needs: a
:class:`_Steps` index walks every run's status changes newest first. The
answers are the same as snapshotting and sorting every run:
``tests/test_simulator_runs.py`` checks them against that.
"""

from __future__ import annotations

import bisect
import collections
import heapq
import operator
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ._run import RunSnapshot, SimulatedRun
    from ._validation import ListQuery

__all__ = ["list_runs"]

_Row = tuple["SimulatedRun", "RunSnapshot"]
_Light = tuple["SimulatedRun", "str | None", float]
"""A run with its status and ``updated_at`` clock reading."""

# Run attributes the filters compare as they are (``status`` needs the clock).
_ATTRIBUTE_FILTERS = ("action_name", "execution_mode", "uid", "user_uid")
# Sort fields whose values are numbers a run knows without a snapshot, never NULL.
_NUMERIC_WITHOUT_SNAPSHOT = frozenset({"created_at", "updated_at", "id"})
# The order the step index answers: the newest change first, ties by -id.
_NEWEST_FIRST: Final = [("updated_at", True), ("id", True)]
_TIMES = operator.attrgetter("_times")
_FIRST, _LAST = operator.itemgetter(0), operator.itemgetter(-1)


class _Steps:
    """Every status change of a workspace's runs in (time, id) order, to walk newest first.

    It answers only while :meth:`describes` finds the same runs with the same
    timelines. The check is cheap (C loops over the timelines' lengths and
    last moments) and enough: a timeline changes only in place, by
    ``SimulatedRun.cancel``, which ends it at the cancel's moment (a new last
    moment, or one more step), and ``SimulatedRun.resume``, which adds steps.
    """

    __slots__ = (
        "_count",
        "_lasts",
        "_latest_creation",
        "_lengths",
        "_steps",
        "_timelines",
        "_when",
    )

    def __init__(self, runs: list[SimulatedRun]) -> None:
        self._count = len(runs)
        self._timelines: list[list[float]] = list(map(_TIMES, runs))
        self._lengths = list(map(len, self._timelines))
        self._lasts = list(map(_LAST, self._timelines))
        self._latest_creation = max(map(_FIRST, self._timelines), default=0.0)
        self._steps = sorted(
            (moment, run.id, index, run)
            for run, times in zip(runs, self._timelines, strict=True)
            for index, moment in enumerate(times)
        )  # (moment, id, index) is unique: runs are never compared
        self._when = [step[0] for step in self._steps]

    def describes(self, runs: list[SimulatedRun], moment: float) -> bool:
        """Whether the index holds ``runs`` as they are, every one created by ``moment``."""
        return (
            len(runs) == self._count
            and moment >= self._latest_creation
            and list(map(len, self._timelines)) == self._lengths
            and list(map(_LAST, self._timelines)) == self._lasts
        )

    def newest(
        self, moment: float, count: int, wanted: Callable[[SimulatedRun, str | None], bool]
    ) -> list[SimulatedRun]:
        """The first ``count`` runs by -updated_at, -id at ``moment`` that are ``wanted``.

        A step is a run's state at ``moment`` when no later step of the run
        has come by then (``SimulatedRun.snapshot``'s reading): walking the
        steps newest first yields each run once, in the list's order.
        """
        found: list[SimulatedRun] = []
        steps = self._steps
        position = bisect.bisect_right(self._when, moment)
        while position and len(found) < count:
            position -= 1
            _, _, index, run = steps[position]
            times = run._times
            if index + 1 < len(times) and times[index + 1] <= moment:
                continue  # superseded: a later step is the run's state
            if wanted(run, run._statuses[index]):
                found.append(run)
        return found


# The indexes of the last few run lists asked for newest first, by the lists' ids
# (each entry holds its list, so the id cannot be reused while it is here).
_INDEXES: collections.OrderedDict[int, tuple[list[SimulatedRun], _Steps]] = (
    collections.OrderedDict()
)
_MAX_INDEXES = 4


def _newest_first(
    runs: list[SimulatedRun], filters: dict[str, frozenset[str]], moment: float, count: int
) -> list[SimulatedRun]:
    """The first ``count`` runs passing ``filters`` by -updated_at, -id: the step index's way."""
    entry = _INDEXES.get(id(runs))
    if entry is None or not entry[1].describes(runs, moment):
        entry = (runs, _Steps(runs))
        _INDEXES[id(runs)] = entry
        if len(_INDEXES) > _MAX_INDEXES:
            _INDEXES.popitem(last=False)
    _INDEXES.move_to_end(id(runs))
    getters = [
        (operator.attrgetter(name), filters[name]) for name in _ATTRIBUTE_FILTERS if name in filters
    ]
    statuses = filters.get("status")

    def wanted(run: SimulatedRun, status: str | None) -> bool:
        return (
            (statuses is None or status in statuses)
            and not run.is_archived(moment)
            and all(get(run) in values for get, values in getters)
        )

    return entry[1].newest(moment, count, wanted)


def _selected(
    runs: Iterable[SimulatedRun], filters: dict[str, frozenset[str]], moment: float
) -> list[_Light]:
    """The runs that pass ``filters`` at ``moment``, archived runs left out.

    A run's status and ``updated_at`` are read off its timeline as
    ``SimulatedRun.snapshot`` reads them (the last step at or before
    ``moment``, else the first), without the rest of a snapshot (outputs,
    error, start and finish), which costs ten times more.
    """
    candidates = runs
    for name in _ATTRIBUTE_FILTERS:
        wanted = filters.get(name)
        if wanted is not None:
            get = operator.attrgetter(name)
            candidates = [run for run in candidates if get(run) in wanted]
    statuses = filters.get("status")
    selected: list[_Light] = []
    for run in candidates:
        if run.is_archived(moment):
            continue
        times = run._times
        last = bisect.bisect_right(times, moment) - 1
        status = run._statuses[last if last > 0 else 0]
        if statuses is None or status in statuses:
            selected.append((run, status, times[last if last > 0 else 0]))
    return selected


def _sort_value(field: str, run: SimulatedRun, snap: RunSnapshot) -> Any:
    if field == "created_at":
        return run.created
    if field == "updated_at":
        return snap.updated
    if field == "started_at":
        return snap.started
    if field == "finished_at":
        return snap.finished
    if field == "status":
        return snap.status
    if field == "action_name":
        return run.action_name
    return run.id


def _sort_key(field: str) -> Callable[[_Row], tuple[bool, Any]]:
    """Like PostgreSQL, NULL sorts after every value (last ascending, first descending)."""

    def key(row: _Row) -> tuple[bool, Any]:
        value = _sort_value(field, *row)
        return (value is None, 0 if value is None else value)

    return key


def _numeric_key(order: list[tuple[str, bool]]) -> Callable[[_Light], tuple[float, ...]]:
    """A key that sorts rows ascending as ``order`` does, its fields numbers never NULL.

    A descending field is simply negated. Two fields (a sort and the id
    tie-breaker) is the common case, spelled out: this runs for every row of
    every list request.
    """
    values: dict[str, Callable[[_Light], float]] = {
        "created_at": lambda row: row[0].created,
        "updated_at": operator.itemgetter(2),
        "id": lambda row: row[0].id,
    }
    signed = [(values[field], -1 if descending else 1) for field, descending in order]
    if len(signed) == 2:
        (first, first_sign), (second, second_sign) = signed
        return lambda row: (first_sign * first(row), second_sign * second(row))
    return lambda row: tuple(sign * value(row) for value, sign in signed)


def list_runs(
    runs: Iterable[SimulatedRun], query: ListQuery, moment: float
) -> list[dict[str, Any]]:
    """The Run objects ``GET /v1/runs`` answers at ``moment``, archived runs left out."""
    filters = query.filters
    if "flow_run_id" in filters:
        return []  # the simulator has no flow runs, so no run belongs to one
    order = list(query.sort)
    if all(field != "id" for field, _ in order):
        order.append(("id", True))  # the tie-breaker that keeps offset paging stable
    end = query.offset + query.limit
    # A uid filter leaves few runs to read; the index could walk far to find them.
    if order == _NEWEST_FIRST and "uid" not in filters and isinstance(runs, list):
        newest = _newest_first(runs, filters, moment, end)[query.offset :]
        return [run.run_object(run.snapshot(moment)) for run in newest]
    selected = _selected(runs, filters, moment)
    if all(field in _NUMERIC_WITHOUT_SNAPSHOT for field, _ in order):
        # The key holds the unique id: the order is total, the heap's page the sort's.
        key = _numeric_key(order)
        if end < len(selected):
            ordered = heapq.nsmallest(end, selected, key=key)
        else:
            ordered = sorted(selected, key=key)
        page = [run for run, _, _ in ordered[query.offset :]]
        return [run.run_object(run.snapshot(moment)) for run in page]
    rows: list[_Row] = [(run, run.snapshot(moment)) for run, _, _ in selected]
    # Stable sorts from the least significant key up give the multi-key order.
    for field, descending in reversed(order):
        rows.sort(key=_sort_key(field), reverse=descending)
    return [run.run_object(snap) for run, snap in rows[query.offset : end]]
