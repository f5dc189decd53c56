"""The sink: keyed partitioning for JSON and Arrow alike, order, URL parsing, markers."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from chargetracker.config import KafkaConfig
from chargetracker.errors import ConfigError, SourceError
from chargetracker.kafka import KafkaSink, codec, parse_kafka_url
from chargetracker.kafka.partitioner import partition_for
from chargetracker.schema import MEASUREMENT_SCHEMA


def _read_all(cfg: KafkaConfig, partitions: int, expected: int) -> list:
    c = Consumer({"bootstrap.servers": cfg.brokers, "group.id": "reader"})
    c.assign([TopicPartition(cfg.topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out: list = []
    for _ in range(40):
        out += [m for m in c.consume(10_000, 0.25) if m.error() is None]
        if len(out) >= expected:
            break
    c.close()
    return out


def test_json_and_arrow_rows_of_a_cell_share_its_partition_in_order(
        make_topic: Callable[..., KafkaConfig]) -> None:
    cfg = make_topic(5)
    n = 400
    frame = pl.DataFrame({
        "cell_id": [f"c{i % 17}" for i in range(n)], "ts": [float(i) for i in range(n)],
        "voltage_v": [3.7] * n, "current_a": [1.0] * n}).pipe(
        lambda f: f.with_columns(pl.lit(None, pl.Float64).alias("temperature_c")))
    with KafkaSink(cfg, format="arrow", max_rows_per_message=7) as sink:
        sink.send(frame[:200])
        sink.send(frame[200:], format="json")
        sink.send_cells(pl.DataFrame({"cell_id": ["c1"], "group": ["g"]}))
        markers = sink.end_of_stream()
    assert sorted(markers) == list(range(5))
    msgs = _read_all(cfg, 5, expected=200)
    rows: dict[int, list[pl.DataFrame]] = {}
    for m in msgs:
        fmt, typ = codec.headers_of(m.headers())
        if typ == codec.END_OF_STREAM:
            assert m.offset() == markers[m.partition()]
            continue
        if typ == codec.CELL:
            assert m.partition() == partition_for("c1", 5) and m.key() == b"c1"
            continue
        dec = codec.decode_measurements([m.value()], [fmt], [m.offset()], source="t")
        assert dec.rejected.height == 0
        if fmt == codec.ARROW:
            assert dec.frame.height <= 7
        else:
            assert m.key() == dec.frame.get_column("cell_id")[0].encode()
        rows.setdefault(m.partition(), []).append(dec.frame)
    got = pl.concat([pl.concat(v) for v in rows.values()])
    assert got.height == n
    for p, frames in rows.items():
        part = pl.concat(frames)
        assert all(partition_for(c, 5) == p for c in part.get_column("cell_id").unique().to_list())
        for _, cell in part.group_by("cell_id"):
            ts = cell.get_column("ts").to_list()
            assert ts == sorted(ts)                      # produce order within a cell


def test_kafka_url() -> None:
    cfg, opts = parse_kafka_url("kafka://h1:9092,h2:9093/meas?format=json&partitions=12",
                                extra=[("security.protocol", "SASL_SSL")])
    assert cfg.brokers == "h1:9092,h2:9093" and cfg.topic == "meas"
    assert opts == {"format": "json", "partitions": "12"}
    assert cfg.extra == (("security.protocol", "SASL_SSL"),)
    for bad in ("http://h/t", "kafka://h:1", "kafka://h:1/t?colour=red", "kafka:///t"):
        with pytest.raises(ConfigError):
            parse_kafka_url(bad)


def test_from_url_creates_the_topic(make_topic: Callable[..., KafkaConfig]) -> None:
    cfg = make_topic(1)
    url = f"kafka://{cfg.brokers}/{cfg.topic}-new?partitions=3&format=json"
    with KafkaSink.from_url(url) as sink:
        assert sink.partitions == 3 and sink.format == "json"
        sink.send(pl.DataFrame({"cell_id": ["a"], "ts": [1.0], "voltage_v": [3.7], "current_a": [0.0]}))
    with pytest.raises(SourceError, match="does not exist"):
        KafkaSink(KafkaConfig(brokers=cfg.brokers, topic=f"{cfg.topic}-absent"))
    with pytest.raises(ConfigError):
        KafkaSink(cfg, format="csv")
    assert pl.DataFrame(schema=MEASUREMENT_SCHEMA).height == 0


def test_keyed_by_pack_every_cell_of_a_pack_shares_a_partition(
        make_topic: Callable[..., KafkaConfig]) -> None:
    """``key="pack"`` (for ``worker --pack-feed``): cell metadata first, then samples;
    every message of a cell goes to the partition of its pack, a cell without a pack to
    its own id's."""
    cfg = make_topic(5)
    packs = {f"c{i}": f"VIN{i // 3}" for i in range(12)}          # 4 packs of 3 cells
    cells = pl.DataFrame({"cell_id": [*packs, "loose"],
                          "pack_id": [*packs.values(), None]})
    n = 260
    frame = pl.DataFrame({"cell_id": [f"c{i % 12}" if i % 13 else "loose" for i in range(n)],
                          "ts": [float(i) for i in range(n)], "voltage_v": [3.7] * n,
                          "current_a": [1.0] * n})
    with KafkaSink.from_url(f"kafka://{cfg.brokers}/{cfg.topic}?key=pack") as sink:
        assert sink.key == "pack"
        sink.send_cells(cells)
        sink.send(frame[:130])
        sink.send(frame[130:], format="json")
        sink.flush()
    want = {**{c: partition_for(v, 5) for c, v in packs.items()}, "loose": partition_for("loose", 5)}
    seen = 0
    for m in _read_all(cfg, 5, expected=13 + 130 // 8192 + 1 + 130):
        fmt, typ = codec.headers_of(m.headers())
        if typ == codec.CELL:
            continue
        dec = codec.decode_measurements([m.value()], [fmt], [m.offset()], source="t")
        for c in dec.frame.get_column("cell_id").to_list():
            assert want[c] == m.partition(), c
            seen += 1
    assert seen == n
    with pytest.raises(ConfigError, match="key"):
        KafkaSink(cfg, key="vin")
