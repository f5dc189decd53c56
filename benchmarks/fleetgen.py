"""Vectorized synthetic fleet telemetry for the benchmarks (NumPy only, seeded).

Each cell cycles with a CC-CV charge (1C to ~90 % of the window, then an exponentially
decaying CV current down to C/20) or a plain CC charge (a quarter of the cells), a rest,
a 2C CC discharge that removes exactly what the charge put in, and a rest. Every cell
has its own capacity (nominal x 0.95..1.02), internal resistance and phase, so the
fleet is not in lock-step. Measurement noise: current 0.1 % gain + 0.3 mA offset
noise (well inside the rest threshold C/500), voltage 1 mV, temperature 0.05 degC,
timestamps jittered by up to +-5 ms around 1 Hz.

The whole fleet is computed as (cells x samples) arrays: no Python loop per sample.
Units follow the canonical schema: ts s since epoch, voltage_v V, current_a A
(+ = charging), temperature_c degC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

__all__ = ["Fleet", "make_fleet", "to_frame", "batch_frame", "cells_frame"]

START_EPOCH = 1_700_000_000.0
NOMINALS_AH = np.array([2.5, 3.0, 5.0])


@dataclass(frozen=True)
class Fleet:
    """(cells x samples) arrays plus per-cell metadata."""

    cell_ids: list[str]
    nominal_ah: np.ndarray      # (cells,)
    ts: np.ndarray              # (cells, samples) s since epoch
    voltage_v: np.ndarray
    current_a: np.ndarray
    temperature_c: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.ts.shape  # type: ignore[return-value]


def _ocv(soc: np.ndarray) -> np.ndarray:
    """A smooth NMC-like open-circuit voltage curve, V, for SOC in [0, 1]."""
    return 3.0 + 0.85 * soc + 0.18 * np.tanh((soc - 0.08) * 12.0) + 0.12 * soc**4


def make_fleet(cells: int, samples: int, *, seed: int = 0, start: float = START_EPOCH,
               dtype_ids: str = "cell-{:05d}") -> Fleet:
    """Simulate ``cells`` cells for ``samples`` seconds at 1 Hz."""
    rng = np.random.default_rng(seed)
    nominal = NOMINALS_AH[rng.integers(0, len(NOMINALS_AH), cells)]
    cap = nominal * rng.uniform(0.95, 1.02, cells)            # Ah, actual
    r_ohm = rng.uniform(0.015, 0.04, cells) * (3.0 / nominal)  # bigger cells, lower R
    cv = rng.random(cells) >= 0.25                             # CC-CV vs CC-only charge
    i_chg = 1.0 * nominal                                      # A
    i_dis = 2.0 * nominal
    s0 = 0.05
    # CC part brings SOC to 0.80 (CC-CV) or 0.95 (CC only); CV adds 0.15 with tau chosen
    # so the current has decayed to C/20 (e^-3) at the end.
    cc_frac = np.where(cv, 0.75, 0.90)
    t_cc = cc_frac * cap / i_chg * 3600.0
    cv_ah = np.where(cv, 0.15 * cap, 0.0)
    tau = np.where(cv, cv_ah * 3600.0 / i_chg / (1.0 - np.exp(-3.0)), 1.0)
    t_cv = np.where(cv, 3.0 * tau, 0.0)
    t_r1 = rng.uniform(300.0, 600.0, cells)
    chg_ah = cc_frac * cap + cv_ah
    t_d = chg_ah / i_dis * 3600.0
    t_r2 = rng.uniform(300.0, 600.0, cells)
    b1 = t_cc
    b2 = b1 + t_cv
    b3 = b2 + t_r1
    b4 = b3 + t_d
    period = b4 + t_r2

    k = np.arange(samples, dtype=np.float64)
    offset = rng.uniform(0.0, 1.0, cells) * period
    col = (slice(None), None)  # broadcast per-cell scalars over samples
    phase = np.mod(k[None, :] + offset[col], period[col])
    in_cc = phase < b1[col]
    in_cv = (~in_cc) & (phase < b2[col])
    in_r1 = (phase >= b2[col]) & (phase < b3[col])
    in_d = (phase >= b3[col]) & (phase < b4[col])

    current = np.zeros((cells, samples))
    current = np.where(in_cc, i_chg[col], current)
    x_cv = np.clip(phase - b1[col], 0.0, None) / tau[col]
    current = np.where(in_cv, i_chg[col] * np.exp(-x_cv), current)
    current = np.where(in_d, -i_dis[col], current)

    soc = np.full((cells, samples), s0)
    soc = np.where(in_cc, s0 + i_chg[col] * phase / 3600.0 / cap[col], soc)
    soc_cc_end = s0 + cc_frac * np.ones(cells)
    soc = np.where(in_cv, soc_cc_end[col] + i_chg[col] * tau[col] * (1.0 - np.exp(-x_cv))
                   / 3600.0 / cap[col], soc)
    soc_top = s0 + chg_ah / cap
    soc = np.where(in_r1, soc_top[col], soc)
    soc = np.where(in_d, soc_top[col] - i_dis[col] * (phase - b3[col]) / 3600.0 / cap[col], soc)
    del x_cv, phase

    v = _ocv(soc) + current * r_ohm[col]
    # CV: the charger holds the voltage at its limit.
    v = np.where(in_cv, 4.2, np.minimum(v, 4.2))
    v += rng.normal(0.0, 0.001, (cells, samples))
    current = current * (1.0 + rng.normal(0.0, 0.001, (cells, samples)))
    current += rng.normal(0.0, 0.0003, (cells, samples))
    heat = np.abs(current) ** 2 * r_ohm[col]
    temp = 25.0 + rng.uniform(-1.0, 1.0, cells)[col] + 2.0 * heat + rng.normal(0.0, 0.05, (cells, samples))
    ts = start + k[None, :] + rng.uniform(-0.005, 0.005, (cells, samples))
    ids = [dtype_ids.format(c) for c in range(cells)]
    return Fleet(ids, nominal, ts, v, current, temp)


def cells_frame(fleet: Fleet) -> pl.DataFrame:
    """Per-cell metadata for the engine's ``cells`` argument (rest threshold from capacity)."""
    return pl.DataFrame({"cell_id": fleet.cell_ids, "nominal_capacity_ah": fleet.nominal_ah})


