"""The live pack feed's accumulator (runtime/pack_days.py): folding batches, the rows a
commit writes (only what the batch changed), and that those rows, upserted commit after
commit, restore exactly the accumulator held in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chargetracker.config import Settings
from chargetracker.kinds.pack import PACK_FEED_CELLS, PackKind
from chargetracker.ml.from_cells import cell_day_summary
from chargetracker.runtime.pack_days import (
    DAY_S,
    DECIDED_SCHEMA,
    CellDays,
    Changed,
    decide,
    drop_frame,
    merge_decided,
)
from chargetracker.runtime.pack_feed import pack_feed_pipeline
from chargetracker.stores.base import Checkpoint, CommitBatch
from chargetracker.stores.url import open_store

T0 = 1_704_067_200.0  # 2024-01-01 UTC


def _samples(n_cells: int = 5, hours: float = 60.0, step_s: float = 600.0) -> pl.DataFrame:
    rng = np.random.default_rng(3)
    ts = np.arange(0.0, hours * 3600.0, step_s)
    return pl.DataFrame({
        "cell_id": np.repeat([f"c{i}" for i in range(n_cells)], ts.size),
        "ts": T0 + np.tile(ts, n_cells) + rng.random(ts.size * n_cells),
        "voltage_v": 3.5 + rng.random(ts.size * n_cells),
        "current_a": rng.normal(0.0, 2.0, ts.size * n_cells),
        "temperature_c": 25.0 + rng.random(ts.size * n_cells),
    }).sort("ts")


def _canon(days: pl.DataFrame) -> pl.DataFrame:
    return days.sort("cell_id", "day")


def test_folding_batches_equals_one_summary_and_the_rows_restore_it() -> None:
    frame = _samples()
    cells = frame.get_column("cell_id").unique()
    acc, table = CellDays(), {}
    newest_only = 0
    for batch in frame.iter_slices(37):
        acc, changed = acc.folded(batch, cells, None)
        rows = acc.rows("s", changed)
        # A batch rewrites only rows of its own cells.
        assert set(rows.get_column("cell_id")) <= set(batch.get_column("cell_id"))
        newest_only += int(changed.older.len() == 0)
        for r in rows.iter_rows(named=True):   # what the store's upsert keeps
            table[(r["cell_id"], r["part"])] = r
    assert newest_only > 0  # most batches touch only the running day
    whole = cell_day_summary(frame)
    got = _canon(acc.days)
    assert got.select("cell_id", "day", "n").equals(_canon(whole).select("cell_id", "day", "n"))
    for c in ("sum_v", "sum_i"):
        assert got.get_column(c).to_list() == pytest.approx(_canon(whole).get_column(c).to_list(),
                                                            rel=1e-13)
    restored = CellDays.from_rows(pl.DataFrame(list(table.values()),
                                               schema=dict(PACK_FEED_CELLS.schema)), None)
    assert_frame_equal(_canon(restored.days), got, check_exact=True)
    assert_frame_equal(restored.last.sort("cell_id"), acc.last.sort("cell_id"), check_exact=True)
    one_pack = pl.DataFrame({"cell_id": cells, "vin": ["P"] * cells.len()})
    assert acc.complete_by_pack(one_pack).rows() == [("P", int(frame["ts"].max() // DAY_S) - 1)]


def test_dropping_emitted_days_rewrites_both_rows_and_leaves_no_closed_day() -> None:
    frame = _samples(n_cells=2, hours=50.0)
    cells = frame.get_column("cell_id").unique()
    acc, _ = CellDays().folded(frame, cells, None)
    first = int(frame["ts"].min() // DAY_S)
    assert acc.days.filter(pl.col("day") == first).height == 2
    dropped, changed = acc.folded(None, cells, first)
    assert sorted(changed.newest) == sorted(changed.older) == sorted(cells)
    assert dropped.days.filter(pl.col("day") <= first).height == 0
    rows = dropped.rows("s", changed)
    back = CellDays.from_rows(rows, None)
    assert back.days.filter(pl.col("day") <= first).height == 0
    # Rows written before the drop (a crash before it) are filtered on restore.
    stale = CellDays.from_rows(acc.rows("s", Changed.every(cells)), first)
    assert_frame_equal(_canon(stale.days), _canon(dropped.days), check_exact=True)


def test_a_first_format_blob_is_read_and_replaced_by_rows(tmp_path: Path) -> None:
    frame = _samples(n_cells=2, hours=10.0)
    cells = pl.DataFrame({"cell_id": ["c0", "c1"], "group": ["g", "g"],
                          "attributes": ['{"pack_id": "P1"}', '{"pack_id": "P1"}']})
    acc, _ = CellDays().folded(frame, frame.get_column("cell_id").unique(), None)
    store = open_store(f"duckdb:///{tmp_path / 'old.duckdb'}", kinds=[PackKind()])
    try:
        store.upsert_cells(cells)
        store.commit(CommitBatch(checkpoints=[Checkpoint("pack-days/embedded", acc.to_bytes(),
                                                         {"cells": 2})]))
        pipeline = pack_feed_pipeline(store, Settings())
        assert_frame_equal(_canon(pipeline._pending.days), _canon(acc.days), check_exact=True)
        more = _samples(n_cells=2, hours=11.0).filter(pl.col("ts") > frame["ts"].max())
        pipeline.ingest(more, source="test")
        cp = store.load_checkpoint("pack-days/embedded")
        assert cp is not None and len(cp.state) < 100          # the blob is gone
        rows = store.rows(PACK_FEED_CELLS.name, filters={"scope": "pack-days/embedded"},
                          unbounded=True)
        assert set(rows.get_column("cell_id")) == {"c0", "c1"}
        again = pack_feed_pipeline(store, Settings())
        assert_frame_equal(_canon(again._pending.days), _canon(pipeline._pending.days),
                           check_exact=True)
    finally:
        store.close()


def test_a_silent_vehicle_holds_back_only_its_own_days() -> None:
    frame = _samples(n_cells=4, hours=80.0)
    # c3 (pack B) stops reporting after the first day; pack A goes on.
    frame = frame.filter((pl.col("cell_id") != "c3") | (pl.col("ts") < T0 + 20 * 3600.0))
    pack_map = pl.DataFrame({"cell_id": ["c0", "c1", "c2", "c3"], "vin": ["A", "A", "B", "B"]})
    acc, _ = CellDays().folded(frame, pack_map.get_column("cell_id"), None)
    none = pl.DataFrame(schema=DECIDED_SCHEMA)
    new, days = decide(acc, pack_map, none)
    last = int(frame["ts"].max() // DAY_S)
    # B has not passed its first day: it is decided only up to the day before it.
    assert dict(new.iter_rows()) == {"A": last - 1, "B": int(T0 // DAY_S) - 1}
    assert set(days.get_column("cell_id")) == {"c0", "c1"}
    assert days.get_column("day").max() == last - 1
    decided = merge_decided(none, new)
    dropped, changed = acc.folded(None, pack_map.get_column("cell_id"),
                                  drop_frame(pack_map, decided))
    assert set(changed.newest) | set(changed.older) == {"c0", "c1"}
    assert set(dropped.days.filter(pl.col("day") < last).get_column("cell_id")) == {"c2", "c3"}
    again, _ = decide(dropped, pack_map, decided)
    assert again.height == 0                              # nothing decided twice
