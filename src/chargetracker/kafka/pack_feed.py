"""The live pack feed in the Kafka worker (``chargetracker worker --pack-feed``).

The embedded feed (:mod:`chargetracker.runtime.pack_feed`) per partition: each
partition folds its accepted cell samples into open cell-days
(:class:`~chargetracker.runtime.pack_days.CellDays`), and once every cell of a pack
has passed a day, that pack's record of the day goes through the pack kind's
step on the partition's own pack state -- stored records (source ``stream``),
predictions, predicted-alarm episodes. Everything is in the **same store transaction**
as the partition's offset and engine state: the touched cells' rows of
``pack_feed_cells`` (scope ``pack-feed:<topic>:<partition>``), and, when a day was
emitted, the checkpoint ``pack-feed:<topic>:<partition>`` (the pack state, whose
per-VIN last record day says which days are done) with its alert episodes beside it.
A pack's day is decided once every cell of that pack has passed it. A restart or a replay therefore
neither loses a partial day nor writes a record, prediction or notification twice.

Why the topic is keyed by pack
------------------------------
The measurements topic is normally keyed by cell id (:mod:`.partitioner`: murmur2 of
the cell id), which spreads a pack's cells over the partitions -- with 8 partitions and
13 cells a pack, nearly every pack is split -- while a pack record needs all of the
pack's cells of the day (the spread max-min of the cells' mean voltages). A worker that
sees part of a pack can compute neither the record nor the prediction, and merging
partial aggregates in the store would put a second writer beside each pack's state.
So with the feed, **cells are routed by their pack**: a cell whose metadata names a
pack (``pack_id`` / ``vin``) belongs to the partition of murmur2(pack id) (cells
without one: murmur2(cell id), as before). Producers key a cell's messages (its
metadata first, then its samples) by the pack id -- the Java client's default
partitioner with key = VIN, or :meth:`.sink.KafkaSink.send_keyed` -- and the worker's
partition check holds rows to that rule (a misrouted row is a dead letter naming the
partition). A cell's state stays on one partition, so the cell results are unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from ..config import KafkaConfig, Settings
from ..episodes import EpisodeState
from ..errors import ConfigError
from ..kinds.pack import PACK_FEED_CELLS, PackKind
from ..ml.from_cells import pack_of_cells, pack_records_from_days
from ..runtime.pack_days import CellDays, decide, decided_of, drop_frame, merge_decided
from ..runtime.pack_feed import FEED_SOURCE, merge_pack_maps, pack_map_of
from ..runtime.packs import load_pack_kind, pack_episode_policy
from ..runtime.step import AlertPolicy, StepContext, advance, episode_checkpoint, raise_alerts
from ..stores.base import Checkpoint, CommitBatch, Store, all_cells
from .client import partition_count
from .kinds import KafkaKind
from .partitioner import Partitioner
from .processing import Collected, PartitionState, Processor

__all__ = ["FeedPartition", "PackFeed", "PackFeedProcessor", "feed_checkpoint_name",
           "with_pack_feed"]


def feed_checkpoint_name(topic: str, partition: int) -> str:
    """Checkpoint (and ``pack_feed_cells`` scope) of one partition's pack feed."""
    return f"pack-feed:{topic}:{partition}"


@dataclass
class PackFeed:
    """What every partition's feed of a worker shares: the store (to restore a
    partition), the pack kind with its model, the alarm-episode policy and the pack
    map (cell_id, vin), which grows as cell metadata arrives."""

    store: Store
    kind: PackKind
    alerts: AlertPolicy
    pack_map: pl.DataFrame
    kafka: KafkaConfig
    _version: int = 0

    def learn(self, cells: pl.DataFrame) -> None:
        """Cells (CELL_SCHEMA rows) that name their pack join the map."""
        own = pack_of_cells(cells) if cells.height else cells
        if own.height:
            before = self.pack_map
            self.pack_map = merge_pack_maps(self.pack_map, own)
            if not self.pack_map.equals(before):
                self._version += 1

    @property
    def version(self) -> int:
        return self._version


