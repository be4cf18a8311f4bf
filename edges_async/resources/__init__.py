"""The API's resources, reached as attributes of ``AsyncClient``: ``runs`` and ``actions``."""

from __future__ import annotations

from ._actions import Actions as Actions
from ._live import LiveResult as LiveResult
from ._runs import Runs as Runs

__all__ = ["Actions", "LiveResult", "Runs"]
