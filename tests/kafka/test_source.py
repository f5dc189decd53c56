"""KafkaSource: the embedded pipeline reading a topic, resuming from its position."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from chargetracker.config import KafkaConfig
from chargetracker.kafka import KafkaSink
from chargetracker.kafka.source import KafkaSource
from chargetracker.sources.base import Source

from .streams import fleet_stream


def _drain(src: KafkaSource, limit: int = 400) -> tuple[list[pl.DataFrame], list[pl.DataFrame], object]:
    frames, cells, pos = [], [], None
    for _ in range(limit):
        if src.done:
            break
        b = src.poll(20_000)
        if b is None:
            continue
        frames.append(b.frame)
        if b.cells is not None:
            cells.append(b.cells)
        pos = b.position
    return frames, cells, pos


def test_reads_every_partition_and_resumes(make_topic: Callable[..., KafkaConfig]) -> None:
    stream = fleet_stream(cells=10, hours=2.0, sample_period_s=20.0, seed=5)
    cfg = make_topic(3)
    with KafkaSink(cfg) as sink:
        sink.send_cells(stream.cells)
        for i, chunk in enumerate(stream.chunks):
            sink.send(chunk, format="json" if i % 2 else "arrow")
        sink.end_of_stream()
    src = KafkaSource(cfg)
    assert isinstance(src, Source)
    first = None
    for _ in range(200):
        first = src.poll(500)
        if first is not None:
            break
    src.close()
    assert first is not None
    resumed = KafkaSource(cfg)
    resumed.seek(first.position)
    frames, cells, pos = _drain(resumed)
    assert resumed.done
    resumed.close()
    got = pl.concat([first.frame, *frames])
    assert got.height == stream.frame.height
    assert got.sort("cell_id", "ts").equals(stream.frame.sort("cell_id", "ts"))
    meta = pl.concat(([first.cells] if first.cells is not None else []) + cells)
    assert sorted(meta.get_column("cell_id").to_list()) == sorted(stream.cells.get_column("cell_id").to_list())
    assert isinstance(pos, dict) and set(pos["offsets"]) == {"0", "1", "2"}
