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
from ..errors import StoreError
from ..schema import CELL_SCHEMA, DEAD_LETTER_SCHEMA, conform
from ..stores.base import Checkpoint, CommitBatch, Store

__all__ = ["IngestResult", "Pipeline", "PreparedBatch"]

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


@dataclass(slots=True)
class PreparedBatch:
    """A batch the engine has processed, waiting for :meth:`Pipeline.write`.

    ``ticket`` orders the writes: batches are committed in the order they were prepared.
    """

    ticket: int
    commit: CommitBatch
    cycles: pl.DataFrame
    accepted: int
    rejected: pl.DataFrame
    closed_cycles: int
    started: float


class Pipeline:
    """Owns the engine state of one pipeline (``name``) and writes through a store.

    Thread-safe: the API's request threads and a runner may call :meth:`ingest`
    concurrently; batches are serialized under a lock (the engine is sequential).

    :meth:`ingest` is :meth:`prepare` (engine step, state and position snapshot) followed
    by :meth:`write` (alerts, one atomic store commit). A runner may prepare the next
    batch while the previous one is being written (the engine and the store then work
    at the same time); writes always happen in the order of the prepares, so every
    checkpoint follows the one before it. If a write fails, the in-memory engine state
    (already past that batch) is discarded: batches prepared after it are refused and the
    next :meth:`prepare` reloads the state and positions of the last commit.
    """

    def __init__(self, store: Store, settings: Settings | None = None, *,
                 name: str = "embedded") -> None:
        self.store = store
        self.settings = settings or Settings()
        self.name = name
        self._lock = threading.Lock()
        self._turn = threading.Condition()
        self._next_ticket = 0          # next ticket to hand out (under _lock)
        self._written = -1             # last ticket written or abandoned (under _turn)
        self._failed: BaseException | None = None   # a write failed: state must be reloaded
        self._load_checkpoint()
        self._groups: dict[str, str] = {}
        self._load_groups()

    def _load_checkpoint(self) -> None:
        cp = self.store.load_checkpoint(self.name)
        if cp is None:
            self.state: EngineState = new_state(self.settings.engine)
            self._positions = _Positions()
        else:
            self.state = EngineState.from_bytes(cp.state, self.settings.engine)
            self._positions = _Positions(dict(cp.position))

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
        return self.write(self.prepare(frame, source=source, position=position, cells=cells,
                                       rejected=rejected))

    def prepare(self, frame: pl.DataFrame, *, source: str = "input",
                position: Any = None, cells: pl.DataFrame | None = None,
                rejected: pl.DataFrame | None = None) -> PreparedBatch:
        """The engine step of :meth:`ingest`; the batch is committed by :meth:`write`."""
        t0 = time.perf_counter()
        with self._lock:
            self._recover_if_failed()
            if cells is not None and cells.height:
                cells = _conform_cells(cells)
                self._groups.update(zip(cells.get_column("cell_id").to_list(),
                                        cells.get_column("group").to_list(), strict=True))
            self.state, out = update(self.state, frame, cells=cells, source=source)
            raw = None
            if out.accepted:
                raw = conform(frame)[out.accepted_rows] if len(out.accepted_rows) != frame.height else conform(frame)
            if position is not None:
                self._positions.values[source] = position
            dead = out.rejected
            if rejected is not None and rejected.height:
                dead = pl.concat([rejected.select(list(DEAD_LETTER_SCHEMA)).cast(DEAD_LETTER_SCHEMA),  # type: ignore[arg-type]
                                  out.rejected])
            commit = CommitBatch(
                measurements=raw,
                steps=out.steps,
                cycles=out.cycles,
                dead_letters=dead,
                cells=cells,
                checkpoints=[Checkpoint(self.name, self.state.to_bytes(), dict(self._positions.values))],
                counters={source: {"accepted": out.accepted, "rejected": dead.height}},
            )
            closed = int((out.cycles.get_column("status") == "closed").sum()) if out.cycles.height else 0
            return PreparedBatch(self._take_ticket(), commit, out.cycles, out.accepted, dead,
                                 closed, t0)

    def write(self, prepared: PreparedBatch) -> IngestResult:
        """Raise the batch's alerts and commit it, after every batch prepared before it."""
        with self._turn:
            self._turn.wait_for(lambda: self._written == prepared.ticket - 1)
            try:
                if self._failed is not None:
                    raise StoreError(
                        "an earlier batch failed to commit; this batch was prepared from engine "
                        "state that was never committed and is not written (re-read it from the "
                        "last committed position)") from self._failed
                # Alerts read the store, which now holds every earlier batch.
                alerts = self._alerts(prepared.cycles)
                prepared.commit.alerts = alerts
                self.store.commit(prepared.commit)
            except BaseException as exc:
                if self._failed is None:
                    self._failed = exc
                raise
            finally:
                self._written = prepared.ticket
                self._turn.notify_all()
        return IngestResult(prepared.accepted, prepared.rejected, prepared.closed_cycles,
                            alerts.height, time.perf_counter() - prepared.started)

    def discard(self, prepared: PreparedBatch) -> None:
        """Give up a prepared batch without writing it. The engine state already went past
        it, so the next :meth:`prepare` reloads the last committed state."""
        with self._turn:
            self._turn.wait_for(lambda: self._written == prepared.ticket - 1)
            if self._failed is None:
                self._failed = StoreError("a prepared batch was discarded")
            self._written = prepared.ticket
            self._turn.notify_all()

    def finish(self, *, source: str = "input", position: Any = None) -> IngestResult:
        """End of a finite stream: settle pending samples and commit."""
        t0 = time.perf_counter()
        with self._lock:
            self._recover_if_failed()
            self.state, out = flush(self.state)
            if position is not None:
                self._positions.values[source] = position
            prepared = PreparedBatch(
                self._take_ticket(),
                CommitBatch(steps=out.steps, cycles=out.cycles, checkpoints=[
                    Checkpoint(self.name, self.state.to_bytes(), dict(self._positions.values))]),
                out.cycles, 0, out.rejected, 0, t0)
        result = self.write(prepared)
        return IngestResult(0, out.rejected, 0, result.alerts)

    def _take_ticket(self) -> int:
        ticket = self._next_ticket
        self._next_ticket += 1
        return ticket

    def _recover_if_failed(self) -> None:
        """After a failed write, once every prepared batch is settled, reload the last
        committed engine state and positions (called under ``_lock``)."""
        if self._failed is None:
            return
        with self._turn:
            self._turn.wait_for(lambda: self._written == self._next_ticket - 1)
            self._load_checkpoint()
            self._failed = None

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
            # Re-evaluate each (group, cycle) that just gained a closed cycle; only those
            # cycles are read back from the store.
            touched = closed.select("group", "cycle").unique().drop_nulls()
            if touched.height:
                # A cell that *becomes* an outlier raises one alert: compare with the
                # group's previous cycle, so a persistently deviating cell is not
                # re-alerted on every cycle.
                before = touched.with_columns(pl.col("cycle") - 1)
                pairs = pl.concat([touched, before]).unique()
                first = int(pairs.get_column("cycle").min())  # type: ignore[arg-type]
                values = self.store.metric_values(OUTLIER_METRIC, group_key=self.settings.stats.group_key,
                                                  since_cycle=first)
                fresh = closed.select("group", "cell_id", "cycle", pl.col(OUTLIER_METRIC).alias("value"))
                values = pl.concat([values.select("group", "cell_id", "cycle", "value"), fresh]).unique(
                    subset=["cell_id", "cycle"], keep="last")
                values = values.join(pairs, on=["group", "cycle"], how="inner")
                dev_all = deviations(values, self.settings.stats)
                dev = dev_all.join(touched, on=["group", "cycle"], how="inner")
                was = dev_all.filter(pl.col("outlier")).select(
                    "cell_id", (pl.col("cycle") + 1).alias("cycle"))
                dev = dev.with_columns(
                    pl.col("outlier") & ~pl.struct("cell_id", "cycle").is_in(
                        was.select(pl.struct("cell_id", "cycle")).to_series().implode()))
                starts = closed.select("cell_id", "cycle", "start_ts")
                flagged = dev.filter(pl.col("outlier")).select("cell_id", "cycle")
                missing = flagged.join(starts, on=["cell_id", "cycle"], how="anti")
                if missing.height:
                    # Flagged cells whose cycle closed in an earlier batch: their start.
                    older = pl.concat([
                        self.store.cycles(cid, status="closed").select("cell_id", "cycle", "start_ts")
                        for cid in missing.get_column("cell_id").unique().to_list()
                    ])
                    starts = pl.concat([starts, older]).unique(subset=["cell_id", "cycle"], keep="first")
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


