"""The query layer the dashboard and the API share: their only way to the store.

It combines a store's read port (:class:`~chargetracker.stores.base.ReadPort`) with the
engine's pure statistics, so every number shown has one definition: group trend (closed
cycles only, open ones apart, with ``std_pct``), the deep dive of one group and cycle,
outliers, cell trend; plus the plain reads (cells, cycles, steps, raw samples, alerts,
dead letters, ingest health) and the read queries of plug-in telemetry kinds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import polars as pl

from .config import StatsConfig
from .engine.stats import deviations, group_stats
from .engine.trend import fit_trend
from .errors import NotFound, ValidationError
from .kinds.base import ReadQuery, TelemetryKind
from .stores.base import ReadPort, all_cells
from .vocabulary import check_metric as _check_metric

__all__ = ["Queries", "trend_stats"]


def trend_stats(values: pl.DataFrame) -> pl.DataFrame:
    """Group statistics of (group, cell_id, cycle, value) rows (engine ``group_stats``)
    with ``std_pct`` = 100 * std / |mean| (null when the mean is 0)."""
    return group_stats(values).with_columns(
        pl.when(pl.col("mean") != 0).then(100.0 * pl.col("std") / pl.col("mean").abs())
        .otherwise(None).alias("std_pct")
    )


class Queries:
    """Read-side helpers over one store's read port; stateless apart from it and settings.

    ``kinds``: plug-in telemetry kinds whose read queries :meth:`kind_rows` answers.
    """

    def __init__(self, store: ReadPort, stats: StatsConfig | None = None, *,
                 kinds: Sequence[TelemetryKind] = ()) -> None:
        self.store = store
        self.stats = stats or StatsConfig()
        self.kinds = {k.name: k for k in kinds}

    # -- groups -------------------------------------------------------------------
    def group_trend(self, metric: str = "discharge_ah", *, group_key: str | None = None,
                    filters: dict[str, str] | None = None,
                    status: str = "closed") -> pl.DataFrame:
        """Per (group, cycle): n, mean, std, median, mad, min, max, std_pct of a metric.

        ``status="closed"`` (default) is the trend; ``"open"`` gives the in-progress
        cycles, which are shown apart and never averaged with finished ones.
        """
        key = group_key or self.stats.group_key
        return trend_stats(self.metric_values(metric, group_key=key, filters=filters,
                                              status=status))

    def metric_values(self, metric: str, *, group_key: str | None = None,
                      filters: dict[str, Any] | None = None, status: str = "closed",
                      since_cycle: int | None = None) -> pl.DataFrame:
        """(group, cell_id, cycle, value) of one trend metric (see ReadPort.metric_values)."""
        return self.store.metric_values(_check_metric(metric),
                                        group_key=group_key or self.stats.group_key,
                                        filters=filters, status=status, since_cycle=since_cycle)

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
        """Flagged cells; by default at each group's latest complete cycle. Cells without
        a value for the group key belong to no group and are left out."""
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
        self.require_cell(cell_id)
        cycles = self.store.cycles(cell_id, status="closed")
        tr = fit_trend(cycles.get_column("cycle").cast(pl.Float64).to_numpy(),
                       cycles.get_column(metric).to_numpy(), cell_id=cell_id)
        out = tr.as_dict()
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


    # -- plain reads ----------------------------------------------------------------
    def cells(self, *, filters: dict[str, Any] | None = None, limit: int = 100,
              offset: int = 0) -> pl.DataFrame:
        return self.store.cells(filters=filters, limit=limit, offset=offset)

    def all_cells(self) -> pl.DataFrame:
        """Every cell (CELL_SCHEMA), page by page."""
        return all_cells(self.store)

    def cells_count(self, *, filters: dict[str, Any] | None = None) -> int:
        return self.store.cells_count(filters=filters)

    def cell(self, cell_id: str) -> dict[str, Any] | None:
        return self.store.cell(cell_id)

    def require_cell(self, cell_id: str) -> dict[str, Any]:
        cell = self.store.cell(cell_id)
        if cell is None:
            raise NotFound(f"cell {cell_id!r} not found")
        return cell

    def cycles(self, cell_id: str | None = None, *, status: str | None = None,
               limit: int | None = None, offset: int = 0) -> pl.DataFrame:
        return self.store.cycles(cell_id, status=status, limit=limit, offset=offset)

    def steps(self, cell_id: str, *, cycle: int | None = None, limit: int | None = None,
              offset: int = 0) -> pl.DataFrame:
        return self.store.steps(cell_id, cycle=cycle, limit=limit, offset=offset)

    def measurements(self, cell_id: str, *, start_ts: float | None = None,
                     end_ts: float | None = None, max_points: int | None = None) -> pl.DataFrame:
        return self.store.measurements(cell_id, start_ts=start_ts, end_ts=end_ts,
                                       max_points=max_points)

    def alerts(self, *, since_id: int | None = None, acknowledged: bool | None = None,
               limit: int = 100) -> pl.DataFrame:
        return self.store.alerts(since_id=since_id, acknowledged=acknowledged, limit=limit)

    def ack_alert(self, alert_id: int, *, by: str | None = None) -> bool:
        """The operator acknowledges an alert; False when no alert has that id."""
        return self.store.ack_alert(alert_id, by=by)

    def alert_episodes(self, *, state: str | None = None, cell_id: str | None = None,
                       rule: str | None = None, notified: bool | None = None,
                       limit: int = 100, offset: int = 0) -> pl.DataFrame:
        """Alert episodes, newest first, with their notification's acknowledgement."""
        return self.store.alert_episodes(state=state, cell_id=cell_id, rule=rule,
                                         notified=notified, limit=limit, offset=offset)

    def episode_counts(self) -> pl.DataFrame:
        """Per rule: episodes open, resolved and suppressed by the rate limit."""
        return self.store.episode_counts()

    def dead_letters(self, *, limit: int = 100) -> pl.DataFrame:
        return self.store.dead_letters(limit=limit)

    def ingest_stats(self) -> dict[str, Any]:
        return self.store.ingest_stats()

    def ingest_rate_series(self, since_wall: float) -> pl.DataFrame:
        return self.store.ingest_rate_series(since_wall)

    # -- plug-in kinds ---------------------------------------------------------------
    def kind_query(self, kind: str, query: str) -> ReadQuery:
        """A plug-in kind's read query by name (NotFound for an unknown kind or query)."""
        k = self.kinds.get(kind)
        if k is None:
            raise NotFound(f"no telemetry kind {kind!r} (known: {sorted(self.kinds)})")
        for q in k.queries:
            if q.name == query:
                return q
        raise NotFound(f"kind {kind!r} has no query {query!r} "
                       f"(known: {[q.name for q in k.queries]})")

    def kind_rows(self, kind: str, query: str, filters: dict[str, Any] | None = None, *,
                  limit: int | None = 1000, offset: int = 0) -> pl.DataFrame:
        """Rows of a kind's read query; ``filters`` only on the query's filter columns."""
        q = self.kind_query(kind, query)
        flt = dict(filters or {})
        unknown = sorted(set(flt) - set(q.filters))
        if unknown:
            raise ValidationError(f"query {query!r} filters on {list(q.filters)}, not {unknown}",
                                  field=unknown[0])
        return self.store.rows(q.table, filters=flt or None, limit=limit, offset=offset)


def _empty_deep_dive() -> pl.DataFrame:
    return pl.DataFrame(schema={
        "group": pl.Utf8, "cell_id": pl.Utf8, "cycle": pl.Int64, "value": pl.Float64,
        "n": pl.Int64, "mean": pl.Float64, "std": pl.Float64, "median": pl.Float64,
        "mad": pl.Float64, "min": pl.Float64, "max": pl.Float64, "z": pl.Float64,
        "robust_z": pl.Float64, "pct_deviation": pl.Float64, "outlier": pl.Boolean,
    })
