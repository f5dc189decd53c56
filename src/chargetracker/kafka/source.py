"""A runtime source reading a Kafka topic into the embedded pipeline (one process).

:class:`KafkaSource` implements :class:`chargetracker.sources.base.Source`: it assigns
itself *every* partition of the topic (no consumer group: one embedded pipeline owns the
whole stream), decodes the topic's message formats (:mod:`.codec`) and reports its
position as ``{"offsets": {"<partition>": next_offset}}``, which the pipeline commits
with each batch; after a restart :meth:`seek` continues exactly there. For many
processes sharing a topic use ``chargetracker worker`` instead.

The source is ``done`` once every partition has delivered its end-of-stream marker
(:meth:`KafkaSink.end_of_stream`), or, with ``stop_at_end=True``, once every partition
has been read to its end.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import polars as pl
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from ..config import KafkaConfig
from ..errors import ConfigError, SourceError
from ..schema import MEASUREMENT_SCHEMA, dead_letters
from ..sources.base import Batch
from . import cell_codec, codec
from .client import client_config, partition_count

__all__ = ["KafkaSource"]


class KafkaSource:
    """Every partition of ``config.topic``, decoded into canonical measurement batches."""

    def __init__(self, config: KafkaConfig, *, name: str | None = None,
                 stop_at_end: bool = False, poll_timeout_s: float = 0.05) -> None:
        self.config = config
        self.topic = config.topic
        self.name = name or f"kafka:{config.topic}"
        self.stop_at_end = stop_at_end
        self.poll_timeout_s = poll_timeout_s
        self.partitions = partition_count(config)
        conf = client_config(config, "consumer", **{
            # Required by librdkafka; never joined or committed (offsets live in the store).
            "group.id": f"{config.group_id}.embedded",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        })
        try:
            self._consumer: Consumer | None = Consumer(conf)
        except KafkaException as exc:
            raise ConfigError(f"Kafka consumer: {exc}") from exc
        self._next: dict[int, int] = dict.fromkeys(range(self.partitions), -1)
        self._eos: set[int] = set()
        self._eof: set[int] = set()
        self._leftover: deque[Message] = deque()
        self._assign()

    def _assign(self) -> None:
        assert self._consumer is not None
        tps = [TopicPartition(self.topic, p, off if off >= 0 else OFFSET_BEGINNING)
               for p, off in self._next.items()]
        self._consumer.assign(tps)
        self._leftover.clear()
        self._eof.clear()

    @property
    def done(self) -> bool:
        if len(self._eos) == self.partitions and not self._leftover:
            return True
        return self.stop_at_end and len(self._eof) == self.partitions and not self._leftover

    @property
    def position(self) -> dict[str, Any]:
        return {"offsets": {str(p): off for p, off in sorted(self._next.items())}}

    def seek(self, position: Any) -> None:
        """Continue after a committed ``{"offsets": {partition: next_offset}}``."""
        if position is None:
            return
        try:
            offsets = {int(p): int(o) for p, o in dict(position["offsets"]).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"{self.name}: bad committed position {position!r}") from exc
        for p, o in offsets.items():
            if p in self._next:
                self._next[p] = o
        self._eos.clear()
        self._assign()

    def poll(self, max_rows: int) -> Batch | None:
        """The next batch: messages in partition order, cut before a cell message that
        follows measurements (so metadata reaches the engine before the samples after it)."""
        if self._consumer is None:
            raise SourceError(f"{self.name} is closed")
        msgs: list[Message] = list(self._leftover)
        self._leftover.clear()
        if len(msgs) < max_rows:
            msgs.extend(self._consumer.consume(num_messages=max(1, min(max_rows, 100_000)),
                                               timeout=self.poll_timeout_s))
        good: list[Message] = []
        for m in msgs:
            err = m.error()
            if err is None:
                good.append(m)
            elif err.code() == KafkaError._PARTITION_EOF:
                self._eof.add(codec.partition_of(m))
            elif err.fatal():
                raise SourceError(f"{self.name}: {err}")
        if not good:
            return None
        frames: list[pl.DataFrame] = []
        cells: list[pl.DataFrame] = []
        rejected: list[pl.DataFrame] = []
        by_part: dict[int, list[Message]] = {}
        seen_measurements = False
        rows = 0
        for i, m in enumerate(good):
            fmt, typ = codec.headers_of(m.headers())
            p = codec.partition_of(m)
            if self._next.get(p, -1) > codec.offset_of(m):
                continue  # already delivered before a seek
            if typ == codec.CELL and seen_measurements or rows >= max_rows:
                self._leftover.extend(good[i:])
                break
            self._eof.discard(p)
            self._next[p] = codec.offset_of(m) + 1
            source = f"kafka:{self.topic}/{p}"
            if typ is None or typ == codec.MEASUREMENT:
                by_part.setdefault(p, []).append(m)
                seen_measurements = True
                v = m.value()
                rows += 1 if fmt == codec.JSON or v is None else max(1, len(v) // 64)
            elif typ == codec.CELL:
                c, letters = cell_codec.decode_cells(m.value(), fmt, codec.offset_of(m), source=source)
                cells.append(c)
                rejected.append(letters)
            elif typ == codec.END_OF_STREAM:
                self._eos.add(p)
            else:
                rejected.append(dead_letters([{
                    "source": source, "row": codec.offset_of(m), "field": codec.TYPE_HEADER,
                    "reason": f"unknown message type {typ!r}; expected one of {list(codec.TYPES)}",
                }]))
            if typ != codec.END_OF_STREAM:
                self._eos.discard(p)
        for p, pm in by_part.items():
            hdrs = [codec.headers_of(m.headers()) for m in pm]
            dec = codec.decode_measurements([m.value() for m in pm], [h[0] for h in hdrs],
                                            [codec.offset_of(m) for m in pm], source=f"kafka:{self.topic}/{p}")
            frames.append(dec.frame)
            rejected.append(dec.rejected)
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=MEASUREMENT_SCHEMA)
        cells_df = pl.concat(cells) if cells else None
        rej = [r for r in rejected if r.height]
        return Batch(frame=frame, position=self.position,
                     cells=cells_df if cells_df is not None and cells_df.height else None,
                     rejected=pl.concat(rej) if rej else None)

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()

