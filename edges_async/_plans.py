"""Edges plan tiers and the rate limits the vendor documents for each."""

from __future__ import annotations

import enum

__all__ = ["PlanTier"]


class PlanTier(str, enum.Enum):
    """A workspace's Edges plan; it decides the workspace's rate limits.

    ``PlanTier("Gold")``, ``PlanTier("gold")`` and ``PlanTier.GOLD`` are the same.
    The limits come from the documented table: every ``/v1/runs`` route shares
    one per-workspace budget, and ``/v1/actions/*/run/live`` has its own.
    """

    TRIAL = "trial"
    BRONZE = "bronze"
    SILVER = "silver"
    GOLD = "gold"
    PLATINUM = "platinum"
    DIAMOND = "diamond"
    TITANIUM = "titanium"

    @classmethod
    def _missing_(cls, value: object) -> PlanTier | None:
        if isinstance(value, str):
            folded = value.strip().lower()
            for member in cls:
                if member.value == folded:
                    return member
        return None

    @property
    def requests_per_minute(self) -> int:
        """Requests per minute allowed on the ``/v1/runs`` routes."""
        return _RUNS_PER_MINUTE[self]

    @property
    def requests_per_second(self) -> float:
        """Requests per second allowed on the ``/v1/runs`` routes (Trial: 0.5, "< 1")."""
        return _RUNS_PER_MINUTE[self] / 60

    @property
    def live_requests_per_minute(self) -> int:
        """Requests per minute allowed on ``/v1/actions/*/run/live``."""
        return _LIVE_LIMITS[self][1]

    @property
    def live_requests_per_second(self) -> float:
        """Requests per second allowed on ``/v1/actions/*/run/live``."""
        return _LIVE_LIMITS[self][0]


_RUNS_PER_MINUTE: dict[PlanTier, int] = {
    PlanTier.TRIAL: 30,
    PlanTier.BRONZE: 60,
    PlanTier.SILVER: 150,
    PlanTier.GOLD: 150,
    PlanTier.PLATINUM: 300,
    PlanTier.DIAMOND: 300,
    PlanTier.TITANIUM: 600,
}

# (per second, per minute); Titanium's minute cap is the documented 1,200
# although 40/s would allow more: the minute figure binds.
_LIVE_LIMITS: dict[PlanTier, tuple[float, int]] = {
    PlanTier.TRIAL: (1, 60),
    PlanTier.BRONZE: (2, 120),
    PlanTier.SILVER: (10, 600),
    PlanTier.GOLD: (10, 600),
    PlanTier.PLATINUM: (20, 1200),
    PlanTier.DIAMOND: (20, 1200),
    PlanTier.TITANIUM: (40, 1200),
}
