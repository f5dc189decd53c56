"""The scale-out worker: a consumer-group member running the engine on its partitions.

Each worker owns some partitions of the measurements topic (Kafka's group protocol
decides which) and keeps one :class:`~chargetracker.engine.EngineState` per owned
partition. Cells never span partitions (the topic is keyed by cell id), so a
partition's state is self-contained and moves between workers as a unit.

Exactly-once, effectively
-------------------------
For every micro-batch (one or more polls, up to ``max_batch_bytes`` /
``commit_interval_s``) the worker writes, in **one** store transaction
(:meth:`Store.commit`): the kind's result upserts, raw records, dead letters,
alert episodes and their notifications, entity metadata, the ingest counters, and per touched partition a
checkpoint ``worker:<topic>:<partition>`` holding the partition's engine state and
``{"offset": next offset, "final": flushed?}`` (and its alert-episode state beside it). Kafka's own committed offsets are
written afterwards, asynchronously, for monitoring only (``enable.auto.commit=false``);
the store's checkpoint is the truth.

* On assignment the worker loads each partition's checkpoint, restores the state and
  seeks to the stored offset (the beginning when there is none).
* On revocation it commits what it has buffered, then lets the partitions go. It does
  not flush the engine: the stream goes on at the next owner, which restores the
  state (pending samples included).
* On loss (session timeout) it drops the partitions without writing: another member
  may already own them.
* A worker killed at any point loses only uncommitted work; the next owner replays it
  from the checkpoint and, the engine being deterministic and the writes idempotent
  upserts, writes the same rows. Nothing is lost, nothing counted twice.
* When the store is unreachable the worker leaves the group (others may take over),
  waits with back-off and rejoins; uncommitted work is replayed.

Bad input never stops a worker: it becomes dead letters with the field and reason
(docs/deployment.md lists the cases), optionally also on a dead-letter topic. The
commit path is :mod:`.committer`, lags and readiness :mod:`.lag`, the per-kind seam
:mod:`.kinds`.

A finite stream ends with an ``end-of-stream`` marker per partition, flushed at that fixed
offset (docs/deployment.md, "End of stream").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
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

from ..config import Settings
from ..errors import ConfigError, SourceError, StoreUnavailable
from ..kinds import TelemetryKind
from ..runtime.step import AlertPolicy
from ..stores.archive import ParquetArchive
from ..stores.base import Store
from . import codec
from .client import topic_partitions, worker_consumer_config
from .committer import Committer
from .kinds import KafkaKind, PartitionProcessor, kafka_kind
from .lag import LagTracker
from .metrics import MetricsServer, WorkerMetrics
from .options import WorkerOptions
from .partitioner import Partitioner
from .processing import Collected, PartitionState, checkpoint_name, restore_partition

__all__ = ["Worker", "WorkerOptions", "checkpoint_name"]

log = logging.getLogger("chargetracker.kafka.worker")


class Worker:
    """One consumer-group member: Kafka partitions -> engine -> store.

    ``store`` is owned by the caller (closed by it). ``settings.kafka`` names brokers,
    topic, group and dead-letter topic; ``settings.engine`` / ``settings.alerts``
    configure the analysis. :meth:`run` blocks until :meth:`stop` (any thread, e.g. a
    signal handler) or the idle limit.

    ``plugin`` is the telemetry kind as the worker runs it (:class:`~.kinds.KafkaKind`:
    its processor decodes and analyses the messages; default: the registered kind
    named ``kind.name``, or cells); ``kind`` overrides the kind the plugin would build.
    """

    def __init__(self, store: Store, settings: Settings, options: WorkerOptions | None = None,
                 *, clock: Callable[[], float] = time.monotonic,
                 kind: TelemetryKind | None = None, plugin: KafkaKind | None = None) -> None:
        self.store = store
        self.settings = settings
        self.plugin = plugin or kafka_kind(kind.name if kind is not None else "cell")
        self.kind: TelemetryKind = kind or self.plugin.make_kind(settings)
        self.options = options or WorkerOptions()
        self.kafka = settings.kafka
        self.topic = self.kafka.topic
        self._clock = clock
        self._stop = threading.Event()
        self._parts: dict[int, PartitionState] = {}
        #: Consumed, not yet processed messages per partition (offset order).
        self._buffer: dict[int, list[Any]] = {}
        self._buffered = 0
        self._buffer_bytes = 0
        self._buffer_since = 0.0
        self._recovering = False
        #: True once the group has given this member an assignment (possibly empty): the
        #: idle limit only counts from then on (a group join can take seconds).
        self._joined = False
        self._groups: dict[str, str | None] = {}
        #: Group outliers need every cell of a group, which spans partitions owned by
        #: other workers: the scale-out path raises the rules that judge one entity
        #: (cells' limits, meters' spikes), as alert episodes per partition.
        self.alert_policy = AlertPolicy(outliers=False) if self.options.alerts else None
        add_kinds = getattr(store, "add_kinds", None)
        if add_kinds is not None:
            add_kinds([self.kind])  # a plug-in kind's tables, created when missing
        if self.options.archive_dir and self.plugin.archive is None:
            raise ConfigError(f"--archive: the {self.kind.name} kind keeps no Parquet archive")
        self._store_cells: pl.DataFrame | None = None
        self._last_activity = 0.0
        self._lag_checked = 0.0
        self.metrics = WorkerMetrics(self.topic, self.kafka.group_id)
        self._lag = LagTracker(self.topic, self.metrics, clock)
        self._metrics_server: MetricsServer | None = None
        self._partitioner: Partitioner | None = None
        self._consumer: Consumer | None = None
        archive = (ParquetArchive(self.options.archive_dir, layout=self.plugin.archive,
                                  fsync=self.options.archive_fsync)
                   if self.options.archive_dir and self.plugin.archive is not None else None)
        self._processor: PartitionProcessor = self.plugin.make_processor(
            self.topic, self.kind, partitioner=None, store_raw=self.options.store_raw,
            archive=archive is not None, learn_cells=self._learn_groups,
            timings=self.metrics.phase_seconds, raw_every_s=self.options.raw_every_s,
            future_horizon_s=settings.runtime.future_horizon_s, alert_policy=self.alert_policy,
            groups=self._groups)
        self._committer = Committer(
            store, self.kind, self.kafka, counter=self._processor.counter, metrics=self.metrics,
            groups=self._groups, archive=archive, pipeline=self.options.pipeline_commits)
        self.exit_reason = ""
        conf = worker_consumer_config(self.kafka)
        # Incremental (cooperative) rebalancing hands over only the moved partitions.
        self._cooperative = ("cooperative" in str(conf.get("partition.assignment.strategy", ""))
                             or str(conf.get("group.protocol", "")).lower() == "consumer")

    # -- lifecycle ------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to commit what it holds, leave the group and return."""
        self._stop.set()

    @property
    def metrics_port(self) -> int | None:
        return self._metrics_server.port if self._metrics_server is not None else None

    @property
    def caught_up(self) -> bool:
        """Every assigned partition committed to its end, nothing buffered (``/readyz``)."""
        return self.metrics.ready[0]

    def _partition_count(self) -> int:
        return topic_partitions(self.kafka, self.options.create_topic_partitions,
                                self.options.create_topic_replication, kind=self.kind.name)

    def run(self) -> int:
        """Consume until stopped or idle; returns 0 (errors raise)."""
        opts = self.options
        self._partitioner = Partitioner(self._partition_count())
        if opts.partition_check:
            self._processor.partitioner = self._partitioner
        if opts.metrics_port is not None:
            try:
                self._metrics_server = MetricsServer(self.metrics, opts.metrics_host,
                                                     opts.metrics_port).start()
            except OSError as exc:
                raise ConfigError(f"metrics port {opts.metrics_host}:{opts.metrics_port}: {exc}") from exc
            log.info("metrics on http://%s:%d/metrics", opts.metrics_host, self._metrics_server.port)
        try:
            self._consumer = Consumer(worker_consumer_config(self.kafka))
        except KafkaException as exc:
            raise ConfigError(f"Kafka consumer: {exc}") from exc
        consumer = self._consumer
        if self.plugin.warm_up is not None:
            self.plugin.warm_up(self.settings)
        self._archive_settings()
        try:
            self._subscribe()
            while not self._stop.is_set():
                try:
                    self._step(consumer)
                except StoreUnavailable as exc:
                    self._recover(exc)
                if self._idle_done():
                    self._finish_idle()
                    self.exit_reason = "idle"
                    break
            else:
                self.exit_reason = "stopped"
                self._drain()
            self._settle(block=True)
        finally:
            try:
                consumer.close()  # leaves the group: revocation commits what is buffered
            except (KafkaException, RuntimeError, StoreUnavailable) as exc:
                log.warning("closing the consumer: %s", exc)
            self._consumer = None
            self._committer.close()
            if self._metrics_server is not None:
                self._metrics_server.close()
        log.info("worker stopped (%s)", self.exit_reason)
        return 0

    def _archive_settings(self) -> None:
        """Record the engine settings beside the archived samples (a backfill into a
        fresh store analyses them the same way)."""
        archive = self._committer.archive
        if archive is None or self.kind.name != "cell":
            return
        if archive.put_engine_settings(asdict(self.settings.engine)):
            log.warning("engine settings differ from those recorded in the archive %s: "
                        "archived data was analysed with both", archive.root)

    def _subscribe(self) -> None:
        assert self._consumer is not None
        self._last_activity = self._clock()
        self._consumer.subscribe([self.topic], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)

    # -- the loop ---------------------------------------------------------------------
    def _step(self, consumer: Consumer) -> None:
        opts = self.options
        self._settle(block=False)
        t0, c0 = time.perf_counter(), time.thread_time()
        msgs: list[Any] = consumer.consume(num_messages=min(opts.max_batch_messages, 100_000),
                                           timeout=opts.poll_timeout_s)
        now = self._clock()
        if msgs:
            # Hot loop (one pass per message): sort into per-partition buffers.
            parts, buf = self._parts, self._buffer
            nbytes = count = 0
            for m in msgs:
                if m.error() is not None:
                    self._consumer_error(m.error(), m)
                    continue
                p = m.partition()
                ps = parts.get(p)
                if ps is None:
                    continue
                if ps.eof:
                    ps.eof = False
                lst = buf.get(p)
                if lst is None:
                    lst = buf[p] = []
                lst.append(m)
                v = m.value()
                if v is not None:
                    nbytes += len(v)
                count += 1
            for p, lst in buf.items():
                if lst:
                    fps = parts.get(p)
                    if fps is not None:
                        fps.fetched_offset = lst[-1].offset() + 1
            if count:
                if not self._buffered:
                    self._buffer_since = now
                    if self.metrics.first_message_wall is None:
                        self.metrics.first_message_wall = time.time()
                        self.metrics.first_message_cpu_s = time.process_time()
                self._buffered += count
                self._buffer_bytes += nbytes
                self._last_activity = now
            self.metrics.add_phase("poll", time.perf_counter() - t0, time.thread_time() - c0)
        if self._buffered and (
            self._buffer_bytes >= opts.max_batch_bytes
            or self._buffered >= opts.max_batch_messages
            or now - self._buffer_since >= opts.commit_interval_s
            or self._caught_up()
        ):
            self._drain()
        if now - self._lag_checked >= 1.0:
            self._lag_checked = now
            self._update_lag()
        self._update_ready()

    def _update_ready(self) -> None:
        self._lag.refresh_ready(joined=self._joined, recovering=self._recovering,
                                buffered=self._buffered + self._committer.in_flight,
                                parts=self._parts)

    def _caught_up(self) -> bool:
        """Every partition with buffered messages has reached its end (a partition-EOF
        event came after its last message): commit now instead of waiting for more. A
        live stream thus commits as soon as it is read (low latency), a backlog in big
        batches (throughput)."""
        parts = self._parts
        return all(parts[p].eof for p, lst in self._buffer.items() if lst and p in parts)

    def _consumer_error(self, err: KafkaError, m: Message) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            ps = self._parts.get(codec.partition_of(m))
            if ps is not None:
                ps.eof = True
            return
        if err.fatal():
            raise SourceError(f"Kafka consumer: {err}")
        log.warning("Kafka consumer: %s", err)

    def _idle_done(self) -> bool:
        limit = self.options.until_idle_s
        if limit is None or self._buffered or self._committer.in_flight or not self._joined:
            return False
        if self._clock() - self._last_activity < limit:
            return False
        return all(ps.eof for ps in self._parts.values())

    def _finish_idle(self) -> None:
        """End of stream by silence: flush partitions without an end-of-stream marker."""
        out = Collected()
        for ps in self._parts.values():
            if ps.final:
                continue
            self._processor.flush(ps, out)
            ps.final = True
            out.commits.append(self._processor.checkpoint(ps))
        if out.has_checkpoints:
            self._commit(out)

    # -- rebalancing ----------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._last_activity = self._clock()
        if self._committer.failed is None:
            self._settle(block=True)  # the store is used by one thread at a time
        self._joined = True
        self._store_cells = None  # re-read: cells may have been registered since
        cells = self._cells_from_store() if partitions else None
        archive = self._committer.archive
        if cells is not None and cells.height and archive is not None:
            archive.put_entities(cells)  # registered through the API, say
        assert self._partitioner is not None
        for tp in partitions:
            if tp.topic != self.topic:
                continue
            ps = restore_partition(self.store, self.topic, tp.partition, self.kind)
            tp.offset = OFFSET_BEGINNING if ps.next_offset < 0 else ps.next_offset
            if cells is not None and cells.height:
                key = cells.get_column(self.kind.entity_key)
                # A processor may route entities by another key (the pack feed: by pack).
                route = getattr(self._processor, "entity_partitions", None)
                parts = route(key) if route is not None else self._partitioner.of_series(key)
                mine = cells.filter(pl.Series(parts == tp.partition))
                if mine.height:
                    self._processor.add_entities(ps, mine, "store")
            self._parts[tp.partition] = ps
            log.info("assigned %s[%d] from offset %s", self.topic, tp.partition,
                     "beginning" if ps.next_offset < 0 else ps.next_offset)
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        self._update_lag(force=True)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._last_activity = self._clock()
        if not self._recovering and self._committer.failed is None:
            if self._buffered:
                self._drain()  # commit what we hold while the partitions are still ours
            self._settle(block=True)  # durable before the next owner reads the checkpoints
        for tp in partitions:
            self._parts.pop(tp.partition, None)
            self._buffer.pop(tp.partition, None)
            log.info("revoked %s[%d]", self.topic, tp.partition)
        if self._cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {tp.partition for tp in partitions}
        if self._committer.failed is None:
            self._settle(block=True)  # a failed commit must still send the worker into recovery
        log.warning("lost %s%s without commit (another member may own them)", self.topic, sorted(lost))
        for p in lost:
            dropped = self._buffer.pop(p, [])
            self._buffered -= len(dropped)
            self._buffer_bytes -= sum(len(m.value() or b"") for m in dropped)
        for p in lost:
            self._parts.pop(p, None)
        if self._cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    def _recover(self, exc: Exception) -> None:
        """Store unreachable: leave the group, wait until it answers, rejoin."""
        assert self._consumer is not None
        log.warning("store unavailable (%s); leaving the group until it is back", exc)
        self._recovering = True
        self._joined = False
        self._committer.discard()  # replayed from the checkpoints like the buffered work
        self._buffer, self._buffered, self._buffer_bytes = {}, 0, 0
        try:
            self._consumer.unsubscribe()
        except KafkaException as kexc:  # pragma: no cover - best effort
            log.warning("unsubscribe: %s", kexc)
        self._parts.clear()
        wait = self.options.retry_initial_s
        while not self._stop.is_set():
            self._stop.wait(wait)
            try:
                self.store.load_checkpoint(checkpoint_name(self.topic, 0))
                break
            except StoreUnavailable as again:
                log.warning("store still unavailable: %s", again)
                wait = min(wait * 2, self.options.retry_max_s)
        self._recovering = False
        if not self._stop.is_set():
            self._store_cells = None
            self._subscribe()

    # -- processing -----------------------------------------------------------------
    def _drain(self) -> None:
        """Process and commit the buffered messages (one store transaction)."""
        if not self._buffered:
            return
        td, cd = time.perf_counter(), time.thread_time()
        self._update_lag()  # cached watermarks: lags as of the fetch, before the commit
        by_part, self._buffer = self._buffer, {}
        self._buffered = self._buffer_bytes = 0
        out = Collected()
        for p, pmsgs in by_part.items():
            ps = self._parts.get(p)
            if ps is None or not pmsgs:
                continue
            if ps.next_offset >= 0 and pmsgs[0].offset() < ps.next_offset:
                # Redelivered after a seek: skip what the state already holds.
                pmsgs = [m for m in pmsgs if m.offset() >= ps.next_offset]
                if not pmsgs:
                    continue
            elif ps.next_offset >= 0 and pmsgs[0].offset() > ps.next_offset + 1:
                # Offsets between the checkpoint and the first message are gone: deleted
                # by retention while no worker ran (or transaction markers, a few).
                log.warning("%s[%d]: offsets %d..%d are not in the log any more (retention?); "
                            "continuing at %d", self.topic, p, ps.next_offset,
                            pmsgs[0].offset() - 1, pmsgs[0].offset())
            self._processor.process(ps, pmsgs, out)
            t0, c0 = time.perf_counter(), time.thread_time()
            out.commits.append(self._processor.checkpoint(ps))  # the state, serialized
            self.metrics.add_phase("checkpoint", time.perf_counter() - t0, time.thread_time() - c0)
            out.offsets.append(TopicPartition(self.topic, p, ps.next_offset))
        end_batch = getattr(self._processor, "end_batch", None)
        if end_batch is not None:  # after every partition's messages (the pack feed)
            end_batch(out)
        self.metrics.add_phase("drain", time.perf_counter() - td, time.thread_time() - cd)
        if out.has_checkpoints:
            self._commit(out)

    def _commit(self, out: Collected) -> None:
        self._durable(self._committer.submit(out, self._consumer))

    def _settle(self, *, block: bool) -> None:
        """Take note of a finished pipelined commit (``block``: wait for it); raises
        its error (StoreUnavailable: the loop recovers)."""
        self._durable(self._committer.wait() if block else self._committer.poll())

    def _durable(self, done: list[Collected]) -> None:
        for out in done:
            for tp in out.offsets:  # durable now: the committed lag moves
                ps = self._parts.get(tp.partition)
                if ps is not None:
                    ps.committed_offset = max(ps.committed_offset, int(tp.offset))

    # -- cells, groups, alerts ------------------------------------------------------
    def _cells_from_store(self) -> pl.DataFrame | None:
        """Entity metadata already in the store (e.g. cells registered through the API)."""
        if self.plugin.entities is None:
            return None
        if self._store_cells is None:
            self._store_cells = self.plugin.entities(self.store)
            self._learn_groups(self._store_cells)
        return self._store_cells

    def _learn_groups(self, cells: pl.DataFrame) -> None:
        key = self.kind.entity_key
        layout = self.plugin.archive
        # Cells name their group; another kind's archive layout names the column (a
        # meter's house).
        col = "group" if "group" in cells.columns else (layout.group_column if layout else None)
        if cells.height and col is not None and col in cells.columns and key in cells.columns:
            self._groups.update(zip(cells.get_column(key).to_list(),
                                    cells.get_column(col).to_list(), strict=True))

    # -- lag ------------------------------------------------------------------------
    def _update_lag(self, force: bool = False) -> None:
        self._lag.update(self._consumer, self._parts, force=force)
