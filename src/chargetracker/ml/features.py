"""Feature sets computed from windows (NaN = no data, never a sentinel).

* ``reference``: the reference's 84 values, ``d14_total_voltage_v`` (14 days before t)
  .. ``d1_min_temperature_c`` (the day before t), day-major, oldest first.
* ``engineered``: summaries of the physical signal of inconsistency -- the cell-voltage
  spread ``cell_max_v - cell_min_v`` (V) -- and of its context: level, trend, maximum,
  last value, spread relative to the mean cell voltage, temperature spread
  ``max - min temperature`` (degC), operating point (voltage, current, temperature),
  data coverage (days with data, days since the last data, empty window), and the
  spread over all earlier days the input holds for the VIN (``history_*``). A vehicle
  that stopped reporting is itself a signal, so an empty window is a valid sample.
* ``combined``: both.

Every function is vectorized over samples: day-major (14, n) arrays per signal, reductions
along the day axis with explicit masks (no per-sample Python, no all-NaN warnings).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import ConfigError
from .records import SIGNALS
from .window_kernel import WINDOW_FEATURES, window_features
from .windows import CONTEXT_DAYS, Windows

__all__ = ["FEATURE_SETS", "engineered_names", "feature_matrix", "feature_names",
           "reference_names"]

_K = {s: i for i, s in enumerate(SIGNALS)}


def reference_names() -> list[str]:
    return [f"d{CONTEXT_DAYS - j}_{s}" for j in range(CONTEXT_DAYS) for s in SIGNALS]


# -- masked reductions over the day axis ------------------------------------------------
# Windows are held day-major, (14, n): row j is day t-14+j of every sample. A reduction
# over days is then 13 element-wise operations between contiguous rows, several times
# faster than reducing the short inner axis of an (n, 14) array (this dominated batch
# scoring).
_T = np.arange(CONTEXT_DAYS, dtype=np.float64)


def _zero_filled(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    z = a.copy()
    z[~valid] = 0.0
    return z


def _count(a: np.ndarray) -> np.ndarray:
    return (~np.isnan(a)).sum(axis=0).astype(np.float64)


def _mean(a: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(a)
    n = valid.sum(axis=0)
    s = _zero_filled(a, valid).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def _max(a: np.ndarray) -> np.ndarray:
    """Largest valid value (NaN when none): fmax ignores NaN unless all are NaN."""
    return np.fmax.reduce(a, axis=0)


def _min(a: np.ndarray) -> np.ndarray:
    return np.fmin.reduce(a, axis=0)


def _std(a: np.ndarray) -> np.ndarray:
    """Population standard deviation of the valid days (NaN with fewer than 2).

    Two-pass (mean first) so that a large level (e.g. 350 V) does not cancel."""
    valid = ~np.isnan(a)
    n = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = _zero_filled(a, valid).sum(axis=0) / np.maximum(n, 1)
        d = a - mu
        d[~valid] = 0.0
        return np.where(n >= 2, np.sqrt(np.einsum("ij,ij->j", d, d) / np.maximum(n, 1)),
                        np.nan)


def _last(a: np.ndarray) -> np.ndarray:
    """The most recent valid value (NaN when none)."""
    valid = ~np.isnan(a)
    idx = a.shape[0] - 1 - np.argmax(valid[::-1], axis=0)
    out = a[idx, np.arange(a.shape[1])]
    return np.where(valid.any(axis=0), out, np.nan)


def _first(a: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(a)
    idx = np.argmax(valid, axis=0)
    out = a[idx, np.arange(a.shape[1])]
    return np.where(valid.any(axis=0), out, np.nan)


def _slope(a: np.ndarray) -> np.ndarray:
    """Least-squares slope per day over the valid days (unit of ``a`` per day; NaN with
    fewer than 3 valid days), from the normal equations: with day offsets t = 0..13,
    slope = (n S_ta - S_t S_a) / (n S_tt - S_t^2), the sums over valid days only
    (vector-matrix products). t and the signals are small, so the closed form keeps
    ~1e-10 relative accuracy (float32 features carry 6e-8)."""
    valid = ~np.isnan(a)
    v = valid.astype(np.float64)
    z = _zero_filled(a, valid)
    t = _T[: a.shape[0]]
    n = v.sum(axis=0)
    st = t @ v
    stt = (t * t) @ v
    sa = z.sum(axis=0)
    sta = t @ z
    den = n * stt - st * st
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n >= 3) & (den > 0), (n * sta - st * sa) / np.where(den > 0, den, 1.0),
                        np.nan)


def _days_since(valid_any: np.ndarray) -> np.ndarray:
    """Days from the last day with data to day t (1 = yesterday; 15 = none in window);
    ``valid_any`` is day-major (14, n)."""
    days = valid_any.shape[0]
    has = valid_any.any(axis=0)
    last = days - 1 - np.argmax(valid_any[::-1], axis=0)
    return np.where(has, days - last, days + 1).astype(np.float64)


def _history(w: Windows, spread_panel: np.ndarray) -> dict[str, np.ndarray]:
    """Expanding summaries of the spread over *all* earlier days of the VIN given (at
    least the 14 of the window): a pack that once drifted apart tends to again.
    Segmented cumulative sums/maxima over the panel, read at day t-1."""
    p = w.panel
    vin_of = p.vin_of()
    valid = ~np.isnan(spread_panel)
    start = p.vin_start[vin_of]
    c = np.cumsum(valid)
    s = np.cumsum(np.where(valid, spread_panel, 0.0))
    high = np.cumsum(valid & (spread_panel > 0.05))
    n = c - np.r_[0, c][start]
    total = s - np.r_[0, s][start]
    n_high = high - np.r_[0, high][start]
    # Spreads are < 10 V (validated): offsetting each VIN by 100 V makes one running
    # maximum over the whole panel restart at every VIN.
    shifted = np.where(valid, spread_panel, -1.0) + vin_of * 100.0
    hmax = np.maximum.accumulate(shifted) - vin_of * 100.0
    i = w.index - 1
    n_i, total_i, high_i, max_i = (n[i].astype(np.float64), total[i], n_high[i].astype(np.float64),
                                   hmax[i])
    if p.prior is not None:
        # Days before the panel (a stream's trailing window): their running summary.
        pr = p.prior[w.vin]
        n_i, total_i, high_i = n_i + pr[:, 0], total_i + pr[:, 1], high_i + pr[:, 2]
        max_i = np.maximum(max_i, pr[:, 3])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_i > 0, total_i / np.maximum(n_i, 1), np.nan)
    return {
        "history_spread_mean_v": mean,
        "history_spread_max_v": np.where(max_i >= 0, max_i, np.nan),
        "history_days_spread_over_50mv": high_i,
        "history_days_with_data": n_i,
    }


def _window_mean(w: Windows, a: np.ndarray, days: int = CONTEXT_DAYS) -> np.ndarray:
    """Mean of the valid values of panel array ``a`` over days t-days .. t-1, from
    running sums (O(panel) instead of O(samples x days)); NaN without valid days."""
    valid = ~np.isnan(a)
    cs = np.r_[0.0, np.cumsum(np.where(valid, a, 0.0))]
    cn = np.r_[0, np.cumsum(valid)]
    i = w.index
    n = cn[i] - cn[i - days]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (cs[i] - cs[i - days]) / np.maximum(n, 1), np.nan)


def _window_count(w: Windows, mask: np.ndarray, days: int = CONTEXT_DAYS) -> np.ndarray:
    c = np.r_[0, np.cumsum(mask)]
    return (c[w.index] - c[w.index - days]).astype(np.float64)


def _window(w: Windows, a: np.ndarray) -> np.ndarray:
    """Day-major (14, n) values of a panel array: row j is day t-14+j of each sample."""
    return np.take(a, w.index[None, :] + (np.arange(CONTEXT_DAYS) - CONTEXT_DAYS)[:, None])


def _engineered(w: Windows) -> dict[str, np.ndarray]:
    """The engineered features: window features from the compiled kernel
    (:mod:`.window_kernel`), ``history_*`` from panel-long running sums."""
    if len(w) == 0:
        return {n: np.zeros(0) for n in _ENGINEERED_NAMES}
    x = w.panel.x
    win = window_features(x, w.index)
    out = {name: win[:, k] for k, name in enumerate(WINDOW_FEATURES)}
    out.update(_history(w, x[:, _K["cell_max_v"]] - x[:, _K["cell_min_v"]]))
    return out


def _engineered_numpy(w: Windows) -> dict[str, np.ndarray]:
    """The same features from (14, n) NumPy windows: the readable definition, and the
    oracle the compiled kernel is tested against (tests/ml/test_features.py)."""
    if len(w) == 0:
        return {n: np.zeros(0) for n in _ENGINEERED_NAMES}
    x = w.panel.x
    col = {s: x[:, k] for s, k in _K.items()}
    # Derived signals once per panel day, then windowed.
    p_spread = col["cell_max_v"] - col["cell_min_v"]                        # V
    p_cell = 0.5 * (col["cell_max_v"] + col["cell_min_v"])                 # V
    with np.errstate(invalid="ignore", divide="ignore"):
        p_rel = p_spread / p_cell                                           # 1
        p_series = col["total_voltage_v"] / p_cell                         # cells in series
    p_tspread = col["max_temperature_c"] - col["min_temperature_c"]         # degC
    p_has = ~np.isnan(x).all(axis=1)
    spread = _window(w, p_spread)
    tspread = _window(w, p_tspread)
    day_has = _window(w, p_has)
    current = _window(w, col["total_current_a"])
    last_spread = _last(spread)
    out: dict[str, np.ndarray] = {
        "spread_last_v": last_spread,
        "spread_max_v": _max(spread),
        "spread_mean_v": _window_mean(w, p_spread),
        "spread_min_v": _min(spread),
        "spread_std_v": _std(spread),
        "spread_trend_v_per_day": _slope(spread),
        "spread_recent_mean_v": _window_mean(w, p_spread, 7),
        "spread_last_minus_first_v": last_spread - _first(spread),
        "spread_rel_mean": _window_mean(w, p_rel),
        "spread_rel_max": _max(_window(w, p_rel)),
        "temp_spread_last_c": _last(tspread),
        "temp_spread_max_c": _max(tspread),
        "temp_spread_mean_c": _window_mean(w, p_tspread),
        "temp_spread_trend_c_per_day": _slope(tspread),
        "cell_mean_v": _window_mean(w, p_cell),
        "cell_min_min_v": _min(_window(w, col["cell_min_v"])),
        "cell_max_max_v": _max(_window(w, col["cell_max_v"])),
        "total_voltage_mean_v": _window_mean(w, col["total_voltage_v"]),
        "n_series_est": _window_mean(w, p_series),
        "current_mean_a": _window_mean(w, col["total_current_a"]),
        "current_std_a": _std(current),
        "max_temperature_max_c": _max(_window(w, col["max_temperature_c"])),
        "max_temperature_mean_c": _window_mean(w, col["max_temperature_c"]),
        "min_temperature_min_c": _min(_window(w, col["min_temperature_c"])),
        "days_with_data": _window_count(w, p_has),
        "days_with_data_last7": _window_count(w, p_has, 7),
        "days_since_data": _days_since(day_has),
        "empty_window": (_window_count(w, p_has) == 0).astype(np.float64),
        "days_spread_over_30mv": _window_count(w, p_spread > 0.03),
        "days_spread_over_50mv": _window_count(w, p_spread > 0.05),
    }
    out.update(_history(w, p_spread))
    return out


def engineered_names() -> list[str]:
    return list(_ENGINEERED_NAMES)


#: The window features (one definition, the compiled kernel's rows) and the VIN's history.
_ENGINEERED_NAMES: tuple[str, ...] = (
    *WINDOW_FEATURES,
    "history_spread_mean_v", "history_spread_max_v", "history_days_spread_over_50mv",
    "history_days_with_data",
)


def _reference(w: Windows) -> dict[str, np.ndarray]:
    m = w.reference_matrix()
    return {name: m[:, j] for j, name in enumerate(reference_names())}


_BUILDERS: dict[str, Callable[[Windows], dict[str, np.ndarray]]] = {
    "reference": _reference,
    "engineered": _engineered,
}

#: Feature set name -> feature names, in matrix column order.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "reference": tuple(reference_names()),
    "engineered": _ENGINEERED_NAMES,
    "combined": (*_ENGINEERED_NAMES, *reference_names()),
}


def feature_names(feature_set: str) -> list[str]:
    try:
        return list(FEATURE_SETS[feature_set])
    except KeyError:
        raise ConfigError(f"unknown feature set {feature_set!r}; known: "
                          f"{', '.join(FEATURE_SETS)}") from None


def feature_matrix(w: Windows, names: list[str] | tuple[str, ...], *,
                   dtype: type[np.floating] = np.float64) -> np.ndarray:
    """(n, len(names)) matrix of the named features, NaN where undefined.

    ``dtype`` float32 is what XGBoost predicts on (its split values are float32), so
    a scorer asks for it and saves the library's own conversion copy.

    ``names`` may mix features of both sets (a trained model's list); unknown names
    raise :class:`ConfigError`.
    """
    wanted = list(names)
    known = set(FEATURE_SETS["combined"])
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ConfigError(f"unknown feature(s): {', '.join(unknown[:5])}")
    col_of = {n: j for j, n in enumerate(wanted)}
    out = np.empty((len(w), len(wanted)), dtype=dtype)
    if len(w) == 0:
        return out
    done: set[str] = set()
    if any(n in col_of for n in WINDOW_FEATURES):
        # Compiled, straight into the matrix: no (14, n) temporaries, no transpose.
        cols = np.array([col_of.get(n, -1) for n in WINDOW_FEATURES], dtype=np.int64)
        window_features(w.panel.x, w.index, out, cols)
        done.update(n for n in WINDOW_FEATURES if n in col_of)
    rest: dict[str, np.ndarray] = {}
    if any(n.startswith("history_") for n in wanted):
        x = w.panel.x
        rest.update(_history(w, x[:, _K["cell_max_v"]] - x[:, _K["cell_min_v"]]))
    if any(n not in _ENGINEERED_NAMES for n in wanted):
        rest.update(_reference(w))
    for n, j in col_of.items():
        if n not in done:
            out[:, j] = rest[n]
    return out
