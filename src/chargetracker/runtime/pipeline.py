"""The embedded pipeline core: one batch in -> engine -> alerts -> one atomic commit.

Every accepted batch is committed together with the engine state and the position of
its source, so a process killed at any point restarts from the last commit: nothing
accepted is lost and nothing is counted twice (results are idempotent upserts, raw
rows are keyed by (cell_id, ts)). Sources, pacing and back-pressure live in
:mod:`chargetracker.runtime.runner`; this class only turns batches into commits.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from ..config import Settings
from ..engine import EngineState, flush, new_state, update
from ..engine.alerts import limit_alerts, outlier_alerts
from ..engine.stats import deviations
from ..schema import CELL_SCHEMA, DEAD_LETTER_SCHEMA, conform
from ..stores.base import Checkpoint, CommitBatch, Store

__all__ = ["IngestResult", "Pipeline"]

#: Cycle metric whose group outliers raise alerts.
OUTLIER_METRIC = "discharge_ah"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """Outcome of one batch: accepted count and the rejected rows with reasons."""

    accepted: int
    rejected: pl.DataFrame
    closed_cycles: int = 0
    alerts: int = 0
    latency_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": self.rejected.height,
            "errors": self.rejected.select("row", "field", "reason").to_dicts(),
            "closed_cycles": self.closed_cycles,
            "alerts": self.alerts,
        }


@dataclass
class _Positions:
    values: dict[str, Any] = field(default_factory=dict)


class Pipeline:
    """Owns the engine state of one pipeline (``name``) and writes through a store.

    Thread-safe: the API's request threads and a runner may call :meth:`ingest`
    concurrently; batches are serialized under a lock (the engine is sequential).
    """

    def __init__(self, store: Store, settings: Settings | None = None, *,
                 name: str = "embedded") -> None:
        self.store = store
        self.settings = settings or Settings()
        self.name = name
        self._lock = threading.Lock()
        cp = store.load_checkpoint(name)
        if cp is None:
            self.state: EngineState = new_state(self.settings.engine)
            self._positions = _Positions()
        else:
            self.state = EngineState.from_bytes(cp.state, self.settings.engine)
            self._positions = _Positions(dict(cp.position))
        self._groups: dict[str, str] = {}
        self._load_groups()

    # -- positions ------------------------------------------------------------------
    def position(self, source: str) -> Any:
        """The committed position of ``source`` (None when it has never committed)."""
        return self._positions.values.get(source)

    # -- cells ----------------------------------------------------------------------
    def _load_groups(self) -> None:
        offset = 0
        while True:
            page = self.store.cells(limit=10_000, offset=offset)
            if page.height == 0:
                break
            self._groups.update(zip(page.get_column("cell_id").to_list(),
                                    page.get_column("group").to_list(), strict=True))
            offset += page.height
            if page.height < 10_000:
                break

    def register_cells(self, cells: pl.DataFrame) -> None:
        """Store cell metadata (defines groups and nominal capacities)."""
        cells = _conform_cells(cells)
        with self._lock:
            self.store.upsert_cells(cells)
            self._groups.update(zip(cells.get_column("cell_id").to_list(),
                                    cells.get_column("group").to_list(), strict=True))
            self.state.add_cells(cells.get_column("cell_id").to_list(), _nominal(cells))
            self.state.set_nominal(_nominal(cells))

    # -- ingest ---------------------------------------------------------------------
    def ingest(self, frame: pl.DataFrame, *, source: str = "input",
               position: Any = None, cells: pl.DataFrame | None = None,
               rejected: pl.DataFrame | None = None) -> IngestResult:
        """Run one batch through the engine and commit results, state and position.

        ``rejected``: dead letters the source produced itself (e.g. a reader's unparseable
        lines, DEAD_LETTER_SCHEMA); they are committed and counted with the batch.
        """
        t0 = time.perf_counter()
        with self._lock:
            if cells is not None and cells.height:
                cells = _conform_cells(cells)
                self._groups.update(zip(cells.get_column("cell_id").to_list(),
                                        cells.get_column("group").to_list(), strict=True))
            self.state, out = update(self.state, frame, cells=cells, source=source)
            raw = None
            if out.accepted:
                raw = conform(frame)[out.accepted_rows] if len(out.accepted_rows) != frame.height else conform(frame)
            alerts = self._alerts(out.cycles)
            if position is not None:
                self._positions.values[source] = position
            dead = out.rejected
            if rejected is not None and rejected.height:
                dead = pl.concat([rejected.select(list(DEAD_LETTER_SCHEMA)).cast(DEAD_LETTER_SCHEMA),  # type: ignore[arg-type]
                                  out.rejected])
            batch = CommitBatch(
                measurements=raw,
                steps=out.steps,
                cycles=out.cycles,
                dead_letters=dead,
                alerts=alerts,
                cells=cells,
                checkpoints=[Checkpoint(self.name, self.state.to_bytes(), dict(self._positions.values))],
                counters={source: {"accepted": out.accepted, "rejected": dead.height}},
            )
            self.store.commit(batch)
            closed = int((out.cycles.get_column("status") == "closed").sum()) if out.cycles.height else 0
        return IngestResult(out.accepted, dead, closed, alerts.height, time.perf_counter() - t0)

    def finish(self, *, source: str = "input", position: Any = None) -> IngestResult:
        """End of a finite stream: settle pending samples and commit."""
        with self._lock:
            self.state, out = flush(self.state)
            if position is not None:
                self._positions.values[source] = position
            alerts = self._alerts(out.cycles)
            self.store.commit(CommitBatch(
                steps=out.steps, cycles=out.cycles, alerts=alerts,
                checkpoints=[Checkpoint(self.name, self.state.to_bytes(), dict(self._positions.values))],
            ))
        return IngestResult(0, out.rejected, 0, alerts.height)

    # -- alerts ---------------------------------------------------------------------
    def _alerts(self, cycles: pl.DataFrame) -> pl.DataFrame:
        cfg = self.settings.alerts
        if cycles.height == 0:
            return limit_alerts(cycles, cfg)
        groups = pl.DataFrame(
            {"cell_id": list(self._groups), "group": list(self._groups.values())},
            schema={"cell_id": pl.Utf8, "group": pl.Utf8},
        )
        cyc = cycles.join(groups, on="cell_id", how="left")
        parts = [limit_alerts(cyc, cfg)]
        closed = cyc.filter(pl.col("status") == "closed")
        if cfg.outliers and closed.height:
            # Re-evaluate each (group, cycle) that just gained a closed cycle.
            touched = closed.select("group", "cycle").unique().drop_nulls()
            if touched.height:
                values = self.store.metric_values(OUTLIER_METRIC, group_key=self.settings.stats.group_key)
                fresh = closed.select("group", "cell_id", "cycle", pl.col(OUTLIER_METRIC).alias("value"))
                values = pl.concat([values.select("group", "cell_id", "cycle", "value"), fresh]).unique(
                    subset=["cell_id", "cycle"], keep="last")
                values = values.join(touched, on=["group", "cycle"], how="inner")
                dev = deviations(values, self.settings.stats)
                starts = pl.concat([
                    closed.select("cell_id", "cycle", "start_ts"),
                    self.store.cycles(None, status="closed").select("cell_id", "cycle", "start_ts")
                    if dev.filter(pl.col("outlier")).height else closed.select("cell_id", "cycle", "start_ts"),
                ]).unique(subset=["cell_id", "cycle"], keep="first")
                parts.append(outlier_alerts(dev, metric=OUTLIER_METRIC, start_ts=starts))
        return pl.concat(parts)


def _conform_cells(cells: pl.DataFrame) -> pl.DataFrame:
    cols = []
    for name, dtype in CELL_SCHEMA.items():
        if name in cells.columns:
            cols.append(pl.col(name).cast(dtype))
        else:
            cols.append(pl.lit(None, dtype=dtype).alias(name))
    return cells.select(cols)


def _nominal(cells: pl.DataFrame) -> dict[str, float]:
    sub = cells.select("cell_id", "nominal_capacity_ah").drop_nulls()
    return {k: float(v) for k, v in zip(sub.get_column("cell_id").to_list(),
                                         sub.get_column("nominal_capacity_ah").to_list(), strict=True)
            if np.isfinite(v)}


