"""The first telemetry kind: battery cells on a cycler (steps, cycles, limit and outlier
alerts). A thin declaration over the pure engine (:mod:`chargetracker.engine`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ..config import Settings
from ..engine import EngineState, flush, new_state, summarize, update_checked
from ..engine.alerts import (
    JUDGED_SCHEMA,
    empty_alerts,
    empty_judged,
    judged_limits,
    limit_alerts,
    outlier_alerts,
)
from ..engine.core import EngineOutput
from ..engine.stats import deviations
from ..schema import (
    CYCLE_SCHEMA,
    MEASUREMENT_SCHEMA,
    STEP_SCHEMA,
    Validated,
    validate,
)
from .base import AlertContext, AlertRule, KindOutput, ReadQuery, TableSpec

__all__ = ["CELL_TABLES", "CellKind", "OUTLIER_METRIC", "cell_kind"]

#: Cycle metric whose group outliers raise alerts.
OUTLIER_METRIC = "discharge_ah"

MEASUREMENTS = TableSpec("measurements", MEASUREMENT_SCHEMA, ("cell_id", "ts"), "insert_new")
STEPS = TableSpec("steps", STEP_SCHEMA, ("cell_id", "step"))
CYCLES = TableSpec("cycles", CYCLE_SCHEMA, ("cell_id", "cycle"))
#: The cell kind's tables (the stores' own layouts of them are in ``stores.sql.ddl``).
CELL_TABLES: tuple[TableSpec, ...] = (MEASUREMENTS, STEPS, CYCLES)


def _with_groups(cycles: pl.DataFrame, groups: Mapping[str, str | None]) -> pl.DataFrame:
    if not groups or "group" in cycles.columns:
        return cycles
    frame = pl.DataFrame({"cell_id": list(groups), "group": list(groups.values())},
                         schema={"cell_id": pl.Utf8, "group": pl.Utf8})
    return cycles.join(frame, on="cell_id", how="left")


def _limits(tables: Mapping[str, pl.DataFrame], ctx: AlertContext) -> pl.DataFrame:
    """Voltage, temperature and coulombic-efficiency limits on the batch's cycles."""
    cycles = tables.get("cycles")
    if cycles is None or cycles.height == 0:
        return empty_alerts()
    return limit_alerts(_with_groups(cycles, ctx.groups), ctx.settings.alerts)


def _with_older_starts(starts: pl.DataFrame, flagged: pl.DataFrame,
                       ctx: AlertContext) -> pl.DataFrame:
    """``starts`` (cell_id, cycle, start_ts) plus those of the flagged cycles that closed
    in an earlier batch, read from the store in one query."""
    missing = flagged.join(starts, on=["cell_id", "cycle"], how="anti")
    if missing.height == 0 or ctx.history is None:
        return starts
    older = ctx.history.cycle_starts(missing).cast(
        {"cycle": starts.schema["cycle"], "start_ts": starts.schema["start_ts"]})
    return pl.concat([starts, older]).unique(subset=["cell_id", "cycle"], keep="first")


