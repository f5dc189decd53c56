"""The meter kind on Kafka: ``chargetracker worker --kind meter`` into PostgreSQL,
SIGKILLed mid-stream and restarted, ends with the batch result.

A small simulated town (meter metadata messages, then readings as NDJSON and Arrow
messages keyed by meter id) is produced to a real broker (Tansu); the batch layer's p97
thresholds are in the store before the stream. One worker process is killed with
SIGKILL after its first commits, the rest of the stream is produced, and a new worker
resumes from the partitions' checkpoints. Daily energy per meter, the spike episodes
and their notifications (one per episode, the episode model) then equal
``meters.summarize`` of the same readings with the same thresholds: nothing lost,
nothing doubled.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from chargetracker.cli import main
from chargetracker.config import KafkaConfig
from chargetracker.kafka import KafkaSink
from chargetracker.kafka.meter_codec import (
    METER,
    decode_readings,
    encode_meters_json,
    encode_readings_arrow,
    encode_readings_json,
)
from chargetracker.kinds.meter import SPIKE_RULE, meter_kind
from chargetracker.meters import MeterConfig, compute_thresholds, summarize
from chargetracker.meters.simulator import SimConfig, load_profiles, simulate
from chargetracker.stores.archive import METER_ARCHIVE, ParquetArchive
from chargetracker.stores.meters import MeterStore
from chargetracker.stores.url import open_store

from .streams import start_worker, stop_worker, wait_checkpoints, wait_progress

PARTITIONS = 4


@functools.lru_cache(maxsize=1)
def _town() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    parts = list(simulate(SimConfig(houses=4, days=1.5, seed=5, spikes_per_house_day=2.0),
                          load_profiles()))
    meters = pl.concat([m for m, _ in parts])
    readings = pl.concat([r for _, r in parts]).sort("ts", "meter_id")
    return meters, readings, compute_thresholds(readings, MeterConfig())


def _produce(cfg: KafkaConfig, frames: list[pl.DataFrame], *, meters: pl.DataFrame | None,
             eos: bool) -> dict[int, int]:
    """Meter messages, then each frame as NDJSON (one message per meter) or Arrow
    (alternately); returns the next offset per partition."""
    with KafkaSink(cfg) as sink:
        if meters is not None:
            sink.send_keyed(encode_meters_json(meters), format="json", type=METER)
        for i, frame in enumerate(frames):
            if i % 2:
                sink.send_keyed(encode_readings_arrow(frame), format="arrow")
            else:
                lines: dict[str, list[bytes]] = {}
                for key, value in encode_readings_json(frame):
                    lines.setdefault(key, []).append(value)
                sink.send_keyed([(k, b"\n".join(v)) for k, v in lines.items()], format="json")
        if eos:
            sink.end_of_stream()
        sink.flush()
        return {p: off + 1 for p, off in sink.delivered.items()}


def test_codec_round_trip_and_bad_messages() -> None:
    _, readings, _ = _town()
    frame = readings.head(50)
    json_msgs = encode_readings_json(frame)
    arrow_msgs = encode_readings_arrow(frame)
    values = [v for _, v in json_msgs] + [v for _, v in arrow_msgs] + [
        b'{"meter_id": "x", "ts": "soon", "power_w": 1}', b'[{"meter_id": "y", "ts": 1.0, '
        b'"power_w": 2.0}, 7]', b"{" * 100 + b"}" * 100, b"\x00\x01",
        b'[{"meter_id": "v", "ts": 5, "power_w": 6}, {"meter_id": "w", "ts": 7.5, "power_w": 1}]',
        b'[{"meter_id": "b", "ts": true, "power_w": 1}]']
    offsets = list(range(len(values)))
    dec = decode_readings(values, [None] * len(values), offsets, source="t")
    # Every reading twice (JSON and Arrow), the good row of the mixed array, the array of two.
    assert dec.frame.height == 2 * frame.height + 3
    assert dec.frame.tail(2).rows() == [("v", 5.0, 6.0, None), ("w", 7.5, 1.0, None)]
    assert_frame_equal(dec.frame.head(frame.height), frame.select(dec.frame.columns))
    assert np.all(np.diff(dec.offsets) >= 0)
    fields = dict(zip(dec.rejected["row"].to_list(), dec.rejected["field"].to_list(), strict=True))
    n = len(json_msgs) + len(arrow_msgs)
    assert fields == {n: "ts", n + 1: "message", n + 2: "message", n + 3: "ct-format", n + 5: "ts"}


def test_meter_worker_sigkill_restart_equals_batch(make_topic: Callable[..., KafkaConfig],
                                                    postgres_url: str, logs: Path) -> None:
    meters, readings, thr = _town()
    ref = summarize(readings, meters=meters, thresholds=thr)
    assert ref.alerts.height >= 5  # the injected spikes are there to be found
    cfg = make_topic(PARTITIONS)
    bounds = np.linspace(0, readings.height, 9).astype(int)
    frames = [readings.slice(int(a), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    with open_store(postgres_url, kinds=[meter_kind()]) as store:
        ms = MeterStore(store)
        ms.put_thresholds(thr)  # the batch layer ran before the stream
        _produce(cfg, frames[:4], meters=meters, eos=False)
        archive = logs / "archive"
        args = ("--kind", "meter", "--archive", str(archive))
        first = start_worker(cfg, postgres_url, logs / "w1.log", *args)
        try:
            wait_progress(store, cfg, PARTITIONS, min_partitions=2, timeout_s=60)
        finally:
            stop_worker(first, kill=True)
        ends = _produce(cfg, frames[4:], meters=None, eos=True)
        second = start_worker(cfg, postgres_url, logs / "w2.log", *args)
        try:
            wait_checkpoints(store, cfg.topic, ends, timeout_s=120, procs=[second])
        finally:
            assert stop_worker(second) == 0, (logs / "w2.log").read_text()
        # The restarted worker resumed partitions from the killed one's checkpoints.
        resumed = re.findall(rf"assigned {re.escape(cfg.topic)}\[\d+\] from offset (\d+)",
                             (logs / "w2.log").read_text(errors="replace"))
        assert resumed and max(int(o) for o in resumed) > 0

        assert_frame_equal(ms.days(), ref.days.sort("meter_id", "date"))
        spikes = ms.alerts(limit=100_000).drop("acked_ts").sort("meter_id", "start_ts")
        assert_frame_equal(spikes, ref.alerts.sort("meter_id", "start_ts"))
        episodes = store.alert_episodes(limit=100_000).filter(pl.col("rule") == SPIKE_RULE)
        assert episodes.height == ref.alerts.height and episodes["notified"].all()
        notes = store.alerts(limit=100_000).filter(pl.col("rule") == SPIKE_RULE)
        assert sorted(zip(notes["cell_id"], notes["ts"], strict=True)) == sorted(
            zip(ref.alerts["meter_id"], ref.alerts["start_ts"], strict=True))
        counted = store.ingest_stats()["by_source"][f"kafka:{cfg.topic}"]
        assert (counted["accepted"], counted["rejected"]) == (readings.height, 0)  # exactly once
        assert ms.meters().height == meters.height

    # The worker's meter archive (by house and day, metadata beside it) holds every accepted
    # reading once, and the batch layer recomputes the stream's days from it alone.
    arch = ParquetArchive(archive, layout=METER_ARCHIVE)
    assert set(arch.groups()) == set(meters.get_column("house_id").to_list())
    kept = arch.read().drop("group", "date").unique().sort("meter_id", "ts")
    assert_frame_equal(kept, readings.select(kept.columns).sort("meter_id", "ts"))
    assert arch.entities().height == meters.height
    daily = logs / "daily.parquet"
    assert main(["meters", "backfill", str(archive), "--out", str(daily),
                 "--thresholds", str(logs / "thr.parquet")]) == 0
    assert_frame_equal(pl.read_parquet(daily), ref.days.sort("meter_id", "date"))
