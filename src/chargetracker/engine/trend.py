"""Per-cell capacity trend: fade rate, knee point, cycles to 80 % retention.

Input is the cell's closed cycles (cycle number, retention or capacity). The knee is
the breakpoint of the best two-segment linear fit (least squares over every candidate
breakpoint, vectorized with cumulative sums); the forecast extrapolates the segment
after the knee (or the single line when there is no knee) to the threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

__all__ = ["Trend", "fit_trend", "cell_trends"]

#: Forecasts beyond this many cycles are reported as "not fading" (infinity).
_HORIZON_CYCLES = 1_000_000


@dataclass(frozen=True, slots=True)
class Trend:
    """Fade per cycle (fraction of the reference per cycle; negative = fading)."""

    cell_id: str
    n_cycles: int
    fade_rate_per_cycle: float        # slope of retention vs cycle over all cycles, 1/cycle
    recent_fade_rate_per_cycle: float  # slope after the knee (= fade rate if no knee)
    knee_cycle: float                 # cycle at the knee; nan when none is significant
    cycles_to_80pct: float            # forecast cycle number where retention hits 0.8
    retention_last: float
    intercept: float

    def as_dict(self) -> dict[str, float | str | int]:
        return asdict(self)


def _linfit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if x.size < 2 or np.ptp(x) == 0:
        return (float(y.mean()) if y.size else np.nan), 0.0
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def _segment_sse(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSE of a least-squares line over x[:k] for every k (prefix sums, vectorized)."""
    n = np.arange(1, x.size + 1, dtype=np.float64)
    sx, sy = np.cumsum(x), np.cumsum(y)
    sxx, sxy, syy = np.cumsum(x * x), np.cumsum(x * y), np.cumsum(y * y)
    with np.errstate(invalid="ignore", divide="ignore"):
        varx = sxx - sx * sx / n
        cov = sxy - sx * sy / n
        vary = syy - sy * sy / n
        sse = np.where(varx > 0, vary - cov * cov / varx, vary)
    return np.maximum(sse, 0.0)


def fit_trend(cycle: np.ndarray, retention: np.ndarray, *, cell_id: str = "",
              threshold: float = 0.8, min_segment: int = 5, knee_gain: float = 3.0) -> Trend:
    """Fit fade, knee and forecast from retention (fraction) per cycle number."""
    ok = np.isfinite(cycle) & np.isfinite(retention)
    x = np.asarray(cycle, dtype=np.float64)[ok]
    y = np.asarray(retention, dtype=np.float64)[ok]
    order = np.argsort(x)
    x, y = x[order], y[order]
    n = x.size
    if n == 0:
        return Trend(cell_id, 0, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan)
    a, b = _linfit(x, y)
    knee = np.nan
    a2, b2 = a, b
    if n >= 2 * min_segment:
        left = _segment_sse(x, y)                  # x[:k]
        right = _segment_sse(x[::-1], y[::-1])[::-1]  # x[k:]
        k = np.arange(min_segment, n - min_segment + 1)
        total = left[k - 1] + right[k]
        best = int(k[np.argmin(total)])
        single = left[-1]
        al, bl = _linfit(x[:best], y[:best])
        ar, br = _linfit(x[best:], y[best:])
        # A knee: the two-line fit is much better and the fade accelerates.
        if total.min() * knee_gain < single and br < 0 and br < 1.5 * bl:
            knee = float(x[best])
            a2, b2 = ar, br
    if (y <= threshold).any():
        forecast = float(x[np.argmax(y <= threshold)])  # already reached
    elif b2 < 0:
        forecast = max((threshold - a2) / b2, float(x[-1]))
        if forecast > _HORIZON_CYCLES:  # a flat line: no meaningful end of life
            forecast = np.inf
    else:
        forecast = np.inf
    return Trend(cell_id, int(n), b, b2, knee, float(forecast), float(y[-1]), a)


def cell_trends(cycles: pl.DataFrame, *, metric: str = "retention") -> pl.DataFrame:
    """One :class:`Trend` row per cell from a cycles table (closed cycles only)."""
    closed = cycles.filter(pl.col("status") == "closed").sort(["cell_id", "cycle"])
    rows = []
    for (cid,), part in closed.group_by(["cell_id"], maintain_order=True):
        rows.append(fit_trend(part.get_column("cycle").to_numpy().astype(float),
                              part.get_column(metric).to_numpy(), cell_id=str(cid)).as_dict())
    schema = {"cell_id": pl.Utf8, "n_cycles": pl.Int64, "fade_rate_per_cycle": pl.Float64,
              "recent_fade_rate_per_cycle": pl.Float64, "knee_cycle": pl.Float64,
              "cycles_to_80pct": pl.Float64, "retention_last": pl.Float64, "intercept": pl.Float64}
    return pl.DataFrame(rows, schema=schema)
