"""``GET /v1/runs``: filtering, sorting and offset paging of a workspace's runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ._run import RunSnapshot, SimulatedRun
    from ._validation import ListQuery

__all__ = ["list_runs"]

_Row = tuple["SimulatedRun", "RunSnapshot"]


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


def _matches(run: SimulatedRun, filters: dict[str, frozenset[str]]) -> bool:
    return (
        ("action_name" not in filters or run.action_name in filters["action_name"])
        and ("execution_mode" not in filters or run.execution_mode in filters["execution_mode"])
        and ("uid" not in filters or run.uid in filters["uid"])
        and ("user_uid" not in filters or run.user_uid in filters["user_uid"])
    )


def list_runs(
    runs: Iterable[SimulatedRun], query: ListQuery, moment: float
) -> list[dict[str, Any]]:
    """The Run objects ``GET /v1/runs`` answers at ``moment``, archived runs left out."""
    filters = query.filters
    if "flow_run_id" in filters:
        return []  # the simulator has no flow runs, so no run belongs to one
    rows: list[_Row] = []
    for run in runs:
        if run.is_archived(moment) or not _matches(run, filters):
            continue
        snap = run.snapshot(moment)
        if "status" in filters and snap.status not in filters["status"]:
            continue
        rows.append((run, snap))
    order = list(query.sort)
    if all(field != "id" for field, _ in order):
        order.append(("id", True))  # the tie-breaker that keeps offset paging stable
    # Stable sorts from the least significant key up give the multi-key order.
    for field, descending in reversed(order):
        rows.sort(key=_sort_key(field), reverse=descending)
    page = rows[query.offset : query.offset + query.limit]
    return [run.run_object(snap) for run, snap in page]
