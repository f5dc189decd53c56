"""Stored HTTP alarm predictions: the grouped write-behind (read-your-writes, shutdown
drain, a failing store, back-pressure) through real ``chargetracker serve`` processes,
and the small-body fast path of ``POST /alarms/predict`` against the full validation.
"""

from __future__ import annotations

import argparse
import csv
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from tests.api.conftest import AUTH, KEY, LiveServer, start_server

SERIES = Path(__file__).resolve().parents[1] / "data" / "bms-series_samples.csv"
VIN = "JH4PC6DU52KF7SVMZ"
PREDICT = "/api/v1/alarms/predict"
LIST = "/api/v1/alarms/predictions"


def _series(vin: str) -> list[dict[str, str]]:
    return [r for r in csv.DictReader(open(SERIES)) if r["VIN"] == vin]


def _body(shift_days: int, vin: str = VIN) -> dict[str, Any]:
    """The VIN's last 20 records (as the CSV gives them: text), shifted by some days, so
    that every body is its own (vin, date) prediction."""
    rows = _series(VIN)[-20:]
    return {"vin": vin, "records": [
        {**r, "VIN": vin, "Date": str(np.datetime64(r["Date"], "D") + shift_days)}
        for r in rows]}


def _metric(http: httpx.Client, name: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    raise AssertionError(f"no metric {name}")


# -- the fast path equals the full validation ------------------------------------------
def test_small_body_fast_path_equals_full_validation() -> None:
    """Text numbers ("3.61", "nan") take the plain-Python path; its window, features and
    probability equal the polars validation + calendar panel path bit for bit."""
    from chargetracker.api.alarm_input import records_frame as _records_frame
    from chargetracker.api.alarm_input import typed_numbers as _typed
    from chargetracker.ml import Predictor
    from chargetracker.ml.features import feature_matrix
    from chargetracker.ml.predict import latest_window
    from chargetracker.ml.records import small_columns, validate_records
    from chargetracker.ml.windows import build_panel, build_windows
    from chargetracker.stores.models import load_default_model

    model = Predictor(load_default_model()).artifact
    rows = list(csv.DictReader(open(SERIES)))
    vins = sorted({r["VIN"] for r in rows})[::7]  # a spread of vehicles, some with gaps
    checked = 0
    for vin in vins:
        mine = [r for r in rows if r["VIN"] == vin]
        for end in (20, 33, len(mine)):
            recs = mine[max(0, end - 20):end]
            if len(recs) < 15:
                continue
            cols = small_columns(_typed(recs), vin=vin)
            assert cols is not None, vin
            fast = latest_window(cols)
            full = validate_records(_records_frame(recs, vin), source="records")
            assert full.n_rejected == 0
            w = build_windows(build_panel(full.records, extend_days=1), include_next_day=True)
            w = w.take(np.arange(len(w)) == len(w) - 1)
            for a, b in ((fast.panel.x, w.panel.x), (fast.panel.day, w.panel.day),
                         (fast.panel.label, w.panel.label), (fast.index, w.index),
                         (fast.dates(), w.dates())):
                assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), vin
            xf, xw = feature_matrix(fast, model.features), feature_matrix(w, model.features)
            assert np.array_equal(xf, xw, equal_nan=True)
            assert model.model.predict(xf)[0] == model.model.predict(xw)[0]
            checked += 1
    assert checked >= 10
    # What the plain path must not take is left to the full validation, unchanged.
    odd = [{"Date": "2020-01-01", "TotalVoltage": " 3.5", "Label": "yes"}]
    assert _typed(odd) == odd
    assert _typed([{"VIN": "123", "Date": "2020-01-01", "TotalVoltage": "nan"}]) == [
        {"VIN": "123", "Date": "2020-01-01", "TotalVoltage": None}]


