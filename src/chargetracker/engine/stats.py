"""Group statistics, deviations and outlier flags over cycle metrics.

Statistics are taken over **closed** cycles only (an open, half-finished cycle or a
partial one -- the data starts or stops inside it -- is never averaged with finished
ones). A (group, cycle) mean stands for the group only where enough of the group's cells
have closed that cycle (:func:`mark_complete`); before, it is the mean of the cells that
happen to be ahead, shown as in progress. Per group and cycle: n, mean, std (sample,
ddof=1), median, MAD (unscaled median absolute deviation), min, max. Per cell:
z = (x - mean) / std, robust z = 0.6745 (x - median) / MAD, percent deviation
= 100 (x - mean) / mean, and an outlier flag by the configured rule (and at least
``min_deviation_pct`` away from the mean, so a very uniform group's tiny spread
does not make a 0.3 % difference an "outlier").

:class:`RunningStats` is the mergeable (River-style) form of n/mean/std/min/max for
streaming consumers: ``update`` with values, ``+=`` another instance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..config import StatsConfig

__all__ = ["RunningStats", "group_stats", "mark_complete", "deviations", "outliers"]

_ROBUST = 0.6745  # makes robust z comparable to z for normal data


def group_stats(values: pl.DataFrame, *, value: str = "value",
                by: tuple[str, ...] = ("group", "cycle")) -> pl.DataFrame:
    """n, mean, std, median, mad, min, max of ``value`` per ``by`` (NaN/null ignored)."""
    v = pl.col(value)
    clean = values.filter(v.is_not_null() & v.is_finite())
    return (
        clean.group_by(list(by))
        .agg(
            pl.len().alias("n"),
            v.mean().alias("mean"),
            v.std(ddof=1).alias("std"),
            v.median().alias("median"),
            (v - v.median()).abs().median().alias("mad"),
            v.min().alias("min"),
            v.max().alias("max"),
        )
        .with_columns(pl.col("n").cast(pl.Int64))
        .sort(list(by))
    )


def mark_complete(stats: pl.DataFrame, min_cell_share: float = 0.8, *,
                  group: str = "group") -> pl.DataFrame:
    """Add ``group_cells`` and ``complete`` to :func:`group_stats` output.

    ``group_cells`` is the number of the group's cells that have closed any cycle (the
    largest n over its cycles); a (group, cycle) is ``complete`` when at least
    ``min_cell_share`` of them have closed it (n >= share x group_cells). Works on stats
    assembled from pieces (any subset of cycles, concatenated), as the dashboard's
    incremental refresh does.
    """
    if not 0.0 <= min_cell_share <= 1.0:
        raise ValueError(f"min_cell_share must be in [0, 1], got {min_cell_share}")
    cells = pl.col("n").max().over(group) if group in stats.columns else pl.col("n").max()
    return stats.with_columns(cells.cast(pl.Int64).alias("group_cells")).with_columns(
        (pl.col("n").cast(pl.Float64) >= min_cell_share * pl.col("group_cells")).alias("complete"))


def deviations(values: pl.DataFrame, config: StatsConfig | None = None, *, value: str = "value",
               by: tuple[str, ...] = ("group", "cycle")) -> pl.DataFrame:
    """Each row of ``values`` with its group's stats, z, robust_z, pct_deviation, outlier."""
    cfg = config or StatsConfig()
    stats = group_stats(values, value=value, by=by)
    x = pl.col(value)
    out = values.join(stats, on=list(by), how="left").with_columns(
        pl.when(pl.col("std") > 0).then((x - pl.col("mean")) / pl.col("std")).otherwise(0.0).alias("z"),
        pl.when(pl.col("mad") > 0)
        .then(_ROBUST * (x - pl.col("median")) / pl.col("mad"))
        .otherwise(0.0)
        .alias("robust_z"),
        pl.when(pl.col("mean") != 0)
        .then(100.0 * (x - pl.col("mean")) / pl.col("mean").abs())
        .otherwise(None)
        .alias("pct_deviation"),
    )
    if cfg.outlier_rule == "sigma":
        flag = pl.col("z").abs() > cfg.sigma_k
    else:
        flag = pl.col("robust_z").abs() > cfg.robust_k
    if cfg.min_deviation_pct > 0:
        flag = flag & (pl.col("pct_deviation").abs() >= cfg.min_deviation_pct)
    # A group of one or two cannot tell an outlier apart.
    out = out.with_columns((flag & (pl.col("n") >= 3) & x.is_finite()).fill_null(False).alias("outlier"))
    return out.sort(list(by) + ["pct_deviation"], descending=[False] * len(by) + [True], nulls_last=True)


def outliers(values: pl.DataFrame, config: StatsConfig | None = None, *, value: str = "value",
             by: tuple[str, ...] = ("group", "cycle")) -> pl.DataFrame:
    """Only the flagged rows of :func:`deviations`."""
    return deviations(values, config, value=value, by=by).filter(pl.col("outlier"))


@dataclass
class RunningStats:
    """Mergeable count, mean, variance (Chan/Welford), min and max."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def update(self, values: np.ndarray | list[float] | float) -> RunningStats:
        arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
        arr = arr[np.isfinite(arr)]
        if arr.size:
            other = RunningStats(
                n=int(arr.size), mean=float(arr.mean()),
                m2=float(((arr - arr.mean()) ** 2).sum()),
                min=float(arr.min()), max=float(arr.max()),
            )
            self += other
        return self

    def __iadd__(self, other: RunningStats) -> RunningStats:
        if other.n == 0:
            return self
        if self.n == 0:
            self.n, self.mean, self.m2, self.min, self.max = other.n, other.mean, other.m2, other.min, other.max
            return self
        n = self.n + other.n
        delta = other.mean - self.mean
        self.mean += delta * other.n / n
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.n = n
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        return self

    @property
    def variance(self) -> float:
        return self.m2 / (self.n - 1) if self.n > 1 else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(self.variance) if self.n > 1 else math.nan
