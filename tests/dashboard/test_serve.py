"""The dashboard as the API server mounts it: ``chargetracker serve`` in a subprocess
(dashboard at ``/``, API under ``/api/v1``), driven by Chromium."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chargetracker.stores.duckdb import DuckDBStore

from .conftest import GROUPS, fill_store, screenshot
from .test_browser import traces, wait_roles

pytestmark = pytest.mark.timeout(120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback test server
        return r.status, r.read()


@pytest.fixture(scope="module")
def serve_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = Path(tmp_path_factory.mktemp("serve")) / "fleet.duckdb"
    store = DuckDBStore(path)
    fill_store(store, cells=16, hours=24.0)
    store.close()  # the server process opens the file itself
    port = _free_port()
    log = (path.parent / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from chargetracker.cli import main; sys.exit(main())",
         "serve", "--store", f"duckdb:///{path}", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"chargetracker serve exited with {proc.returncode}: "
                            f"{(path.parent / 'serve.log').read_text()}")
            try:
                if _get(url + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("chargetracker serve did not answer /healthz within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_dashboard_under_chargetracker_serve(page: Any, serve_url: str) -> None:
    pg, _ = page
    pg.goto(serve_url + "/")
    wait_roles(pg, "ov-graph", "mean", len(GROUPS))
    metas = traces(pg, "ov-graph")
    assert sorted(m["group"] for m in metas if m.get("role") == "mean") == sorted(GROUPS)
    pg.wait_for_function("() => document.querySelector('#hdr-cells').textContent === '16'")
    screenshot(pg, "serve_overview")
    # The API still answers next to the dashboard.
    status, body = _get(serve_url + "/api/v1/openapi.json")
    assert status == 200 and json.loads(body)["info"]["title"] == "ChargeTracker API"
    pg.goto(serve_url + "/alerts")
    pg.wait_for_selector("#al-table .ag-row .ag-cell[col-id='action']")
