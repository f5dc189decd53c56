"""Seeded simulator of daily pack records for vehicles whose packs develop inconsistency.

Each vehicle has a pack of ``cells`` series cells around a state of charge that wanders
from day to day. A share of vehicles (``defect_share``) carries one weak cell with a
higher self-discharge (its SOC drifts below the others by ``drift_per_day`` x a
per-vehicle factor, in SOC fraction per day, from a random onset day) or a faster fade
(its voltage sags more under load). The daily cell-voltage spread is the pack's
manufacturing spread plus the weak cell's deviation through an OCV slope; the BMS raises
the "cell consistency poor" alarm (label 1) on a day whose spread exceeds
``alarm_spread_v``. Days without data (vehicle parked, logger off) are empty rows.

Vectorized over vehicles x days (numpy); a 10,000 x 365 fleet takes a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from .records import PACK_SCHEMA

__all__ = ["PackFleetConfig", "simulate_pack_fleet"]


@dataclass(frozen=True)
class PackFleetConfig:
    vehicles: int = 100
    days: int = 180
    start: str = "2024-01-01"
    cells: int = 96
    defect_share: float = 0.15
    drift_per_day: float = 0.004      # SOC fraction per day of the weak cell (self-discharge)
    alarm_spread_v: float = 0.10      # V, the BMS's consistency limit
    missing_share: float = 0.3        # share of days without data
    seed: int = 0


def simulate_pack_fleet(cfg: PackFleetConfig = PackFleetConfig()) -> pl.DataFrame:
    """Daily pack records (:data:`~.records.PACK_SCHEMA`) with labels."""
    rng = np.random.default_rng(cfg.seed)
    v, d = cfg.vehicles, cfg.days
    soc = np.clip(0.55 + 0.25 * np.sin(rng.random((v, 1)) * 6 + np.arange(d) / 3.0)
                  + rng.normal(0, 0.08, (v, d)), 0.05, 0.98)
    ocv = 3.3 + 0.9 * soc                                  # V, linearized cell OCV
    slope = 0.9                                            # V per SOC fraction
    base_spread = rng.uniform(0.008, 0.02, (v, 1)) + rng.normal(0, 0.002, (v, d))
    defect = rng.random(v) < cfg.defect_share
    kind_fade = rng.random(v) < 0.4                        # else self-discharge
    onset = rng.integers(0, max(1, d // 2), v)
    rate = cfg.drift_per_day * rng.uniform(0.5, 1.5, v)
    days_in = np.clip(np.arange(d)[None, :] - onset[:, None], 0, None)
    # Balancing partly recovers the weak cell on full charges (soc > 0.9).
    recovery = np.cumsum(soc > 0.9, axis=1) * 0.002
    dev = np.clip(rate[:, None] * days_in - recovery, 0.0, 0.5) * defect[:, None]
    current = rng.normal(-2.0, 6.0, (v, d))                # A, daily mean (+ charging)
    sag = np.where(kind_fade[:, None], 0.004 * np.abs(current) * dev * 20, 0.0)
    spread = np.abs(base_spread) + slope * dev * np.where(kind_fade[:, None], 0.5, 1.0) + sag
    cell_max = ocv + 0.5 * np.abs(base_spread)
    cell_min = cell_max - spread
    total = cfg.cells * (cell_max + cell_min) / 2 - 0.002 * current
    t_min = 18 + 8 * np.sin(np.arange(d) / 58.0)[None, :] + rng.normal(0, 2, (v, d))
    t_max = t_min + rng.uniform(1.0, 3.0, (v, d)) + 4 * dev
    label = (spread > cfg.alarm_spread_v).astype(np.int8)
    empty = rng.random((v, d)) < cfg.missing_share
    label = np.where(empty, 0, label)                      # no data: the BMS saw nothing

    def col(a: np.ndarray) -> np.ndarray:
        return np.where(empty, np.nan, a).ravel()

    start = np.datetime64(cfg.start, "D")
    return pl.DataFrame({
        "vin": np.repeat(np.array([f"SIM{i:07d}" for i in range(v)]), d),
        "date": np.tile(start + np.arange(d).astype("timedelta64[D]"), v),
        "total_voltage_v": col(total), "total_current_a": col(current),
        "cell_max_v": col(cell_max), "cell_min_v": col(cell_min),
        "max_temperature_c": col(t_max), "min_temperature_c": col(t_min),
        "label": label.ravel(),
    }).with_columns(pl.col(c).fill_nan(None) for c in (
        "total_voltage_v", "total_current_a", "cell_max_v", "cell_min_v",
        "max_temperature_c", "min_temperature_c")).cast(PACK_SCHEMA)  # type: ignore[arg-type]
