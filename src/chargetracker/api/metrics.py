"""Prometheus metrics of the API server, through ``prometheus_client``.

Request metrics are kept in process (per route *template*, never the raw path, so the
label set stays bounded); ingest totals and the pipeline lag are read from the store at
scrape time (:class:`~chargetracker.prometheus.StoreCollector`), so they cover every
process writing to it (runner and API alike). The vocabulary is shared with the workers
(:mod:`chargetracker.prometheus`, docs/operations.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..prometheus import CONTENT_TYPE, PREFIX, StoreCollector, new_registry
from ..prometheus import render as render_registry

__all__ = ["Metrics", "MetricsMiddleware", "CONTENT_TYPE"]

#: Request latency buckets, s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
#: Ingest batch buckets (time in the pipeline per batch), s.
BATCH_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The API process's registry: request and ingest families plus the store's."""

    def __init__(self) -> None:
        self.registry = new_registry("api")
        r = self.registry
        self.requests = Counter(f"{PREFIX}http_requests", "HTTP requests by method, route "
                                "template and status.", ["method", "route", "status"], registry=r)
        self.latency = Histogram(f"{PREFIX}http_request_duration_seconds", "HTTP request "
                                 "latency by method and route template, s.", ["method", "route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.ingested = Counter(f"{PREFIX}api_samples_ingested", "Samples accepted through this "
                                "API process, by body format.", ["format"], registry=r)
        self.rejected = Counter(f"{PREFIX}api_samples_rejected", "Samples rejected through this "
                                "API process, by body format.", ["format"], registry=r)
        self.batches = Histogram(f"{PREFIX}api_ingest_batch_seconds", "Time a batch spends in "
                                 "the pipeline (engine + commit), s.", ["format"],
                                 buckets=BATCH_BUCKETS, registry=r)
        self.started = time.time()
        self._stats: Mapping[str, Any] | None = None
        self._lock = threading.Lock()
        r.register(StoreCollector(self._read_stats))
        #: The alarm-prediction writer's counters (``PredictionWriter.snapshot``), set
        #: when the app starts one; read at scrape time.
        self.alarm_writer: Callable[[], Mapping[str, Any]] | None = None
        r.register(_AlarmWriterCollector(self))

    def _read_stats(self) -> Mapping[str, Any]:
        if self._stats is None:
            raise LookupError("store not reachable")
        return self._stats

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_ingest(self, fmt: str, accepted: int, rejected: int, seconds: float) -> None:
        self.ingested.labels(fmt).inc(int(accepted))
        self.rejected.labels(fmt).inc(int(rejected))
        self.batches.labels(fmt).observe(seconds)

    def render(self, store_stats: Mapping[str, Any] | None, store_up: bool) -> str:
        """The whole exposition text; ``store_stats`` from ``Store.ingest_stats()``."""
        with self._lock:  # the store snapshot belongs to this scrape only
            self._stats = store_stats if store_up else None
            try:
                return render_registry(self.registry)
            finally:
                self._stats = None


class _AlarmWriterCollector(Collector):
    """The grouped alarm-prediction writer's families (none before it starts)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        read = self._metrics.alarm_writer
        if read is None:
            return
        s = read()
        commits = CounterMetricFamily(f"{PREFIX}alarm_prediction_commits", "Group commits of "
                                      "queued HTTP alarm predictions, by result (ok, failed: "
                                      "the rows stay queued and are retried).",
                                      labels=["result"])
        commits.add_metric(["ok"], int(s["commits_ok"]))
        commits.add_metric(["failed"], int(s["commits_failed"]))
        yield commits
        yield CounterMetricFamily(f"{PREFIX}alarm_predictions_written", "HTTP alarm "
                                  "predictions committed by the writer.",
                                  value=int(s["rows_written"]))
        yield GaugeMetricFamily(f"{PREFIX}alarm_predictions_pending", "HTTP alarm predictions "
                                "queued and not yet committed.", value=int(s["pending"]))
        yield CounterMetricFamily(f"{PREFIX}alarm_prediction_backpressure_waits", "Requests "
                                  "that found the prediction queue full and waited.",
                                  value=int(s["backpressure_waits"]))
        yield CounterMetricFamily(f"{PREFIX}alarm_prediction_backpressure_timeouts", "Requests "
                                  "answered 503 because the queue stayed full.",
                                  value=int(s["backpressure_timeouts"]))


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
