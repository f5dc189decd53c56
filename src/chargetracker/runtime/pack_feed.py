"""Daily pack records from live cell telemetry, through the pack pipeline.

A running fleet of cells that carry their pack (VIN) gets one daily pack record per
pack and UTC day and the day's alarm predictions, without a second pass over the raw
samples (:mod:`chargetracker.ml.from_cells` defines the record):

* :class:`PackTapPipeline` is the cell :class:`~chargetracker.runtime.Pipeline` with a
  tap: every batch's accepted samples fold into per cell-day running sums
  (:func:`~chargetracker.ml.from_cells.cell_day_summary`, :mod:`.pack_days`), and the
  rows of the cells the batch touched (table ``pack_feed_cells``, scope
  ``pack-days/<name>``) are written **in the cell batch's own commit**, so a restart
  neither loses a partial day nor counts a replayed sample twice, and a commit writes
  rows for its batch's cells, not for the whole fleet;
* after each commit, the days every cell of a pack has passed (per pack: its slowest
  cell's clock is past the day's end) become that pack's records, ingested by the pack
  pipeline (:func:`~chargetracker.runtime.packs.shared_pack_pipeline`); the accumulator
  drops the decided days at the next cell batch. After a restart a pack's days up to
  its last stored record are done (the pack state's ``last_day``), later ones are judged
  again: a crash between the two commits re-emits the day (an idempotent upsert).

:func:`seed_history` gives a new demo fleet earlier days of simulated pack records
(:func:`~chargetracker.ml.fleet_sim.simulate_pack_fleet`), so the 14-day windows are
full at once instead of after two simulated weeks; the seeded records are stored with
source ``batch``, the derived ones with source ``stream``.

:func:`pack_feed_pipeline` is the one composition of the feed (``chargetracker run
--pack-feed``, ``demo``); the Kafka worker's per-partition form is
:mod:`chargetracker.kafka.pack_feed`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import polars as pl

from ..config import Settings
from ..errors import ChargeTrackerError
from ..frames import conform_frame
from ..kinds.pack import PACK_FEED_CELLS
from ..ml.fleet_sim import PackFleetConfig, simulate_pack_fleet
from ..ml.from_cells import pack_of_cells, pack_records_from_days
from ..schema import CELL_SCHEMA
from ..stores.base import Checkpoint, Store, all_cells
from .pack_days import (
    DAY_S,
    CellDays,
    Changed,
    decide,
    decided_of,
    drop_frame,
    merge_decided,
    tap_header,
    tap_version,
)
from .packs import shared_pack_pipeline
from .pipeline import IngestResult, Pipeline, PreparedStep

__all__ = ["FEED_SOURCE", "PackTapPipeline", "assign_packs", "live_pack_pipeline",
           "merge_pack_maps", "pack_feed_pipeline", "pack_map_of", "seed_history"]

log = logging.getLogger(__name__)

#: The source name of the derived records (``pack_records.source``, predictions).
FEED_SOURCE = "stream"
_DAY_S = DAY_S


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


class PackTapPipeline(Pipeline):
    """The cell pipeline, also feeding daily pack records to the pack pipeline
    ``packs`` (see the module docstring). ``pack_map``: (cell_id, vin); cells whose
    metadata (``pack_id`` / ``vin``) arrives with a batch join it."""

    def __init__(self, store: Store, settings: Settings, packs: Pipeline,
                 pack_map: pl.DataFrame, *, name: str = "embedded") -> None:
        super().__init__(store, settings, name=name)
        self.packs = packs
        self._set_pack_map(pack_map)
        self._tap_name = f"pack-days/{name}"
        self._tap_lock = threading.Lock()   # folds in prepare (ticket) order
        self._emit_lock = threading.Lock()
        # Per pack the last day decided, as committed by the pack pipeline.
        self._decided = decided_of(packs.state.vins)
        self._rewrite_all = False            # an old-format blob: write every cell's row
        self._pending = self._load_tap()    # after the newest prepared batch
        self._committed = self._pending     # after the newest committed batch
        self._by_ticket: dict[int, CellDays] = {}
        self._committed_ticket = -1

    def _set_pack_map(self, pack_map: pl.DataFrame) -> None:
        self.pack_map = pack_map.select("cell_id", "vin").sort("vin", "cell_id")
        self._pack_cells = self.pack_map.get_column("cell_id")

    def _load_tap(self) -> CellDays:
        """The accumulator as the last cell commit left it: the rows of this feed's
        scope (format 2), or the whole blob of the first format (then every cell's row
        is written at the next commit, and the blob is gone)."""
        cp = self.store.load_checkpoint(self._tap_name)
        if cp is None:
            return CellDays()
        if tap_version(cp.state) == 1:
            self._rewrite_all = True
            return CellDays.from_bytes(cp.state)
        rows = self.store.rows(PACK_FEED_CELLS.name, filters={"scope": self._tap_name},
                               unbounded=True)
        # Days already decided are dropped (and their rows rewritten) at the next batch.
        return CellDays.from_rows(rows, None)

    def prepare(self, frame: pl.DataFrame, **kw: Any) -> PreparedStep:
        with self._tap_lock:
            failed = self._failed is not None
            cells = kw.get("cells")
            if cells is not None and cells.height:
                self._learn_packs(cells)
            prepared = super().prepare(frame, **kw)
            if failed:  # the engine state was reloaded from the last commit: so is ours
                self._pending = self._load_tap()
            raw = prepared.step.raw if prepared.step.raw is not None else prepared.commit.measurements
            self._pending, changed = self._pending.folded(
                raw, self._pack_cells, drop_frame(self.pack_map, self._decided))
            if self._rewrite_all:
                changed = changed | Changed.every(self._pending.last.get_column("cell_id"))
            if changed:
                prepared.commit.tables[PACK_FEED_CELLS.name] = self._pending.rows(
                    self._tap_name, changed)
                prepared.commit.checkpoints.append(Checkpoint(
                    self._tap_name, tap_header(2), {"cells": self._pack_cells.len()}))
                self._rewrite_all = False
            self._by_ticket[prepared.ticket] = self._pending
            return prepared

    def _learn_packs(self, cells: pl.DataFrame) -> None:
        """Cells of a batch that name their pack join the pack map."""
        own = pack_of_cells(conform_frame(cells, CELL_SCHEMA, table="cells"))
        if own.height:
            self._set_pack_map(merge_pack_maps(self.pack_map, own))

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
        """Ingest the pack records of the days every cell of their pack has passed in
        the committed accumulator and not decided yet (None when there is none)."""
        with self._emit_lock:
            new, days = decide(self._committed, self.pack_map, self._decided)
            if new.height == 0:
                return None
            records = pack_records_from_days(days, self.pack_map)
            result = (self.packs.ingest(records, source=FEED_SOURCE) if records.height
                      else None)
            # Only once committed: after a failed commit the days are emitted again.
            self._decided = merge_decided(self._decided, new)
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


def merge_pack_maps(*maps: pl.DataFrame) -> pl.DataFrame:
    """(cell_id, vin) maps as one; a later map's pack of a cell wins."""
    parts = [m.select("cell_id", "vin") for m in maps if m.height]
    if not parts:
        return pl.DataFrame(schema={"cell_id": pl.Utf8(), "vin": pl.Utf8()})
    return pl.concat(parts).unique(subset=["cell_id"], keep="last", maintain_order=True).sort(
        "vin", "cell_id")


