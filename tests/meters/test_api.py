"""Meter API over HTTP on a real server: ingest formats, reads, errors, keys, SSE alerts."""

from __future__ import annotations

import io
import json
import threading
import time

import httpx
import numpy as np
import polars as pl
import pytest

from .conftest import AUTH, Server

T0 = 1767225600.0  # 2026-01-01T00:00:00Z


def _frame(meter: str, n: int, p: float, t0: float = T0, step: float = 60.0) -> pl.DataFrame:
    return pl.DataFrame({"meter_id": [meter] * n, "ts": t0 + np.arange(n) * step,
                         "power_w": np.full(n, p)})


META = [{"meter_id": "h1/mains", "house_id": "h1", "appliance": "mains", "zip": "Z1",
         "timezone": "Europe/London"},
        {"meter_id": "h1/kettle", "house_id": "h1", "appliance": "kettle", "zip": "Z1",
         "timezone": "Europe/London", "attributes": {"brand": "x"}},
        {"meter_id": "h2/mains", "house_id": "h2", "appliance": "mains", "zip": "Z1",
         "timezone": "Europe/London"}]


def test_ingest_every_format_and_read_back(meter_server: Server) -> None:
    with httpx.Client(base_url=meter_server.url, timeout=60) as c:
        r = c.post("/api/v1/meters/meters", json=META, headers=AUTH)
        assert r.status_code == 200, r.text
        mains = _frame("h1/mains", 1441, 600.0)
        body = {"readings": mains.to_dicts()[:500]}
        r = c.post("/api/v1/meters/readings", json=body, headers=AUTH)
        assert r.status_code == 200 and r.json()["accepted"] == 500, r.text
        nd = "\n".join(json.dumps(x) for x in mains.to_dicts()[500:800]).encode()
        r = c.post("/api/v1/meters/readings", content=nd,
                   headers={**AUTH, "Content-Type": "application/x-ndjson"})
        assert r.json()["accepted"] == 300
        buf = io.BytesIO()
        mains.slice(800, 300).write_csv(buf)
        r = c.post("/api/v1/meters/readings", content=buf.getvalue(),
                   headers={**AUTH, "Content-Type": "text/csv"})
        assert r.json()["accepted"] == 300, r.text
        buf = io.BytesIO()
        mains.slice(1100).write_ipc_stream(buf)
        r = c.post("/api/v1/meters/readings", content=buf.getvalue(),
                   headers={**AUTH, "Content-Type": "application/vnd.apache.arrow.stream"})
        assert r.json()["accepted"] == 341
        buf = io.BytesIO()
        pl.concat([_frame("h1/kettle", 1441, 150.0), _frame("h2/mains", 1441, 300.0)]).write_parquet(buf)
        r = c.post("/api/v1/meters/readings", content=buf.getvalue(),
                   headers={**AUTH, "Content-Type": "application/vnd.apache.parquet"})
        assert r.json()["accepted"] == 2882
        days = c.get("/api/v1/meters/days", params={"meter_id": "h1/mains"}).json()
        # 2026-01-01 is a whole winter day in London (UTC+0): 600 W x 24 h.
        d0 = next(d for d in days if d["date"] == "2026-01-01")
        assert d0["energy_kwh"] == pytest.approx(14.4) and d0["coverage"] == 1.0
        hd = c.get("/api/v1/meters/houses/days", params={"house_id": "h1"}).json()
        h0 = next(d for d in hd if d["date"] == "2026-01-01")
        assert h0["unmetered_kwh"] == pytest.approx(14.4 - 3.6)
        bd = c.get("/api/v1/meters/houses/days", params={"house_id": "h1", "breakdown": True}).json()
        assert {b["appliance"] for b in bd} == {"kettle", "unmetered"}
        z = c.get("/api/v1/meters/zips/days", params={"zip": "Z1", "start": "2026-01-01",
                                                       "end": "2026-01-01"}).json()
        assert z == [{"zip": "Z1", "date": "2026-01-01", "total_kwh": pytest.approx(21.6),
                      "houses_reporting": 2, "mean_kwh_per_house": pytest.approx(10.8),
                      "median_kwh_per_house": pytest.approx(10.8)}]
        assert len(c.get("/api/v1/meters/meters", params={"house_id": "h1"}).json()) == 2
        assert c.get("/api/v1/meters/houses", params={"zip": "Z1"}).json()[1]["n_meters"] == 1
        tr = c.get("/api/v1/meters/readings", params={"meter_id": "h2/mains", "limit": 10}).json()
        assert len(tr) == 10 and tr[-1]["ts"] == T0 + 1440 * 60
        spec = c.get("/api/v1/openapi.json").json()
        assert "/api/v1/meters/readings" in spec["paths"]
        assert "/api/v1/meters/alerts" in spec["paths"]


