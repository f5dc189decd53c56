"""The Kafka worker raises a kind's alert rules as episodes (the episode model of the
embedded pipeline): a condition that holds cycle after cycle is one episode and one
notification per cell, not one alert per cycle, and each partition's episode state is
checkpointed beside its engine state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import polars as pl

from chargetracker.config import AlertConfig, KafkaConfig, Settings
from chargetracker.engine import summarize
from chargetracker.engine.alerts import limit_alerts
from chargetracker.episodes import EpisodeState
from chargetracker.kafka.worker import Worker, WorkerOptions, checkpoint_name
from chargetracker.runtime.step import episode_checkpoint
from chargetracker.stores.url import open_store

from .streams import fleet_stream
from .test_worker import _send


def test_limit_alerts_are_episodes_in_the_worker(make_topic: Callable[..., KafkaConfig],
                                                 postgres_url: str) -> None:
    stream = fleet_stream(cells=6, hours=1.5, sample_period_s=30.0, seed=8)
    cfg = make_topic(2)
    ends = _send(cfg, stream, slice(None), cells=True, eos=True)
    # Every cycle of every cell is "too hot": one persistent condition per cell.
    alerts = replace(AlertConfig(), over_temperature_c=-100.0, min_coulombic_efficiency=None)
    settings = Settings(kafka=cfg, alerts=alerts)
    hits = limit_alerts(summarize(stream.frame, cells=stream.cells).cycles, alerts)
    per_cell = hits.group_by("cell_id").len()
    assert per_cell.height == 6 and per_cell["len"].min() >= 2  # several cycles each
    with open_store(postgres_url) as store:
        Worker(store, settings, WorkerOptions(until_idle_s=1.0)).run()
        notes = store.alerts(limit=10_000)
        episodes = store.alert_episodes(limit=10_000)
        states = [store.load_checkpoint(episode_checkpoint(checkpoint_name(cfg.topic, p)))
                  for p in ends]
    assert notes.height == 6 and sorted(notes["cell_id"]) == sorted(per_cell["cell_id"])
    assert set(notes["rule"]) == set(hits["rule"]) == {"over_temperature"}
    got = episodes.select("cell_id", "occurrences").sort("cell_id")
    # An episode counts each cycle once (an open cycle's snapshots in several batches too).
    assert got.join(per_cell, on="cell_id").filter(pl.col("occurrences") != pl.col("len")).height == 0
    assert all(cp is not None for cp in states)
    assert sum(EpisodeState.from_bytes(cp.state).open_count for cp in states if cp) == 6
