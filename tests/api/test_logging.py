"""Live server logs: JSON lines with request ids, X-Request-ID in and out, and no
credential in the log whichever way a client sends it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.api.conftest import start_server

KEY = "live-key-0123456789abcdef"


def test_json_access_log_redacts_keys_and_carries_request_ids(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--no-dashboard", "--api-key", KEY, "--log-format", "json")
    try:
        with server.client() as client:
            r = client.get(f"/api/v1/cells?api_key={KEY}", headers={"X-Request-ID": "req-42"})
            assert r.status_code == 200 and r.headers["x-request-id"] == "req-42"
            r = client.get(f"/metrics?token={KEY}", headers={"Authorization": f"Bearer {KEY}"})
            made = r.headers["x-request-id"]
            assert len(made) == 32
            bad = client.get("/healthz", headers={"X-Request-ID": "x" * 500})
            assert bad.headers["x-request-id"] != "x" * 500  # refused, a new one is made
    finally:
        server.stop()
    log = server.log()
    assert KEY not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [x for x in lines if x["logger"] == "uvicorn.access"]
    first = next(x for x in access if x.get("request_id") == "req-42")
    assert first["path"] == "/api/v1/cells?api_key=***" and first["status"] == 200
    assert any(x.get("request_id") == made and x["path"] == "/metrics?token=***" for x in access)