def _outliers(tables: Mapping[str, pl.DataFrame], ctx: AlertContext) -> pl.DataFrame:
    """A cell that *becomes* a group outlier of :data:`OUTLIER_METRIC` raises one alert.

    Each (group, cycle) that just gained a closed cycle is re-evaluated; only those
    cycles (and the one before, to tell a new outlier from a persistent one) are read
    back from the store, which holds every earlier batch when this runs.
    """
    cycles = tables.get("cycles")
    if cycles is None or cycles.height == 0 or ctx.history is None:
        return empty_alerts()
    settings = ctx.settings
    closed = _with_groups(cycles, ctx.groups).filter(pl.col("status") == "closed")
    if closed.height == 0 or "group" not in closed.columns:
        return empty_alerts()
    touched = closed.select("group", "cycle").unique().drop_nulls()
    if touched.height == 0:
        return empty_alerts()
    before = touched.with_columns(pl.col("cycle") - 1)
    pairs = pl.concat([touched, before]).unique()
    first = int(pairs.get_column("cycle").min())  # type: ignore[arg-type]
    values = ctx.history.metric_values(OUTLIER_METRIC, group_key=settings.stats.group_key,
                                       since_cycle=first)
    fresh = closed.select("group", "cell_id", "cycle", pl.col(OUTLIER_METRIC).alias("value"))
    values = pl.concat([values.select("group", "cell_id", "cycle", "value"), fresh]).unique(
        subset=["cell_id", "cycle"], keep="last")
    values = values.join(pairs, on=["group", "cycle"], how="inner")
    dev_all = deviations(values, settings.stats)
    dev = dev_all.join(touched, on=["group", "cycle"], how="inner")
    was = dev_all.filter(pl.col("outlier")).select(
        "cell_id", (pl.col("cycle") + 1).alias("cycle"))
    dev = dev.with_columns(
        pl.col("outlier") & ~pl.struct("cell_id", "cycle").is_in(
            was.select(pl.struct("cell_id", "cycle")).to_series().implode()))
    starts = closed.select("cell_id", "cycle", "start_ts")
    flagged = dev.filter(pl.col("outlier")).select("cell_id", "cycle")
    starts = _with_older_starts(starts, flagged, ctx)
    return outlier_alerts(dev, metric=OUTLIER_METRIC, start_ts=starts)


def _judge_limits(tables: Mapping[str, pl.DataFrame],
                  ctx: AlertContext) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The limits on the batch's cycles for episodes: (judged positions, hits)."""
    cycles = tables.get("cycles")
    if cycles is None or cycles.height == 0:
        return empty_judged(), empty_alerts()
    return judged_limits(cycles, ctx.settings.alerts), _limits(tables, ctx)


