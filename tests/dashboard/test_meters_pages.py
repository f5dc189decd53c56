"""Meter dashboard pages (the shared session browser of tests/dashboard) in Debian's Chromium (Playwright): houses, meter, zips, and the
live page receiving SSE alerts without reloading."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.meters.conftest import AUTH, Server, start_server

T0 = 1767225600.0


@pytest.fixture(scope="module")
def dash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("meters-dash"), "--api-key", AUTH["Authorization"][7:])
    meta = [{"meter_id": f"{h}/{a}", "house_id": h, "appliance": a, "zip": z, "timezone": "UTC"}
            for h, z in (("hA", "Z1"), ("hB", "Z1"), ("hC", "Z2")) for a in ("mains", "kettle")]
    rng = np.random.default_rng(0)
    rows = []
    for m in meta:
        p = rng.uniform(200, 400, 3 * 1440) if m["appliance"] == "mains" else \
            np.where(rng.random(3 * 1440) < 0.05, 2000.0, 0.0)
        rows += [{"meter_id": m["meter_id"], "ts": T0 + k * 60.0, "power_w": float(v)}
                 for k, v in enumerate(p)]
    with httpx.Client(base_url=server.url, timeout=120) as c:
        assert c.post("/api/v1/meters/readings", json={"meters": meta, "readings": rows},
                      headers=AUTH).status_code == 200
        assert c.post("/api/v1/meters/thresholds/recompute", params={"as_of": T0 + 3 * 86400},
                      headers=AUTH).status_code == 200
    yield server
    server.stop()


@pytest.fixture
def meter_page(browser: Any) -> Iterator[tuple[Any, list[str]]]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield pg, errors
    ctx.close()


def test_houses_meter_and_zip_pages(dash_server: Server, meter_page: tuple[Any, list[str]]) -> None:
    pg, errors = meter_page
    pg.goto(f"{dash_server.url}/meters?house=hB")
    pg.wait_for_selector("#mt-house-fig .main-svg", timeout=30_000)
    legend = pg.text_content("#mt-house-fig .legend") or ""
    assert "kettle" in legend and "unmetered" in legend
    pg.goto(f"{dash_server.url}/meters/meter?id=hA/kettle")
    pg.wait_for_selector("#mt-trace .main-svg", timeout=30_000)
    txt = pg.text_content("#mt-trace") or ""
    assert "p97 threshold 2000 W" in txt and "Power of hA/kettle" in txt
    pg.goto(f"{dash_server.url}/meters/zips")
    pg.wait_for_selector("#mt-zip-dist .main-svg", timeout=30_000)
    assert "Z1" in (pg.text_content("#mt-zip-total") or "") and "Z2" in (pg.text_content("#mt-zip-dist") or "")
    assert not errors, errors


def test_live_alerts_arrive_without_reload(dash_server: Server, meter_page: tuple[Any, list[str]]) -> None:
    pg, errors = meter_page
    pg.goto(f"{dash_server.url}/meters/live")
    pg.wait_for_selector("#mt-live-status[data-state=connected]", timeout=30_000)
    pg.evaluate("window.__marker = 42")  # survives only if the page is never reloaded
    lat = []
    with httpx.Client(base_url=dash_server.url, timeout=60) as c:
        for k in range(10):
            ts = T0 + 3 * 86400 + k * 120.0
            before = pg.locator("li.mt-alert.open").count()
            t_send = time.time()
            r = c.post("/api/v1/meters/readings", headers=AUTH, json=[
                {"meter_id": "hC/kettle", "ts": ts, "power_w": 9000.0},
                {"meter_id": "hC/kettle", "ts": ts + 60, "power_w": 0.0}])
            assert r.json()["alerts"] == 2
            pg.wait_for_function(f"document.querySelectorAll('li.mt-alert.open').length > {before}",
                                 timeout=10_000)
            got = pg.evaluate("Number(document.querySelector('li.mt-alert.open').dataset.received)")
            lat.append(got / 1000.0 - t_send)
    first = pg.inner_text("li.mt-alert.open >> nth=0")
    assert "hC/kettle" in first and "9000 W" in first and "hC" in first
    assert pg.evaluate("window.__marker") == 42
    assert pg.locator("li.mt-alert.closed").count() >= 9
    p95 = float(np.percentile(lat, 95))
    print(f"reading -> alert visible in the browser: p50 {np.median(lat) * 1000:.0f} ms, "
          f"p95 {p95 * 1000:.0f} ms")
    assert p95 < 5.0  # the 1 s figure is measured here and reported, not asserted tightly
    assert not errors, errors