@dataclass
class FeedPartition:
    """One partition's feed: open cell-days, pack state, alarm episodes, the last day
    decided per pack (:data:`~chargetracker.runtime.pack_days.DECIDED_SCHEMA`)."""

    days: CellDays
    state: Any
    decided: pl.DataFrame
    episodes: EpisodeState = field(default_factory=EpisodeState)


class PackFeedProcessor(Processor):
    """The cell processor with the live pack feed (module docstring). ``feed``: the
    worker's :class:`PackFeed`; other arguments as :class:`~.processing.Processor`."""

    keep_raw = True

    def __init__(self, topic: str, kind: Any, *, feed: PackFeed, **kw: Any) -> None:
        super().__init__(topic, kind, **kw)
        self.feed = feed
        self._raw: dict[int, list[pl.DataFrame]] = {}
        self._batch: dict[int, PartitionState] = {}   # partitions of the micro-batch
        self._out: Collected | None = None            # the micro-batch being read
        self._parts: dict[int, tuple[PartitionState, FeedPartition]] = {}
        self._routes: Partitioner | None = None
        self._members: dict[int, tuple[int, pl.DataFrame]] = {}

    # -- routing by pack ----------------------------------------------------------------
    def _router(self) -> Partitioner:
        if self.partitioner is not None:
            return self.partitioner
        if self._routes is None:  # the partition check is off: route all the same
            self._routes = Partitioner(partition_count(self.feed.kafka, self.topic))
        return self._routes

    def _keys(self, ids: pl.Series) -> pl.Series:
        """The routing key of each cell: its pack id, else its cell id."""
        frame = pl.DataFrame({"cell_id": ids.cast(pl.Utf8)})
        vins = frame.join(self.feed.pack_map, on="cell_id", how="left",
                          maintain_order="left").get_column("vin")
        return vins.fill_null(frame.get_column("cell_id"))

    def entity_partitions(self, ids: pl.Series) -> np.ndarray:
        """Partition of each cell id (by its pack; the worker's assignment uses it)."""
        return self._router().of_series(self._keys(ids))

    def owners(self, ids: pl.Series) -> np.ndarray:
        return self.entity_partitions(ids)

    def misrouted(self, owner: int, got: int, key: str) -> str:
        return (f"{key} belongs to partition {owner}, received on {got}: with the pack feed "
                "a cell's messages are keyed by its pack (murmur2 of the metadata pack_id / "
                "vin; cells without one by the cell id), its metadata first")

    def _own_cells(self, cells: pl.DataFrame, ps: PartitionState, source: str, offset: int,
                   out: Collected) -> pl.DataFrame:
        self.feed.learn(cells)  # a cell's metadata names its pack: route it by that
        return super()._own_cells(cells, ps, source, offset, out)

    def add_entities(self, ps: PartitionState, cells: pl.DataFrame, source: str) -> None:
        self.feed.learn(cells)
        super().add_entities(ps, cells, source)

    def members(self, partition: int) -> pl.DataFrame:
        """(cell_id, vin) of the packs this partition owns."""
        cached = self._members.get(partition)
        if cached is not None and cached[0] == self.feed.version:
            return cached[1]
        pm = self.feed.pack_map
        mine = pm.filter(pl.Series(self._router().of_series(pm.get_column("vin")) == partition))
        self._members[partition] = (self.feed.version, mine)
        return mine

    # -- the tap ------------------------------------------------------------------------
    def on_accepted(self, ps: PartitionState, raw: pl.DataFrame) -> None:
        self._raw.setdefault(ps.partition, []).append(raw)

    def process(self, ps: PartitionState, msgs: list[Any], out: Collected) -> None:
        if self._out is not out:  # a new micro-batch (an aborted one left nothing behind)
            self._out, self._raw, self._batch = out, {}, {}
        self._raw.setdefault(ps.partition, [])
        super().process(ps, msgs, out)
        self._batch[ps.partition] = ps

    def end_batch(self, out: Collected) -> None:
        """The feed of every partition of the micro-batch, after all their messages: the
        cell metadata of the whole batch is known before any pack-day is judged
        complete (a pack counts every cell that names it)."""
        if self._out is not out:
            return
        batch, raws = self._batch, self._raw
        self._out, self._raw, self._batch = None, {}, {}
        for p, ps in batch.items():
            mine = raws.get(p, [])
            self._advance(ps, pl.concat(mine) if mine else None, out)

    def _partition(self, ps: PartitionState) -> FeedPartition:
        """The partition's feed (restored from the store at its first batch after each
        assignment: a new PartitionState)."""
        held = self._parts.get(ps.partition)
        if held is not None and held[0] is ps:
            return held[1]
        name = feed_checkpoint_name(self.topic, ps.partition)
        store, kind = self.feed.store, self.feed.kind
        cp = store.load_checkpoint(name)
        state = kind.new_state() if cp is None else kind.state_from_bytes(cp.state)
        fp = FeedPartition(CellDays(), state, decided=decided_of(state.vins))
        ep = store.load_checkpoint(episode_checkpoint(name))
        if ep is not None:
            fp.episodes = EpisodeState.from_bytes(ep.state)
        rows = store.rows(PACK_FEED_CELLS.name, filters={"scope": name}, unbounded=True)
        fp.days = CellDays.from_rows(rows, None)
        self._parts[ps.partition] = (ps, fp)
        return fp

    def _advance(self, ps: PartitionState, raw: pl.DataFrame | None, out: Collected) -> None:
        """Fold the batch's samples, emit the days every cell of their pack has passed,
        and add the rows and checkpoints to the partition's commit."""
        fp = self._partition(ps)
        members = self.members(ps.partition)
        name = feed_checkpoint_name(self.topic, ps.partition)
        cells = members.get_column("cell_id")
        days, changed = fp.days.folded(raw, cells, drop_frame(members, fp.decided))
        new, ready = decide(days, members, fp.decided)
        commit = CommitBatch()
        if new.height:
            records = pack_records_from_days(ready, members)
            if records.height:
                ctx = StepContext(self.feed.kind, FEED_SOURCE, alerts=self.feed.alerts,
                                  episodes=fp.episodes, counter=f"pack-feed:{self.topic}")
                fp.state, s = advance(fp.state, records, ctx)
                raise_alerts(s, ctx)
                if s.episode_state is not None:
                    fp.episodes = s.episode_state
                out.commits.append(s.commit)
                commit.checkpoints.append(Checkpoint(
                    name, self.feed.kind.state_to_bytes(fp.state),
                    {"offset": ps.next_offset, "topic": self.topic, "partition": ps.partition,
                     "vins": fp.state.vins.height}))
                commit.checkpoints.append(Checkpoint(
                    episode_checkpoint(name), fp.episodes.to_bytes(),
                    {"offset": ps.next_offset, "episodes_open": fp.episodes.open_count}))
            fp.decided = merge_decided(fp.decided, new)
            # The decided days leave the accumulator in this same commit.
            days, dropped = days.folded(None, cells, drop_frame(members, fp.decided))
            changed = changed | dropped
        fp.days = days
        if changed:
            commit.tables[PACK_FEED_CELLS.name] = days.rows(name, changed)
        if commit.tables or commit.checkpoints:
            out.commits.append(commit)


def with_pack_feed(plugin: KafkaKind, store: Store, settings: Settings, *,
                   model_dir: str | None = None) -> KafkaKind:
    """The cell kind's worker plug-in with the live pack feed: ``store`` gets the pack
    tables, the model of ``model_dir`` (None: packaged) predicts, the pack map starts
    from the store's cells (and grows with the cell metadata that arrives)."""
    if plugin.name != "cell":
        raise ConfigError(f"--pack-feed derives pack records from cells, not from the "
                          f"{plugin.name} kind")
    add_kinds = getattr(store, "add_kinds", None)
    if add_kinds is not None:
        add_kinds([PackKind()])
    kind = load_pack_kind(settings, model_dir)
    policy = pack_episode_policy(settings)
    feed = PackFeed(store, kind, AlertPolicy(episodes=policy if policy is not None else False),
                    pack_map_of(store), settings.kafka)

    def entities(s: Store) -> pl.DataFrame:
        cells = all_cells(s) if plugin.entities is None else plugin.entities(s)
        feed.learn(cells)
        return cells

    return dataclasses.replace(
        plugin, make_processor=functools.partial(PackFeedProcessor, feed=feed),
        entities=entities)
