"""One metrics vocabulary: the API server and the Kafka workers expose valid Prometheus
text through prometheus_client, with the same process and build families."""

from __future__ import annotations

import urllib.request

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from chargetracker.api.metrics import Metrics
from chargetracker.kafka.metrics import MetricsServer, WorkerMetrics

SHARED = {"process_cpu_seconds", "process_resident_memory_bytes", "python_info",
          "chargetracker_build_info", "chargetracker_process_start_time_seconds"}


def _families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_api_and_worker_share_the_process_vocabulary() -> None:
    api = Metrics()
    api.observe_request("GET", "/api/v1/cells", 200, 0.02)
    api.observe_ingest("arrow", 10, 1, 0.05)
    stats = {"samples_total": 10, "rejected_total": 1, "lag_s": 2.0, "cells": 3,
             "by_source": {"api": {"accepted": 10, "rejected": 1}}, "newest_ts": 1.7e9}
    api_f = _families(api.render(stats, True))
    worker = WorkerMetrics("measurements", "g")
    worker.record_commit(messages=4, samples=40, rejected=0, seconds=0.01,
                         latencies_s=np.array([0.1, 0.3]))
    worker.set_lag({0: 3})
    server = MetricsServer(worker).start()
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics",
                                      timeout=5).read().decode()
        health = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz",
                                        timeout=5).read()
    finally:
        server.close()
    worker_f = _families(text)
    assert SHARED <= set(api_f) and SHARED <= set(worker_f)
    assert health == b"ok\n"
    # Names the dashboards and tests rely on.
    samples = {s.name: s for f in api_f.values() for s in f.samples}  # type: ignore[attr-defined]
    assert samples["chargetracker_samples_ingested_total"].value == 10
    assert samples["chargetracker_pipeline_lag_seconds"].value == 2.0
    assert samples["chargetracker_store_up"].value == 1
    assert "chargetracker_http_request_duration_seconds_bucket" in samples
    assert "chargetracker_source_samples_ingested_total" in samples
    w = {(s.name, s.labels.get("partition")): s.value
         for f in worker_f.values() for s in f.samples}  # type: ignore[attr-defined]
    assert w[("chargetracker_worker_samples_total", None)] == 40
    assert w[("chargetracker_worker_consumer_lag", "0")] == 3
    assert w[("chargetracker_worker_consumer_lag_total", None)] == 3


def test_store_down_exposes_only_store_up_zero() -> None:
    text = Metrics().render(None, False)
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["chargetracker_store_up"] == 0
    assert "chargetracker_samples_ingested_total" not in samples


def test_grafana_dashboard_only_uses_exposed_families() -> None:
    import json
    import re
    from pathlib import Path

    doc = json.loads((Path(__file__).resolve().parents[1] / "docs" / "grafana"
                      / "chargetracker.json").read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b((?:chargetracker|process)_[a-z_]+)", e)}
    api = Metrics()
    api.observe_request("GET", "/x", 200, 0.1)
    api.observe_ingest("json", 1, 0, 0.1)
    stats = {"by_source": {"api": {"accepted": 1, "rejected": 0}}}
    worker = WorkerMetrics("t", "g")
    worker.record_commit(messages=1, samples=1, rejected=0, seconds=0.1,
                         latencies_s=np.array([0.1]))
    text = api.render(stats, True) + worker.render()
    exposed = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert used and used <= exposed, used - exposed
