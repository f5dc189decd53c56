"""HTTP ingest in scale-out mode publishes to Kafka instead of the in-process pipeline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import polars as pl
from fastapi.testclient import TestClient

from chargetracker.api import create_app
from chargetracker.cli.serve import register
from chargetracker.config import ApiConfig, KafkaConfig, Settings
from chargetracker.kafka.source import KafkaSource

from .test_source import _drain


def test_measurements_are_published_bad_rows_kept(make_topic: Callable[..., KafkaConfig],
                                                  tmp_path: Path) -> None:
    cfg = make_topic(2)
    settings = Settings(store_url=f"duckdb:///{tmp_path / 'api.duckdb'}",
                        api=ApiConfig(publish_kafka=True, dashboard=False), kafka=cfg)
    rows = [{"cell_id": f"c{k % 3}", "ts": 1.7e9 + k, "voltage_v": 3.7, "current_a": 1.0}
            for k in range(30)]
    rows.append({"cell_id": "c1", "ts": 1.7e9 + 99, "voltage_v": None, "current_a": 1.0})
    app = create_app(settings)
    with TestClient(app) as client:
        r = client.post("/api/v1/measurements", json=rows)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["accepted"] == 30 and body["rejected"] == 1
        assert body["errors"][0]["field"] == "voltage_v"
        dead = app.state.ctx.store.dead_letters()
        assert dead.get_column("field").to_list() == ["voltage_v"]
        # Nothing went through the local pipeline: the workers own the engine.
        assert app.state.ctx.store.cycles(None, status=None).height == 0
    src = KafkaSource(replace(cfg, group_id=cfg.group_id + "-check"))
    frames, _, _ = _drain(src, limit=60)
    src.close()
    got = pl.concat(frames)
    assert got.height == 30
    assert sorted(got.get_column("ts").to_list()) == [1.7e9 + k for k in range(30)]


def test_serve_publish_flag_builds_settings() -> None:
    import argparse

    from chargetracker.cli.serve import settings_from_args

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["serve", "--publish", "kafka://127.0.0.1:9092/meas",
                              "-X", "security.protocol=SASL_SSL"])
    s = settings_from_args(args)
    assert s.api.publish_kafka and s.kafka.brokers == "127.0.0.1:9092" and s.kafka.topic == "meas"
    assert s.kafka.extra == (("security.protocol", "SASL_SSL"),)