def _judge_outliers(tables: Mapping[str, pl.DataFrame],
                    ctx: AlertContext) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Group outliers for episodes: every (group, cycle) that just gained a closed cycle
    is re-evaluated; each cell in it is judged where the group is big enough to tell
    (n >= 3), and every flagged cell is a hit (persistence is the episodes' business).

    Clean verdicts are kept for the cells whose cycle closed in this batch only: a later
    re-evaluation of an older cycle cannot clean anything (see chargetracker.episodes).
    """
    cycles = tables.get("cycles")
    if cycles is None or cycles.height == 0 or ctx.history is None:
        return empty_judged(), empty_alerts()
    settings = ctx.settings
    closed = _with_groups(cycles, ctx.groups).filter(pl.col("status") == "closed")
    if closed.height == 0 or "group" not in closed.columns:
        return empty_judged(), empty_alerts()
    touched = closed.select("group", "cycle").unique().drop_nulls()
    if touched.height == 0:
        return empty_judged(), empty_alerts()
    first = int(touched.get_column("cycle").min())  # type: ignore[arg-type]
    values = ctx.history.metric_values(OUTLIER_METRIC, group_key=settings.stats.group_key,
                                       since_cycle=first)
    fresh = closed.select("group", "cell_id", "cycle", pl.col(OUTLIER_METRIC).alias("value"))
    values = pl.concat([values.select("group", "cell_id", "cycle", "value"), fresh]).unique(
        subset=["cell_id", "cycle"], keep="last").join(touched, on=["group", "cycle"], how="inner")
    dev = deviations(values, settings.stats).filter(pl.col("n") >= 3)
    rule = f"outlier_{OUTLIER_METRIC}"
    starts = closed.select("cell_id", "cycle", "start_ts")
    judged = dev.join(starts, on=["cell_id", "cycle"], how="inner").select(
        "cell_id", pl.lit(rule).alias("rule"), "cycle", pl.col("start_ts").alias("ts"))
    flagged = dev.filter(pl.col("outlier")).select("cell_id", "cycle")
    starts = _with_older_starts(starts, flagged, ctx)
    return judged.cast(JUDGED_SCHEMA), outlier_alerts(dev, metric=OUTLIER_METRIC, start_ts=starts)  # type: ignore[arg-type]


LIMITS = AlertRule("limits", _limits, description="voltage / temperature / coulombic "
                   "efficiency limits of AlertConfig on open and closed cycles",
                   judge=_judge_limits)
OUTLIERS = AlertRule("outliers", _outliers, needs_history=True,
                     description=f"group outliers of {OUTLIER_METRIC} (StatsConfig rule)",
                     judge=_judge_outliers)


def _output(out: EngineOutput, checked: Validated | None = None) -> KindOutput:
    rows = out.accepted_rows
    if checked is not None and checked.rows is not None and len(rows):
        # Engine rows index the validated batch; raw storage takes rows of the good frame.
        rows = np.searchsorted(checked.rows, rows)
    return KindOutput({"steps": out.steps, "cycles": out.cycles}, out.rejected, out.accepted,
                      rows)


@dataclass(frozen=True)
class CellKind:
    """Battery cells: canonical measurements -> steps and cycles (see docs/metrics.md)."""

    settings: Settings = field(default_factory=Settings)
    name: str = "cell"
    entity_key: str = "cell_id"
    measurement_schema: Mapping[str, pl.DataType] = field(default_factory=lambda: MEASUREMENT_SCHEMA)
    raw_table: TableSpec | None = MEASUREMENTS
    tables: tuple[TableSpec, ...] = (STEPS, CYCLES)
    alert_rules: tuple[AlertRule, ...] = (LIMITS, OUTLIERS)
    queries: tuple[ReadQuery, ...] = (
        ReadQuery("cycles", "cycles", ("cell_id", "status"), "per-cycle metrics"),
        ReadQuery("steps", "steps", ("cell_id", "cycle"), "per-step metrics"),
    )

    def validate(self, frame: pl.DataFrame, *, source: str) -> Validated:
        return validate(frame, source=source)

    def new_state(self) -> EngineState:
        return new_state(self.settings.engine)

    def update(self, state: EngineState, checked: Validated, *, source: str,
               entities: pl.DataFrame | None = None) -> tuple[EngineState, KindOutput]:
        state, out = update_checked(state, checked, cells=entities, source=source)
        return state, _output(out, checked)

    def flush(self, state: EngineState) -> tuple[EngineState, KindOutput]:
        state, out = flush(state)
        return state, _output(out)

    def summarize(self, frame: pl.DataFrame, *, entities: pl.DataFrame | None = None,
                  source: str = "input") -> KindOutput:
        s = summarize(frame, self.settings.engine, cells=entities, source=source)
        return KindOutput({"steps": s.steps, "cycles": s.cycles}, s.rejected,
                          frame.height - s.rejected.height)

    def state_to_bytes(self, state: EngineState) -> bytes:
        return state.to_bytes()

    def state_from_bytes(self, data: bytes) -> EngineState:
        return EngineState.from_bytes(data, self.settings.engine)

    # -- cell metadata (groups, nominal capacities) ------------------------------
    def register(self, state: EngineState, cells: pl.DataFrame) -> None:
        """Give cells (CELL_SCHEMA) engine slots and their nominal capacities."""
        nominal = nominal_capacities(cells)
        state.add_cells(cells.get_column("cell_id").to_list(), nominal)
        state.set_nominal(nominal)


def nominal_capacities(cells: pl.DataFrame) -> dict[str, float]:
    """cell_id -> nominal capacity, Ah, for the cells that have a finite one."""
    if "nominal_capacity_ah" not in cells.columns:
        return {}
    sub = cells.select("cell_id", pl.col("nominal_capacity_ah").cast(pl.Float64)).drop_nulls()
    return {str(k): float(v) for k, v in sub.iter_rows() if np.isfinite(v)}


def cell_kind(settings: Settings | None = None) -> CellKind:
    """The cell kind configured by ``settings``."""
    return CellKind(settings or Settings())


