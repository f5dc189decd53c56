"""One partition's messages -> micro-batch steps (the Kafka driver of
:func:`chargetracker.runtime.step.advance` and :func:`~chargetracker.runtime.step.raise_alerts`),
for any telemetry kind.

A partition's messages are processed in offset order: consecutive record messages
(measurements, readings) form one step, consecutive entity messages (cell or meter
metadata) one metadata update (applied before the records after them, as in the
stream), an end-of-stream marker flushes the state at its offset. Dead letters name the
Kafka offset as their row. What depends on the kind is its :class:`RecordCodec` (how
its messages decode) and the kind itself (validation, engine, alert rules).

Alerts follow the episode model (:mod:`chargetracker.episodes`) for every kind: each
partition keeps its alert-episode state in memory beside the engine state and
checkpoints both with the offset, so a restart or a replay of the partition neither
repeats a notification nor loses an episode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl
from confluent_kafka import TopicPartition

from ..episodes import EpisodeState
from ..kinds.base import TelemetryKind
from ..runtime.step import (
    AlertPolicy,
    StepContext,
    StepOutcome,
    advance,
    episode_checkpoint,
    finish,
    raise_alerts,
)
from ..schema import DEAD_LETTER_SCHEMA, dead_letters
from ..stores.base import Checkpoint, CommitBatch
from . import cell_codec, codec
from .codec import Decoded
from .partitioner import Partitioner

__all__ = ["CELL_CODEC", "Collected", "PartitionState", "Processor", "RecordCodec",
           "checkpoint_name", "downsample", "restore_partition"]

log = logging.getLogger("chargetracker.kafka.worker")


@dataclass(frozen=True)
class RecordCodec:
    """How one kind's messages decode (the processor is otherwise kind-generic).

    ``decode_records(values, formats, offsets, *, source) -> Decoded`` for record
    messages; ``entity_type``: the ``ct-type`` of entity metadata messages and
    ``decode_entities(values, formats, offsets, *, source) -> (entities, dead letters)``;
    ``entity_commit(entities)``: the commit that stores them.
    """

    entity_type: str
    decode_records: Callable[..., Decoded]
    decode_entities: Callable[..., tuple[pl.DataFrame, pl.DataFrame]]
    entity_commit: Callable[[pl.DataFrame], CommitBatch]


#: Cells: measurement messages, ``ct-type: cell`` metadata into the cells table.
CELL_CODEC = RecordCodec(codec.CELL, codec.decode_measurements,
                         cell_codec.decode_cell_messages, lambda cells: CommitBatch(cells=cells))


def checkpoint_name(topic: str, partition: int) -> str:
    """Store checkpoint name of one partition's engine state and offset."""
    return f"worker:{topic}:{partition}"


@dataclass
class PartitionState:
    """What a worker holds for one owned partition."""

    partition: int
    state: Any
    #: Offset of the next message to process; -1 when unknown (no checkpoint yet).
    next_offset: int
    final: bool = False
    #: Partition EOF seen after the last received message (the worker is at the end).
    eof: bool = False
    #: Offset after the last message received (-1: none yet): fetched lag.
    fetched_offset: int = -1
    #: Offset of the store checkpoint (what is durably done; -1: none): committed lag.
    committed_offset: int = -1
    #: Alert episodes of the partition's entities (checkpointed with the offset).
    episodes: EpisodeState = field(default_factory=EpisodeState)


def restore_partition(store: Any, topic: str, partition: int, kind: TelemetryKind) -> PartitionState:
    """A partition's state as its last commit left it: engine state, offset, ``final``
    and alert episodes (a fresh state at offset -1 when it never committed)."""
    name = checkpoint_name(topic, partition)
    cp = store.load_checkpoint(name)
    if cp is None:
        return PartitionState(partition, kind.new_state(), -1)
    offset = int(cp.position["offset"])
    ps = PartitionState(partition, kind.state_from_bytes(cp.state), offset,
                        final=bool(cp.position.get("final")), committed_offset=offset)
    ep = store.load_checkpoint(episode_checkpoint(name))
    if ep is not None:
        ps.episodes = EpisodeState.from_bytes(ep.state)
    return ps


@dataclass
class Collected:
    """Steps of one micro-batch across partitions, committed together."""

    commits: list[CommitBatch] = field(default_factory=list)
    offsets: list[TopicPartition] = field(default_factory=list)
    timestamps_ms: list[np.ndarray] = field(default_factory=list)
    #: (partition, first offset of the partition's batch, accepted raw rows) to archive.
    archive: list[tuple[int, int, pl.DataFrame]] = field(default_factory=list)
    accepted: int = 0
    messages: int = 0

    @property
    def has_checkpoints(self) -> bool:
        return any(c.checkpoints for c in self.commits)


