"""A live fleet of cells in packs: the cell pipeline's tap folds samples into per
cell-day sums, each complete day becomes a daily pack record through the pack pipeline,
and the model predicts the next day (runtime/pack_feed.py)."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from chargetracker.config import Settings
from chargetracker.kinds.pack import ALARM_RULE, PackKind
from chargetracker.ml.from_cells import daily_pack_records
from chargetracker.runtime import Runner
from chargetracker.runtime.pack_feed import FEED_SOURCE, assign_packs, live_pack_pipeline
from chargetracker.sim import Fleet
from chargetracker.sources import SimulatorSource
from chargetracker.stores.url import open_store

from .fleets import fleet_samples, tiny_fleet


def test_live_fleet_gets_daily_pack_records_and_predictions(tmp_path: Path) -> None:
    cfg = tiny_fleet(cells=4, hours=60.0, faults=(), sample_period_s=60.0)
    cells = Fleet(cfg).cells
    settings = Settings()
    store = open_store(f"duckdb:///{tmp_path / 'feed.duckdb'}", kinds=[PackKind()])
    try:
        pipeline = live_pack_pipeline(store, settings, cells, start_ts=cfg.start_epoch)
        Runner(pipeline, [SimulatorSource(cfg, acceleration=math.inf)],
               raw_retention_days=None).run()

        samples, _ = fleet_samples(cfg)
        packs = assign_packs(cells)
        assert packs.get_column("vin").n_unique() == 2       # one pack per group here
        last_day = int(samples.get_column("ts").max() // 86_400)
        expected = daily_pack_records(samples, packs).filter(
            pl.col("date").cast(pl.Int32) < last_day)        # the running day is not complete
        stored = store.rows("pack_records", filters={"source": FEED_SOURCE}).sort("vin", "date")
        assert expected.height >= 4
        assert stored.select("vin", "date").equals(expected.select("vin", "date"))
        for c in ("total_voltage_v", "cell_max_v", "cell_min_v", "total_current_a",
                  "max_temperature_c"):
            assert stored.get_column(c).to_list() == pytest.approx(
                expected.get_column(c).to_list(), rel=1e-12)

        # The seeded history fills the windows: each live day predicts the next one.
        preds = store.rows("alarm_predictions", filters={"source": FEED_SOURCE})
        want = expected.select("vin", (pl.col("date") + pl.duration(days=1)).alias("date"))
        assert preds.select("vin", "date").sort("vin", "date").equals(want.sort("vin", "date"))
        seeded = store.rows("alarm_predictions", filters={"source": "batch"})
        assert seeded.height > 0
        n_alerts = store.alerts(limit=1000).filter(pl.col("rule") == ALARM_RULE).height

        # A restart resumes the tap's accumulator from the cell commit: nothing re-emitted.
        again = live_pack_pipeline(store, settings, cells, start_ts=cfg.start_epoch)
        assert again.emit() is None
        assert store.rows("pack_records").height == stored.height + store.rows(
            "pack_records", filters={"source": "batch"}).height
        assert store.alerts(limit=1000).filter(pl.col("rule") == ALARM_RULE).height == n_alerts
    finally:
        store.close()
