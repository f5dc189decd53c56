"""cell_id -> partition equals Kafka's Java default partitioner and librdkafka murmur2."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pytest
from confluent_kafka import Producer

from chargetracker.config import KafkaConfig
from chargetracker.kafka.partitioner import Partitioner, murmur2, partition_for

# Kafka's own test vectors (clients/.../utils/UtilsTest.testMurmur2), as signed ints.
JAVA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), list(JAVA_VECTORS.items()))
def test_murmur2_matches_the_java_client(key: bytes, expected: int) -> None:
    h = murmur2(key)
    assert (h - (1 << 32) if h >= 1 << 31 else h) == expected


def test_partitioner_maps_a_series_and_nulls() -> None:
    part = Partitioner(7)
    ids = pl.Series(["a", None, "cell-001", "a"])
    got = part.of_series(ids)
    assert got.tolist() == [partition_for("a", 7), -1, partition_for("cell-001", 7), partition_for("a", 7)]
    assert part("a") == partition_for(b"a", 7)


def test_same_partition_as_librdkafka_murmur2_random(make_topic: Callable[..., KafkaConfig]) -> None:
    cfg = make_topic(7)
    keys = [f"cell-{i:04d}" for i in range(300)] + ["", "ü-ß-€", "x" * 101]
    landed: dict[str, int] = {}
    prod = Producer({"bootstrap.servers": cfg.brokers, "partitioner": "murmur2_random"})
    for k in keys:
        prod.produce(cfg.topic, key=k.encode(), value=b"v",
                     on_delivery=lambda err, msg, k=k: landed.__setitem__(k, msg.partition()))
    assert prod.flush(10) == 0
    assert {k: partition_for(k, 7) for k in keys} == landed
