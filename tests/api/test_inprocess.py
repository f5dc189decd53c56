"""In-process checks with Starlette's TestClient where a second server process would
add nothing: chunked file streaming, sharing a pipeline, mounting a Dash app, readiness
when the store is gone, CORS preflight, settings validation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dash
import polars as pl
import pytest
from dash import html
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.api.conftest import ARROW, arrow_bytes, cycling_frame, streamed_cycles

from chargetracker.api import create_app, mount_dashboard
from chargetracker.config import ApiConfig, Settings
from chargetracker.errors import ConfigError
from chargetracker.queries import Queries
from chargetracker.readers import read_file
from chargetracker.runtime.pipeline import Pipeline
from chargetracker.stores.duckdb import DuckDBStore

ARBIN = Path(__file__).resolve().parents[1] / "data" / "arbin_example.csv"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(tmp_path / "s.duckdb")
    yield s
    s.close()


def test_file_streamed_in_small_chunks_equals_the_engine(store: DuckDBStore) -> None:
    settings = Settings(api=ApiConfig(upload_chunk_rows=300))
    app = create_app(settings, store=store, dashboard=False)
    with TestClient(app) as c, open(ARBIN, "rb") as fh:
        r = c.post("/api/v1/files", files={"file": ("chunky.csv", fh)})
        assert r.status_code == 200, r.text
        out = r.json()
        frame, _, _ = read_file(ARBIN, cell_id="chunky")
        # Chunks hold at most upload_chunk_rows rows each.
        assert out["chunks"] >= -(-frame.height // 300) and out["accepted"] == frame.height
        want = streamed_cycles(frame).filter(pl.col("status") == "closed")
        got = c.get("/api/v1/cells/chunky/cycles", params={"status": "closed"}).json()["items"]
        assert pl.DataFrame(got, schema=want.schema).equals(want.fill_nan(None))


def test_shared_pipeline_and_caller_owned_store(store: DuckDBStore) -> None:
    pipeline = Pipeline(store, Settings())
    app = create_app(Settings(), pipeline=pipeline, dashboard=False)
    frame = cycling_frame("shared-1", cycles=2)
    with TestClient(app) as c:
        half = frame.height // 2
        pipeline.ingest(frame.head(half), source="runner")  # e.g. a runner in this process
        r = c.post("/api/v1/measurements", content=arrow_bytes(frame.tail(frame.height - half)),
                   headers={"Content-Type": ARROW})
        assert r.status_code == 200 and r.json()["accepted"] == frame.height - half
        got = c.get("/api/v1/cells/shared-1/cycles", params={"status": "closed"}).json()["items"]
    want = streamed_cycles(frame).filter(pl.col("status") == "closed")
    assert pl.DataFrame(got, schema=want.schema).equals(want.fill_nan(None))
    assert store.cells_count() == 1  # the app did not close the caller's store


def test_mount_dashboard_serves_dash_after_the_api(store: DuckDBStore) -> None:
    seen: dict[str, object] = {}

    def factory(queries: Queries, settings: Settings) -> dash.Dash:
        seen["queries"], seen["settings"] = queries, settings
        app = dash.Dash(__name__)
        app.layout = html.Div("fleet overview", id="root")
        return app

    settings = Settings()
    app = create_app(settings, store=store, dashboard=False)
    assert mount_dashboard(app, app.state.ctx.queries, settings, factory=factory)
    assert seen["settings"] is settings and isinstance(seen["queries"], Queries)
    with TestClient(app) as c:
        page = c.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        layout = c.get("/_dash-layout").json()
        assert "fleet overview" in str(layout)
        # API routes still win, and unknown API paths stay JSON.
        assert c.get("/api/v1/cells").json()["items"] == []
        assert c.get("/api/v1/nope").json()["error"]["code"] == "not_found"
        assert c.get("/healthz").json() == {"status": "ok"}


def test_the_project_dashboard_is_mounted_at_root(store: DuckDBStore) -> None:
    app = create_app(Settings(), store=store, dashboard=True)
    with TestClient(app) as c:
        page = c.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert c.get("/api/v1/cells").status_code == 200
        assert c.get("/api/v1/nope").status_code == 404


def test_readiness_reports_a_gone_store(tmp_path: Path) -> None:
    s = DuckDBStore(tmp_path / "gone.duckdb")
    app = create_app(Settings(), store=s, dashboard=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.get("/readyz").status_code == 200
        s.close()
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
        assert "chargetracker_store_up 0" in c.get("/metrics").text
        r = c.get("/api/v1/cells")
        assert r.status_code >= 500 and set(r.json()) == {"error"}  # JSON, no traceback


def test_cors_preflight_when_configured(store: DuckDBStore) -> None:
    settings = Settings(api=ApiConfig(cors_origins=("https://lab.example",)))
    app = create_app(settings, store=store, dashboard=False)
    with TestClient(app) as c:
        r = c.options("/api/v1/measurements", headers={
            "Origin": "https://lab.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://lab.example"
        assert "POST" in r.headers["access-control-allow-methods"]


def test_api_settings_are_validated() -> None:
    with pytest.raises(ConfigError):
        ApiConfig(max_body_bytes=10)
    with pytest.raises(ConfigError):
        ApiConfig(api_keys=(" padded ",))
    with pytest.raises(ConfigError):
        ApiConfig(port=70000)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_CANONICAL = st.fixed_dictionaries({}, optional={
    "cell_id": st.none() | st.text(max_size=4) | st.integers() | st.booleans(),
    "ts": st.none() | st.floats() | st.integers() | st.text(max_size=6) | st.booleans(),
    "voltage_v": st.none() | st.floats() | st.integers() | st.text(max_size=4) | st.booleans(),
    "current_a": st.none() | st.floats() | st.integers() | st.lists(st.integers(), max_size=2),
    "temperature_c": st.none() | st.floats() | st.text(max_size=3),
    "cycle": st.none() | st.floats() | st.integers() | st.text(max_size=3),
    "step": st.none() | st.integers(min_value=-(2**70), max_value=2**70),
    "step_time_s": st.none() | st.floats() | st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
})


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    s = DuckDBStore(tmp_path_factory.mktemp("fuzz") / "f.duckdb")
    with TestClient(create_app(Settings(), store=s, dashboard=False),
                    raise_server_exceptions=False) as c:
        yield c
    s.close()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=_JSON | st.lists(_CANONICAL, max_size=6) | st.fixed_dictionaries(
    {"measurements": st.lists(_CANONICAL, max_size=4) | st.dictionaries(
        st.sampled_from(["cell_id", "ts", "voltage_v", "current_a", "cycle"]),
        st.lists(st.none() | st.floats() | st.integers() | st.text(max_size=3), max_size=3))},
    optional={"cells": _JSON}))
def test_ingest_decoder_never_fails_with_5xx(fuzz_client: TestClient, doc: object) -> None:
    import json as _json
    body = _json.dumps(doc)  # NaN / Infinity literals included on purpose
    for ctype in ("application/json", "application/x-ndjson"):
        r = fuzz_client.post("/api/v1/measurements", content=body, headers={"Content-Type": ctype})
        assert r.status_code in (200, 422), (r.status_code, r.text, body)
        assert set(r.json()) == ({"error"} if r.status_code == 422 else set(r.json()))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=300), ctype=st.sampled_from([
    "text/csv", "application/vnd.apache.arrow.stream", "application/vnd.apache.arrow.file",
    "application/vnd.apache.parquet", "application/json"]))
def test_random_bytes_are_422_not_5xx(fuzz_client: TestClient, data: bytes, ctype: str) -> None:
    r = fuzz_client.post("/api/v1/measurements", content=data, headers={"Content-Type": ctype})
    assert r.status_code in (200, 422), (r.status_code, r.text)
