"""Alarm endpoints through a real ``chargetracker serve`` process (packaged model)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest
from tests.api.conftest import AUTH, KEY, LiveServer, start_server

DATA = Path(__file__).resolve().parents[1] / "data"
SERIES = DATA / "bms-series_samples.csv"
BATCH = DATA / "bms-test_batch_samples-head.csv"
CSV = {"Content-Type": "text/csv", **AUTH}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # Sync writes here (the reply waits for its commit); the default, grouped writes, is
    # tested in test_alarm_writes.py.
    s = start_server(tmp_path_factory.mktemp("alarms"), "--api-key", KEY, "--no-dashboard",
                     "--alarm-write", "sync")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def _vin_records(vin: str, n: int | None = None) -> list[dict[str, str]]:
    rows = [r for r in csv.DictReader(open(SERIES)) if r["VIN"] == vin]
    return rows[-n:] if n else rows


def test_predict_from_records(http: httpx.Client) -> None:
    recs = _vin_records("JH4PC6DU52KF7SVMZ", 20)
    r = http.post("/api/v1/alarms/predict", json={"vin": "JH4PC6DU52KF7SVMZ", "records": recs},
                  headers={**AUTH, "X-Request-Id": "req-42"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0.0 <= body["probability"] <= 1.0
    assert body["alarm"] == (body["probability"] >= body["threshold"])
    last = recs[-1]["Date"]
    assert body["date"] > last and body["request_id"] == "req-42"
    assert len(body["contributions"]) == 5 and body["model_version"]
    stored = http.get("/api/v1/alarms/predictions", params={"vin": "JH4PC6DU52KF7SVMZ"}).json()
    assert stored["total"] == 1 and stored["items"][0]["request_id"] == "req-42"
    assert stored["items"][0]["source"] == "http"


def test_predict_84_value_form(http: httpx.Client) -> None:
    line = BATCH.read_text().splitlines()[4].split(",")
    r = http.post("/api/v1/alarms/predict", headers=AUTH,
                  json={"vin": line[0], "date": line[1], "features": ",".join(line[2:]),
                        "store": False})
    assert r.status_code == 200, r.text
    assert r.json()["date"] == line[1]
    empty = ",".join(["-1"] * 84)
    r = http.post("/api/v1/alarms/predict", headers=AUTH,
                  json={"vin": "X", "date": "2020-01-01", "features": empty, "store": False})
    assert r.status_code == 200 and r.json()["days_with_data"] == 0 and r.json()["warnings"]


@pytest.mark.parametrize(("payload", "field"), [
    ({"vin": "A", "features": "1,2,3"}, "features"),
    ({"vin": "A", "features": ",".join(["x"] * 84)}, "features"),
    ({"vin": "A"}, "records"),
    ({"vin": "A", "records": []}, "records"),
    ({"records": [{"date": "2020-01-01"}]}, "vin"),
    ({"vin": "A", "records": [{"Date": "2020-01-01", "TotalVoltage": "x", "TotalCurrent": 1,
                               "CellMaxVoltage": 3.7, "CellMinVoltage": 3.6,
                               "MaxTemperature": 20, "MinTemperature": 19}]},
     "records.0.total_voltage_v"),
    ({"vin": "A", "records": [{"Date": "2020-01-01", "TotalVoltage": 350}]}, "total_current_a"),
])
def test_predict_bad_input_is_422(http: httpx.Client, payload: dict, field: str) -> None:
    r = http.post("/api/v1/alarms/predict", json=payload, headers=AUTH)
    assert r.status_code == 422, r.text
    assert field in (r.json()["error"]["field"] or "")


def test_fewer_than_14_days_is_422(http: httpx.Client) -> None:
    recs = _vin_records("JH4PC6DU52KF7SVMZ", 5)
    r = http.post("/api/v1/alarms/predict", json={"vin": "JH4PC6DU52KF7SVMZ", "records": recs},
                  headers=AUTH)
    assert r.status_code == 422 and "14 days" in r.json()["error"]["message"]


def test_writes_need_the_key(http: httpx.Client) -> None:
    r = http.post("/api/v1/alarms/predict", json={"vin": "A", "features": "1"})
    assert r.status_code == 401
    r = http.post("/api/v1/pack-records", content=b"x", headers={"Content-Type": "text/csv"})
    assert r.status_code == 401
    r = http.post("/api/v1/alarms/predict/batch", content=b"x",
                  headers={"Content-Type": "text/csv", "Authorization": "Bearer wrong"})
    assert r.status_code == 403


def test_batch_csv_84_and_json(http: httpx.Client) -> None:
    r = http.post("/api/v1/alarms/predict/batch", content=BATCH.read_bytes(), headers=CSV)
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 40
    two = [r for r in csv.DictReader(open(SERIES)) if r["VIN"] in ("C60JG5UL59BHDSATY",)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(two[0]))
    w.writeheader()
    w.writerows(two)
    bad = buf.getvalue() + "C60JG5UL59BHDSATY,2030-01-01,abc,1,3.7,3.6,25,24,0\n"
    r = http.post("/api/v1/alarms/predict/batch", content=bad.encode(), headers=CSV)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) == len(two) - 14 + 1
    assert body["rejected"][0]["field"] == "total_voltage_v"
    r = http.post("/api/v1/alarms/predict/batch", json=two[:20], headers=AUTH,
                  params={"store": "false"})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 7
    r = http.post("/api/v1/alarms/predict/batch", json=two[:5], headers=AUTH)
    assert r.status_code == 422
    pq = io.BytesIO()
    pl.DataFrame(two[:20]).write_parquet(pq)
    r = http.post("/api/v1/alarms/predict/batch", content=pq.getvalue(),
                  headers={"Content-Type": "application/vnd.apache.parquet", **AUTH})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 7


def test_predictions_filters_and_pages(http: httpx.Client) -> None:
    page = http.get("/api/v1/alarms/predictions", params={"limit": 5}).json()
    assert len(page["items"]) == 5 and page["next_offset"] == 5 and page["total"] > 5
    nxt = http.get("/api/v1/alarms/predictions", params={"limit": 5, "offset": 5}).json()
    assert not {(i["vin"], i["date"]) for i in page["items"]} & \
        {(i["vin"], i["date"]) for i in nxt["items"]}
    alarms = http.get("/api/v1/alarms/predictions", params={"alarm_only": "true"}).json()
    assert all(i["alarm"] for i in alarms["items"])
    r = http.get("/api/v1/alarms/predictions", params={"start": "2020-01-02", "end": "2020-01-01"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "start"
    r = http.get("/api/v1/alarms/predictions", params={"vin": "NOPE"})
    assert r.status_code == 404
    r = http.get("/api/v1/alarms/predictions", params={"start": "yesterday"})
    assert r.status_code == 422


def test_pack_records_ingest(http: httpx.Client) -> None:
    body = SERIES.read_bytes()
    r = http.post("/api/v1/pack-records", content=body, headers=CSV)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 5805 and r.json()["rejected"] == 0
    # Through the pack pipeline: every VIN-day with 14 earlier days is predicted (as the
    # batch scorer does on the same records) and predicted alarms are alert episodes.
    from chargetracker.ml import Predictor
    from chargetracker.ml.records import parse_records_csv, validate_records
    from chargetracker.stores.models import load_default_model

    vin = "ZJRY34BK1EVGT58AM"
    recs = validate_records(parse_records_csv(body)).records.filter(pl.col("vin") == vin)
    want = Predictor(load_default_model()).predict_records(recs)
    got = http.get("/api/v1/alarms/predictions", params={"vin": vin, "limit": 1000}).json()
    assert got["total"] == want.height
    assert sorted(i["probability"] for i in got["items"]) == pytest.approx(
        sorted(want.get_column("probability").to_list()), abs=1e-9)
    alerts = http.get("/api/v1/alerts", params={"limit": 1000}).json()["items"]
    mine = [a for a in alerts if a["rule"] == "predicted_consistency_alarm" and a["cell_id"] == vin]
    assert 1 <= len(mine) < int(want.get_column("alarm").sum())
    bad = b"VIN,Date,TotalVoltage\nA,2020-01-01,1\n"
    r = http.post("/api/v1/pack-records", content=bad, headers=CSV)
    assert r.status_code == 422 and r.json()["error"]["field"] == "total_current_a"
    r = http.post("/api/v1/pack-records", json=[{"vin": "A", "date": "nope",
                                                 "total_voltage_v": 1, "total_current_a": 1,
                                                 "cell_max_v": 3, "cell_min_v": 3,
                                                 "max_temperature_c": 1,
                                                 "min_temperature_c": 1}], headers=AUTH)
    assert r.status_code == 422 and r.json()["error"]["field"] == "date"


def test_model_card_and_openapi(http: httpx.Client) -> None:
    card = http.get("/api/v1/alarms/model").json()
    assert card["manifest"]["features"] and card["manifest"]["threshold"] > 0
    spec = http.get("/api/v1/openapi.json").json()
    for path in ("/api/v1/alarms/predict", "/api/v1/alarms/predict/batch",
                 "/api/v1/alarms/predictions", "/api/v1/pack-records"):
        assert path in spec["paths"]
