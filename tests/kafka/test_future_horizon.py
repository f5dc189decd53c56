"""A producer with a wrong clock: a row stamped 40 days after the wall clock is a dead
letter in the worker too (it would otherwise make every later sample of its cell
"late"), and the results are those of the good rows."""

from __future__ import annotations

import time
from collections.abc import Callable

import polars as pl

from chargetracker.config import KafkaConfig, Settings
from chargetracker.kafka.worker import Worker, WorkerOptions
from chargetracker.stores.url import open_store

from .streams import Stream, assert_equal_to_batch, fleet_stream
from .test_worker import _send


def test_worker_dead_letters_rows_beyond_the_future_horizon(
        make_topic: Callable[..., KafkaConfig], postgres_url: str) -> None:
    stream = fleet_stream(cells=4, hours=2.0, sample_period_s=10.0, seed=5)
    half = len(stream.chunks) // 2
    wrong = stream.chunks[0].head(1).with_columns(pl.lit(time.time() + 40 * 86400.0).alias("ts"))
    hostile = Stream(stream.cells, [*stream.chunks[:half], wrong, *stream.chunks[half:]])
    cfg = make_topic(2)
    _send(cfg, hostile, slice(None), cells=True, eos=True)
    with open_store(postgres_url) as store:
        Worker(store, Settings(kafka=cfg), WorkerOptions(until_idle_s=1.0)).run()
        assert_equal_to_batch(store, stream.frame, stream.cells)
        letters = store.dead_letters(limit=1000)
        ahead = letters.filter(pl.col("reason").str.contains("far ahead of the clock", literal=True))
        assert ahead.height == 1
        assert ahead.get_column("cell_id")[0] == wrong.get_column("cell_id")[0]
        assert ahead.get_column("field")[0] == "ts"
