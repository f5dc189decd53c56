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
``consumer_lag{partition}``               messages behind the partition's high watermark
``consumer_lag_total``                    sum over assigned partitions
``assigned_partitions``                   partitions this worker owns
``latency_seconds{quantile}``             produce time (Kafka timestamp) -> committed, over
                                          the last 10,000 messages (0.5, 0.95, 0.99)
``last_commit_timestamp_seconds``         wall clock of the last commit
========================================  =====================================================

``GET /healthz`` answers ``ok``. The same accepted/rejected counts also reach the store's
ingest counters (source ``kafka:<topic>``) in each commit, exactly once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

__all__ = ["WorkerMetrics", "MetricsServer"]

_P = "chargetracker_worker_"
_RATE_WINDOW_S = 10.0


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
        self.lag: dict[int, int] = {}
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

    def set_lag(self, lag: dict[int, int]) -> None:
        with self._lock:
            self.lag = dict(lag)

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
        """The Prometheus text exposition of every metric."""
        mps, sps = self.rates()
        lab = f'topic="{_esc(self.topic)}",group="{_esc(self.group_id)}"'
        with self._lock:
            lines = [
                f"# TYPE {_P}messages_total counter", f"{_P}messages_total{{{lab}}} {self.messages_total}",
                f"# TYPE {_P}samples_total counter", f"{_P}samples_total{{{lab}}} {self.samples_total}",
                f"# TYPE {_P}rejected_total counter", f"{_P}rejected_total{{{lab}}} {self.rejected_total}",
                f"# TYPE {_P}commits_total counter", f"{_P}commits_total{{{lab}}} {self.commits_total}",
                f"# TYPE {_P}commit_seconds summary",
                f"{_P}commit_seconds_sum{{{lab}}} {self.commit_seconds:.6f}",
                f"{_P}commit_seconds_count{{{lab}}} {self.commits_total}",
                f"# TYPE {_P}assigned_partitions gauge", f"{_P}assigned_partitions{{{lab}}} {len(self.lag)}",
                f"# TYPE {_P}consumer_lag gauge",
            ]
            lines += [f'{_P}consumer_lag{{{lab},partition="{p}"}} {v}' for p, v in sorted(self.lag.items())]
            lines += [f"# TYPE {_P}consumer_lag_total gauge",
                      f"{_P}consumer_lag_total{{{lab}}} {sum(self.lag.values())}"]
            last = self.last_commit_wall
        lines += [f"# TYPE {_P}messages_per_second gauge", f"{_P}messages_per_second{{{lab}}} {mps:.3f}",
                  f"# TYPE {_P}samples_per_second gauge", f"{_P}samples_per_second{{{lab}}} {sps:.3f}",
                  f"# TYPE {_P}latency_seconds summary"]
        lines += [f'{_P}latency_seconds{{{lab},quantile="{q}"}} {v:.6f}'
                  for q, v in self.latency_quantiles().items()]
        if last is not None:
            lines += [f"# TYPE {_P}last_commit_timestamp_seconds gauge",
                      f"{_P}last_commit_timestamp_seconds{{{lab}}} {last:.3f}"]
        return "\n".join(lines) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsServer:
    """``/metrics`` (Prometheus text) and ``/healthz`` on a background thread."""

    def __init__(self, metrics: WorkerMetrics, host: str = "127.0.0.1", port: int = 0) -> None:
        m = metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path.split("?")[0] == "/metrics":
                    body = m.render().encode()
                    ctype = "text/plain; version=0.0.4; charset=utf-8"
                elif self.path.split("?")[0] == "/healthz":
                    body, ctype = b"ok\n", "text/plain"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="ct-metrics",
                                        daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
