"""Prometheus metrics, text exposition format 0.0.4, written without a client library.

Request metrics are kept in process (per route *template*, never the raw path, so the
label set stays bounded); ingest totals and the pipeline lag are read from the store at
scrape time, so they cover every process writing to it (runner and API alike).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Metrics", "MetricsMiddleware", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Request latency buckets, s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
#: Ingest batch buckets (time in the pipeline per batch), s.
BATCH_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Histogram:
    __slots__ = ("buckets", "counts", "sum", "count")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.sum += value
        self.count += 1


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_esc(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _num(v: float | int) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


class Metrics:
    """Thread-safe in-process counters and histograms of the API."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str], _Histogram] = {}
        self._ingested: dict[str, int] = {}
        self._rejected: dict[str, int] = {}
        self._batches: dict[str, _Histogram] = {}
        self.started = time.time()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, route, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._latency.get((method, route))
            if hist is None:
                hist = self._latency[(method, route)] = _Histogram(LATENCY_BUCKETS)
            hist.observe(seconds)

    def observe_ingest(self, fmt: str, accepted: int, rejected: int, seconds: float) -> None:
        with self._lock:
            self._ingested[fmt] = self._ingested.get(fmt, 0) + int(accepted)
            self._rejected[fmt] = self._rejected.get(fmt, 0) + int(rejected)
            hist = self._batches.get(fmt)
            if hist is None:
                hist = self._batches[fmt] = _Histogram(BATCH_BUCKETS)
            hist.observe(seconds)

    # -- exposition -----------------------------------------------------------------
    def render(self, store_stats: Mapping[str, Any] | None, store_up: bool) -> str:
        """The whole exposition text; ``store_stats`` from ``Store.ingest_stats()``."""
        out: list[str] = []

        def family(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")

        family("chargetracker_store_up", "gauge", "1 when the store answered the last scrape.")
        out.append(f"chargetracker_store_up {1 if store_up else 0}")
        if store_stats is not None:
            s = store_stats
            family("chargetracker_samples_ingested_total", "counter",
                   "Samples accepted into the store, all sources and processes.")
            out.append(f"chargetracker_samples_ingested_total {int(s.get('samples_total') or 0)}")
            family("chargetracker_samples_rejected_total", "counter",
                   "Samples rejected (kept as dead letters), all sources and processes.")
            out.append(f"chargetracker_samples_rejected_total {int(s.get('rejected_total') or 0)}")
            family("chargetracker_ingest_rate_samples_per_second", "gauge",
                   "Accepted samples per second over the last minute of commits.")
            out.append(f"chargetracker_ingest_rate_samples_per_second {_num(float(s.get('samples_per_s') or 0.0))}")
            family("chargetracker_pipeline_lag_seconds", "gauge",
                   "Wall-clock now minus the timestamp of the newest stored sample, s "
                   "(NaN when nothing is stored).")
            lag = s.get("lag_s")
            out.append(f"chargetracker_pipeline_lag_seconds {_num(float('nan') if lag is None else float(lag))}")
            family("chargetracker_last_commit_age_seconds", "gauge",
                   "Seconds since the last commit to the store (NaN before the first).")
            last = s.get("last_commit_wall")
            age = float("nan") if last is None else max(0.0, time.time() - float(last))
            out.append(f"chargetracker_last_commit_age_seconds {_num(age)}")
            family("chargetracker_cells", "gauge", "Cells known to the store.")
            out.append(f"chargetracker_cells {int(s.get('cells') or 0)}")
            family("chargetracker_dead_letters_stored", "gauge", "Dead-letter rows in the store.")
            out.append(f"chargetracker_dead_letters_stored {int(s.get('dead_letters_stored') or 0)}")
        with self._lock:
            requests = dict(self._requests)
            latency = {k: (list(h.counts), h.sum, h.count, h.buckets) for k, h in self._latency.items()}
            ingested = dict(self._ingested)
            rejected = dict(self._rejected)
            batches = {k: (list(h.counts), h.sum, h.count, h.buckets) for k, h in self._batches.items()}
        family("chargetracker_api_samples_ingested_total", "counter",
               "Samples accepted through this API process, by body format.")
        for fmt, n in sorted(ingested.items()):
            out.append(f"chargetracker_api_samples_ingested_total{_labels([('format', fmt)])} {n}")
        family("chargetracker_api_samples_rejected_total", "counter",
               "Samples rejected through this API process, by body format.")
        for fmt, n in sorted(rejected.items()):
            out.append(f"chargetracker_api_samples_rejected_total{_labels([('format', fmt)])} {n}")
        family("chargetracker_api_ingest_batch_seconds", "histogram",
               "Time a batch spends in the pipeline (engine + commit), s.")
        for fmt, hist in sorted(batches.items()):
            _histogram(out, "chargetracker_api_ingest_batch_seconds", [("format", fmt)], *hist)
        family("chargetracker_http_requests_total", "counter",
               "HTTP requests by method, route template and status.")
        for (method, route, status), n in sorted(requests.items()):
            out.append("chargetracker_http_requests_total"
                       f"{_labels([('method', method), ('route', route), ('status', status)])} {n}")
        family("chargetracker_http_request_duration_seconds", "histogram",
               "HTTP request latency by method and route template, s.")
        for (method, route), hist in sorted(latency.items()):
            _histogram(out, "chargetracker_http_request_duration_seconds",
                       [("method", method), ("route", route)], *hist)
        family("chargetracker_process_start_time_seconds", "gauge",
               "Start time of this API process since the epoch, s.")
        out.append(f"chargetracker_process_start_time_seconds {_num(self.started)}")
        return "\n".join(out) + "\n"


def _histogram(out: list[str], name: str, labels: list[tuple[str, str]], counts: list[int],
               total: float, count: int, buckets: tuple[float, ...]) -> None:
    cumulative = 0
    for bound, n in zip(buckets, counts, strict=True):
        cumulative += n
        out.append(f"{name}_bucket{_labels([*labels, ('le', _num(float(bound)))])} {cumulative}")
    out.append(f"{name}_bucket{_labels([*labels, ('le', '+Inf')])} {count}")
    out.append(f"{name}_sum{_labels(labels)} {_num(total)}")
    out.append(f"{name}_count{_labels(labels)} {count}")


def route_label(scope: Scope) -> str:
    """The matched route template (``/api/v1/cells/{cell_id}``), never the raw path."""
    route = scope.get("route")
    if route is None:
        return "<unmatched>"
    if isinstance(route, Mount):
        return (route.path or "") + "/*"
    return str(getattr(route, "path", "<unmatched>"))


class MetricsMiddleware:
    """Times every HTTP request from its first byte in to its last byte out."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe_request(scope.get("method", "GET"), route_label(scope), status,
                                         time.perf_counter() - t0)
