"""Compiled window features: one pass over each sample's 14 days (Numba, GIL released).

The engineered window features (:mod:`chargetracker.ml.features`) are reductions of a
few derived daily signals over days t-14 .. t-1. Built with NumPy they need a (14, n)
temporary per signal and reduction -- memory traffic that made them the largest cost of
batch scoring (2.9 CPU-s per million records, more than the trees). Here each sample
reads its 14 panel rows once and produces every window feature; the definitions are
exactly those of the NumPy helpers (NaN = no data; valid = not NaN):

* ``last`` / ``first``: most recent / oldest valid value; ``max`` / ``min`` ignore NaN;
* ``mean``: of the valid days (7-day variant: days t-7 .. t-1);
* ``std``: population, two-pass, NaN with fewer than 2 valid days;
* ``slope``: least squares per day over the valid days (day offsets 0..13), NaN with
  fewer than 3 valid days or a degenerate design;
* counts of days with data, with spread above 30 / 50 mV, days since the last data
  (15 when none in the window).

Sums here run over 14 values (the NumPy means differenced panel-long cumulative sums),
so results agree to rounding (~1e-12 relative), far below the float32 the model reads.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["WINDOW_FEATURES", "window_features"]

#: Output rows of :func:`window_features`, in order (names of ml.features).
WINDOW_FEATURES: tuple[str, ...] = (
    "spread_last_v", "spread_max_v", "spread_mean_v", "spread_min_v", "spread_std_v",
    "spread_trend_v_per_day", "spread_recent_mean_v", "spread_last_minus_first_v",
    "spread_rel_mean", "spread_rel_max", "temp_spread_last_c", "temp_spread_max_c",
    "temp_spread_mean_c", "temp_spread_trend_c_per_day", "cell_mean_v", "cell_min_min_v",
    "cell_max_max_v", "total_voltage_mean_v", "n_series_est", "current_mean_a",
    "current_std_a", "max_temperature_max_c", "max_temperature_mean_c",
    "min_temperature_min_c", "days_with_data", "days_with_data_last7", "days_since_data",
    "empty_window", "days_spread_over_30mv", "days_spread_over_50mv",
)
_DAYS = 14


@nb.njit(cache=True, nogil=True, inline="always")
def _stats(a: np.ndarray) -> tuple[float, float, float, float, float, float, float]:
    """(last, first, max, min, mean, std, slope) of the valid values of a 14-vector."""
    nan = np.nan
    n = 0
    s = 0.0
    st = 0.0
    stt = 0.0
    sta = 0.0
    last = nan
    first = nan
    mx = nan
    mn = nan
    for j in range(_DAYS):
        v = a[j]
        if v == v:
            if n == 0:
                first = v
                mx = v
                mn = v
            else:
                mx = max(mx, v)
                mn = min(mn, v)
            last = v
            n += 1
            s += v
            t = float(j)
            st += t
            stt += t * t
            sta += t * v
    if n == 0:
        return nan, nan, nan, nan, nan, nan, nan
    mean = s / n
    std = nan
    if n >= 2:
        d2 = 0.0
        for j in range(_DAYS):
            v = a[j]
            if v == v:
                d2 += (v - mean) * (v - mean)
        std = np.sqrt(d2 / n)
    slope = nan
    den = n * stt - st * st
    if n >= 3 and den > 0:
        slope = (n * sta - st * s) / den
    return last, first, mx, mn, mean, std, slope


@nb.njit(cache=True, nogil=True, inline="always")
def _mean(a: np.ndarray, lo: int) -> float:
    n = 0
    s = 0.0
    for j in range(lo, _DAYS):
        v = a[j]
        if v == v:
            n += 1
            s += v
    return s / n if n > 0 else np.nan


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _kernel(x: np.ndarray, index: np.ndarray, out: np.ndarray,  # noqa: PLR0915
            cols: np.ndarray) -> None:
    """Window features of sample s into ``out[s, cols[k]]`` (feature k of
    WINDOW_FEATURES; skipped where cols[k] < 0)."""
    vals = np.empty(len(cols))
    spread = np.empty(_DAYS)
    rel = np.empty(_DAYS)
    tspread = np.empty(_DAYS)
    cell = np.empty(_DAYS)
    series = np.empty(_DAYS)
    tv = np.empty(_DAYS)
    cur = np.empty(_DAYS)
    tmax = np.empty(_DAYS)
    tmin = np.empty(_DAYS)
    cmax = np.empty(_DAYS)
    cmin = np.empty(_DAYS)
    for s in range(index.size):
        r0 = index[s] - _DAYS
        has_n = 0
        has7 = 0
        last_has = -1
        over30 = 0
        over50 = 0
        for j in range(_DAYS):
            row = x[r0 + j]
            tv[j] = row[0]
            cur[j] = row[1]
            cmax[j] = row[2]
            cmin[j] = row[3]
            tmax[j] = row[4]
            tmin[j] = row[5]
            sp = row[2] - row[3]
            c = 0.5 * (row[2] + row[3])
            spread[j] = sp
            cell[j] = c
            rel[j] = sp / c
            series[j] = row[0] / c
            tspread[j] = row[4] - row[5]
            any_ = False
            for k in range(6):
                if row[k] == row[k]:
                    any_ = True
            if any_:
                has_n += 1
                last_has = j
                if j >= _DAYS - 7:
                    has7 += 1
            if sp > 0.03:
                over30 += 1
            if sp > 0.05:
                over50 += 1
        sl, sf, smx, smn, smean, sstd, sslope = _stats(spread)
        vals[0] = sl
        vals[1] = smx
        vals[2] = smean
        vals[3] = smn
        vals[4] = sstd
        vals[5] = sslope
        vals[6] = _mean(spread, _DAYS - 7)
        vals[7] = sl - sf
        _, _, rmx, _, rmean, _, _ = _stats(rel)
        vals[8] = rmean
        vals[9] = rmx
        tl, _, tmx, _, tmean, _, tslope = _stats(tspread)
        vals[10] = tl
        vals[11] = tmx
        vals[12] = tmean
        vals[13] = tslope
        vals[14] = _mean(cell, 0)
        vals[15] = _stats(cmin)[3]
        vals[16] = _stats(cmax)[2]
        vals[17] = _mean(tv, 0)
        vals[18] = _mean(series, 0)
        _, _, _, _, cmean, cstd, _ = _stats(cur)
        vals[19] = cmean
        vals[20] = cstd
        _, _, xmx, _, xmean, _, _ = _stats(tmax)
        vals[21] = xmx
        vals[22] = xmean
        vals[23] = _stats(tmin)[3]
        vals[24] = has_n
        vals[25] = has7
        vals[26] = _DAYS - last_has if last_has >= 0 else _DAYS + 1
        vals[27] = 1.0 if has_n == 0 else 0.0
        vals[28] = over30
        vals[29] = over50
        for k in range(cols.size):
            if cols[k] >= 0:
                out[s, cols[k]] = vals[k]


def window_features(x: np.ndarray, index: np.ndarray, out: np.ndarray | None = None,
                    cols: np.ndarray | None = None) -> np.ndarray:
    """Window features of the samples whose day t is panel row ``index`` (n,) of the
    (N, 6) signal array ``x`` (rows index-14 .. index-1 are the window).

    Without ``out``: an (n, len(WINDOW_FEATURES)) float64 array. With ``out`` (n, m),
    C-contiguous float32 or float64, and ``cols`` (len(WINDOW_FEATURES),): feature k is
    written to column ``cols[k]`` (skipped when < 0), straight into a model's matrix.
    """
    if out is None:
        out = np.empty((index.size, len(WINDOW_FEATURES)), dtype=np.float64)
        cols = np.arange(len(WINDOW_FEATURES), dtype=np.int64)
    elif cols is None or len(cols) != len(WINDOW_FEATURES):
        raise ValueError("cols must name a column (or -1) for each window feature")
    if index.size:
        _kernel(np.ascontiguousarray(x, dtype=np.float64),
                np.ascontiguousarray(index, dtype=np.int64), out,
                np.ascontiguousarray(cols, dtype=np.int64))
    return out
