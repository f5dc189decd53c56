"""Meter store contract, run over DuckDB and PostgreSQL (a real server from tests/pg.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from chargetracker.errors import NotFound
from chargetracker.meters import MeterConfig, compute_thresholds, summarize
from chargetracker.meters.simulator import SimConfig, load_profiles, simulate
from chargetracker.stores.meters import MeterStore

from .helpers import incremental


@pytest.fixture(params=["duckdb", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MeterStore]:
    url = (f"duckdb:///{tmp_path / 'm.duckdb'}" if request.param == "duckdb"
           else request.getfixturevalue("postgres_url"))
    s = MeterStore(url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def neighbourhood() -> tuple[pl.DataFrame, pl.DataFrame]:
    parts = list(simulate(SimConfig(houses=6, days=3, seed=4, spikes_per_house_day=1.0),
                          load_profiles()))
    return pl.concat([m for m, _ in parts]), pl.concat([r for _, r in parts])


def test_round_trip_and_filters(store: MeterStore, neighbourhood: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    meters, readings = neighbourhood
    cfg = MeterConfig()
    thr = compute_thresholds(readings, cfg)
    s = summarize(readings, cfg, meters=meters, thresholds=thr)
    store.put_meters(meters)
    store.put_days(s.days)
    store.put_thresholds(thr)
    store.put_alerts(s.alerts)
    assert store.meters().equals(meters.sort("meter_id"))
    h0 = meters["house_id"][0]
    assert store.meters(house_id=h0).height == meters.filter(pl.col("house_id") == h0).height
    z = meters["zip"][0]
    assert set(store.houses(zip_code=z)["house_id"]) == set(
        meters.filter(pl.col("zip") == z)["house_id"])
    got = store.days()
    assert got.equals(s.days.sort("meter_id", "date"))
    d0 = s.days["date"].min()
    assert (store.days(house_id=h0, start=d0, end=d0)["date"] == d0).all()
    assert store.thresholds().equals(thr.sort("meter_id"))
    al = store.alerts(limit=10_000)
    assert al.height == s.alerts.height > 0 and al["acked_ts"].null_count() == al.height


def test_upserts_are_idempotent_and_closed_days_win(store: MeterStore,
                                                     neighbourhood: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    meters, readings = neighbourhood
    days, alerts, _ = incremental(readings.sort("ts"), list(range(0, readings.height, 5000)),
                                  meters=meters)
    # Feed every intermediate output twice, like a replay after a crash.
    from chargetracker.meters import flush, new_state, register_meters, update

    st = new_state()
    register_meters(st, meters)
    frame = readings.sort("ts")
    outs = []
    for a in range(0, frame.height, 7000):
        st, out = update(st, frame.slice(a, 7000))
        outs.append(out)
    st, out = flush(st)
    outs.append(out)
    for o in outs + outs[:3]:
        store.put_days(o.days)
        store.put_readings(frame.slice(0, 100))
    assert store.days().equals(days)
    assert store.readings(frame["meter_id"][0]).height == frame.slice(0, 100).filter(
        pl.col("meter_id") == frame["meter_id"][0]).height


def test_alert_ack_and_not_found(store: MeterStore) -> None:
    a = pl.DataFrame({"meter_id": ["m"], "house_id": ["h"], "zip": ["Z"], "start_ts": [10.0],
                      "status": ["open"], "end_ts": [10.0], "duration_s": [0.0], "peak_w": [900.0],
                      "peak_ts": [10.0], "threshold_w": [300.0], "ratio": [3.0], "n_readings": [1]})
    store.put_alerts(a)
    acked = store.ack_alert("m", 10.0, at=99.0)
    assert acked["acked_ts"][0] == 99.0
    # The episode's close updates it but keeps the acknowledgement.
    store.put_alerts(a.with_columns(pl.lit("closed").alias("status"), pl.lit(70.0).alias("end_ts")))
    row = store.alerts(meter_id="m").row(0, named=True)
    assert row["status"] == "closed" and row["end_ts"] == 70.0 and row["acked_ts"] == 99.0
    assert store.alerts(acked=False).height == 0 and store.alerts(status="closed").height == 1
    with pytest.raises(NotFound):
        store.ack_alert("m", 11.0)


def test_dead_letters_and_hostile_values(store: MeterStore) -> None:
    evil = "x'); DROP TABLE meter_days; --"
    store.put_meters(pl.DataFrame({"meter_id": [evil], "house_id": ["h"], "appliance": ["tv"],
                                   "zip": [None], "timezone": ["UTC"], "attributes": [None]}))
    assert store.meters(meter_id=evil).height == 1 and store.days().height == 0
    store.put_dead_letters(pl.DataFrame({"source": ["f"], "row": [3], "meter_id": [evil],
                                         "ts": [None], "field": ["power_w"], "reason": ["NaN"],
                                         "payload": ["{}"]}))
    dl = store.dead_letters()
    assert dl.select("row", "field", "reason").rows() == [(3, "power_w", "NaN")]
    assert dl["received_ts"][0] > dt.datetime(2020, 1, 1).timestamp()