def test_errors_name_field_and_reason(meter_server: Server) -> None:
    with httpx.Client(base_url=meter_server.url, timeout=60) as c:
        r = c.post("/api/v1/meters/readings", json=[{"meter_id": "x", "ts": T0, "power_w": 1.0}])
        assert r.status_code == 401
        r = c.post("/api/v1/meters/readings", json=[{"meter_id": "x", "ts": T0, "power_w": 1.0}],
                   headers={"Authorization": "Bearer nope"})
        assert r.status_code == 403
        r = c.post("/api/v1/meters/readings", json=[{"meter_id": "x", "ts": T0}], headers=AUTH)
        assert r.status_code == 422 and r.json()["error"]["field"] == "power_w"
        rows = [{"meter_id": "e1", "ts": T0, "power_w": 5.0},
                {"meter_id": "e1", "ts": T0 + 60, "power_w": float("nan")},
                {"meter_id": "", "ts": T0 + 120, "power_w": 5.0}]
        r = c.post("/api/v1/meters/readings", content=json.dumps(rows).encode(),
                   headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        errs = {(e["row"], e["field"], e["reason"]) for e in r.json()["errors"]}
        assert errs == {(1, "power_w", "NaN"), (2, "meter_id", "missing meter_id")}
        r = c.post("/api/v1/meters/readings", content=json.dumps(rows[1:]).encode(),
                   headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "no_acceptable_rows"
        r = c.post("/api/v1/meters/readings", content=b"meter_id,ts,power_w\nq,1,abc\n",
                   headers={**AUTH, "Content-Type": "text/csv"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "power_w"
        r = c.post("/api/v1/meters/readings", content=b"{", headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "body"
        r = c.post("/api/v1/meters/readings", content=b"x", headers={**AUTH, "Content-Type": "text/plain"})
        assert r.status_code == 415
        r = c.post("/api/v1/meters/meters", json=[{"meter_id": "a", "house_id": "h",
                                                   "appliance": "tv", "timezone": "Mars/X"}], headers=AUTH)
        assert r.status_code == 422 and r.json()["error"]["field"] == "timezone"
        r = c.post("/api/v1/meters/alerts/ack", json={"meter_id": "none", "start_ts": 1.0}, headers=AUTH)
        assert r.status_code == 404


def test_thresholds_spikes_and_sse_push(meter_server: Server) -> None:
    events: list[tuple[float, dict[str, object]]] = []
    ready = threading.Event()

    def listen() -> None:
        with httpx.Client(base_url=meter_server.url, timeout=None) as c, \
                c.stream("GET", "/api/v1/meters/alerts/stream") as resp:
            ev = None
            for line in resp.iter_lines():
                if line.startswith(": connected"):
                    ready.set()
                if line.startswith("event: "):
                    ev = line[7:]
                elif line.startswith("data: ") and ev == "alert":
                    events.append((time.monotonic(), json.loads(line[6:])))
                    if len(events) >= 2:
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(30)
    with httpx.Client(base_url=meter_server.url, timeout=60) as c:
        rng = np.random.default_rng(0)
        base = pl.DataFrame({"meter_id": ["s/kettle"] * 2000, "ts": T0 + np.arange(2000) * 60.0,
                             "power_w": np.where(rng.random(2000) < 0.1, 2000.0, 1.0)})
        assert c.post("/api/v1/meters/readings", json=base.to_dicts(), headers=AUTH).status_code == 200
        r = c.post("/api/v1/meters/thresholds/recompute", params={"as_of": T0 + 2000 * 60},
                   headers=AUTH)
        assert r.status_code == 200, r.text
        thr = c.get("/api/v1/meters/thresholds", params={"meter_id": "s/kettle"}).json()[0]
        assert thr["p97_w"] == 2000.0 and thr["n_readings"] == int((base["power_w"] > 10).sum())
        sent = time.monotonic()
        spike = [{"meter_id": "s/kettle", "ts": T0 + 2000 * 60.0, "power_w": 5000.0}]
        assert c.post("/api/v1/meters/readings", json=spike, headers=AUTH).json()["alerts"] == 1
        end = [{"meter_id": "s/kettle", "ts": T0 + 2001 * 60.0, "power_w": 1.0}]
        assert c.post("/api/v1/meters/readings", json=end, headers=AUTH).json()["alerts"] == 1
        t.join(10)
        assert [e["status"] for _, e in events] == ["open", "closed"]
        assert events[0][0] - sent < 1.0  # pushed, not polled
        assert events[0][1]["peak_w"] == 5000.0 and events[0][1]["ratio"] == 2.5
        al = c.get("/api/v1/meters/alerts", params={"meter_id": "s/kettle"}).json()
        assert len(al) == 1 and al[0]["status"] == "closed"
        r = c.post("/api/v1/meters/alerts/ack", json={"meter_id": "s/kettle",
                                                      "start_ts": al[0]["start_ts"]}, headers=AUTH)
        assert r.status_code == 200 and r.json()["acked_ts"] is not None
        assert c.get("/api/v1/meters/alerts", params={"acked": False, "meter_id": "s/kettle"}).json() == []


def test_sigkill_restart_resumes_from_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> None:
    from chargetracker.meters import summarize

    from .conftest import start_server

    d = tmp_path_factory.mktemp("meters-restart")
    rng = np.random.default_rng(3)
    frame = pl.DataFrame({"meter_id": ["r/mains"] * 3000, "ts": T0 + np.arange(3000) * 60.0,
                          "power_w": rng.uniform(100, 900, 3000)})
    meta = [{"meter_id": "r/mains", "house_id": "r", "appliance": "mains", "timezone": "UTC"}]
    batches = [frame.slice(k, 500) for k in range(0, 3000, 500)]
    srv = start_server(d, "--api-key", AUTH["Authorization"][7:], "--no-dashboard")
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            assert c.post("/api/v1/meters/meters", json=meta, headers=AUTH).status_code == 200
            for b in batches[:3]:
                assert c.post("/api/v1/meters/readings", json=b.to_dicts(), headers=AUTH).status_code == 200
    finally:
        srv.proc.kill()  # no shutdown hook runs
        srv.proc.wait(10)
    srv = start_server(d, "--api-key", AUTH["Authorization"][7:], "--no-dashboard")
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            # The client re-sends its last batch (it never saw the answer): duplicates only.
            r = c.post("/api/v1/meters/readings", json=batches[2].to_dicts(), headers=AUTH)
            assert r.status_code == 422 and r.json()["error"]["details"]["rejected"] == 500
            for b in batches[3:]:
                assert c.post("/api/v1/meters/readings", json=b.to_dicts(), headers=AUTH).status_code == 200
            got = pl.DataFrame(c.get("/api/v1/meters/days", params={"meter_id": "r/mains"}).json())
    finally:
        srv.stop()
    ref = summarize(frame, meters=pl.DataFrame(meta)).days
    assert got["energy_wh"].to_list() == ref["energy_wh"].to_list()
    assert got["n_readings"].to_list() == ref["n_readings"].to_list()


def test_live_command_streams_a_neighbourhood(meter_server: Server) -> None:
    from chargetracker.cli import main

    rc = main(["meters", "live", "--url", meter_server.url, "--api-key", AUTH["Authorization"][7:],
               "--houses", "4", "--days", "0.5", "--speed", "20000", "--seed", "9",
               "--recompute-hours", "3", "--start", "2026-02-01T00:00:00Z"])
    assert rc == 0
    with httpx.Client(base_url=meter_server.url, timeout=60) as c:
        houses = c.get("/api/v1/meters/houses").json()
        assert sum(h["house_id"].startswith("sim-h") for h in houses) == 4
        hd = c.get("/api/v1/meters/houses/days", params={"house_id": "sim-h00000"}).json()
        assert hd and hd[0]["mains_kwh"] > 0
        thr = [t for t in c.get("/api/v1/meters/thresholds").json() if t["meter_id"].startswith("sim-")]
        assert thr and any(t["p97_w"] for t in thr)