def to_frame(fleet: Fleet) -> pl.DataFrame:
    """The whole fleet as one canonical frame, grouped by cell, each cell in time order."""
    n_cells, n = fleet.shape
    ids = pl.Series("cell_id", fleet.cell_ids, dtype=pl.Utf8).gather(
        np.repeat(np.arange(n_cells, dtype=np.uint32), n))
    return pl.DataFrame({
        "cell_id": ids,
        "ts": fleet.ts.ravel(),
        "voltage_v": fleet.voltage_v.ravel(),
        "current_a": fleet.current_a.ravel(),
        "temperature_c": fleet.temperature_c.ravel(),
    })


def batch_frame(fleet: Fleet, k: int, order: np.ndarray | None = None,
                ids: pl.Series | None = None) -> pl.DataFrame:
    """Second ``k`` of the fleet: one sample per cell, rows in ``order`` (arrival order)."""
    n_cells = fleet.shape[0]
    order = np.arange(n_cells) if order is None else order
    ids = pl.Series("cell_id", fleet.cell_ids, dtype=pl.Utf8) if ids is None else ids
    return pl.DataFrame({
        "cell_id": ids.gather(order),
        "ts": fleet.ts[order, k],
        "voltage_v": fleet.voltage_v[order, k],
        "current_a": fleet.current_a[order, k],
        "temperature_c": fleet.temperature_c[order, k],
    })
