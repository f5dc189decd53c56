"""Shared builders for the meter tests."""

from __future__ import annotations

import numpy as np
import polars as pl

from chargetracker.meters import flush, new_state, register_meters, set_thresholds, update
from chargetracker.meters.config import MeterConfig


def readings(meter: str, ts, power, energy=None) -> pl.DataFrame:
    d = {"meter_id": [meter] * len(ts), "ts": np.asarray(ts, dtype=float),
         "power_w": np.asarray(power, dtype=float)}
    if energy is not None:
        d["energy_wh"] = np.asarray(energy, dtype=float)
    return pl.DataFrame(d)


def incremental(frame: pl.DataFrame, cuts: list[int], config: MeterConfig | None = None, *,
                meters: pl.DataFrame | None = None, thresholds: pl.DataFrame | None = None,
                roundtrip: bool = False):
    """Feed ``frame`` split at ``cuts``; upsert days/alerts by key like a store would."""
    st = new_state(config)
    if meters is not None:
        register_meters(st, meters)
    if thresholds is not None:
        set_thresholds(st, thresholds)
    days, alerts, rejected = [], [], []
    bounds = [0, *sorted(cuts), frame.height]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        st, out = update(st, frame.slice(a, b - a))
        if roundtrip:
            st = type(st).from_bytes(st.to_bytes())
        days.append(out.days)
        alerts.append(out.alerts)
        rejected.append(out.rejected)
    st, out = flush(st)
    days.append(out.days)
    alerts.append(out.alerts)
    d = pl.concat(days).unique(subset=["meter_id", "date"], keep="last", maintain_order=True)
    a = pl.concat(alerts).unique(subset=["meter_id", "start_ts"], keep="last", maintain_order=True)
    return d.sort("meter_id", "date"), a.sort("meter_id", "start_ts"), pl.concat(rejected)
