"""Batch-layer fixtures: a simulated fleet streamed through the engine and archived.

``streamed_fleet`` (session) plays the live pipeline: the fleet's frames (with every
sensor/delivery fault switched on: duplicates, out-of-order and late rows) go through
``engine.update`` batch by batch, and each batch's *accepted* rows are appended to a
Parquet archive under a batch id from the source position -- what the pipeline does.
The streamed steps and cycles are the reference every backfill must reproduce.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from chargetracker.engine import flush, new_state, update
from chargetracker.schema import conform
from chargetracker.sim import FAULT_NAMES, Fleet, default_fleet_config
from chargetracker.sim.measurement import FaultConfig
from chargetracker.stores.archive import ParquetArchive, batch_id_for

#: 36 cells in 4 groups, 10 s sampling, 48 h: ~620 k samples, ~1100 cycles.
N_CELLS = 36
SAMPLE_PERIOD_S = 10.0
HOURS = 48.0
BATCH_S = 1800.0


@dataclass(frozen=True)
class StreamedFleet:
    archive: ParquetArchive
    cells: pl.DataFrame          # CELL_SCHEMA metadata (group, nominal capacity)
    raw: pl.DataFrame            # everything the fleet delivered, in delivery order
    accepted: pl.DataFrame       # the rows the engine accepted (= archived)
    steps: pl.DataFrame          # streamed results, last row per key
    cycles: pl.DataFrame
    rejected: int
    batches: list[tuple[str, pl.DataFrame]]   # (batch id, accepted rows) as archived

    @property
    def groups(self) -> dict[str, str]:
        return dict(zip(self.cells["cell_id"].to_list(), self.cells["group"].to_list(),
                        strict=True))

    @property
    def nominal(self) -> dict[str, float]:
        return dict(zip(self.cells["cell_id"].to_list(),
                        self.cells["nominal_capacity_ah"].to_list(), strict=True))


def last_per_key(frames: list[pl.DataFrame], keys: list[str]) -> pl.DataFrame:
    return pl.concat(frames).unique(subset=keys, keep="last", maintain_order=True).sort(keys)


def stream_into_archive(root: Path, *, seed: int = 7, cells: int = N_CELLS) -> StreamedFleet:
    cfg = default_fleet_config(cells=cells, seed=seed, sample_period_s=SAMPLE_PERIOD_S,
                               duration_s=HOURS * 3600.0,
                               faults=FaultConfig(enabled=frozenset(FAULT_NAMES)))
    fleet = Fleet(cfg)
    meta = fleet.cells
    archive = ParquetArchive(root)
    groups = dict(zip(meta["cell_id"].to_list(), meta["group"].to_list(), strict=True))
    state = new_state()
    steps, cycles, raw, accepted, batches = [], [], [], [], []
    rejected = 0
    for k, frame in enumerate(fleet.chunks(seconds=BATCH_S)):
        state, out = update(state, frame, cells=meta if k == 0 else None, source="sim")
        rows = conform(frame)[out.accepted_rows]
        batch_id = batch_id_for("sim", {"chunk": k})
        archive.append(rows, groups, batch_id)
        steps.append(out.steps)
        cycles.append(out.cycles)
        raw.append(frame)
        accepted.append(rows)
        batches.append((batch_id, rows))
        rejected += out.rejected.height
    state, out = flush(state)
    steps.append(out.steps)
    cycles.append(out.cycles)
    rejected += out.rejected.height
    return StreamedFleet(
        archive=archive, cells=meta, raw=pl.concat(raw), accepted=pl.concat(accepted),
        steps=last_per_key(steps, ["cell_id", "step"]),
        cycles=last_per_key(cycles, ["cell_id", "cycle"]),
        rejected=rejected, batches=batches,
    )


@pytest.fixture(scope="session")
def streamed_fleet(tmp_path_factory: pytest.TempPathFactory) -> StreamedFleet:
    # "=" in a parent directory must not confuse hive partition parsing.
    return stream_into_archive(tmp_path_factory.mktemp("archive") / "ct=1" / "archive")


def assert_frames_equal(left: pl.DataFrame, right: pl.DataFrame, *, nan_as_null: bool = False) -> None:
    """Exact equality (values, dtypes, order); NaN == NaN. ``nan_as_null`` for paths that
    store an undefined metric as null (stores, pandas)."""
    if nan_as_null:
        left = left.with_columns(pl.col(pl.Float64).fill_nan(None))
        right = right.with_columns(pl.col(pl.Float64).fill_nan(None))
    assert left.columns == right.columns
    assert left.schema == right.schema
    assert left.height == right.height
    for name in left.columns:
        a, b = left.get_column(name), right.get_column(name)
        if a.dtype == pl.Float64:
            # No tolerance: equal values, or both NaN, or both null.
            same = (a == b) | (a.is_nan() & b.is_nan()) | (a.is_null() & b.is_null())
        else:
            same = (a == b) | (a.is_null() & b.is_null())
        bad = (~same.fill_null(False)).arg_true()
        assert len(bad) == 0, (
            f"column {name!r} differs at {len(bad)} row(s); first: row {bad[0]}: "
            f"{a[bad[0]]!r} != {b[bad[0]]!r}")
