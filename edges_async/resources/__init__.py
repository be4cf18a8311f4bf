"""The API's resources, reached as attributes of ``AsyncClient`` (``client.runs``)."""

from __future__ import annotations

from ._runs import Runs as Runs

__all__ = ["Runs"]
