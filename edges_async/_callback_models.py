"""The body Edges POSTs to a run's ``callback.url``.

As the API documents it: ``callback_ref_uid`` (the same on every delivery
retry: the de-duplication key), ``run {run_uid, batch_uid, status}``,
and ``input``, ``custom_data`` (the input's own metadata, injected as-is),
``error`` and ``results`` (partial results of ``on: "all"``), each possibly
null. Like every wire model, unknown fields are kept.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from ._models import RunStatus, StatusValue, _WireModel
from ._params import check_run_uid

__all__ = ["CallbackEvent", "CallbackRunInfo"]


class CallbackRunInfo(_WireModel):
    """The ``run`` object of a callback: which run (and input batch) it is about, and its status."""

    run_uid: str
    batch_uid: str | None = None
    status: StatusValue = None

    @field_validator("run_uid")
    @classmethod
    def _canonical(cls, run_uid: str) -> str:
        return check_run_uid(run_uid)


class CallbackEvent(_WireModel):
    """One callback delivery's body.

    ``is_final`` tells the last callback of a run (a terminal status) from the
    partial-results ones (``RUNNING``) that ``on: "all"`` sends before it.
    """

    callback_ref_uid: str = Field(min_length=1, max_length=200)
    run: CallbackRunInfo
    input: dict[str, Any] | None = None
    custom_data: Any = None
    error: dict[str, Any] | None = None
    results: list[Any] | None = None

    @property
    def run_uid(self) -> str:
        """The canonical uid of the run the callback is about."""
        return self.run.run_uid

    @property
    def is_final(self) -> bool:
        """Whether the callback reports a terminal status: the run's last callback."""
        status = self.run.status
        return isinstance(status, RunStatus) and status.is_terminal
