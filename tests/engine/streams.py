"""Synthetic measurement streams for engine tests (hand-checkable shapes)."""

from __future__ import annotations

import numpy as np
import polars as pl


def cycling_frame(
    cells: int = 3,
    cycles: int = 3,
    dt_s: float = 1.0,
    charge_s: int = 600,
    rest_s: int = 120,
    discharge_s: int = 600,
    current_a: float = 1.0,
    seed: int = 0,
    noise_a: float = 0.0,
    t0: float = 1.7e9,
) -> pl.DataFrame:
    """CC charge / rest / CC discharge / rest cycling, optional current noise and jitter."""
    rng = np.random.default_rng(seed)
    period = charge_s + rest_s + discharge_s + rest_s
    frames = []
    for c in range(cells):
        n = int(cycles * period / dt_s)
        t = np.arange(n) * dt_s
        ph = t % period
        i = np.where(ph < charge_s, current_a,
                     np.where(ph < charge_s + rest_s, 0.0,
                              np.where(ph < charge_s + rest_s + discharge_s, -current_a, 0.0)))
        i = i * (1.0 - 0.02 * c) + noise_a * rng.standard_normal(n)
        i[0] = 0.0  # the data opens at rest, before the first charge: cycle 1 is whole
        v = 3.6 + 0.4 * np.where(i > 0, ph / period, 1 - ph / period) + 0.05 * i
        temp = 25.0 + 0.5 * np.abs(i)
        frames.append(pl.DataFrame({
            "cell_id": [f"cell-{c:03d}"] * n,
            "ts": t0 + t + (rng.uniform(0, 0.1 * dt_s, n) if seed else 0.0),
            "voltage_v": v,
            "current_a": i,
            "temperature_c": temp,
        }))
    return pl.concat(frames)


def interleave(frame: pl.DataFrame) -> pl.DataFrame:
    """Arrival order as from a live fleet: by time across cells."""
    return frame.sort("ts", maintain_order=True)


def trigger_times(start: float, end: float,
                  schedule: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200)) -> np.ndarray:
    """Sample times of a step logged on triggers: 1 s after its start, then ever sparser
    (the last interval of ``schedule`` repeats), the last point exactly at ``end``."""
    out, t, k = [], start, 0
    while True:
        t += schedule[min(k, len(schedule) - 1)]
        k += 1
        if t >= end:
            out.append(end)
            return np.asarray(out)
        out.append(t)
