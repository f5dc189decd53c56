"""Daily pack records from live cell telemetry, through the pack pipeline.

A running fleet of cells that carry their pack (VIN) gets one daily pack record per
pack and UTC day and the day's alarm predictions, without a second pass over the raw
samples (:mod:`chargetracker.ml.from_cells` defines the record):

* :class:`PackTapPipeline` is the cell :class:`~chargetracker.runtime.Pipeline` with a
  tap: every batch's accepted samples fold into per cell-day running sums
  (:func:`~chargetracker.ml.from_cells.cell_day_summary`), and that accumulator is
  checkpointed **in the cell batch's own commit** (``pack-days/<name>``), so a restart
  neither loses a partial day nor counts a replayed sample twice;
* after each commit, the days every pack cell has passed (the slowest cell's clock is
  past the day's end) become pack records, ingested by the pack pipeline
  (:func:`~chargetracker.runtime.packs.shared_pack_pipeline`) with the day as its
  position ``{"day": D}``; the accumulator drops days up to that position at the next
  cell batch. A crash between the two commits re-emits the day (an idempotent upsert).

:func:`seed_history` gives a new demo fleet earlier days of simulated pack records
(:func:`~chargetracker.ml.fleet_sim.simulate_pack_fleet`), so the 14-day windows are
full at once instead of after two simulated weeks; the seeded records are stored with
source ``batch``, the derived ones with source ``stream``.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from typing import Any

import numpy as np
import polars as pl

from ..config import Settings
from ..errors import ChargeTrackerError
from ..frames import conform_frame
from ..ml.fleet_sim import PackFleetConfig, simulate_pack_fleet
from ..ml.from_cells import (
    CELL_DAY_SCHEMA,
    cell_day_summary,
    merge_cell_days,
    pack_of_cells,
    pack_records_from_days,
)
from ..schema import CELL_SCHEMA
from ..stores.base import Checkpoint, Store
from .packs import shared_pack_pipeline
from .pipeline import IngestResult, Pipeline, PreparedStep

__all__ = ["FEED_SOURCE", "PackTapPipeline", "assign_packs", "live_pack_pipeline",
           "seed_history"]

log = logging.getLogger(__name__)

#: The pack pipeline's source name (and position key) of the derived records.
FEED_SOURCE = "stream"
_DAY_S = 86_400
_LAST_SCHEMA: dict[str, pl.DataType] = {"cell_id": pl.Utf8(), "last_ts": pl.Float64()}


def assign_packs(cells: pl.DataFrame, *, cells_per_pack: int = 13) -> pl.DataFrame:
    """(cell_id, vin): the cells' own ``pack_id``/``vin`` metadata, and for cells without
    one, packs of ``cells_per_pack`` consecutive cells of one group (a simulated fleet's
    cells have no pack; ``<group>-pack-NN``)."""
    cells = conform_frame(cells, CELL_SCHEMA, table="cells")
    own = pack_of_cells(cells)
    rest = cells.join(own.select("cell_id"), on="cell_id", how="anti").sort("group", "cell_id")
    made = rest.with_columns(k=pl.int_range(pl.len()).over("group") // int(cells_per_pack)).select(
        "cell_id", pl.format("{}-pack-{}", pl.col("group").fill_null("fleet"),
                             (pl.col("k") + 1).cast(pl.Utf8).str.zfill(2)).alias("vin"))
    return pl.concat([own, made]).sort("vin", "cell_id")


class _CellDays:
    """The tap's accumulator: per cell-day sums and each pack cell's newest ts (s)."""

    def __init__(self, days: pl.DataFrame | None = None, last: pl.DataFrame | None = None) -> None:
        self.days = pl.DataFrame(schema=CELL_DAY_SCHEMA) if days is None else days
        self.last = pl.DataFrame(schema=_LAST_SCHEMA) if last is None else last

    def folded(self, raw: pl.DataFrame, cells: pl.Series, drop_through: int | None) -> _CellDays:
        """A new accumulator with ``raw`` (accepted samples) added and days up to
        ``drop_through`` (already emitted) removed."""
        mine = raw.filter(pl.col("cell_id").is_in(cells.implode()))
        days = merge_cell_days(self.days, cell_day_summary(mine)) if mine.height else self.days
        if drop_through is not None:
            days = days.filter(pl.col("day") > drop_through)
        last = self.last
        if mine.height:
            newest = mine.group_by("cell_id").agg(pl.col("ts").max().alias("last_ts"))
            last = pl.concat([last, newest]).group_by("cell_id").agg(
                pl.col("last_ts").max()).sort("cell_id")
        return _CellDays(days, last)

    def complete_through(self, n_cells: int) -> int | None:
        """The last day every pack cell has passed (None until each one reported)."""
        if self.last.height < n_cells:
            return None
        oldest = float(self.last.get_column("last_ts").min())  # type: ignore[arg-type]
        return int(oldest // _DAY_S) - 1

    def to_bytes(self) -> bytes:
        parts = []
        for frame in (self.days, self.last):
            buf = io.BytesIO()
            frame.write_ipc(buf, compression="uncompressed")
            parts.append(buf.getvalue())
        head = json.dumps({"v": 1, "days": len(parts[0])}).encode()
        return len(head).to_bytes(4, "little") + head + parts[0] + parts[1]

    @classmethod
    def from_bytes(cls, data: bytes) -> _CellDays:
        nh = int.from_bytes(data[:4], "little")
        head = json.loads(data[4:4 + nh])
        a = 4 + nh
        days = pl.read_ipc(io.BytesIO(data[a:a + head["days"]])).cast(CELL_DAY_SCHEMA)  # type: ignore[arg-type]
        last = pl.read_ipc(io.BytesIO(data[a + head["days"]:])).cast(_LAST_SCHEMA)  # type: ignore[arg-type]
        return cls(days, last)


class PackTapPipeline(Pipeline):
    """The cell pipeline, also feeding daily pack records to the pack pipeline
    ``packs`` (see the module docstring). ``pack_map``: (cell_id, vin)."""

    def __init__(self, store: Store, settings: Settings, packs: Pipeline,
                 pack_map: pl.DataFrame, *, name: str = "embedded") -> None:
        super().__init__(store, settings, name=name)
        self.packs = packs
        self.pack_map = pack_map.select("cell_id", "vin")
        self._pack_cells = self.pack_map.get_column("cell_id")
        self._tap_name = f"pack-days/{name}"
        self._tap_lock = threading.Lock()   # folds in prepare (ticket) order
        self._emit_lock = threading.Lock()
        self._pending = self._load_tap()    # after the newest prepared batch
        self._committed = self._pending     # after the newest committed batch
        self._by_ticket: dict[int, _CellDays] = {}
        self._committed_ticket = -1
        self._done = self._committed_day()   # last day committed by the pack pipeline

    def _load_tap(self) -> _CellDays:
        cp = self.store.load_checkpoint(self._tap_name)
        return _CellDays() if cp is None else _CellDays.from_bytes(cp.state)

    def _committed_day(self) -> int | None:
        """The last day the pack pipeline committed (its checkpoint's position)."""
        cp = self.store.load_checkpoint(self.packs.name)
        pos = None if cp is None else cp.position.get(FEED_SOURCE)
        return pos.get("day") if isinstance(pos, dict) else None

    def _emitted(self) -> int | None:
        return self._done

    def prepare(self, frame: pl.DataFrame, **kw: Any) -> PreparedStep:
        with self._tap_lock:
            failed = self._failed is not None
            prepared = super().prepare(frame, **kw)
            if failed:  # the engine state was reloaded from the last commit: so is ours
                self._pending = self._load_tap()
            raw = prepared.step.raw if prepared.step.raw is not None else prepared.commit.measurements
            if raw is not None and raw.height:
                self._pending = self._pending.folded(raw, self._pack_cells, self._emitted())
                prepared.commit.checkpoints.append(Checkpoint(
                    self._tap_name, self._pending.to_bytes(), {"cells": self._pack_cells.len()}))
            self._by_ticket[prepared.ticket] = self._pending
            return prepared

    def write(self, prepared: PreparedStep) -> IngestResult:
        tap = self._by_ticket.pop(prepared.ticket, None)
        result = super().write(prepared)
        if tap is not None:
            with self._emit_lock:
                if prepared.ticket > self._committed_ticket:  # writes finish in order, but
                    self._committed, self._committed_ticket = tap, prepared.ticket  # may return late
            try:
                self.emit()
            except ChargeTrackerError as exc:
                # The cell batch is committed; the day stays in the accumulator and is
                # emitted again after the next cell commit.
                log.warning("daily pack records not written (retried after the next "
                            "batch): %s", exc)
        return result

    def discard(self, prepared: PreparedStep) -> None:
        self._by_ticket.pop(prepared.ticket, None)
        super().discard(prepared)

    def emit(self) -> IngestResult | None:
        """Ingest the pack records of the days complete in the committed accumulator
        and not emitted yet (None when there is none)."""
        with self._emit_lock:
            tap = self._committed
            through = tap.complete_through(self._pack_cells.len())
            done = self._emitted()
            if through is None or (done is not None and through <= done):
                return None
            days = tap.days.filter(pl.col("day") <= through)
            if done is not None:
                days = days.filter(pl.col("day") > done)
            records = pack_records_from_days(days, self.pack_map)
            result = self.packs.ingest(records, source=FEED_SOURCE, position={"day": through})
            self._done = through  # only once committed: a failed commit is re-emitted
            return result


def seed_history(packs: Pipeline, pack_map: pl.DataFrame, start_ts: float, *,
                 days: int = 28, seed: int = 0) -> IngestResult | None:
    """Give packs without any record ``days`` days of simulated pack records before
    ``start_ts`` (s since epoch), about half of them drifting apart, so the 14-day
    windows are full from the first live day. None when every pack has records."""
    vins = pack_map.get_column("vin").unique().sort()
    known = packs.state.vins.get_column("vin")
    new = vins.filter(~vins.is_in(known.implode()))
    if new.len() == 0:
        return None
    per_pack = pack_map.group_by("vin").agg(pl.len().alias("n"))
    n_series = int(per_pack.get_column("n").max() or 1)  # type: ignore[arg-type]
    first = np.datetime64(int(start_ts // _DAY_S) - days, "D")
    sim = simulate_pack_fleet(PackFleetConfig(
        vehicles=new.len(), days=days, start=str(first), cells=n_series, defect_share=0.5,
        drift_per_day=0.006, missing_share=0.1, seed=seed))
    names = dict(zip([f"SIM{i:07d}" for i in range(new.len())], new.to_list(), strict=True))
    sim = sim.with_columns(pl.col("vin").replace_strict(names, return_dtype=pl.Utf8))
    return packs.ingest(sim, source="batch")


def live_pack_pipeline(store: Store, settings: Settings, cells: pl.DataFrame, *,
                       start_ts: float | None = None, seed: int = 0) -> PackTapPipeline:
    """The cell pipeline of a live fleet with daily pack records and predictions: packs
    from ``cells`` (:func:`assign_packs`); with ``start_ts`` (the fleet's first sample,
    s since epoch) new packs get simulated history first (:func:`seed_history`).
    ``store`` must be opened with the pack kind."""
    packs = shared_pack_pipeline(store, settings)
    pack_map = assign_packs(cells)
    pipeline = PackTapPipeline(store, settings, packs, pack_map)
    if start_ts is not None:
        seed_history(packs, pack_map, start_ts, seed=seed)
    return pipeline
