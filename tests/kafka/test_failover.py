"""Two worker processes, one SIGKILLed mid-stream: nothing lost, nothing counted twice.

A simulated fleet (200 cells on a 20-minute protocol, 6 h at 10 s: ~430 k samples,
~3,300 cycles, with duplicate, out-of-order, spike and dropout faults) is streamed
through a real Kafka-protocol broker (Tansu) to two ``chargetracker worker`` processes
writing to a real PostgreSQL server. One worker is killed with SIGKILL while the
producer is still sending; the survivor (and, in the second variant, a restarted
worker) takes its partitions over from their last commit. At the end every step and
cycle in PostgreSQL equals ``engine.summarize`` of the same samples exactly, and the
ingest counters, raw rows and dead letters count every sample exactly once.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chargetracker.config import KafkaConfig
from chargetracker.engine import summarize
from chargetracker.kafka import KafkaSink
from chargetracker.stores.url import open_store

from .streams import (
    Stream,
    assert_equal_to_batch,
    fleet_stream,
    produce_poison,
    start_worker,
    stop_worker,
    wait_checkpoints,
    wait_progress,
)

PARTITIONS = 8


@functools.lru_cache(maxsize=1)
def _stream() -> Stream:
    return fleet_stream(cells=200, hours=6.0, sample_period_s=10.0)


def _owned(log: Path, topic: str) -> set[int]:
    """Partitions a worker owns according to its log (assigned minus revoked)."""
    owned: set[int] = set()
    if not log.exists():
        return owned
    pat = re.compile(rf"(assigned|revoked|lost) {re.escape(topic)}\[(\d+)\]")
    for m in pat.finditer(log.read_text(errors="replace")):
        (owned.add if m.group(1) == "assigned" else owned.discard)(int(m.group(2)))
    return owned


def _resumed(log: Path, topic: str) -> dict[int, int]:
    """Partition -> offset a worker was assigned from a stored checkpoint."""
    pat = re.compile(rf"assigned {re.escape(topic)}\[(\d+)\] from offset (\d+)")
    return {int(m.group(1)): int(m.group(2)) for m in pat.finditer(log.read_text(errors="replace"))}


def _wait_split(logs: list[Path], topic: str, timeout_s: float) -> None:
    """Wait until every worker owns partitions and together they own all of them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        owned = [_owned(p, topic) for p in logs]
        if all(owned) and set().union(*owned) == set(range(PARTITIONS)):
            return
        time.sleep(0.1)
    raise AssertionError(f"partitions not split over {len(logs)} workers: "
                         f"{[_owned(p, topic) for p in logs]}")


@pytest.mark.slow
@pytest.mark.parametrize("restart", [False, True], ids=["survivor-takes-over", "killed-worker-restarted"])
def test_sigkill_one_of_two_workers(make_topic: Callable[..., KafkaConfig], postgres_url: str,
                                    logs: Path, restart: bool) -> None:
    stream = _stream()
    cfg = make_topic(PARTITIONS)
    log_a, log_b, log_c = logs / "a.log", logs / "b.log", logs / "c.log"
    procs = [start_worker(cfg, postgres_url, log_a), start_worker(cfg, postgres_url, log_b)]
    a, b = procs
    sink = KafkaSink(cfg)
    try:
        sink.send_cells(stream.cells)
        half = len(stream.chunks) // 2
        for i, chunk in enumerate(stream.chunks[:half]):
            sink.send(chunk, format="json" if i % 3 == 1 else "arrow")
        sink.flush()
        poison = produce_poison(cfg, PARTITIONS, stream.cells.get_column("cell_id")[0])
        _wait_split([log_a, log_b], cfg.topic, timeout_s=30)

        ends: dict[int, int] = {}

        def produce_rest() -> None:
            for i, chunk in enumerate(stream.chunks[half:]):
                sink.send(chunk, format="json" if i % 3 == 0 else "arrow")
                sink.flush()
                time.sleep(0.15)
            ends.update({p: off + 1 for p, off in sink.end_of_stream().items()})

        producer = threading.Thread(target=produce_rest)
        with open_store(postgres_url) as store:
            # Both workers have committed their partitions' first batches.
            wait_progress(store, cfg, PARTITIONS, min_partitions=PARTITIONS, timeout_s=60)
            owned_by_a = _owned(log_a, cfg.topic)
            producer.start()
            time.sleep(0.3)
            assert stop_worker(a, kill=True) == -9     # mid-stream, no goodbye
            if restart:
                c = start_worker(cfg, postgres_url, log_c)
                procs.append(c)
            producer.join(60)
            assert not producer.is_alive()
            live = [p for p in procs if p is not a]
            wait_checkpoints(store, cfg.topic, ends, timeout_s=90, procs=live)
            # A's partitions were taken over (by B or the restarted worker, as the group
            # decided) from A's checkpoints, not from the beginning.
            resumed = _resumed(log_b, cfg.topic)
            if restart:
                _wait_split([log_b, log_c], cfg.topic, timeout_s=30)  # the restarted one works
                resumed.update(_resumed(log_c, cfg.topic))
            assert owned_by_a <= set(resumed), (owned_by_a, resumed)
            assert all(resumed[p] > 0 for p in owned_by_a)

            frame = stream.frame
            assert_equal_to_batch(store, frame, stream.cells)
            expected = summarize(frame, cells=stream.cells)
            accepted = frame.height - expected.rejected.height
            stats = store.ingest_stats()
            counted = stats["by_source"][f"kafka:{cfg.topic}"]
            assert counted["accepted"] == accepted                  # counted once
            assert stats["measurements_stored"] == accepted
            assert counted["rejected"] == expected.rejected.height + len(poison)
            assert stats["dead_letters_stored"] == expected.rejected.height + len(poison)
            letters = store.dead_letters(limit=10_000)
            for field, reason in poison:
                hit = letters.filter((letters["field"] == field)
                                     & letters["reason"].str.contains(reason, literal=True))
                assert hit.height >= 1, (field, reason)
        for p in live:
            assert stop_worker(p) == 0
    finally:
        for p in procs:
            stop_worker(p, kill=True, timeout_s=10)
        sink.close(timeout_s=5)
