"""Spark local mode gives the local batch layer's daily energy and thresholds."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chargetracker.meters import MeterConfig
from chargetracker.meters.batch import recompute_parquet

from .test_batch import _meta, _readings

pyspark = pytest.importorskip("pyspark", reason="PySpark not installed (pip install '.[scale]')")

pytestmark = [pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]


def test_spark_equals_the_local_batch_layer(spark: object, tmp_path: Path) -> None:
    from chargetracker.meters.spark import collect_meter_results, spark_meter_results

    frame = _readings(6, 2500, seed=11)
    path = tmp_path / "archive"
    path.mkdir()
    frame.slice(0, 7000).write_parquet(path / "a.parquet", row_group_size=1000)
    frame.slice(7000).write_parquet(path / "b.parquet", row_group_size=1000)
    cfg = MeterConfig(on_w=10.0)
    meta = _meta(frame)
    files = sorted(path.glob("*.parquet"))
    local = list(recompute_parquet(files, cfg, meters=meta))
    want_days = pl.concat([r.days for r in local]).sort("meter_id", "date")
    want_thr = pl.concat([r.thresholds for r in local]).sort("meter_id")
    days, thr = collect_meter_results(spark_meter_results(spark, str(path), config=cfg,  # type: ignore[arg-type]
                                                          meters=meta, partitions=3))
    assert days.height == want_days.height > 6
    assert_frame_equal(days, want_days)
    assert_frame_equal(thr, want_thr)
