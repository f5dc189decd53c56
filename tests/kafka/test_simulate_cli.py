"""``chargetracker simulate --out kafka://HOST:PORT/TOPIC`` publishes the fleet."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from chargetracker.cli import main
from chargetracker.config import KafkaConfig
from chargetracker.kafka.source import KafkaSource
from chargetracker.sim import Fleet, default_fleet_config

from .test_source import _drain


def test_simulate_publishes_to_kafka(make_topic: Callable[..., KafkaConfig]) -> None:
    cfg = make_topic(3)
    url = f"kafka://{cfg.brokers}/{cfg.topic}?format=arrow"
    rc = main(["simulate", "--cells", "6", "--hours", "1", "--seed", "3", "--sample-period", "10",
               "--out", url])
    assert rc == 0
    expected = pl.concat(list(Fleet(default_fleet_config(cells=6, seed=3, duration_s=3600.0,
                                                          sample_period_s=10.0)).chunks(3600.0)))
    src = KafkaSource(cfg)
    frames, cells, _ = _drain(src)
    assert src.done  # the end-of-stream marker arrived on every partition
    src.close()
    got = pl.concat(frames)
    assert got.height == expected.height
    assert got.sort("cell_id", "ts").equals(expected.sort("cell_id", "ts"))
    assert pl.concat(cells).get_column("cell_id").n_unique() == 6