def test_serve_alarm_write_flags() -> None:
    from chargetracker.cli.serve import register, settings_from_args
    from chargetracker.config import ApiConfig
    from chargetracker.errors import ConfigError

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    s = settings_from_args(parser.parse_args(["serve"]))
    assert s.api.alarm_write == "grouped"
    s = settings_from_args(parser.parse_args(["serve", "--alarm-write", "sync",
                                              "--alarm-write-queue", "7",
                                              "--alarm-write-age-ms", "12",
                                              "--alarm-write-wait", "0.5"]))
    assert (s.api.alarm_write, s.api.alarm_write_queue_rows, s.api.alarm_write_wait_s) == (
        "sync", 7, 0.5)
    assert s.api.alarm_write_max_age_s == pytest.approx(0.012)
    with pytest.raises(ConfigError):
        ApiConfig(alarm_write="later")
    with pytest.raises(ConfigError):
        ApiConfig(alarm_write_queue_rows=0)


# -- DuckDB: read-your-writes and the shutdown drain -------------------------------------
@pytest.fixture(scope="module")
def lazy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Grouped writes that only commit when flushed, full or shut down (a one-minute
    group age), so the tests see rows that are really still queued."""
    s = start_server(tmp_path_factory.mktemp("alarm-writes"), "--api-key", KEY,
                     "--no-dashboard", "--alarm-write-age-ms", "60000")
    yield s
    s.stop()


def test_queued_predictions_are_listed_at_once_and_drained_at_shutdown(
        lazy_server: LiveServer) -> None:
    with lazy_server.client() as http:
        got = [http.post(PREDICT, json=_body(k), headers=AUTH) for k in range(3)]
        assert [r.status_code for r in got] == [200, 200, 200], got[0].text
        last14 = _body(0)["records"][-14:]  # consecutive days: the 14 before the prediction
        assert np.datetime64(last14[0]["Date"]) + 14 == np.datetime64(got[0].json()["date"])
        assert got[0].json()["days_with_data"] == sum(r["TotalVoltage"] != "nan" for r in last14)
        assert _metric(http, "chargetracker_alarm_predictions_pending") == 3
        listed = http.get(LIST, params={"vin": VIN, "limit": 10}).json()
        assert listed["total"] == 3
        assert sorted(i["request_id"] for i in listed["items"]) == sorted(
            r.json()["request_id"] for r in got)
        assert {i["date"] for i in listed["items"]} == {r.json()["date"] for r in got}
        assert {i["probability"] for i in listed["items"]} == {
            r.json()["probability"] for r in got}
        assert _metric(http, "chargetracker_alarm_predictions_pending") == 0
        assert _metric(http, 'chargetracker_alarm_prediction_commits_total{result="ok"}') == 1
        # A batch scoring of the same records after a queued single prediction of the
        # same key: the queued row is committed first, so the batch's (later) row wins.
        assert http.post(PREDICT, json=_body(9), headers=AUTH).status_code == 200
        day = http.post(PREDICT, json={**_body(9), "store": False}, headers=AUTH).json()["date"]
        r = http.post("/api/v1/alarms/predict/batch", json=_body(9)["records"], headers=AUTH)
        assert r.status_code == 200, r.text
        mine = http.get(LIST, params={"vin": VIN, "start": day, "end": day}).json()["items"]
        assert [i["source"] for i in mine] == ["batch"]
        # Queued again, then the server is stopped: the lifespan drains the queue.
        for k in range(3, 5):
            assert http.post(PREDICT, json=_body(k), headers=AUTH).status_code == 200
        assert _metric(http, "chargetracker_alarm_predictions_pending") == 2
    # uvicorn re-raises the SIGTERM it handled: -15 after a graceful shutdown.
    assert lazy_server.stop() in (0, -15)
    assert "Application shutdown complete" in lazy_server.log()
    import duckdb

    con = duckdb.connect(str(lazy_server.store_path), read_only=True)
    try:
        n = con.execute("SELECT count(*) FROM alarm_predictions WHERE vin = ? AND source = "
                        "'http'", [VIN]).fetchone()
    finally:
        con.close()
    assert n is not None and n[0] == 5  # 3 + 2 days (the 10th day's row is the batch's)
    assert "could not be stored" not in lazy_server.log()


# -- PostgreSQL made to fail: no 500, rows kept and written on recovery; back-pressure --
_FAIL = ("CREATE OR REPLACE FUNCTION ct_test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
         "$$ BEGIN RAISE EXCEPTION 'test: alarm_predictions refuses writes'; END $$",
         "CREATE TRIGGER ct_test_refuse BEFORE INSERT OR UPDATE ON alarm_predictions "
         "FOR EACH ROW EXECUTE FUNCTION ct_test_refuse()")
_RECOVER = ("DROP TRIGGER ct_test_refuse ON alarm_predictions",)


def _sql(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for s in statements:
            conn.execute(s)


def test_failing_store_keeps_rows_and_a_full_queue_pushes_back(
        postgres_url: str, tmp_path: Path) -> None:
    import psycopg

    server = start_server(tmp_path, "--store", postgres_url, "--api-key", KEY,
                          "--no-dashboard", "--alarm-write-queue", "2",
                          "--alarm-write-wait", "1.5")
    try:
        with server.client() as http:
            # Opens the model and the read side before the table is locked below.
            assert http.get(LIST).json()["total"] == 0
            # A slow store (the table locked by another transaction): the writer's
            # commit waits, the queue (2 rows) fills, the next request waits for room
            # and is answered once the lock is gone.
            lock = psycopg.connect(postgres_url)
            lock.execute("LOCK TABLE alarm_predictions IN ACCESS EXCLUSIVE MODE")
            for k in range(2):
                assert http.post(PREDICT, json=_body(k), headers=AUTH).status_code == 200
            third: list[httpx.Response] = []
            waiter = threading.Thread(target=lambda: third.append(
                http.post(PREDICT, json=_body(2), headers=AUTH)))
            t0 = time.monotonic()
            waiter.start()
            waiter.join(0.4)
            assert waiter.is_alive(), "the third request should wait for room"
            lock.rollback()
            lock.close()
            waiter.join(10)
            assert third and third[0].status_code == 200, third
            assert time.monotonic() - t0 >= 0.4
            assert _metric(http, "chargetracker_alarm_prediction_backpressure_waits_total") >= 1
            assert http.get(LIST, params={"vin": VIN}).json()["total"] == 3

            # A failing store: predictions are still answered (queued), the writer logs
            # and counts the failure and keeps the rows; a reader gets 503, not stale data.
            _sql(postgres_url, *_FAIL)
            ok = [http.post(PREDICT, json=_body(k), headers=AUTH) for k in (3, 4)]
            assert [r.status_code for r in ok] == [200, 200], ok[0].text
            r = http.get(LIST, params={"vin": VIN})
            assert r.status_code == 503, r.text
            assert "refuses writes" in r.json()["error"]["message"]
            assert _metric(http, 'chargetracker_alarm_prediction_commits_total{result="failed"}'
                           ) >= 1
            assert _metric(http, "chargetracker_alarm_predictions_pending") == 2
            # The queue is full: the next request waits 1.5 s, then 503 (never dropped
            # silently, never a 500).
            t0 = time.monotonic()
            r = http.post(PREDICT, json=_body(5), headers=AUTH)
            assert r.status_code == 503, r.text
            assert time.monotonic() - t0 >= 1.4
            assert "not stored" in r.json()["error"]["message"]
            assert _metric(http, "chargetracker_alarm_prediction_backpressure_timeouts_total"
                           ) == 1

            # The store recovers: the kept rows are written (the read flushes them).
            _sql(postgres_url, *_RECOVER)
            listed = http.get(LIST, params={"vin": VIN, "limit": 10})
            assert listed.status_code == 200, listed.text
            assert listed.json()["total"] == 5
            assert {i["request_id"] for i in listed.json()["items"]} >= {
                r.json()["request_id"] for r in ok}
            assert _metric(http, "chargetracker_alarm_predictions_pending") == 0
        assert server.stop() in (0, -15)
        assert "queued predictions failed (kept for retry" in server.log()
    finally:
        server.stop()
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT count(*) FROM alarm_predictions WHERE vin = %s",
                            [VIN]).fetchone()
    assert rows is not None and rows[0] == 5
