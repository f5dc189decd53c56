"""Operations and security over real server processes: health, readiness, Prometheus
metrics, the OpenAPI document, API keys (and that they never reach the log), JSON 404/405,
CORS off by default, the serve command's key sources and clean shutdown."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from tests.api.conftest import (
    ARROW,
    AUTH,
    KEY,
    LiveServer,
    arrow_bytes,
    cycling_frame,
    start_server,
)

from chargetracker.stores.duckdb import DuckDBStore


def test_health_and_readiness(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready", "store": "DuckDBStore"}


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_exposition(http: httpx.Client) -> None:
    frame = cycling_frame("metrics-1", cycles=1).head(500)
    assert http.post("/api/v1/measurements", content=arrow_bytes(frame),
                      headers={**AUTH, "Content-Type": ARROW}).status_code == 200
    bad = [{"cell_id": "metrics-1", "ts": 1.0, "voltage_v": None, "current_a": 0.0}]
    assert http.post("/api/v1/measurements", json=bad, headers=AUTH).status_code == 422
    http.get("/api/v1/cells/metrics-1/cycles")
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    # Every sample line belongs to a declared family (HELP + TYPE).
    families = set(re.findall(r"^# TYPE (\S+) (?:counter|gauge|histogram)$", text, re.M))
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in families or base in families, line
    s = _samples(text)
    assert s["chargetracker_store_up"] == 1
    assert s["chargetracker_samples_ingested_total"] >= 500
    assert s["chargetracker_samples_rejected_total"] >= 1
    assert s['chargetracker_api_samples_ingested_total{format="arrow"}'] >= 500
    assert "chargetracker_pipeline_lag_seconds" in s
    route = 'method="GET",route="/api/v1/cells/{cell_id}/cycles"'
    assert s[f'chargetracker_http_requests_total{{{route},status="200"}}'] >= 1
    # Label order is the client library's (le first); compare label sets, not strings.
    buckets = [(k, v) for k, v in s.items()
               if k.startswith("chargetracker_http_request_duration_seconds_bucket{")
               and route in k]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and 'le="+Inf"' in buckets[-1][0]
    assert counts[-1] == s[f"chargetracker_http_request_duration_seconds_count{{{route}}}"]
    # Raw paths never become labels (bounded cardinality).
    assert "metrics-1" not in text


def test_openapi_document_declares_every_error(http: httpx.Client) -> None:
    doc = http.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    schemas = doc["components"]["schemas"]
    assert {"ErrorResponse", "ErrorBody", "MeasurementIn", "IngestEnvelope", "Cycle",
            "IngestResponse", "CellDetail"} <= set(schemas)
    assert doc["components"]["securitySchemes"]["ApiKey"]["scheme"].lower() == "bearer"
    api_ops = [(path, method, op) for path, item in doc["paths"].items()
               for method, op in item.items() if path.startswith("/api/v1/")]
    assert len(api_ops) >= 14
    for path, method, op in api_ops:
        for status in ("401", "403", "422"):
            ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorResponse"), (path, method, status)
        assert "200" in op["responses"], (path, method)
        if method in ("post", "put"):
            assert "413" in op["responses"], (path, method)
        if ("{cell_id}" in path or "{group}" in path) and method == "get":
            assert "404" in op["responses"], (path, method)
    ingest = doc["paths"]["/api/v1/measurements"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-ndjson", "text/csv",
            "application/vnd.apache.arrow.stream", "application/vnd.apache.parquet"} <= set(ingest)
    assert http.get("/api/v1/docs").status_code == 200


def test_auth_and_logs(http: httpx.Client, live: LiveServer) -> None:
    frame = cycling_frame("auth-1", cycles=1).head(20)
    body = arrow_bytes(frame)
    r = http.post("/api/v1/measurements", content=body, headers={"Content-Type": ARROW})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["error"]["code"] == "unauthorized"
    wrong = "ct-wrong-key-0000"
    r = http.post("/api/v1/measurements", content=body,
                  headers={"Content-Type": ARROW, "Authorization": f"Bearer {wrong}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = http.post("/api/v1/measurements", content=body,
                  headers={"Content-Type": ARROW, "Authorization": f"Basic {KEY}"})
    assert r.status_code == 401
    r = http.post("/api/v1/measurements", content=body, headers={**AUTH, "Content-Type": ARROW})
    assert r.status_code == 200
    assert http.get("/api/v1/cells/auth-1").status_code == 200  # reads are open here
    log = live.log()
    assert "POST /api/v1/measurements" in log  # the access log is on ...
    assert KEY not in log and wrong not in log  # ... and never shows a key


def test_unknown_paths_and_methods_are_json(http: httpx.Client) -> None:
    r = http.get("/api/v1/nothing/here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = http.delete("/api/v1/cells/abc")
    assert r.status_code == 405 and "PUT" in r.headers["allow"]
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_cors_is_off_by_default(http: httpx.Client) -> None:
    r = http.get("/api/v1/cells", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    r = http.options("/api/v1/cells", headers={"Origin": "https://evil.example",
                                               "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers


def test_serve_key_sources_protected_reads_and_clean_stop(tmp_path: Path) -> None:
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text("# lab keys\nfile-key-1\n\nfile-key-2\n")
    server = start_server(tmp_path, "--api-key-file", str(keyfile), "--protect-reads",
                          "--cors-origin", "https://lab.example")
    try:
        with server.client() as c:
            assert c.get("/healthz").status_code == 200          # probes stay open
            assert c.get("/api/v1/cells").status_code == 401      # reads protected
            assert c.get("/metrics").status_code == 401
            ok = {"Authorization": "Bearer file-key-2"}
            assert c.get("/api/v1/cells", headers=ok).status_code == 200
            assert c.get("/api/v1/cells", headers={"Authorization": "Bearer file-key-3"}).status_code == 403
            r = c.get("/api/v1/cells", headers={**ok, "Origin": "https://lab.example"})
            assert r.headers["access-control-allow-origin"] == "https://lab.example"
            r = c.get("/api/v1/cells", headers={**ok, "Origin": "https://other.example"})
            assert "access-control-allow-origin" not in r.headers
            root = c.get("/")
            try:
                from chargetracker.dashboard import create_dash_app  # noqa: F401
            except ImportError:
                assert root.status_code == 404   # no dashboard installed: nothing at /
            else:
                assert root.status_code == 200 and "html" in root.headers["content-type"]
    finally:
        code = server.stop()
    assert code in (0, -15), server.log()
    assert "Application shutdown complete" in server.log()
    # The store was closed on shutdown: another process can open it for writing now.
    DuckDBStore(server.store_path).close()
