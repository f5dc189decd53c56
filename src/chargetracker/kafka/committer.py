"""One micro-batch of a worker -> one store transaction (plus archive, metrics, offsets).

Order matters for exactly-once (see :mod:`chargetracker.kafka.worker`): the Parquet
archive files are written *before* the store commit (a crash in between replays the
batch from the same start offset, whose files replace these: same batch id); the store
commit then makes results, engine state and offsets visible together; Kafka's own
committed offsets (advisory, for lag tooling) and the dead-letter topic come after.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import numpy as np
import polars as pl
from confluent_kafka import Consumer, KafkaException

from ..config import KafkaConfig
from ..kinds.base import TelemetryKind
from ..runtime.step import combine
from ..stores.archive import ParquetArchive, batch_id_for
from ..stores.base import Store
from .metrics import WorkerMetrics
from .processing import Collected
from .sink import DeadLetterPublisher

__all__ = ["Committer"]

log = logging.getLogger("chargetracker.kafka.worker")


class Committer:
    """Writes a worker's :class:`Collected` micro-batches (see the module docstring).

    ``groups`` is the worker's live entity -> group map (alerts, archive layout);
    ``archive`` the Parquet archive of accepted raw rows, or None.
    """

    def __init__(self, store: Store, kind: TelemetryKind, kafka: KafkaConfig, *,
                 counter: str, metrics: WorkerMetrics, groups: Mapping[str, str | None],
                 archive: ParquetArchive | None) -> None:
        self.store = store
        self.kind = kind
        self.kafka = kafka
        self.counter = counter
        self.metrics = metrics
        self.groups = groups
        self.archive = archive
        self._dlq: DeadLetterPublisher | None = None

    def commit(self, out: Collected, consumer: Consumer | None) -> None:
        """Archive, then one store transaction, then metrics, advisory offsets and the
        dead-letter topic. Raises StoreUnavailable / StoreError from the store."""
        t0, c0 = time.perf_counter(), time.thread_time()
        batch = combine(out.commits)
        batch.counters.setdefault(self.counter, {"accepted": 0, "rejected": 0})
        t_archive, c_archive = time.perf_counter(), time.thread_time()
        if self.archive is not None:
            meta_table = self.archive.layout.meta_table
            meta = batch.cells if meta_table is None else batch.tables.get(meta_table)
            if meta is not None and meta.height:
                # The metadata the numbers depend on (a cell's nominal capacity -> epsilon,
                # a meter's time zone -> its days) travels with the records: a backfill
                # into a fresh store reproduces the stream.
                self.archive.put_entities(meta)
            if out.archive:
                self.archive.append_many(
                    [(raw, batch_id_for(f"kafka:{self.kafka.topic}/{p}", {"offset": start}))
                     for p, start, raw in out.archive], groups=self.groups)
        t_store, c_store = time.perf_counter(), time.thread_time()
        self.store.commit(batch)
        wall = time.time()
        t1, c1 = time.perf_counter(), time.thread_time()
        seconds = t1 - t0
        self.metrics.add_phase("combine", t_archive - t0, c_archive - c0)
        self.metrics.add_phase("archive", t_store - t_archive, c_store - c_archive)
        self.metrics.add_phase("store", t1 - t_store, c1 - c_store)
        rejected = batch.dead_letters
        lat = None
        if out.timestamps_ms:
            ts = np.concatenate(out.timestamps_ms)
            ts = ts[ts > 0]
            lat = wall - ts / 1000.0
        self.metrics.record_commit(messages=out.messages, samples=out.accepted,
                                   rejected=rejected.height if rejected is not None else 0,
                                   seconds=seconds, latencies_s=lat)
        if out.offsets and consumer is not None:
            try:  # advisory only, for lag tooling; the store's checkpoint is the truth
                consumer.commit(offsets=out.offsets, asynchronous=True)
            except KafkaException as exc:
                log.debug("advisory offset commit: %s", exc)
        if rejected is not None and self.kafka.dead_letter_topic:
            self._publish_dead_letters(rejected)

    def _publish_dead_letters(self, rejected: pl.DataFrame) -> None:
        """Dead letters to the dead-letter topic, after the store commit (at least once:
        a crash right here re-sends on replay)."""
        if self._dlq is None:
            self._dlq = DeadLetterPublisher(self.kafka)
        self._dlq.publish(rejected)

    def close(self) -> None:
        if self._dlq is not None:
            self._dlq.close()
            self._dlq = None
