"""One micro-batch of a worker -> one store transaction (plus archive, metrics, offsets).

Order matters for exactly-once (see :mod:`chargetracker.kafka.worker`): the Parquet
archive files are written *before* the store commit (a crash in between replays the
batch from the same start offset, whose files replace these: same batch id); the store
commit then makes results, engine state and offsets visible together; Kafka's own
committed offsets (advisory, for lag tooling) and the dead-letter topic come after.

Pipelined (``pipeline=True``, the worker's default): a commit runs on one writer thread
while the worker polls, decodes and runs the engine on the next micro-batch. At most
one commit is in flight and commits run in submission order, each with the order
above, so what is durable after a crash is exactly what the synchronous path would have
made durable; the worker waits for the writer before it lets partitions go (revocation,
shutdown) and learns of a failed commit before it submits the next one (a failure then
sends it into recovery: the work after the failed batch is dropped and replayed from the
checkpoints, never committed over the gap).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor

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
    ``archive`` the Parquet archive of accepted raw rows, or None; ``pipeline`` runs
    commits on a writer thread (:meth:`submit`, :meth:`wait`).
    """

    def __init__(self, store: Store, kind: TelemetryKind, kafka: KafkaConfig, *,
                 counter: str, metrics: WorkerMetrics, groups: Mapping[str, str | None],
                 archive: ParquetArchive | None, pipeline: bool = False) -> None:
        self.store = store
        self.kind = kind
        self.kafka = kafka
        self.counter = counter
        self.metrics = metrics
        self.groups = groups
        self.archive = archive
        self._dlq: DeadLetterPublisher | None = None
        self._pool = (ThreadPoolExecutor(1, thread_name_prefix="ct-commit") if pipeline else None)
        self._pending: tuple[Future[None], Collected, Consumer | None] | None = None
        #: The error of a failed pipelined commit: sticky until :meth:`discard` (no later
        #: batch may be committed over the gap it leaves).
        self.failed: BaseException | None = None
        for phase in ("screen", "flush", "drain", "checkpoint", "commit", "offsets", "wait"):
            metrics.add_phase(phase, 0.0, 0.0)

    # -- pipelining ------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """Micro-batches submitted and not yet known to be durable (0 or 1)."""
        return 0 if self._pending is None else 1

    def submit(self, out: Collected, consumer: Consumer | None) -> list[Collected]:
        """Commit ``out`` (on the writer thread when pipelined); returns the batches
        known durable now (``out`` itself when synchronous; the previous one, if any,
        when pipelined). Raises the previous commit's error before submitting."""
        if self._pool is None:
            self.commit(out, consumer)
            return [out]
        if self.failed is not None:
            raise self.failed
        done = self.wait()
        # The consumer stays on the worker's thread: offsets are committed by wait().
        self._pending = (self._pool.submit(self.commit, out, None), out, consumer)
        return done

    def poll(self) -> list[Collected]:
        """The in-flight batch if it has finished (raising its error), else []."""
        if self._pending is not None and self._pending[0].done():
            return self.wait()
        return []

    def wait(self) -> list[Collected]:
        """Block until the in-flight commit is durable; returns it ([] when none).
        Raises its error (StoreUnavailable / StoreError)."""
        if self._pending is None:
            return []
        fut, out, consumer = self._pending
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            fut.result()
        except BaseException as exc:
            self.failed = exc
            raise
        finally:
            self._pending = None
            self.metrics.add_phase("wait", time.perf_counter() - t0, time.thread_time() - c0)
        self._offsets(out, consumer)  # after the store commit, as in commit()
        return [out]

    def discard(self) -> None:
        """Wait for the in-flight commit, ignoring its outcome (recovery replays it)."""
        try:
            self.wait()
        except Exception as exc:  # noqa: BLE001 - its outcome no longer matters
            log.debug("discarded commit: %s", exc)
        self.failed = None

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
        self.metrics.add_phase("commit", t1 - t0, c1 - c0)  # the three above, together
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
        # Process CPU when this batch became durable: streaming CPU of a finite replay =
        # this minus the CPU at the first message (idle polling and shutdown excluded).
        self.metrics.last_commit_cpu_s = time.process_time()
        self._offsets(out, consumer)
        if rejected is not None and self.kafka.dead_letter_topic:
            self._publish_dead_letters(rejected)

    def _offsets(self, out: Collected, consumer: Consumer | None) -> None:
        """Kafka's committed offsets of a durable batch (advisory only, for lag tooling;
        the store's checkpoint is the truth)."""
        if not out.offsets or consumer is None:
            return
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            consumer.commit(offsets=out.offsets, asynchronous=True)
        except (KafkaException, RuntimeError) as exc:  # RuntimeError: consumer closed
            log.debug("advisory offset commit: %s", exc)
        self.metrics.add_phase("offsets", time.perf_counter() - t0, time.thread_time() - c0)

    def _publish_dead_letters(self, rejected: pl.DataFrame) -> None:
        """Dead letters to the dead-letter topic, after the store commit (at least once:
        a crash right here re-sends on replay)."""
        if self._dlq is None:
            self._dlq = DeadLetterPublisher(self.kafka)
        self._dlq.publish(rejected)

    def close(self) -> None:
        """Finish the in-flight commit (its error is dropped: the caller is already
        failing or has waited), stop the writer thread, close the dead-letter producer."""
        self.discard()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._dlq is not None:
            self._dlq.close()
            self._dlq = None