def pack_map_of(store: Store, cells: pl.DataFrame | None = None, *,
                synthetic_packs: bool = False) -> pl.DataFrame:
    """(cell_id, vin) of the cells registered in ``store`` and of ``cells``, by their
    ``pack_id`` / ``vin`` metadata; with ``synthetic_packs`` cells without one are put
    in packs of 13 of their group (:func:`assign_packs`, a simulated fleet)."""
    known = pack_of_cells(all_cells(store))
    if cells is None or cells.height == 0:
        return merge_pack_maps(known)
    given = (assign_packs(cells) if synthetic_packs
             else pack_of_cells(conform_frame(cells, CELL_SCHEMA, table="cells")))
    return merge_pack_maps(known, given)


def pack_feed_pipeline(store: Store, settings: Settings, *, name: str = "embedded",
                       cells: pl.DataFrame | None = None, model_dir: str | None = None,
                       synthetic_packs: bool = False, seed_start_ts: float | None = None,
                       seed: int = 0) -> PackTapPipeline:
    """The composition of a live pack feed (``run``, ``demo``): the cell pipeline
    ``name`` of ``store`` with the tap, feeding the store's pack pipeline (the model of
    ``model_dir``, None: the packaged one). Packs: :func:`pack_map_of` (the store's
    cells, ``cells``, and later every batch's cells that name a pack). With
    ``seed_start_ts`` (the fleet's first sample, s since epoch) new packs get simulated
    history first (:func:`seed_history`). ``store`` must be opened with the pack kind
    (``open_store(url, kinds=[PackKind()])``)."""
    packs = shared_pack_pipeline(store, settings, model_dir)
    pack_map = pack_map_of(store, cells, synthetic_packs=synthetic_packs)
    pipeline = PackTapPipeline(store, settings, packs, pack_map, name=name)
    if seed_start_ts is not None:
        seed_history(packs, pack_map, seed_start_ts, seed=seed)
    return pipeline


def live_pack_pipeline(store: Store, settings: Settings, cells: pl.DataFrame, *,
                       start_ts: float | None = None, seed: int = 0) -> PackTapPipeline:
    """The demo's feed: :func:`pack_feed_pipeline` with ``cells`` in synthetic packs
    where they name none."""
    return pack_feed_pipeline(store, settings, cells=cells, synthetic_packs=True,
                              seed_start_ts=start_ts, seed=seed)
