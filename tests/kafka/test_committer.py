"""The pipelined committer: commits in order on a writer thread, failures sticky."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargetracker.config import KafkaConfig
from chargetracker.errors import StoreError
from chargetracker.kafka.committer import Committer
from chargetracker.kafka.metrics import WorkerMetrics
from chargetracker.kafka.processing import Collected
from chargetracker.kinds import cell_kind
from chargetracker.stores.base import Checkpoint, CommitBatch
from chargetracker.stores.url import open_store


def batch(offset: int) -> Collected:
    out = Collected()
    out.commits.append(CommitBatch(checkpoints=[Checkpoint("worker:t:0", b"s", {"offset": offset})]))
    return out


def test_pipelined_commits_land_in_order_and_a_failure_is_sticky(tmp_path: Path) -> None:
    store = open_store(f"duckdb:///{tmp_path / 'w.duckdb'}")
    c = Committer(store, cell_kind(), KafkaConfig(topic="t"), counter="kafka:t",
                  metrics=WorkerMetrics("t", "g"), groups={}, archive=None, pipeline=True)
    first = batch(10)
    assert c.submit(first, None) == []       # in flight, nothing known durable yet
    assert c.in_flight == 1
    second = batch(20)
    assert c.submit(second, None) == [first]  # the first is durable before the second starts
    assert c.wait() == [second] and c.in_flight == 0
    assert store.load_checkpoint("worker:t:0").position["offset"] == 20
    store.close()
    c.submit(batch(30), None)                 # fails on the writer thread ...
    with pytest.raises(StoreError):
        c.wait()                              # ... reported to the worker's thread
    with pytest.raises(StoreError):
        c.submit(batch(40), None)             # no batch is committed over the gap
    assert c.in_flight == 0
    c.discard()                               # recovery: the worker replays from the store
    assert c.failed is None
    c.close()
