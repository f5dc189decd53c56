"""A plug-in telemetry kind end to end: HTTP -> the one micro-batch step -> DuckDB and
PostgreSQL -> the kind's read query, with no change to runtime/ or kafka/ (the kind is
defined in tests/kinds/toy.py against the protocol only)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient
from polars.testing import assert_frame_equal

from chargetracker.api.app import create_app
from chargetracker.config import Settings
from chargetracker.kinds import TelemetryKind
from chargetracker.runtime import Pipeline
from chargetracker.stores.base import Store
from chargetracker.stores.url import open_store

from .toy import SPIKE_W, ToyKind

TOY = ToyKind()
#: meter m1: 100 W, 200 W, 200 W, 1500 W an hour apart -> trapezoids 150 + 200 + 850 Wh.
BATCH_1 = [{"meter_id": "m1", "ts": 0.0, "power_w": 100.0},
           {"meter_id": "m1", "ts": 3600.0, "power_w": 200.0},
           {"meter_id": "m2", "ts": 0.0, "power_w": 50.0}]
BATCH_2 = [{"meter_id": "m1", "ts": 7200.0, "power_w": 200.0},
           {"meter_id": "m1", "ts": 10800.0, "power_w": 1500.0},
           {"meter_id": "m2", "ts": 1800.0, "power_w": 50.0},
           {"meter_id": "m2", "ts": 3600.0, "power_w": -5.0}]


@pytest.fixture(params=["duckdb", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (f"duckdb:///{tmp_path / 'toy.duckdb'}" if request.param == "duckdb"
           else request.getfixturevalue("postgres_url"))
    st = open_store(url, kinds=[TOY])
    yield st
    st.close()


def test_toy_kind_satisfies_the_protocol() -> None:
    assert isinstance(TOY, TelemetryKind)


def test_toy_flows_http_step_store_query(store: Store) -> None:
    settings = Settings()
    app = create_app(settings, store=store, dashboard=False)
    app.state.ctx.add_kind(Pipeline(store, settings, name="toy", kind=TOY))
    with TestClient(app) as client:
        r1 = client.post("/api/v1/telemetry/toy", json=BATCH_1)
        assert r1.status_code == 200, r1.text
        assert r1.json()["accepted"] == 3
        r2 = client.post("/api/v1/telemetry/toy?source=meters", json=BATCH_2)
        assert r2.status_code == 200, r2.text
        body = r2.json()
        assert (body["accepted"], body["rejected"], body["alerts"]) == (3, 1, 1)
        assert body["errors"][0]["field"] == "power_w" and body["errors"][0]["row"] == 3

        daily = client.get("/api/v1/telemetry/toy/daily", params={"where": "meter_id:m1"})
        assert daily.status_code == 200, daily.text
        rows = daily.json()["items"]
        assert len(rows) == 1 and rows[0]["day"] == 0
        assert rows[0]["energy_wh"] == pytest.approx(150.0 + 200.0 + 850.0, abs=0)
        assert rows[0]["n_intervals"] == 3

        readings = client.get("/api/v1/telemetry/toy/readings")
        assert readings.status_code == 200
        assert client.get("/api/v1/telemetry/toy/nope").status_code == 404
        assert client.get("/api/v1/telemetry/nokind/daily").status_code == 404
        assert client.get("/api/v1/telemetry/toy/daily",
                          params={"where": "power_w:1"}).status_code == 422
        assert client.post("/api/v1/telemetry/nokind", json=BATCH_1).status_code == 404

        # A replay is idempotent: readings keyed by (meter_id, ts), daily rows upserted.
        client.post("/api/v1/telemetry/toy", json=BATCH_1)
        alerts = client.get("/api/v1/alerts").json()
    stored = store.rows("toy_readings")
    assert stored.height == 6 and stored.get_column("power_w").max() == 1500.0
    spike = [a for a in alerts["items"] if a["rule"] == "toy_spike"]
    assert len(spike) == 1 and spike[0]["value"] == 1500.0 and spike[0]["threshold"] == SPIKE_W
    # The pipeline checkpointed the toy state: a new pipeline resumes it.
    again = Pipeline(store, settings, name="toy", kind=TOY)
    assert again.state.last["m1"] == (10800.0, 1500.0)


def test_toy_incremental_equals_batch() -> None:
    state = TOY.new_state()
    frames = [pl.DataFrame(BATCH_1), pl.DataFrame(BATCH_2)]
    out = None
    for f in frames:
        state, out = TOY.update(state, TOY.validate(f, source="t"), source="t")
    assert out is not None
    batch = TOY.summarize(pl.concat(frames))
    inc = TOY._rows(state, set(state.daily))
    assert_frame_equal(inc, batch.tables["toy_daily"])
