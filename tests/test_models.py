"""Wire models: every documented shape parses, unknown values and fields are kept."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

import edges_async as ea

from .conftest import LAUNCH_RESPONSE, RUN_UID

FULL_RUN = {
    "id": 1234,
    "uid": RUN_UID,
    "action_id": 7,
    "action_name": "linkedin-extract-people",
    "user_uid": "0b4bd5d4-6a5c-4f0e-9d83-111111111111",
    "workspace_uid": "0b4bd5d4-6a5c-4f0e-9d83-222222222222",
    "scheduled_run_uid": None,
    "execution_mode": "ASYNC",
    "status": "FAILED",
    "retry_count": 1,
    "last_error": {"label": "NO_RESULT", "message": "Nothing found", "params": {"url": "x"}},
    "parameters": {"max_results": 10},
    "callback": {"url": "https://hooks.example/edges"},
    "output_count": 0,
    "postponed_until": None,
    "started_at": "2026-11-20T10:00:01Z",
    "finished_at": "2026-11-20T10:00:09.5+00:00",
    "synced_at": None,
    "created_at": "2026-11-20T10:00:00Z",
    "updated_at": "2026-11-20T10:00:09.5Z",
    "flow_run_id": 99,
}


def test_full_run_shape() -> None:
    """The full run object parses with typed fields, datetimes and nested models."""
    run = ea.Run.model_validate(FULL_RUN)
    assert run.status is ea.RunStatus.FAILED
    assert run.execution_mode is ea.ExecutionMode.ASYNC
    assert run.last_error is not None
    assert run.last_error.label == "NO_RESULT"
    assert run.callback is not None
    assert run.callback.url == "https://hooks.example/edges"
    assert run.created_at == datetime(2026, 11, 20, 10, 0, 0, tzinfo=timezone.utc)
    assert run.is_terminal


def test_unknown_fields_are_kept() -> None:
    """Fields the SDK does not know survive parsing and dumping."""
    run = ea.Run.model_validate(FULL_RUN)
    assert run.model_extra == {"flow_run_id": 99}
    assert run.model_dump()["flow_run_id"] == 99


def test_status_shape() -> None:
    """The light /status shape fills a Run with the fields it has."""
    run = ea.Run.model_validate(
        {
            "id": 5,
            "uid": RUN_UID,
            "status": "RUNNING",
            "postponed_until": None,
            "started_at": "2026-11-20T10:00:01Z",
            "finished_at": None,
            "created_at": "2026-11-20T10:00:00Z",
            "updated_at": "2026-11-20T10:00:01Z",
        }
    )
    assert run.status is ea.RunStatus.RUNNING
    assert run.action_name is None
    assert not run.is_terminal


def test_launch_response_shape() -> None:
    """The launch response's run_id/run_uid fill id/uid."""
    run = ea.Run.model_validate(LAUNCH_RESPONSE)
    assert (run.id, run.uid, run.status) == (10, RUN_UID, ea.RunStatus.CREATED)


@pytest.mark.parametrize("value", ["pending", "ARCHIVING", "Weird Status"])
def test_unknown_status_is_kept_as_string_and_not_terminal(value: str) -> None:
    """A status the SDK does not know never raises and never ends waiting."""
    run = ea.Run.model_validate({"uid": RUN_UID, "status": value})
    assert run.status == value
    assert not isinstance(run.status, ea.RunStatus)
    assert not run.is_terminal


def test_known_status_in_other_case_is_recognised() -> None:
    """A documented status in lower case maps to its member."""
    assert ea.Run.model_validate({"uid": RUN_UID, "status": "succeeded"}).is_terminal


def test_null_status_and_unknown_mode() -> None:
    """status may be null and execution_mode unknown."""
    run = ea.Run.model_validate({"uid": RUN_UID, "status": None, "execution_mode": "SCHEDULE"})
    assert run.status is None
    assert run.execution_mode == "SCHEDULE"
    assert not run.is_terminal


def test_terminal_statuses() -> None:
    """Exactly the six documented terminal statuses are terminal."""
    assert (
        frozenset({"SUCCEEDED", "PARTIAL_SUCCEEDED", "FAILED", "STOPPED", "BLOCKED", "INVALID"})
        == ea.TERMINAL_STATUSES
    )
    assert isinstance(ea.TERMINAL_STATUSES, frozenset)
    for status in ea.RunStatus:
        assert status.is_terminal is (status in ea.TERMINAL_STATUSES)
    assert not ea.RunStatus.RUNNING.is_terminal
    assert str(ea.RunStatus.RUNNING) == "RUNNING"
    assert ea.RunStatus.RUNNING == "RUNNING"


def test_error_body() -> None:
    """The Edges error body parses and keeps extra fields."""
    body = ea.ErrorBody.model_validate(
        {"error_label": "LK_404", "error_scope": "lk", "error_ref": "r", "message": "m", "x": 1}
    )
    assert body.error_label == "LK_404"
    assert body.model_extra == {"x": 1}


SECRET = "callback-secret-0123456789"


def test_callback_repr_masks_header_values() -> None:
    """repr() and str() show header names but never their values; model_dump() has them."""
    callback = ea.Callback(url="https://hooks.example/edges", headers={"X-Secret": SECRET})
    for text in (repr(callback), str(callback), f"{callback}", repr([callback])):
        assert SECRET not in text
        assert "X-Secret" in text
        assert "hooks.example" in text
    assert repr(callback) == (
        "Callback(url='https://hooks.example/edges', on='final', headers={'X-Secret': '***'})"
    )
    assert callback.model_dump()["headers"] == {"X-Secret": SECRET}
    assert ea.Callback(url="https://h.example").headers is None


@pytest.mark.parametrize(
    "headers", [[("X-Secret", SECRET)], {"X-Secret": SECRET, "X-Count": 5}, SECRET]
)
def test_a_callback_validation_error_never_shows_header_values(headers: object) -> None:
    """Malformed headers are refused with an error that does not repeat the secret."""
    with pytest.raises(ValueError, match="headers") as caught:
        ea.Callback.model_validate({"url": "https://hooks.example/edges", "headers": headers})
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


@pytest.mark.parametrize(
    ("plan", "per_minute", "per_second", "live_per_minute", "live_per_second"),
    [
        (ea.PlanTier.TRIAL, 30, 0.5, 60, 1),
        (ea.PlanTier.BRONZE, 60, 1, 120, 2),
        (ea.PlanTier.SILVER, 150, 2.5, 600, 10),
        (ea.PlanTier.GOLD, 150, 2.5, 600, 10),
        (ea.PlanTier.PLATINUM, 300, 5, 1200, 20),
        (ea.PlanTier.DIAMOND, 300, 5, 1200, 20),
        (ea.PlanTier.TITANIUM, 600, 10, 1200, 40),
    ],
)
def test_plan_table(
    plan: ea.PlanTier,
    per_minute: int,
    per_second: float,
    live_per_minute: int,
    live_per_second: float,
) -> None:
    """Each tier carries the documented limits."""
    assert plan.requests_per_minute == per_minute
    assert plan.requests_per_second == per_second
    assert plan.live_requests_per_minute == live_per_minute
    assert plan.live_requests_per_second == live_per_second


def test_plan_lookup_is_case_insensitive() -> None:
    """PlanTier accepts names in any case and refuses unknown ones."""
    assert ea.PlanTier("Titanium") is ea.PlanTier.TITANIUM
    assert ea.PlanTier(" diamond ") is ea.PlanTier.DIAMOND
    with pytest.raises(ValueError, match="plutonium"):
        ea.PlanTier("plutonium")
