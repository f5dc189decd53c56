"""The per-kind seam of the worker: a registered KafkaKind's processor is what the
worker calls (topic per kind, its own processing object), and the CLI resolves kinds by
name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chargetracker.config import KafkaConfig, Settings
from chargetracker.errors import ConfigError
from chargetracker.kafka.kinds import KAFKA_KINDS, KafkaKind, kafka_kind, register_kafka_kind
from chargetracker.kafka.processing import Collected, PartitionState, Processor
from chargetracker.kafka.worker import Worker, WorkerOptions
from chargetracker.kinds import cell_kind
from chargetracker.stores.url import open_store

from .streams import assert_equal_to_batch, fleet_stream
from .test_worker import _send


class CountingProcessor(Processor):
    """The cell processor, counting what the worker hands it."""

    calls: list[tuple[int, int]] = []

    def process(self, ps: PartitionState, msgs: list[Any], out: Collected) -> None:
        CountingProcessor.calls.append((ps.partition, len(msgs)))
        super().process(ps, msgs, out)


def test_the_worker_runs_the_registered_kinds_processor(
        make_topic: Callable[..., KafkaConfig], postgres_url: str) -> None:
    stream = fleet_stream(cells=6, hours=1.0, sample_period_s=30.0, seed=8)
    cfg = make_topic(2)
    ends = _send(cfg, stream, slice(None), cells=True, eos=True)
    plugin = KafkaKind("cell-counted", cfg.topic, cell_kind, CountingProcessor)
    register_kafka_kind(plugin)
    try:
        assert kafka_kind("cell-counted") is plugin
        CountingProcessor.calls.clear()
        with open_store(postgres_url) as store:
            worker = Worker(store, Settings(kafka=cfg), WorkerOptions(until_idle_s=1.0),
                            plugin=plugin)
            assert isinstance(worker._processor, CountingProcessor)
            worker.run()
            assert_equal_to_batch(store, stream.frame, stream.cells)
        assert sum(n for _, n in CountingProcessor.calls) == sum(ends.values())
        assert {p for p, _ in CountingProcessor.calls} == set(ends)
    finally:
        KAFKA_KINDS.pop("cell-counted", None)
    with pytest.raises(ConfigError, match="unknown telemetry kind"):
        kafka_kind("cell-counted")
