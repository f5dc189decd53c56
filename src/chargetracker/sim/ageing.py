"""Ageing: capacity fade and resistance growth per cycle, with spread, knees and defects.

Capacity after ``n`` completed cycles, as a fraction of the cell's initial capacity::

    loss(n) = f * n + f * (k - 1) * max(0, n - n_knee)
    capacity(n) = max(floor, 1 - loss(n))

``f`` is the cell's fade per cycle (fraction, log-normal around the group's median),
``n_knee`` the knee cycle (infinite for cells without a knee) and ``k`` the factor by
which the slope increases after it. Resistances grow as ``1 + resistance_growth * loss``.
Defective cells have ``f`` multiplied by ``defective_factor`` (5-10x by default).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError

__all__ = ["AgeingConfig", "CellAgeing", "draw_ageing", "capacity_fraction", "CAPACITY_FLOOR"]

#: Capacity never falls below this fraction (keeps the model well defined).
CAPACITY_FLOOR = 0.05


@dataclass(frozen=True, slots=True)
class AgeingConfig:
    """Per-group ageing parameters (fractions per cycle, not percent)."""

    fade_per_cycle: float = 0.0003          # median fade, fraction/cycle (0.03 %/cycle)
    fade_spread: float = 0.2                # log-normal sigma of the per-cell fade rate
    resistance_growth: float = 1.5          # dR/R0 per unit capacity loss
    capacity_spread: float = 0.01           # relative sigma of the initial capacity
    capacity_factor: float = 1.02           # mean initial capacity / nominal
    resistance_spread: float = 0.05         # relative sigma of the initial resistances
    knee_fraction: float = 0.1              # share of cells with a knee (exact count, rounded)
    knee_cycle: tuple[float, float] = (200.0, 600.0)  # uniform range of the knee cycle
    knee_factor: tuple[float, float] = (4.0, 8.0)     # slope multiplier after the knee
    defective_fraction: float = 0.04        # share of defective cells (exact count, rounded)
    defective_factor: tuple[float, float] = (5.0, 10.0)  # fade multiplier of defective cells

    def __post_init__(self) -> None:
        if self.fade_per_cycle < 0 or self.fade_spread < 0 or self.resistance_growth < 0:
            raise ConfigError("ageing: fade_per_cycle, fade_spread, resistance_growth must be >= 0")
        for name in ("knee_fraction", "defective_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"ageing: {name} must be in [0, 1]")
        if self.knee_fraction + self.defective_fraction > 1.0:
            raise ConfigError("ageing: knee_fraction + defective_fraction must be <= 1")
        for name in ("knee_cycle", "knee_factor", "defective_factor"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ConfigError(f"ageing: {name} must be a range [lo, hi] with 0 <= lo <= hi")

    @classmethod
    def from_mapping(cls, values: dict[str, Any], base: AgeingConfig | None = None) -> AgeingConfig:
        """Build from a TOML table, starting from ``base``; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown ageing setting(s) {unknown}; known: {sorted(known)}")
        current = {f.name: getattr(base or cls(), f.name) for f in fields(cls)}
        for key, val in values.items():
            current[key] = tuple(float(v) for v in val) if isinstance(val, list | tuple) else val
        try:
            return cls(**current)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"ageing: {exc}") from None


@dataclass(frozen=True, slots=True)
class CellAgeing:
    """Drawn per-cell ageing parameters (arrays of length ``n`` cells)."""

    fade_per_cycle: npt.NDArray[np.float64]
    knee_cycle: npt.NDArray[np.float64]       # inf where no knee
    knee_factor: npt.NDArray[np.float64]      # 1 where no knee
    resistance_growth: npt.NDArray[np.float64]
    capacity_factor: npt.NDArray[np.float64]  # initial capacity / nominal
    resistance_factor: npt.NDArray[np.float64]
    defective: npt.NDArray[np.bool_]
    knee: npt.NDArray[np.bool_]


def draw_ageing(config: AgeingConfig, n: int, rng: np.random.Generator) -> CellAgeing:
    """Draw ``n`` cells' ageing parameters. Exactly ``round(fraction * n)`` cells are
    defective / have a knee (disjoint sets), so a small group still shows them."""
    fade = config.fade_per_cycle * np.exp(config.fade_spread * rng.standard_normal(n))
    cap = config.capacity_factor * (1.0 + config.capacity_spread * rng.standard_normal(n))
    res = np.clip(1.0 + config.resistance_spread * rng.standard_normal(n), 0.5, None)
    order = rng.permutation(n)
    n_def = int(round(config.defective_fraction * n))
    n_knee = min(int(round(config.knee_fraction * n)), n - n_def)
    defective = np.zeros(n, bool)
    defective[order[:n_def]] = True
    knee = np.zeros(n, bool)
    knee[order[n_def:n_def + n_knee]] = True
    lo, hi = config.defective_factor
    fade = np.where(defective, fade * rng.uniform(lo, hi, n), fade)
    lo, hi = config.knee_cycle
    kc = np.where(knee, np.round(rng.uniform(lo, hi, n)), np.inf)
    lo, hi = config.knee_factor
    kf = np.where(knee, rng.uniform(lo, hi, n), 1.0)
    growth = np.full(n, config.resistance_growth)
    return CellAgeing(fade, kc, kf, growth, cap, res, defective, knee)


def capacity_fraction(
    cycles: npt.ArrayLike,
    fade_per_cycle: npt.ArrayLike,
    knee_cycle: npt.ArrayLike,
    knee_factor: npt.ArrayLike,
) -> npt.NDArray[np.float64]:
    """Remaining capacity fraction after ``cycles`` completed cycles (broadcasts)."""
    n = np.asarray(cycles, dtype=np.float64)
    f = np.asarray(fade_per_cycle, dtype=np.float64)
    kc = np.asarray(knee_cycle, dtype=np.float64)
    kf = np.asarray(knee_factor, dtype=np.float64)
    past = np.where(np.isfinite(kc), np.maximum(0.0, n - np.where(np.isfinite(kc), kc, 0.0)), 0.0)
    loss = f * n + f * (kf - 1.0) * past
    return np.maximum(CAPACITY_FLOOR, 1.0 - loss)
