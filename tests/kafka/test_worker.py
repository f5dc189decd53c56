"""One worker (in this process) against a real broker and a real PostgreSQL server.

Poison messages become dead letters naming field and reason while the stream goes on;
a restarted worker resumes from the store's checkpoint without counting anything
twice; ``until_idle`` ends a stream without a marker; rows on the wrong partition are
refused; metrics are served; the worker survives a PostgreSQL restart.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import polars as pl
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from chargetracker.config import KafkaConfig, Settings
from chargetracker.engine import summarize
from chargetracker.kafka import KafkaSink, codec
from chargetracker.kafka.client import ensure_topic
from chargetracker.kafka.partitioner import partition_for
from chargetracker.kafka.worker import Worker, WorkerOptions, checkpoint_name
from chargetracker.stores.base import Store
from chargetracker.stores.url import open_store

from .streams import (
    Stream,
    assert_equal_to_batch,
    fleet_stream,
    produce_poison,
    wait_checkpoints,
)

PARTITIONS = 4


@pytest.fixture(scope="module")
def small() -> Stream:
    return fleet_stream(cells=24, hours=3.0, sample_period_s=15.0, seed=11)


@contextmanager
def running(store: Store, cfg: KafkaConfig, **opts: object) -> Iterator[Worker]:
    """A worker on a thread; stopped (gracefully) on exit."""
    worker = Worker(store, Settings(kafka=cfg), WorkerOptions(commit_interval_s=0.1, **opts))  # type: ignore[arg-type]
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    try:
        yield worker
    finally:
        worker.stop()
        t.join(30)
        assert not t.is_alive(), "worker did not stop"
        if errors:
            raise errors[0]


def _send(cfg: KafkaConfig, stream: Stream, chunks: slice, *, cells: bool = False,
          eos: bool = False) -> dict[int, int]:
    """Produce chunks (alternately Arrow and JSON); returns the next offset per partition."""
    with KafkaSink(cfg) as sink:
        if cells:
            sink.send_cells(stream.cells)
        for i, chunk in enumerate(stream.chunks[chunks]):
            sink.send(chunk, format="json" if i % 2 else "arrow")
        if eos:
            sink.end_of_stream()
        sink.flush()
        return {p: off + 1 for p, off in sink.delivered.items()}


def _wait(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_poison_messages_become_dead_letters_and_the_stream_goes_on(
        make_topic: Callable[..., KafkaConfig], postgres_url: str, small: Stream) -> None:
    cfg = make_topic(PARTITIONS)
    dlq = f"{cfg.topic}-dead"
    ensure_topic(cfg, dlq, partitions=1)
    cfg = replace(cfg, dead_letter_topic=dlq)
    half = len(small.chunks) // 2
    _send(cfg, small, slice(0, half), cells=True)
    victim = small.cells.get_column("cell_id")[3]
    poison = produce_poison(cfg, PARTITIONS, victim)
    ends = _send(cfg, small, slice(half, None), eos=True)
    with open_store(postgres_url) as store:
        with running(store, cfg, metrics_port=0) as worker:
            _wait(lambda: worker.metrics.commits_total > 0, 30, "a commit")
            port = worker.metrics_port
            assert port
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            assert "chargetracker_worker_consumer_lag{" in text
            assert "chargetracker_worker_samples_total" in text
            wait_checkpoints(store, cfg.topic, ends, timeout_s=30)
        assert_equal_to_batch(store, small.frame, small.cells)
        letters = store.dead_letters(limit=10_000)
        bad_part = partition_for(victim, PARTITIONS)
        for field, reason in poison:
            hit = letters.filter((pl.col("field") == field)
                                 & pl.col("reason").str.contains(reason, literal=True)
                                 & (pl.col("source") == f"kafka:{cfg.topic}/{bad_part}"))
            assert hit.height == 1, (field, reason, letters.select("field", "reason").to_dicts()[:20])
            assert hit.get_column("row")[0] >= 0     # the Kafka offset of the message
        expected = summarize(small.frame, cells=small.cells)
        assert letters.height == expected.rejected.height + len(poison)
        assert worker.metrics.rejected_total == letters.height
        # The dead-letter topic got every dead letter as JSON.
        c = Consumer({"bootstrap.servers": cfg.brokers, "group.id": f"{dlq}-reader"})
        c.assign([TopicPartition(dlq, 0, OFFSET_BEGINNING)])
        got = 0
        deadline = time.monotonic() + 20
        while got < letters.height and time.monotonic() < deadline:
            got += sum(1 for m in c.consume(1000, 0.5) if m.error() is None)
        c.close()
        assert got == letters.height


def test_restart_resumes_from_the_store_checkpoint(
        make_topic: Callable[..., KafkaConfig], postgres_url: str, small: Stream) -> None:
    cfg = make_topic(PARTITIONS)
    half = len(small.chunks) // 2
    ends = _send(cfg, small, slice(0, half), cells=True)
    with open_store(postgres_url) as store:
        with running(store, cfg):
            wait_checkpoints(store, cfg.topic, ends, timeout_s=30, final=False)
        first = {p: store.load_checkpoint(checkpoint_name(cfg.topic, p)) for p in range(PARTITIONS)}
        assert all(cp is not None and not cp.position["final"] for cp in first.values())
        ends = _send(cfg, small, slice(half, None), eos=True)
        with running(store, cfg) as worker:
            wait_checkpoints(store, cfg.topic, ends, timeout_s=30)
        # The second worker started at the stored offsets: it read only the second half.
        n_second = sum(c.height for c in small.chunks[half:])
        assert worker.metrics.samples_total <= n_second
        assert_equal_to_batch(store, small.frame, small.cells)
        expected = summarize(small.frame, cells=small.cells)
        stats = store.ingest_stats()
        assert stats["by_source"][f"kafka:{cfg.topic}"]["accepted"] == \
            small.frame.height - expected.rejected.height


def test_until_idle_flushes_a_stream_without_marker(
        make_topic: Callable[..., KafkaConfig], postgres_url: str, small: Stream) -> None:
    cfg = make_topic(PARTITIONS)
    ends = _send(cfg, small, slice(None), cells=True)
    with open_store(postgres_url) as store:
        worker = Worker(store, Settings(kafka=cfg), WorkerOptions(until_idle_s=1.0, store_raw=False))
        worker.run()
        assert worker.exit_reason == "idle"
        positions = wait_checkpoints(store, cfg.topic, ends, timeout_s=1)
        assert all(pos["final"] for pos in positions.values())
        assert_equal_to_batch(store, small.frame, small.cells)
        assert store.ingest_stats()["measurements_stored"] == 0     # --no-raw


def test_rows_on_the_wrong_partition_are_refused(
        make_topic: Callable[..., KafkaConfig], postgres_url: str) -> None:
    cfg = make_topic(PARTITIONS)
    right = partition_for("cell-x", PARTITIONS)
    wrong = (right + 1) % PARTITIONS
    prod = Producer({"bootstrap.servers": cfg.brokers})
    row = b'{"cell_id": "cell-x", "ts": 1767225600.0, "voltage_v": 3.7, "current_a": 1.0}'
    # What a librdkafka producer with its default (CRC32) partitioner might do.
    prod.produce(cfg.topic, value=row, key=b"cell-x", partition=wrong,
                 headers=[(codec.FORMAT_HEADER, b"json")])
    prod.produce(cfg.topic, value=row, key=b"cell-x", partition=right,
                 headers=[(codec.FORMAT_HEADER, b"json")])
    assert prod.flush(10) == 0
    with open_store(postgres_url) as store:
        Worker(store, Settings(kafka=cfg), WorkerOptions(until_idle_s=1.0)).run()
        letters = store.dead_letters()
        assert letters.height == 1
        assert letters.get_column("field")[0] == "cell_id"
        assert f"belongs to partition {right}" in letters.get_column("reason")[0]
        assert store.ingest_stats()["measurements_stored"] == 1


def test_worker_rides_out_a_postgresql_outage(
        make_topic: Callable[..., KafkaConfig], small: Stream, caplog: pytest.LogCaptureFixture) -> None:
    from tests.pg import start_postgres

    caplog.set_level(logging.WARNING, logger="chargetracker.kafka.worker")
    server = start_postgres()
    try:
        url = server.create_database()
        cfg = make_topic(PARTITIONS)
        half = len(small.chunks) // 2
        ends = _send(cfg, small, slice(0, half), cells=True)
        # A short pool timeout: commits fail fast while the server is down.
        with open_store(url + "?pool_timeout=0.5") as store:
            with running(store, cfg, retry_initial_s=0.2, retry_max_s=1.0):
                wait_checkpoints(store, cfg.topic, ends, timeout_s=30, final=False)
                server.stop()
                ends = _send(cfg, small, slice(half, None), eos=True)
                _wait(lambda: "store unavailable" in caplog.text, 30, "the outage to be noticed")
                time.sleep(1.0)
                server.start()
                wait_checkpoints(store, cfg.topic, ends, timeout_s=60)
            assert_equal_to_batch(store, small.frame, small.cells)
            expected = summarize(small.frame, cells=small.cells)
            assert store.ingest_stats()["by_source"][f"kafka:{cfg.topic}"]["accepted"] == \
                small.frame.height - expected.rejected.height
    finally:
        server.cleanup()
