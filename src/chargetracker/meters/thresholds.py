"""Spike thresholds: each meter's percentile of "on" power over a trailing window.

The batch layer recomputes this table on a schedule; the real-time layer judges readings
against it. Linear interpolation exactly as :func:`numpy.percentile` (method "linear",
the same lerp, so the values agree bit for bit), over readings above ``on_w`` only: an
intermittent appliance reads 0 W most of the time and its plain 97th percentile is 0 W.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import polars as pl

from .config import MeterConfig
from .schema import THRESHOLD_SCHEMA

__all__ = ["compute_thresholds", "percentile_sorted", "slot_thresholds"]


def percentile_sorted(values: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                      q: float) -> np.ndarray:
    """Percentile ``q`` (0..100) of each group of an array sorted within groups.

    Group ``k`` is ``values[starts[k] : starts[k] + counts[k]]``; empty groups give NaN.
    Follows numpy's "linear" method: virtual index ``(n - 1) q / 100`` and numpy's lerp.
    """
    out = np.full(len(starts), np.nan)
    ok = counts > 0
    n = counts[ok].astype(np.float64)
    h = (n - 1.0) * (q / 100.0)
    lo = np.floor(h)
    t = h - lo
    lo_i = starts[ok] + lo.astype(np.int64)
    hi_i = np.minimum(lo_i + 1, starts[ok] + counts[ok] - 1)
    a = values[lo_i]
    b = values[hi_i]
    diff = b - a
    res = a + diff * t
    upper = t >= 0.5
    res[upper] = (b - diff * (1.0 - t))[upper]
    out[ok] = res
    return out


@nb.njit(cache=True, nogil=True)
def _order_stats(values: np.ndarray, starts: np.ndarray, counts: np.ndarray, q: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per group the order statistics at floor and floor + 1 of numpy's virtual index."""
    k = len(starts)
    a = np.empty(k)
    b = np.empty(k)
    for g in range(k):
        h = (counts[g] - 1.0) * q
        lo = int(np.floor(h))
        # Selection, not a sort: x[lo] in place, everything after it is >= x[lo].
        seg = np.partition(values[starts[g] : starts[g] + counts[g]], lo)
        a[g] = seg[lo]
        b[g] = seg[lo + 1 :].min() if lo + 1 < counts[g] else seg[lo]
    return a, b


def _lerp(a: np.ndarray, b: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """numpy's "linear" method, its virtual index and its lerp: bit-identical values."""
    h = (counts.astype(np.float64) - 1.0) * q
    t = h - np.floor(h)
    diff = b - a
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, np.where(t >= 0.5, b - diff * (1.0 - t), a + diff * t), np.nan)


@nb.njit(cache=True, nogil=True)
def _slot_order_stats(slot: np.ndarray, ts: np.ndarray, p: np.ndarray, n_slots: int,
                      start: float, end: float, on_w: float, q: float
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slot: count of "on" readings in ``(start, end]`` and the two order statistics.

    One counting pass, one scatter into per-slot segments, one selection per slot; the
    input may be in any order (order statistics do not depend on it).
    """
    n = len(slot)
    counts = np.zeros(n_slots, dtype=np.int64)
    for i in range(n):
        if ts[i] > start and ts[i] <= end and p[i] > on_w:
            counts[slot[i]] += 1
    offs = np.zeros(n_slots + 1, dtype=np.int64)
    for s in range(n_slots):
        offs[s + 1] = offs[s] + counts[s]
    buf = np.empty(offs[n_slots])
    pos = offs[:n_slots].copy()
    for i in range(n):
        if ts[i] > start and ts[i] <= end and p[i] > on_w:
            s = slot[i]
            buf[pos[s]] = p[i]
            pos[s] += 1
    a = np.full(n_slots, np.nan)
    b = np.full(n_slots, np.nan)
    for s in range(n_slots):
        c = counts[s]
        if c == 0:
            continue
        lo = int(np.floor((c - 1.0) * q))
        seg = np.partition(buf[offs[s] : offs[s] + c], lo)
        a[s] = seg[lo]
        b[s] = seg[lo + 1 :].min() if lo + 1 < c else seg[lo]
    return counts, a, b


def slot_thresholds(slot: np.ndarray, ts: np.ndarray, power_w: np.ndarray, n_slots: int,
                    config: MeterConfig, as_of: float) -> tuple[np.ndarray, np.ndarray]:
    """Array form of :func:`compute_thresholds` for meters numbered ``0..n_slots-1``:
    per slot the threshold (W, NaN without "on" readings) and the reading count, over
    ``(as_of - window, as_of]``; values equal :func:`compute_thresholds` bit for bit."""
    start = float(as_of) - config.window_days * 86_400.0
    q = config.percentile / 100.0
    counts, a, b = _slot_order_stats(slot, ts, power_w, n_slots, start, float(as_of),
                                     config.on_w, q)
    return _lerp(a, b, counts, q), counts


def compute_thresholds(readings: pl.DataFrame | pl.LazyFrame, config: MeterConfig | None = None,
                       *, as_of: float | None = None, meter_ids: list[str] | None = None
                       ) -> pl.DataFrame:
    """Threshold table over the window ``(as_of - window, as_of]`` (s since epoch).

    ``as_of`` defaults to the newest reading. Meters in ``meter_ids`` (or in the input)
    without "on" readings get a null threshold and ``n_readings = 0``.
    """
    cfg = config or MeterConfig()
    lf = readings.lazy() if isinstance(readings, pl.DataFrame) else readings
    lf = lf.select("meter_id", "ts", "power_w")
    if as_of is None:
        as_of = lf.select(pl.col("ts").max()).collect().item()
    if as_of is None:
        return pl.DataFrame(schema=THRESHOLD_SCHEMA)
    start = float(as_of) - cfg.window_days * 86_400.0
    on = (lf.filter((pl.col("ts") > start) & (pl.col("ts") <= as_of)
                    & (pl.col("power_w") > cfg.on_w))
          .select("meter_id", "power_w").collect())
    ids = on.get_column("meter_id")
    head = ids.ne_missing(ids.shift(1)).fill_null(True)
    runs = ids.filter(head)
    if runs.n_unique() != len(runs):
        # Not grouped by meter (a live table): group first; each meter's order is kept.
        on = on.sort("meter_id", maintain_order=True)
        ids = on.get_column("meter_id")
        head = ids.ne_missing(ids.shift(1)).fill_null(True)
    starts = np.flatnonzero(head.to_numpy())
    counts = np.diff(np.append(starts, on.height)).astype(np.int64)
    q = cfg.percentile / 100.0
    a, b = _order_stats(on.get_column("power_w").to_numpy(), starts, counts, q)
    p = _lerp(a, b, counts, q)
    table = pl.DataFrame({"meter_id": ids.gather(starts), "p97_w": p, "n_readings": counts},
                         schema={"meter_id": pl.Utf8, "p97_w": pl.Float64, "n_readings": pl.Int64})
    if meter_ids is not None:
        everyone = pl.Series("meter_id", meter_ids, dtype=pl.Utf8).unique()
    else:
        col = lf.select("meter_id").collect().get_column("meter_id")
        # Distinct values of the runs only: cheap when rows come grouped by meter.
        everyone = col.filter(col.ne_missing(col.shift(1)).fill_null(True)).unique()
    full = (everyone.to_frame().join(table, on="meter_id", how="left")
            .with_columns(pl.col("n_readings").fill_null(0),
                          pl.lit(start).alias("window_start_ts"),
                          pl.lit(float(as_of)).alias("window_end_ts")))
    return full.select(list(THRESHOLD_SCHEMA)).sort("meter_id")
