"""Committed lag, fetched lag and the "caught up" signal (``/readyz``) of a worker,
against a real broker and PostgreSQL; a missing topic gives a hint, or is created on
start when asked to."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chargetracker.config import KafkaConfig, Settings
from chargetracker.errors import SourceError
from chargetracker.kafka.broker import TansuBroker
from chargetracker.kafka.client import partition_count
from chargetracker.kafka.worker import Worker, WorkerOptions
from chargetracker.stores.base import CommitBatch, Store
from chargetracker.stores.url import open_store

from .streams import Stream, fleet_stream, wait_checkpoints
from .test_worker import _send, _wait

PARTITIONS = 3


@pytest.fixture(scope="module")
def tiny() -> Stream:
    return fleet_stream(cells=6, hours=1.0, sample_period_s=30.0, seed=5)


class GatedStore:
    """A real store whose commits wait until ``gate`` is set (holds a batch between
    fetch and commit, the window where fetched and committed lag differ)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.gate = threading.Event()

    def commit(self, batch: CommitBatch) -> None:
        assert self.gate.wait(30), "gate never opened"
        self._store.commit(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if "partition" not in s.labels}


def _ready(port: int) -> tuple[int, str]:
    try:
        r = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_committed_lag_counts_fetched_but_uncommitted_and_readyz_follows(
        make_topic: Callable[..., KafkaConfig], postgres_url: str, tiny: Stream) -> None:
    cfg = make_topic(PARTITIONS)
    half = len(tiny.chunks) // 2
    ends = _send(cfg, tiny, slice(0, half), cells=True)
    n_messages = sum(ends.values())
    with open_store(postgres_url) as real:
        store = GatedStore(real)
        worker = Worker(store, Settings(kafka=cfg), WorkerOptions(  # type: ignore[arg-type]
            commit_interval_s=0.1, metrics_port=0))
        t = threading.Thread(target=worker.run, daemon=True)
        t.start()
        try:
            _wait(lambda: worker.metrics_port is not None, 30, "the metrics server")
            port = worker.metrics_port
            assert port is not None
            # Fetched, not committed (the commit is held): the committed lag still counts
            # every message, the fetched lag has dropped.
            def held() -> bool:
                m = _scrape(port)
                return (m.get("chargetracker_worker_committed_lag_total") == n_messages
                        and m.get("chargetracker_worker_consumer_lag_total", n_messages) < n_messages)

            _wait(held, 30, "fetched-but-uncommitted lags")
            status, body = _ready(port)
            assert status == 503 and "not caught up" in body
            assert _scrape(port)["chargetracker_worker_caught_up"] == 0
            assert not worker.caught_up
            store.gate.set()
            _wait(lambda: _ready(port)[0] == 200, 30, "readyz 200")
            m = _scrape(port)
            assert m["chargetracker_worker_committed_lag_total"] == 0
            assert m["chargetracker_worker_caught_up"] == 1
            wait_checkpoints(real, cfg.topic, ends, timeout_s=5, final=False)
            # New data: not caught up until it is committed, then caught up again.
            ends = _send(cfg, tiny, slice(half, None), eos=True)
            _wait(lambda: worker.metrics.samples_total > 0 and _ready(port)[0] == 200
                  and worker.metrics.messages_total >= sum(ends.values()), 30, "caught up again")
            wait_checkpoints(real, cfg.topic, ends, timeout_s=5)
        finally:
            store.gate.set()
            worker.stop()
            t.join(30)
        assert not t.is_alive()


def test_a_missing_topic_names_the_command_that_creates_it(
        broker: TansuBroker, postgres_url: str) -> None:
    cfg = KafkaConfig(brokers=broker.bootstrap, topic=f"absent-{time.time_ns()}", group_id="g-absent")
    with open_store(postgres_url) as store:
        with pytest.raises(SourceError, match="chargetracker topics create") as info:
            Worker(store, Settings(kafka=cfg), WorkerOptions(until_idle_s=0.5)).run()
        assert "--create-topic" in str(info.value)


def test_create_topic_on_start(broker: TansuBroker, postgres_url: str) -> None:
    cfg = KafkaConfig(brokers=broker.bootstrap, topic=f"fresh-{time.time_ns()}", group_id="g-fresh")
    with open_store(postgres_url) as store:
        worker = Worker(store, Settings(kafka=cfg), WorkerOptions(
            until_idle_s=0.5, create_topic_partitions=5))
        worker.run()
        assert worker.exit_reason == "idle"
    assert partition_count(cfg) == 5


def test_topics_create_and_describe_cli(broker: TansuBroker, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from chargetracker.cli import main

    topic = f"cli-{time.time_ns()}"
    assert main(["topics", "create", "--broker", broker.bootstrap, "--topic", topic,
                 "--partitions", "6", "--dead-letter-topic", f"{topic}-dead"]) == 0
    rows = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert rows == [{"topic": topic, "kind": "cell", "partitions": 6},
                    {"topic": f"{topic}-dead", "kind": "cell", "partitions": 1}]
    # Existing: left as is, said so.
    assert main(["topics", "create", "--broker", broker.bootstrap, "--topic", topic,
                 "--partitions", "3"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["partitions"] == 6 and "exists with 6" in out.err
    assert main(["topics", "describe", "--broker", broker.bootstrap, "--topic", topic]) == 0
    assert json.loads(capsys.readouterr().out)["partitions"] == 6
    assert main(["topics", "create", "--broker", broker.bootstrap, "--kind", "nope"]) == 2
    assert "unknown telemetry kind" in capsys.readouterr().err
