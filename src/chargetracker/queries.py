"""The query layer the dashboard and the API share.

It combines a :class:`~chargetracker.stores.base.Store`'s raw reads with the engine's
pure statistics, so every number shown has one definition: group trend (closed cycles
only, open ones apart), the deep dive of one group and cycle, outliers, cell trend.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from .config import StatsConfig
from .engine.stats import deviations, group_stats
from .engine.trend import fit_trend
from .errors import NotFound, ValidationError
from .stores.base import TREND_METRICS, Store

__all__ = ["Queries"]


def _check_metric(metric: str) -> str:
    if metric not in TREND_METRICS:
        raise ValidationError(f"unknown metric {metric!r}; one of {list(TREND_METRICS)}", field="metric")
    return metric


class Queries:
    """Read-side helpers over one store; stateless apart from the store and settings."""

    def __init__(self, store: Store, stats: StatsConfig | None = None) -> None:
        self.store = store
        self.stats = stats or StatsConfig()

    # -- groups -------------------------------------------------------------------
    def group_trend(self, metric: str = "discharge_ah", *, group_key: str | None = None,
                    filters: dict[str, str] | None = None,
                    status: str = "closed") -> pl.DataFrame:
        """Per (group, cycle): n, mean, std, median, mad, min, max, std_pct of a metric.

        ``status="closed"`` (default) is the trend; ``"open"`` gives the in-progress
        cycles, which are shown apart and never averaged with finished ones.
        """
        key = group_key or self.stats.group_key
        values = self.store.metric_values(_check_metric(metric), group_key=key, filters=filters,
                                          status=status)
        stats = group_stats(values)
        return stats.with_columns(
            pl.when(pl.col("mean") != 0).then(100.0 * pl.col("std") / pl.col("mean").abs())
            .otherwise(None).alias("std_pct")
        )

    def latest_complete_cycle(self, group: str, *, metric: str = "discharge_ah",
                              group_key: str | None = None) -> int | None:
        """The newest cycle that at least half of the group's reporting cells have closed."""
        key = group_key or self.stats.group_key
        values = self.store.metric_values(_check_metric(metric), group_key=key,
                                          filters={key: group} if key else None)
        values = values.filter(pl.col("group") == group)
        if values.height == 0:
            return None
        cells = values.get_column("cell_id").n_unique()
        counts = values.group_by("cycle").agg(pl.col("cell_id").n_unique().alias("n")).sort("cycle")
        full = counts.filter(pl.col("n") * 2 >= cells)
        chosen = full if full.height else counts
        return int(chosen.get_column("cycle").max())  # type: ignore[arg-type]

    def group_cycle(self, group: str, cycle: int | None = None, *, metric: str = "discharge_ah",
                    group_key: str | None = None) -> tuple[int | None, pl.DataFrame]:
        """Deep dive: the group's cells at one cycle with value, z, robust z, % deviation,
        outlier flag, sorted by |deviation| (largest first)."""
        key = group_key or self.stats.group_key
        if cycle is None:
            cycle = self.latest_complete_cycle(group, metric=metric, group_key=key)
            if cycle is None:
                return None, _empty_deep_dive()
        values = self.store.metric_values(_check_metric(metric), group_key=key,
                                          filters={key: group} if key else None)
        values = values.filter((pl.col("group") == group) & (pl.col("cycle") == cycle))
        if values.height == 0:
            return cycle, _empty_deep_dive()
        dev = deviations(values, self.stats)
        dev = dev.with_columns(pl.col("pct_deviation").abs().alias("abs_dev")).sort(
            "abs_dev", descending=True, nulls_last=True).drop("abs_dev")
        return cycle, dev

    def outliers(self, metric: str = "discharge_ah", *, group_key: str | None = None,
                 latest_only: bool = True) -> pl.DataFrame:
        """Flagged cells; by default at each group's latest complete cycle."""
        key = group_key or self.stats.group_key
        values = self.store.metric_values(_check_metric(metric), group_key=key)
        if values.height == 0:
            return _empty_deep_dive()
        # Cells without a group have no peers to deviate from.
        values = values.filter(pl.col("group").is_not_null())
        dev = deviations(values, self.stats)
        if latest_only:
            latest = {g: self.latest_complete_cycle(g, metric=metric, group_key=key)
                      for g in dev.get_column("group").unique().to_list()}
            keep = pl.DataFrame({"group": list(latest), "cycle": list(latest.values())},
                                schema={"group": pl.Utf8, "cycle": pl.Int64})
            dev = dev.join(keep, on=["group", "cycle"], how="inner")
        return dev.filter(pl.col("outlier")).sort(["group", "cycle", "cell_id"])

    # -- cells --------------------------------------------------------------------
    def cell_trend(self, cell_id: str, *, metric: str = "retention") -> dict[str, Any]:
        """Fade rate, knee and forecast of cycles to 80 % retention for one cell."""
        if self.store.cell(cell_id) is None:
            raise NotFound(f"cell {cell_id!r} not found")
        cycles = self.store.cycles(cell_id, status="closed")
        tr = fit_trend(cycles.get_column("cycle").cast(pl.Float64).to_numpy(),
                       cycles.get_column(metric).to_numpy(), cell_id=cell_id)
        out = tr.as_dict()
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def _empty_deep_dive() -> pl.DataFrame:
    return pl.DataFrame(schema={
        "group": pl.Utf8, "cell_id": pl.Utf8, "cycle": pl.Int64, "value": pl.Float64,
        "n": pl.Int64, "mean": pl.Float64, "std": pl.Float64, "median": pl.Float64,
        "mad": pl.Float64, "min": pl.Float64, "max": pl.Float64, "z": pl.Float64,
        "robust_z": pl.Float64, "pct_deviation": pl.Float64, "outlier": pl.Boolean,
    })
