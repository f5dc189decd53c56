"""``--raw-every S``: the store keeps a thinned raw view (one sample per cell per S s),
the archive keeps every accepted sample, and the results are those of every sample."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from chargetracker.config import KafkaConfig, Settings
from chargetracker.errors import ConfigError
from chargetracker.kafka.processing import downsample
from chargetracker.kafka.worker import Worker, WorkerOptions
from chargetracker.stores.archive import ParquetArchive
from chargetracker.stores.url import open_store

from .streams import assert_equal_to_batch, fleet_stream
from .test_worker import _send


def test_downsample_keeps_the_first_sample_of_each_cell_and_bucket() -> None:
    raw = pl.DataFrame({
        "cell_id": ["b", "a", "a", "a", "b", "a", "a"],
        "ts": [61.0, 59.9, 0.0, 30.0, 0.5, 60.0, 179.0],
        "voltage_v": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
    })
    got = downsample(raw, 60.0)
    # a: buckets [0,60) -> ts 0.0; [60,120) -> 60.0; [120,180) -> 179.0. b: 0.5, 61.0.
    assert got.select("cell_id", "ts").rows() == [
        ("a", 0.0), ("a", 60.0), ("a", 179.0), ("b", 0.5), ("b", 61.0)]
    assert downsample(raw.head(0), 60.0).height == 0
    with pytest.raises(ConfigError):
        WorkerOptions(raw_every_s=0.0)


def test_worker_thins_raw_rows_in_the_store_and_archives_all(
        make_topic: Callable[..., KafkaConfig], postgres_url: str, tmp_path: Path) -> None:
    stream = fleet_stream(cells=8, hours=2.0, sample_period_s=10.0, seed=4)
    cfg = make_topic(2)
    _send(cfg, stream, slice(None), cells=True, eos=True)
    archive = tmp_path / "archive"
    with open_store(postgres_url) as store:
        Worker(store, Settings(kafka=cfg), WorkerOptions(
            until_idle_s=1.0, raw_every_s=60.0, archive_dir=str(archive))).run()
        assert_equal_to_batch(store, stream.frame, stream.cells)   # results: every sample
        stored = store.ingest_stats()["measurements_stored"]
        accepted = store.ingest_stats()["by_source"][f"kafka:{cfg.topic}"]["accepted"]
    archived = ParquetArchive(archive).read()
    assert archived.height == accepted
    per_bucket = archived.select("cell_id", (pl.col("ts") // 60).alias("b")).unique().height
    # One row per cell and minute, plus at most one per cell and micro-batch boundary.
    assert per_bucket <= stored <= per_bucket + 8 * 4 * 2
    assert stored < accepted / 4