def downsample(raw: pl.DataFrame, every_s: float, key: str = "cell_id") -> pl.DataFrame:
    """The first row (by ``ts``) of each ``key`` in each ``every_s``-second bucket of
    ``ts``: the store's raw view for the dashboard, a few rows per cell and minute
    instead of every sample (a bucket cut by a micro-batch boundary may keep two)."""
    if raw.height == 0 or "ts" not in raw.columns:
        return raw
    # Minimum per (entity, bucket) by a windowed min, not a sort of the whole batch
    # (7x less CPU); the few rows kept are sorted afterwards.
    b = "__ct_bucket"
    return (raw.with_columns((pl.col("ts") / every_s).floor().alias(b))
            .filter(pl.col("ts") == pl.col("ts").min().over(key, b))
            .unique(subset=[key, b], keep="first", maintain_order=True)
            .drop(b).sort(key, "ts"))


def wrong_partition(owner: int, got: int, key: str = "cell_id") -> str:
    return (f"{key} belongs to partition {owner} (murmur2 of the key), received on {got}: "
            f"the producer must partition by murmur2({key}) (Java default, librdkafka "
            "partitioner=murmur2_random)")


class Processor:
    """Turns one partition's messages into commits (see the module docstring).

    A subclass that taps the accepted samples (the live pack feed,
    :mod:`.pack_feed`) sets ``keep_raw`` and overrides :meth:`on_accepted`.

    ``codec``: how the kind's messages decode (default: cells). ``learn_cells`` is
    called with every accepted entity-metadata frame (the worker keeps the groups for
    alerts); ``store_raw`` / ``archive`` say where accepted raw rows go;
    ``alert_policy`` which of the kind's rules raise alert episodes (None: no alerts),
    ``groups`` the worker's live entity -> group map.
    """

    def __init__(self, topic: str, kind: TelemetryKind, *, partitioner: Partitioner | None,
                 store_raw: bool, archive: bool,
                 learn_cells: Callable[[pl.DataFrame], None],
                 timings: dict[str, float] | None = None,
                 raw_every_s: float | None = None,
                 future_horizon_s: float | None = None,
                 codec: RecordCodec | None = None,
                 alert_policy: AlertPolicy | None = None,
                 groups: Mapping[str, str | None] | None = None) -> None:
        self.codec = codec or CELL_CODEC
        self.alert_policy = alert_policy
        self.groups: Mapping[str, str | None] = groups if groups is not None else {}
        self._empty = pl.DataFrame(schema=dict(kind.measurement_schema))
        self.topic = topic
        #: Rows stamped more than this after the wall clock are dead letters, s (None:
        #: no check): a producer with a wrong clock must not block its cells for good.
        self.future_horizon_s = future_horizon_s
        #: Store at most one raw row per entity per this many seconds of ``ts`` (per
        #: micro-batch) in the store; the archive keeps every row.
        self.raw_every_s = raw_every_s
        #: Seconds spent per phase ("decode", "engine"; wall, and thread CPU under
        #: "cpu:<phase>"): the worker's profile.
        self.timings = timings if timings is not None else {}
        self.kind = kind
        self.partitioner = partitioner
        self.store_raw = store_raw
        self.archive = archive
        self.learn_cells = learn_cells
        self.counter = f"kafka:{topic}"

    #: The step keeps accepted raw rows for :meth:`on_accepted` even when neither the
    #: store nor the archive takes them.
    keep_raw = False

    def on_accepted(self, ps: PartitionState, raw: pl.DataFrame) -> None:
        """A step's accepted raw rows (offset order); for a subclass's tap."""

    def misrouted(self, owner: int, got: int, key: str) -> str:
        """The dead-letter reason of a row on the wrong partition."""
        return wrong_partition(owner, got, key)

    def _time(self, phase: str, wall_s: float, cpu_s: float) -> None:
        t = self.timings
        t[phase] = t.get(phase, 0.0) + wall_s
        t[f"cpu:{phase}"] = t.get(f"cpu:{phase}", 0.0) + cpu_s

    def checkpoint(self, ps: PartitionState) -> CommitBatch:
        name = checkpoint_name(self.topic, ps.partition)
        cps = [Checkpoint(name, self.kind.state_to_bytes(ps.state),
                          {"offset": ps.next_offset, "final": ps.final, "topic": self.topic,
                           "partition": ps.partition})]
        if self.alert_policy is not None:
            cps.append(Checkpoint(episode_checkpoint(name), ps.episodes.to_bytes(),
                                  {"offset": ps.next_offset,
                                   "episodes_open": ps.episodes.open_count}))
        return CommitBatch(checkpoints=cps)

    def _alerts(self, ps: PartitionState, s: StepOutcome, ctx: StepContext) -> None:
        """The kind's alert rules on a step's results, advancing the partition's episodes."""
        if self.alert_policy is None:
            return
        ctx = replace(ctx, alerts=self.alert_policy, groups=self.groups, episodes=ps.episodes)
        raise_alerts(s, ctx)
        if s.episode_state is not None:
            ps.episodes = s.episode_state

    def _letters(self, out: Collected, letters: pl.DataFrame) -> None:
        if letters.height:
            out.commits.append(CommitBatch(dead_letters=letters, counters={
                self.counter: {"accepted": 0, "rejected": letters.height}}))

    def process(self, ps: PartitionState, msgs: list[Any], out: Collected) -> None:
        """Run one partition's messages through its state, in offset order."""
        source = f"kafka:{self.topic}/{ps.partition}"
        # Hot loop (one pass per message): runs of measurement and of cell messages.
        run_vals: list[bytes | None] = []
        run_fmts: list[str | None] = []
        run_offs: list[int] = []
        run_ts: list[int] = []
        cell_vals: list[bytes | None] = []
        cell_fmts: list[str | None] = []
        cell_offs: list[int] = []

        def end_run() -> None:
            if run_offs:
                ps.final = False  # samples after an end-of-stream marker: a new stream
                self._measurements(ps, run_vals, run_fmts, run_offs, source, out)
                out.timestamps_ms.append(np.asarray(run_ts, dtype=np.float64))
                for lst in (run_vals, run_fmts, run_offs, run_ts):
                    lst.clear()

        def end_cells() -> None:
            if cell_offs:
                self._cells(ps, cell_vals, cell_fmts, cell_offs, source, out)
                for lst in (cell_vals, cell_fmts, cell_offs):
                    lst.clear()

        first_offset = msgs[0].offset()
        n_archive = len(out.archive)
        headers_of = codec.headers_of
        measurement = codec.MEASUREMENT
        entity_type = self.codec.entity_type
        for m in msgs:
            fmt, typ = headers_of(m.headers())
            if typ is None or typ == measurement:  # the common case
                if cell_offs:
                    end_cells()
                run_vals.append(m.value())
                run_fmts.append(fmt)
                run_offs.append(m.offset())
                run_ts.append(m.timestamp()[1])
                continue
            end_run()
            if typ == entity_type:
                cell_vals.append(m.value())
                cell_fmts.append(fmt)
                cell_offs.append(codec.offset_of(m))
                continue
            end_cells()
            if typ == codec.END_OF_STREAM:
                self.flush(ps, out)
                ps.final = True
                log.info("end of stream in %s[%d] at offset %d", self.topic, ps.partition,
                         codec.offset_of(m))
            else:
                self._letters(out, dead_letters([{
                    "source": source, "row": codec.offset_of(m), "field": codec.TYPE_HEADER,
                    "reason": f"unknown message type {typ!r}; expected one of "
                              f"{[codec.MEASUREMENT, entity_type, codec.END_OF_STREAM]}",
                    "payload": (m.value() or b"")[:256].decode("utf-8", "replace").replace("\x00", "\\u0000"),
                }]))
        end_run()
        end_cells()
        if self.archive and len(out.archive) > n_archive:
            rows = [f for _, _, f in out.archive[n_archive:]]
            del out.archive[n_archive:]
            out.archive.append((ps.partition, first_offset, pl.concat(rows) if len(rows) > 1 else rows[0]))
        ps.next_offset = msgs[-1].offset() + 1
        out.messages += len(msgs)

    def _cells(self, ps: PartitionState, values: list[bytes | None], fmts: list[str | None],
               offsets: list[int], source: str, out: Collected) -> None:
        """Entity metadata messages (cells: nominal capacities; meters: house, zone,
        mains flag) into the engine state, rows into the store, groups for alerts."""
        cells, letters = self.codec.decode_entities(values, fmts, offsets, source=source)
        self._letters(out, letters)
        if cells.height:
            cells = self._own_cells(cells, ps, source, offsets[0], out)
        if cells.height:
            self.add_entities(ps, cells, source)
            out.commits.append(self.codec.entity_commit(cells))
            self.learn_cells(cells)

    def add_entities(self, ps: PartitionState, cells: pl.DataFrame, source: str) -> None:
        """Metadata of entities into the partition's state (for entities without records
        yet too)."""
        ps.state, _ = self.kind.update(ps.state, self.kind.validate(self._empty, source=source),
                                       source=source, entities=cells)

    def owners(self, ids: pl.Series) -> np.ndarray:
        assert self.partitioner is not None
        return self.partitioner.of_series(ids)

    def _own_cells(self, cells: pl.DataFrame, ps: PartitionState, source: str, offset: int,
                   out: Collected) -> pl.DataFrame:
        if self.partitioner is None:
            return cells
        key = self.kind.entity_key
        owner = self.owners(cells.get_column(key))
        wrong = owner != ps.partition
        if not wrong.any():
            return cells
        self._letters(out, dead_letters([{
            "source": source, "row": offset, "cell_id": cid, "field": key,
            "reason": self.misrouted(int(q), ps.partition, key), "payload": "",
        } for cid, q in zip(cells.filter(pl.Series(wrong)).get_column(key).to_list(),
                            owner[wrong].tolist(), strict=True)]))
        return cells.filter(pl.Series(~wrong))

    def _measurements(self, ps: PartitionState, values: list[bytes | None],
                      fmts: list[str | None], offsets: list[int], source: str,
                      out: Collected) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        dec = self.codec.decode_records(values, fmts, offsets, source=source)
        t1, c1 = time.perf_counter(), time.thread_time()
        self._time("decode", t1 - t0, c1 - c0)
        own = [dec.rejected] if dec.rejected.height else []
        frame, offs = dec.frame, dec.offsets
        key = self.kind.entity_key
        if frame.height and self.partitioner is not None:
            owner = self.owners(frame.get_column(key))
            # Null ids map to -1 and are left to the kind's validation ("missing <key>").
            wrong = (owner != ps.partition) & (owner >= 0)
            if wrong.any():
                bad = frame.filter(pl.Series(wrong))
                own.append(pl.DataFrame({
                    "source": [source] * bad.height,
                    "row": offs[wrong],
                    "cell_id": bad.get_column(key),
                    "ts": bad.get_column("ts"),
                    "field": [key] * bad.height,
                    "reason": [self.misrouted(int(q), ps.partition, key)
                               for q in owner[wrong].tolist()],
                    "payload": bad.select(pl.struct(pl.all()).struct.json_encode()).to_series(),
                }, schema=DEAD_LETTER_SCHEMA))
                keep = ~wrong
                frame, offs = frame.filter(pl.Series(keep)), offs[keep]
        rejected = pl.concat(own) if own else None
        t2, c2 = time.perf_counter(), time.thread_time()
        self._time("screen", t2 - t1, c2 - c1)  # the partition check (murmur2 of every id)
        t1, c1 = t2, c2
        if frame.height == 0:
            if rejected is not None:
                self._letters(out, rejected)
            return
        ctx = StepContext(self.kind, source, rejected=rejected, row_positions=offs,
                          store_raw=self.store_raw or self.archive or self.keep_raw,
                          counter=self.counter,
                          now=time.time() if self.future_horizon_s else None,
                          future_horizon_s=self.future_horizon_s)
        ps.state, s = advance(ps.state, frame, ctx)
        self._alerts(ps, s, ctx)
        self._time("engine", time.perf_counter() - t1, time.thread_time() - c1)
        out.accepted += s.accepted
        if s.raw is not None:
            self.on_accepted(ps, s.raw)
            if self.archive:
                out.archive.append((ps.partition, -1, s.raw))
            self._thin_raw(s.commit)
        out.commits.append(s.commit)

    def _thin_raw(self, commit: CommitBatch) -> None:
        """The store's raw rows: none without ``store_raw``, else thinned to one per
        entity per ``raw_every_s`` (the archive keeps every row)."""
        table = self.kind.raw_table
        name = "measurements" if table is None else table.name
        raw = commit.measurements if name == "measurements" else commit.tables.get(name)
        if raw is None:
            return
        if not self.store_raw:
            raw = None
        elif self.raw_every_s:
            raw = downsample(raw, self.raw_every_s, self.kind.entity_key)
        if name == "measurements":
            commit.measurements = raw
        elif raw is None:
            commit.tables.pop(name, None)
        else:
            commit.tables[name] = raw

    def flush(self, ps: PartitionState, out: Collected) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        ctx = StepContext(self.kind, counter=self.counter)
        ps.state, s = finish(ps.state, ctx)
        self._alerts(ps, s, ctx)
        self._time("flush", time.perf_counter() - t0, time.thread_time() - c0)
        if s.rejected.height:
            s.commit.counters[self.counter] = {"accepted": 0, "rejected": s.rejected.height}
        out.commits.append(s.commit)
