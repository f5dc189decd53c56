"""Contract of the pack store (records, predictions, inbox ledger) on DuckDB and on a
real PostgreSQL, with the same assertions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from chargetracker.errors import ConfigError
from chargetracker.ml import PREDICTION_SCHEMA
from chargetracker.stores.packs import PackStore, open_pack_store
from tests.ml.conftest import daily


@pytest.fixture(params=["duckdb", "postgresql"])
def packs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PackStore]:
    clock = iter(float(t) for t in range(1_000, 100_000))
    if request.param == "duckdb":
        url = f"duckdb:///{tmp_path / 'packs.duckdb'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = open_pack_store(url, clock=lambda: next(clock))
    yield store
    store.close()


def _preds(vin: str, days: list[int], probs: list[float], version: str = "m1") -> pl.DataFrame:
    d0 = dt.date(2024, 1, 1)
    return pl.DataFrame({
        "vin": [vin] * len(days), "date": [d0 + dt.timedelta(days=d) for d in days],
        "probability": probs, "alarm": [p >= 0.3 for p in probs],
        "threshold": [0.3] * len(days), "model_version": [version] * len(days),
    }, schema=PREDICTION_SCHEMA)


def test_records_round_trip_and_upsert(packs: PackStore) -> None:
    rows = [(350.0 + k, -1.5, 3.71, 3.70, 25.0, None) for k in range(3)] + [(None,) * 6]
    recs = daily("V1", "2024-01-01", rows, [0, 1, None, 0])
    assert packs.upsert_records(recs, source="http") == 4
    back = packs.records(vin="V1")
    assert back.height == 4 and back["source"].unique().to_list() == ["http"]
    assert back["total_voltage_v"].to_list()[:3] == [350.0, 351.0, 352.0]
    assert back["min_temperature_c"].null_count() == 4 and back["label"].to_list() == [0, 1, None, 0]
    again = recs.with_columns(pl.col("total_voltage_v") + 1)
    packs.upsert_records(again.head(1), source="batch")
    back = packs.records(vin="V1", start=dt.date(2024, 1, 1), end=dt.date(2024, 1, 1))
    assert back.height == 1 and back["total_voltage_v"][0] == 351.0 and back["source"][0] == "batch"


def test_predictions_filters_pages_and_ranking(packs: PackStore) -> None:
    packs.upsert_predictions(_preds("A", [0, 1, 2], [0.1, 0.5, 0.2]), source="batch")
    packs.upsert_predictions(_preds("B", [0, 1], [0.9, 0.05]), source="http", request_id="r-1")
    assert packs.count_predictions() == 5
    assert packs.count_predictions(alarm_only=True) == 2
    page1 = packs.predictions(limit=2)
    page2 = packs.predictions(limit=2, offset=2)
    assert page1["date"].to_list() == [dt.date(2024, 1, 3), dt.date(2024, 1, 2)]
    assert len(set(page1.rows()) & set(page2.rows())) == 0
    b = packs.predictions(vin="B")
    assert b["request_id"].to_list() == ["r-1", "r-1"] and b["source"][0] == "http"
    ranged = packs.predictions(start=dt.date(2024, 1, 2), end=dt.date(2024, 1, 2))
    assert sorted(ranged["vin"].to_list()) == ["A", "B"]
    latest = packs.latest_predictions()
    assert latest["vin"].to_list() == ["A", "B"]          # A's last day 0.2 > B's 0.05
    assert latest["probability"].to_list() == [0.2, 0.05]
    # Rescoring the same day with the same model replaces, another model adds a row.
    packs.upsert_predictions(_preds("A", [2], [0.7]), source="stream")
    packs.upsert_predictions(_preds("A", [2], [0.4], version="m2"), source="batch")
    assert packs.count_predictions(vin="A") == 4
    a2 = packs.predictions(vin="A", start=dt.date(2024, 1, 3))
    assert sorted(a2["probability"].to_list()) == [0.4, 0.7]


def test_inbox_ledger(packs: PackStore) -> None:
    assert not packs.inbox_seen("a.csv", "ab" * 32)
    packs.inbox_record("a.csv", "ab" * 32, status="processed", predictions=3)
    assert packs.inbox_seen("a.csv", "ab" * 32)
    assert not packs.inbox_seen("a.csv", "cd" * 32)
    assert packs.inbox_files()["status"].to_list() == ["processed"]


def test_values_are_bound_not_formatted(packs: PackStore) -> None:
    evil = "x'; DROP TABLE alarm_predictions; --"
    packs.upsert_predictions(_preds(evil, [0], [0.5]), source="batch")
    assert packs.predictions(vin=evil)["vin"].to_list() == [evil]
    assert packs.count_predictions() == 1


def test_bad_source_and_url() -> None:
    with pytest.raises(ConfigError):
        open_pack_store("mysql://x")
    store = open_pack_store("duckdb:///:memory:")
    with pytest.raises(ConfigError):
        store.upsert_predictions(_preds("A", [0], [0.1]), source="carrier-pigeon")
    store.close()


def test_shares_a_duckdb_file_with_the_cell_store(tmp_path: Path) -> None:
    from chargetracker.stores.url import open_store

    url = f"duckdb:///{tmp_path / 'ct.duckdb'}"
    cells = open_store(url)
    packs = open_pack_store(url)
    packs.upsert_predictions(_preds("A", [0], [0.1]), source="batch")
    assert cells.cells().height == 0 and packs.count_predictions() == 1
    packs.close()
    cells.close()


def test_a_store_of_the_first_layout_is_upgraded(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))  # the tables as the first pack store wrote them
    con.execute("CREATE TABLE alarm_predictions (vin VARCHAR(64) NOT NULL, date DATE NOT NULL, "
                "probability DOUBLE PRECISION NOT NULL, alarm BOOLEAN NOT NULL, threshold DOUBLE "
                "PRECISION NOT NULL, model_version VARCHAR(200) NOT NULL, source VARCHAR(16) NOT "
                "NULL, request_id VARCHAR(200), created_at DOUBLE PRECISION NOT NULL, "
                "PRIMARY KEY (vin, date, model_version))")
    con.execute("CREATE INDEX alarm_predictions_date ON alarm_predictions (date)")
    con.execute("INSERT INTO alarm_predictions VALUES ('A', DATE '2024-01-01', 0.5, true, 0.3, "
                "'m1', 'http', NULL, 123.0)")
    con.close()
    with open_pack_store(f"duckdb:///{path}", clock=lambda: 500.0) as packs:
        assert packs.predictions(vin="A").get_column("created_at").to_list() == [123.0]
        packs.upsert_predictions(_preds("A", [1], [0.1]), source="batch")
        got = packs.predictions(vin="A").sort("date")
        assert got.get_column("created_at").to_list() == [123.0, 500.0]
