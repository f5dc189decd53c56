"""``worker --pack-feed``: cells keyed by pack on a real broker; each partition derives
the daily pack records of its packs and predicts, in the transaction of its offset
(kafka/pack_feed.py). The store ends equal to the batch derivation of the same samples,
across a restart in the middle of the stream, and a restart at the end adds nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import polars as pl
import pytest

from chargetracker.config import KafkaConfig, Settings
from chargetracker.kafka import KafkaSink, codec
from chargetracker.kafka.cell_codec import encode_cells_json
from chargetracker.kafka.kinds import kafka_kind
from chargetracker.kafka.pack_feed import feed_checkpoint_name, with_pack_feed
from chargetracker.kafka.partitioner import partition_for
from chargetracker.kafka.worker import Worker, WorkerOptions
from chargetracker.kinds.pack import ALARM_RULE, PACK_FEED_CELLS, PackKind
from chargetracker.ml.from_cells import daily_pack_records, pack_of_cells
from chargetracker.ml.predict import Predictor
from chargetracker.runtime.pack_feed import FEED_SOURCE
from chargetracker.sim import Fleet, FleetConfig, GroupConfig
from chargetracker.stores.models import load_default_model
from chargetracker.stores.url import open_store

PARTITIONS = 2
SIGNALS = ("total_voltage_v", "total_current_a", "cell_max_v", "cell_min_v",
           "max_temperature_c", "min_temperature_c")


def _fleet() -> Fleet:
    return Fleet(FleetConfig(
        groups=(GroupConfig("nmc", "NMC", "standard", 4, cells_per_pack=2),
                GroupConfig("lfp", "LFP", "standard", 2, cells_per_pack=2)),
        seed=4, sample_period_s=120.0, duration_s=400 * 3600.0,
        start_epoch=datetime(2024, 1, 1, tzinfo=UTC).timestamp()))


def _send_by_pack(cfg: KafkaConfig, cells: pl.DataFrame | None, chunks: list[pl.DataFrame],
                  vin_of: dict[str, str], *, eos: bool = False) -> None:
    """Produce keyed by pack: each cell's metadata, then its samples (Arrow, one
    message per pack and chunk) to the partition of murmur2(pack id)."""
    with KafkaSink(cfg) as sink:
        if cells is not None:
            sink.send_keyed([(vin_of[cid], value) for cid, value in encode_cells_json(cells)],
                            format="json", type=codec.CELL)
        for chunk in chunks:
            tagged = chunk.with_columns(pl.col("cell_id").replace_strict(vin_of).alias("__vin"))
            sink.send_keyed([(str(part["__vin"][0]), codec.encode_arrow(part.drop("__vin")))
                             for part in tagged.partition_by("__vin", maintain_order=True)],
                            format="arrow")
        if eos:
            sink.end_of_stream()
        sink.flush()


def _work(url: str, settings: Settings) -> None:
    with open_store(url) as store:
        plugin = with_pack_feed(kafka_kind("cell"), store, settings)
        Worker(store, settings, WorkerOptions(until_idle_s=1.0), plugin=plugin).run()


def _stored(url: str) -> tuple[pl.DataFrame, pl.DataFrame, int, int]:
    with open_store(url, kinds=[PackKind()]) as store:
        recs = store.rows("pack_records", filters={"source": FEED_SOURCE}, unbounded=True)
        preds = store.rows("alarm_predictions", filters={"source": FEED_SOURCE}, unbounded=True)
        alarms = store.alerts(limit=10_000).filter(pl.col("rule") == ALARM_RULE).height
        feed_rows = store.rows(PACK_FEED_CELLS.name, unbounded=True).height
    return recs.sort("vin", "date"), preds.sort("vin", "date"), alarms, feed_rows


def test_worker_pack_feed_equals_the_batch_derivation_across_restarts(
        make_topic: Callable[..., KafkaConfig], postgres_url: str) -> None:
    fleet = _fleet()
    cells = fleet.cells
    chunks = list(fleet.chunks(seconds=12 * 3600.0))
    samples = pl.concat(chunks)
    packs = pack_of_cells(cells)
    vin_of = dict(zip(packs["cell_id"].to_list(), packs["vin"].to_list(), strict=True))
    # The packs land on both partitions (and keyed by cell, a pack would be split).
    assert {partition_for(v, PARTITIONS) for v in set(vin_of.values())} == {0, 1}
    cfg = make_topic(PARTITIONS)
    settings = Settings(kafka=cfg)

    half = len(chunks) // 2
    _send_by_pack(cfg, cells, chunks[:half], vin_of)
    _work(postgres_url, settings)                 # stops in the middle of the stream
    first, _, _, _ = _stored(postgres_url)
    assert first.height > 0
    _send_by_pack(cfg, None, chunks[half:], vin_of, eos=True)
    _work(postgres_url, settings)                 # resumes from the partition checkpoints

    last_day = int(samples.get_column("ts").max() // 86_400)
    expected = daily_pack_records(samples, packs).filter(
        pl.col("date").cast(pl.Int32) < last_day)  # the running day is not complete
    recs, preds, alarms, feed_rows = _stored(postgres_url)
    assert expected.height >= 3 * 15
    assert recs.select("vin", "date").equals(expected.select("vin", "date"))
    for c in SIGNALS:
        assert recs.get_column(c).to_list() == pytest.approx(
            expected.get_column(c).to_list(), rel=1e-12), c
    batch = PackKind(Predictor(load_default_model()), settings).summarize(expected)
    want = batch.tables["alarm_predictions"].sort("vin", "date")
    assert want.height > 0
    assert preds.select("vin", "date").equals(want.select("vin", "date"))
    assert preds.get_column("probability").to_list() == pytest.approx(
        want.get_column("probability").to_list(), abs=1e-9)
    assert packs.height <= feed_rows <= 2 * packs.height  # per pack cell, whatever the days
    with open_store(postgres_url) as store:
        cps = [store.load_checkpoint(feed_checkpoint_name(cfg.topic, p)) for p in range(PARTITIONS)]
    assert all(cp is not None and cp.position["vins"] >= 1 for cp in cps)

    # A restart at the end reads nothing new: no record, prediction or alarm added.
    _work(postgres_url, settings)
    again, preds2, alarms2, _ = _stored(postgres_url)
    assert again.height == recs.height and preds2.height == preds.height
    assert alarms2 == alarms
    assert again.get_column("updated_at").equals(recs.get_column("updated_at"))


def test_cells_keyed_by_cell_id_are_refused_not_folded_into_partial_packs(
        make_topic: Callable[..., KafkaConfig], postgres_url: str) -> None:
    fleet = Fleet(FleetConfig(
        groups=(GroupConfig("nmc", "NMC", "standard", 4, cells_per_pack=2),
                GroupConfig("lfp", "LFP", "standard", 2, cells_per_pack=2)),
        seed=4, sample_period_s=600.0, duration_s=50 * 3600.0,
        start_epoch=datetime(2024, 1, 1, tzinfo=UTC).timestamp()))
    packs = pack_of_cells(fleet.cells)
    # Keyed by cell id, every pack here has a cell off its pack's partition.
    for vin, members in packs.group_by("vin"):
        home = partition_for(str(vin[0]), PARTITIONS)
        assert any(partition_for(c, PARTITIONS) != home for c in members["cell_id"])
    cfg = make_topic(PARTITIONS)
    settings = Settings(kafka=cfg)
    with KafkaSink(cfg) as sink:                   # the default sink keys by cell id
        sink.send_cells(fleet.cells)
        for chunk in fleet.chunks(seconds=12 * 3600.0):
            sink.send(chunk)
        sink.end_of_stream()
    _work(postgres_url, settings)
    recs, preds, _, _ = _stored(postgres_url)
    assert recs.height == 0 and preds.height == 0  # never a record of part of a pack
    with open_store(postgres_url) as store:
        letters = store.dead_letters(limit=10_000)
    refused = letters.filter(pl.col("reason").str.contains("keyed by its pack"))
    assert refused.height > 0
    off = {c for c in packs["cell_id"]
           if partition_for(c, PARTITIONS) != partition_for(vin_of_cell(packs, c), PARTITIONS)}
    assert set(refused.get_column("cell_id").drop_nulls()) == off


def vin_of_cell(packs: pl.DataFrame, cell_id: str) -> str:
    return str(packs.filter(pl.col("cell_id") == cell_id).get_column("vin")[0])
