"""The pack kind end to end: ``POST /api/v1/pack-records`` -> the one micro-batch step ->
DuckDB and PostgreSQL -> ``GET /api/v1/alarms/predictions``; predicted alarms as alert
episodes (one alert per run of alarm days, none on a replay); a stream of daily batches
predicts what one batch does."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from chargetracker.api.app import create_app
from chargetracker.config import Settings
from chargetracker.kinds import TelemetryKind
from chargetracker.kinds.pack import ALARM_RULE, PackKind
from chargetracker.ml.records import parse_records_csv, validate_records
from chargetracker.runtime.packs import load_pack_kind, pack_pipeline
from chargetracker.stores.base import Store
from chargetracker.stores.url import open_store

SERIES = Path(__file__).resolve().parents[1] / "data" / "bms-series_samples.csv"
#: A VIN of the reference sample whose predicted alarms run for weeks.
VIN = "JH4PC6DU52KF7SVMZ"


def _rows(vin: str) -> list[dict[str, str]]:
    with open(SERIES, newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["VIN"] == vin]


def _episodes(preds: list[dict], resolve_after: int) -> int:
    """Alarm episodes in one VIN's daily predictions: runs of alarm days, a run ending
    after ``resolve_after`` consecutive clean days (an independent count)."""
    n, clean, open_ = 0, 0, False
    for p in sorted(preds, key=lambda p: p["date"]):
        if p["alarm"]:
            if not open_:
                n, open_ = n + 1, True
            clean = 0
        else:
            clean += 1
            if open_ and clean >= resolve_after:
                open_ = False
    return n


@pytest.fixture(params=["duckdb", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (f"duckdb:///{tmp_path / 'packs.duckdb'}" if request.param == "duckdb"
           else request.getfixturevalue("postgres_url"))
    st = open_store(url, kinds=[PackKind()])
    yield st
    st.close()


def test_pack_kind_satisfies_the_protocol() -> None:
    assert isinstance(PackKind(), TelemetryKind)


def test_pack_records_http_step_store_predictions_episodes(store: Store) -> None:
    settings = Settings()
    rows = _rows(VIN)
    half = len(rows) // 2
    with TestClient(create_app(settings, store=store, dashboard=False)) as client:
        bad = [{**rows[0], "TotalVoltage": "n/a"}]
        r = client.post("/api/v1/pack-records", json=bad)
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["field"] == "total_voltage_v" and VIN in err["message"]
        future = [{**rows[0], "Date": "2100-01-01"}]  # a mistyped year: the step's horizon
        r = client.post("/api/v1/pack-records", json=future)
        assert r.status_code == 422 and r.json()["error"]["field"] == "date", r.text
        assert "far ahead" in r.json()["error"]["message"]
        for part in (rows[:half], rows[half:]):
            r = client.post("/api/v1/pack-records", json=part)
            assert r.status_code == 200, r.text
            assert r.json()["accepted"] == len(part) and r.json()["rejected"] == 0
        got = client.get("/api/v1/alarms/predictions",
                         params={"vin": VIN, "limit": 1000}).json()
        items = got["items"]
        # One prediction per day from the 15th day to the day after the last record.
        span = (dt.date.fromisoformat(rows[-1]["Date"][:10])
                - dt.date.fromisoformat(rows[0]["Date"][:10])).days + 1
        assert got["total"] == len(items) == span - 14 + 1
        assert {i["source"] for i in items} == {"http"}
        alarms = [i for i in items if i["alarm"]]
        assert len(alarms) >= 5
        alerts = [a for a in client.get("/api/v1/alerts", params={"limit": 1000}).json()["items"]
                  if a["rule"] == ALARM_RULE]
        expected = _episodes(items, settings.alerts.resolve_after_cycles)
        assert len(alerts) == expected < len(alarms)
        assert all(a["cell_id"] == VIN for a in alerts)
        # Replay of everything (a client re-sending): no new alert, same predictions.
        r = client.post("/api/v1/pack-records", json=rows)
        assert r.status_code == 200, r.text
        again = [a for a in client.get("/api/v1/alerts", params={"limit": 1000}).json()["items"]
                 if a["rule"] == ALARM_RULE]
        assert len(again) == len(alerts)
        assert client.get("/api/v1/alarms/predictions",
                          params={"vin": VIN}).json()["total"] == got["total"]
    stored = store.rows("pack_records", filters={"vin": VIN})
    assert stored.height == len(rows) and set(stored["source"].to_list()) == {"http"}


def test_five_alarm_days_are_one_alert_and_restart_adds_none(store: Store) -> None:
    settings = Settings()
    kind = load_pack_kind(settings)
    recs = validate_records(parse_records_csv(SERIES.read_bytes())).records.filter(
        pl.col("vin") == VIN)
    preds = kind.predictor.predict_records(recs)  # type: ignore[union-attr]
    # The first five consecutive alarm days and the 14 days before them.
    alarm = preds.get_column("alarm").to_list()
    k = next(i for i in range(len(alarm) - 4) if all(alarm[i:i + 5]))
    first_alarm = preds.get_column("date")[k]
    window = recs.filter(pl.col("date") < first_alarm + pl.duration(days=4))
    pipeline = pack_pipeline(store, settings, kind)
    days = window.get_column("date").unique().sort()
    for d in days.to_list():  # one day a batch, like a live fleet
        pipeline.ingest(window.filter(pl.col("date") == d), source="stream")
    alerts = store.alerts(limit=100).filter(pl.col("rule") == ALARM_RULE)
    episodes = store.alert_episodes().filter(pl.col("rule") == ALARM_RULE)
    assert alerts.height == 1 and episodes.height == 1
    ep = episodes.row(0, named=True)
    assert ep["cell_id"] == VIN and ep["state"] == "open" and ep["occurrences"] >= 5
    # A restarted pipeline (state from its checkpoint) re-sent the last days: nothing new.
    restarted = pack_pipeline(store, settings, kind)
    restarted.ingest(window.filter(pl.col("date") >= days[-3]), source="stream")
    assert store.alerts(limit=100).filter(pl.col("rule") == ALARM_RULE).height == 1
    assert str(first_alarm) in alerts.row(0, named=True)["message"]


def test_daily_stream_equals_batch_and_checkpoint_round_trip() -> None:
    kind = load_pack_kind(Settings())
    kind.keep_days = 16  # a short trailing window: the prior summary must carry history
    recs = validate_records(parse_records_csv(SERIES.read_bytes())).records
    recs = recs.filter(pl.col("vin").is_in(recs.get_column("vin").unique().sort()[:3].implode()))
    batch = kind.predictor.predict_records(recs)  # type: ignore[union-attr]
    state, parts = kind.new_state(), []
    for d in recs.get_column("date").unique().sort().to_list():
        state, out = kind.update(state, kind.validate(recs.filter(pl.col("date") == d),
                                                      source="stream"), source="stream")
        parts.append(out.tables.get("alarm_predictions"))
        state = kind.state_from_bytes(kind.state_to_bytes(state))
    stream = pl.concat([p for p in parts if p is not None]).unique(
        ["vin", "date"], keep="last").sort("vin", "date")
    assert stream.height == batch.height
    assert stream.select(batch.columns).equals(batch.sort("vin", "date"))


def test_bad_records_are_dead_letters_naming_vin_date_field() -> None:
    kind = PackKind()
    frame = pl.DataFrame({"vin": ["A", "A", ""], "date": ["2020-01-01", "2020-13-01", "2020-01-02"],
                          **{c: ["1.0"] * 3 for c in ("total_voltage_v", "total_current_a",
                                                     "cell_max_v", "cell_min_v")},
                          "max_temperature_c": ["20", "20", "20"],
                          "min_temperature_c": ["30", "10", "10"]})
    checked = kind.validate(frame, source="t")
    assert checked.good.height == 0
    dead = checked.rejected.sort("row")
    assert dead.get_column("field").to_list() == ["min_temperature_c", "date", "vin"]
    assert dead.get_column("reason")[0].startswith("VIN A, date 2020-01-01:")
    assert dead.get_column("cell_id").to_list() == ["A", "A", ""]
