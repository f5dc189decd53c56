"""Worker metrics: counters, consumer lag and latency, served as Prometheus text.

``GET /metrics`` on ``--metrics-port`` returns (names prefixed ``chargetracker_worker_``):

========================================  =====================================================
``messages_total``                        Kafka messages processed (committed)
``samples_total``                         samples accepted by the engine (committed)
``rejected_total``                        dead letters written
``commits_total``                         store transactions
``commit_seconds_sum`` / ``_count``       time spent in store commits
``samples_per_second``                    accepted samples/s over the last 10 s
``messages_per_second``                   messages/s over the last 10 s
``consumer_lag{partition}``               messages not yet *fetched* by this worker (high
                                          watermark - fetched position)
``consumer_lag_total``                    sum over assigned partitions
``committed_lag{partition}``              messages not yet *committed* to the store (high
                                          watermark - the store checkpoint's offset): what
                                          is still to do; fetched-but-unprocessed counts
``committed_lag_total``                   sum over assigned partitions
``phase_seconds{phase}``                  wall time per phase: poll, decode, engine,
                                          combine, archive, store (the worker's profile)
``phase_cpu_seconds{phase}``              the main thread's CPU time per phase (robust
                                          on a loaded machine; the store phase excludes
                                          the database server's own CPU)
``caught_up``                             1 when every assigned partition is committed to
                                          its end and nothing is buffered, else 0
``assigned_partitions``                   partitions this worker owns
``latency_seconds{quantile}``             produce time (Kafka timestamp) -> committed, over
                                          the last 10,000 messages (0.5, 0.95, 0.99)
``last_commit_timestamp_seconds``         wall clock of the last commit
========================================  =====================================================

every one labelled ``topic`` and ``group``, plus the process families shared by every
ChargeTracker process (:mod:`chargetracker.prometheus`, docs/operations.md). Exposition
is ``prometheus_client``'s; ``GET /healthz`` answers ``ok`` (the process is alive);
``GET /readyz`` answers 200 ``caught up`` or 503 with the reason (joining the group,
committed lag, buffered messages): a load balancer's or an orchestrator's readiness
probe, and a replay script's "done" test. The same accepted/rejected
counts also reach the store's ingest counters (source ``kafka:<topic>``) in each
commit, exactly once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import numpy as np
from prometheus_client import make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..prometheus import new_registry
from ..prometheus import render as render_registry

__all__ = ["WorkerMetrics", "MetricsServer"]

_P = "chargetracker_worker_"
_RATE_WINDOW_S = 10.0
#: Phases of a worker's work, in order.
PHASES = ("poll", "decode", "engine", "combine", "archive", "store")


class WorkerMetrics:
    """Thread-safe metric values of one worker."""

    def __init__(self, topic: str, group_id: str) -> None:
        self.topic = topic
        self.group_id = group_id
        self._lock = threading.Lock()
        self.messages_total = 0
        self.samples_total = 0
        self.rejected_total = 0
        self.commits_total = 0
        self.commit_seconds = 0.0
        self.last_commit_wall: float | None = None
        #: Wall clock when the first message was received (throughput = samples over
        #: last_commit_wall - first_message_wall for a finite replay).
        self.first_message_wall: float | None = None
        #: Process CPU seconds when the first message arrived (start-up excluded from
        #: the streaming CPU cost).
        self.first_message_cpu_s: float | None = None
        #: Seconds per phase of the work (poll, decode, engine, combine, archive,
        #: store): where a worker's time goes.
        #: Keys exist from the start: the processor adds to them without the lock, and
        #: a scrape copying the dict must never see it change size.
        self.phase_seconds: dict[str, float] = {
            f"{pre}{p}": 0.0 for p in PHASES for pre in ("", "cpu:")}
        self.lag: dict[int, int] = {}
        self.committed_lag: dict[int, int] = {}
        #: Readiness: (caught up?, reason when not), set by the worker's loop.
        self.ready: tuple[bool, str] = (False, "starting")
        self._window: deque[tuple[float, int, int]] = deque()
        self._latency = np.zeros(10_000)
        self._lat_n = 0
        self._lat_pos = 0

    def record_commit(self, *, messages: int, samples: int, rejected: int, seconds: float,
                      latencies_s: np.ndarray | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            self.messages_total += messages
            self.samples_total += samples
            self.rejected_total += rejected
            self.commits_total += 1
            self.commit_seconds += seconds
            self.last_commit_wall = time.time()
            self._window.append((now, messages, samples))
            while self._window and self._window[0][0] < now - _RATE_WINDOW_S:
                self._window.popleft()
            if latencies_s is not None and len(latencies_s):
                lat = latencies_s[-len(self._latency):]
                k = len(lat)
                end = self._lat_pos + k
                if end <= len(self._latency):
                    self._latency[self._lat_pos:end] = lat
                else:
                    first = len(self._latency) - self._lat_pos
                    self._latency[self._lat_pos:] = lat[:first]
                    self._latency[: k - first] = lat[first:]
                self._lat_pos = end % len(self._latency)
                self._lat_n = min(len(self._latency), self._lat_n + k)

    def set_lag(self, lag: dict[int, int], committed: dict[int, int] | None = None) -> None:
        """Fetched lag and committed lag (messages) per assigned partition."""
        with self._lock:
            self.lag = dict(lag)
            self.committed_lag = dict(lag if committed is None else committed)

    def add_phase(self, phase: str, seconds: float, cpu_s: float | None = None) -> None:
        """Add wall seconds (and this thread's CPU seconds) to a phase of the work."""
        with self._lock:
            p = self.phase_seconds
            p[phase] = p.get(phase, 0.0) + seconds
            if cpu_s is not None:
                p[f"cpu:{phase}"] = p.get(f"cpu:{phase}", 0.0) + cpu_s

    def set_ready(self, ready: bool, reason: str = "") -> None:
        with self._lock:
            self.ready = (ready, reason)

    def rates(self) -> tuple[float, float]:
        """(messages/s, samples/s) over the last 10 s."""
        now = time.monotonic()
        with self._lock:
            items = [w for w in self._window if w[0] >= now - _RATE_WINDOW_S]
        if not items:
            return 0.0, 0.0
        span = max(now - items[0][0], 1.0)
        return sum(w[1] for w in items) / span, sum(w[2] for w in items) / span

    def latency_quantiles(self) -> dict[float, float]:
        with self._lock:
            data = self._latency[: self._lat_n].copy()
        if not len(data):
            return {}
        return {q: float(np.quantile(data, q)) for q in (0.5, 0.95, 0.99)}

    def render(self) -> str:
        """The Prometheus text exposition of every metric (and the process families)."""
        return render_registry(self.registry)

    @property
    def registry(self) -> Any:
        reg = getattr(self, "_registry", None)
        if reg is None:
            reg = self._registry = new_registry("worker")
            reg.register(_WorkerCollector(self))
        return reg


class _WorkerCollector(Collector):
    """Reads a :class:`WorkerMetrics` at scrape time."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.m = metrics

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        m = self.m
        labels = ["topic", "group"]
        values = [m.topic, m.group_id]
        mps, sps = m.rates()
        quantiles = m.latency_quantiles()
        with m._lock:
            counters = {"messages": m.messages_total, "samples": m.samples_total,
                        "rejected": m.rejected_total, "commits": m.commits_total}
            commit_s, commits = m.commit_seconds, m.commits_total
            lag = dict(m.lag)
            committed = dict(m.committed_lag)
            ready = m.ready[0]
            phases = dict(m.phase_seconds)
            last = m.last_commit_wall
        helps = {"messages": "Kafka messages processed (committed).",
                 "samples": "Samples accepted by the engine (committed).",
                 "rejected": "Dead letters written.", "commits": "Store transactions."}
        for key, value in counters.items():
            c = CounterMetricFamily(f"{_P}{key}", helps[key], labels=labels)
            c.add_metric(values, value)
            yield c
        summary = Metric(f"{_P}commit_seconds", "Time spent in store commits, s.", "summary")
        summary.add_sample(f"{_P}commit_seconds_sum", dict(zip(labels, values, strict=True)),
                           commit_s)
        summary.add_sample(f"{_P}commit_seconds_count", dict(zip(labels, values, strict=True)),
                           commits)
        yield summary
        yield _gauge("assigned_partitions", "Partitions this worker owns.", labels, values,
                     len(lag))
        for name, data, what in (("consumer_lag", lag, "fetched by this worker"),
                                 ("committed_lag", committed, "committed to the store")):
            per = GaugeMetricFamily(f"{_P}{name}", f"Messages of the partition not yet {what} "
                                    "(high watermark - position).", labels=[*labels, "partition"])
            for p, v in sorted(data.items()):
                per.add_metric([*values, str(p)], v)
            yield per
            yield _gauge(f"{name}_total", f"Messages not yet {what}, summed over assigned "
                         "partitions.", labels, values, sum(data.values()))
        ph = CounterMetricFamily(f"{_P}phase_seconds", "Wall seconds spent per phase of the "
                                 "work (poll, decode, engine, combine, archive, store).",
                                 labels=[*labels, "phase"])
        pc = CounterMetricFamily(f"{_P}phase_cpu_seconds", "CPU seconds of the worker's main "
                                 "thread per phase of the work.", labels=[*labels, "phase"])
        for name, sec in sorted(phases.items()):
            if name.startswith("cpu:"):
                pc.add_metric([*values, name[4:]], sec)
            else:
                ph.add_metric([*values, name], sec)
        yield ph
        yield pc
        yield _gauge("caught_up", "1 when every assigned partition is committed to its end "
                     "and nothing is buffered.", labels, values, 1.0 if ready else 0.0)
        yield _gauge("messages_per_second", "Messages/s over the last 10 s.", labels, values, mps)
        yield _gauge("samples_per_second", "Samples/s over the last 10 s.", labels, values, sps)
        lat = Metric(f"{_P}latency_seconds", "Produce time (Kafka timestamp) to committed, s, "
                     "over the last 10,000 messages.", "summary")
        for q, qv in quantiles.items():
            lat.add_sample(f"{_P}latency_seconds",
                           {**dict(zip(labels, values, strict=True)), "quantile": str(q)}, qv)
        yield lat
        if last is not None:
            yield _gauge("last_commit_timestamp_seconds", "Wall clock of the last commit, s "
                         "since the epoch.", labels, values, last)


def _gauge(name: str, help_: str, labels: list[str], values: list[str],
           value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(f"{_P}{name}", help_, labels=labels)
    g.add_metric(values, value)
    return g


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib API
        pass


class MetricsServer:
    """``/metrics`` (``prometheus_client``'s WSGI app), ``/healthz`` and ``/readyz`` on a
    background thread."""

    def __init__(self, metrics: WorkerMetrics, host: str = "127.0.0.1", port: int = 0) -> None:
        prom = make_wsgi_app(metrics.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/healthz":
                start_response("200 OK", [("Content-Type", "text/plain")])
                return [b"ok\n"]
            if path == "/readyz":
                with metrics._lock:
                    ready, reason = metrics.ready
                if ready:
                    start_response("200 OK", [("Content-Type", "text/plain")])
                    return [b"caught up\n"]
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [f"not caught up: {reason}\n".encode()]
            if path != "/metrics":
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"not found\n"]
            return prom(environ, start_response)  # type: ignore[no-any-return]

        self._server = make_server(host, port, app, _ThreadingWSGIServer,
                                   handler_class=_QuietHandler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="ct-metrics",
                                        daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
