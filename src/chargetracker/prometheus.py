"""The one Prometheus vocabulary of ChargeTracker (server, runner, workers), through
``prometheus_client``.

Every process exposes, in its own :func:`new_registry`:

* the standard ``process_*`` (CPU seconds, resident memory, open fds, start time) and
  ``python_info`` families of ``prometheus_client``;
* ``chargetracker_process_start_time_seconds`` and ``chargetracker_build_info``;
* its own per-process families: ``chargetracker_http_*`` and ``chargetracker_api_*``
  (the API server, which also carries the embedded runner), ``chargetracker_worker_*``
  (Kafka workers);
* when it can read the store, the store-wide families of :class:`StoreCollector`
  (``chargetracker_samples_ingested_total`` ...), read at scrape time, so they cover
  every process writing to that store.

docs/operations.md lists every family with its unit and labels.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__

__all__ = ["CONTENT_TYPE", "StoreCollector", "new_registry", "render", "PREFIX"]

PREFIX = "chargetracker_"
#: What :func:`render` writes: the Prometheus text format 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# ``*_created`` series double every counter and histogram and nobody graphs them.
disable_created_metrics()


def new_registry(role: str) -> CollectorRegistry:
    """A registry with the process, platform and build families (``role``: ``api``,
    ``runner`` or ``worker``, the ``role`` label of ``chargetracker_build_info``)."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    Info(f"{PREFIX}build", "ChargeTracker version and process role.",
         registry=registry).info({"version": __version__, "role": role})
    Gauge(f"{PREFIX}process_start_time_seconds", "Start time of this process since the "
          "epoch, s.", registry=registry).set(time.time())
    return registry


_lock = threading.Lock()


def render(registry: CollectorRegistry) -> str:
    """The registry's exposition text (scrapes are serialized: collectors that read a
    snapshot set just before, like :class:`StoreCollector`, see their own)."""
    with _lock:
        return generate_latest(registry).decode()


def _num(value: Any) -> float:
    if value is None:
        return math.nan
    return float(value)


class StoreCollector(Collector):
    """Store-wide families from ``Store.ingest_stats()``, read at scrape time.

    ``read`` returns the stats dict, or raises (the store is down: only
    ``chargetracker_store_up 0`` is exposed).
    """

    def __init__(self, read: Callable[[], Mapping[str, Any]]) -> None:
        self._read = read

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families depend on the store answering

    def collect(self) -> Iterator[Metric]:
        try:
            s = self._read()
            up = True
        except Exception:  # noqa: BLE001 - any store failure is "down" for a scrape
            s, up = {}, False
        yield GaugeMetricFamily(f"{PREFIX}store_up", "1 when the store answered this scrape.",
                                value=1 if up else 0)
        if not up:
            return
        yield CounterMetricFamily(f"{PREFIX}samples_ingested", "Samples accepted into the "
                                  "store, all sources and processes.",
                                  value=int(s.get("samples_total") or 0))
        yield CounterMetricFamily(f"{PREFIX}samples_rejected", "Samples rejected (kept as "
                                  "dead letters), all sources and processes.",
                                  value=int(s.get("rejected_total") or 0))
        yield GaugeMetricFamily(f"{PREFIX}ingest_rate_samples_per_second", "Accepted samples "
                                "per second over the last minute of commits.",
                                value=_num(s.get("samples_per_s") or 0.0))
        yield GaugeMetricFamily(f"{PREFIX}pipeline_lag_seconds", "Wall-clock now minus the "
                                "timestamp of the newest stored sample, s (NaN when nothing "
                                "is stored).", value=_num(s.get("lag_s")))
        last = s.get("last_commit_wall")
        age = math.nan if last is None else max(0.0, time.time() - float(last))
        yield GaugeMetricFamily(f"{PREFIX}last_commit_age_seconds", "Seconds since the last "
                                "commit to the store (NaN before the first).", value=age)
        newest = s.get("newest_ts")
        yield GaugeMetricFamily(f"{PREFIX}newest_sample_timestamp_seconds", "Timestamp of the "
                                "newest stored sample, s since the epoch (the data's clock).",
                                value=_num(newest))
        yield GaugeMetricFamily(f"{PREFIX}cells", "Cells known to the store.",
                                value=int(s.get("cells") or 0))
        yield GaugeMetricFamily(f"{PREFIX}measurements_stored", "Raw samples kept in the "
                                "store.", value=int(s.get("measurements_stored") or 0))
        yield GaugeMetricFamily(f"{PREFIX}dead_letters_stored", "Dead-letter rows in the store.",
                                value=int(s.get("dead_letters_stored") or 0))
        by_source = s.get("by_source") or {}
        acc = CounterMetricFamily(f"{PREFIX}source_samples_ingested", "Samples accepted, by "
                                  "source (api, file:<name>, kafka:<topic>, ...).",
                                  labels=["source"])
        rej = CounterMetricFamily(f"{PREFIX}source_samples_rejected", "Samples rejected, by "
                                  "source.", labels=["source"])
        for src, v in sorted(by_source.items())[:200]:  # bounded label set
            acc.add_metric([str(src)[:128]], int(v.get("accepted") or 0))
            rej.add_metric([str(src)[:128]], int(v.get("rejected") or 0))
        yield acc
        yield rej
