"""The meter kind (kinds/meter.py) through the one micro-batch step and the generic store,
on DuckDB and PostgreSQL: incremental = batch, one alert per spike episode (the episode
model), no alert repeated by a restart or a replay, and the meter tables' contract
(DDL from the specs, dates, upserts and insert-if-absent by key, range reads)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chargetracker.config import Settings
from chargetracker.kinds import TelemetryKind
from chargetracker.kinds.meter import DAYS, READINGS, SPIKE_RULE, SPIKES, MeterKind, meter_kind
from chargetracker.meters import MeterConfig, compute_thresholds, summarize
from chargetracker.meters.simulator import SimConfig, load_profiles, simulate
from chargetracker.runtime import Pipeline
from chargetracker.stores.base import CommitBatch, Store
from chargetracker.stores.meters import MeterStore
from chargetracker.stores.url import open_store

KIND = meter_kind()


@pytest.fixture(params=["duckdb", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (f"duckdb:///{tmp_path / 'm.duckdb'}" if request.param == "duckdb"
           else request.getfixturevalue("postgres_url"))
    st = open_store(url, kinds=[KIND])
    yield st
    st.close()


@pytest.fixture(scope="module")
def town() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Meters, readings (time order) and p97 thresholds of a small simulated town."""
    parts = list(simulate(SimConfig(houses=3, days=1.5, seed=11, spikes_per_house_day=3.0),
                          load_profiles()))
    meters = pl.concat([m for m, _ in parts])
    readings = pl.concat([r for _, r in parts]).sort("ts", "meter_id")
    return meters, readings, compute_thresholds(readings, MeterConfig())


def test_meter_kind_satisfies_the_protocol() -> None:
    assert isinstance(KIND, TelemetryKind)
    assert KIND.raw_table == READINGS and DAYS in KIND.tables


def _pipeline(store: Store, meters: pl.DataFrame, thr: pl.DataFrame) -> Pipeline:
    p = Pipeline(store, Settings(), name="meters-test", kind=KIND)
    p.amend(lambda state: KIND.register(state, meters.join(thr.select("meter_id", "p97_w"),
                                                             on="meter_id", how="left")))
    return p


def test_step_equals_batch_and_one_alert_per_episode(
        store: Store, town: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]) -> None:
    meters, readings, thr = town
    ref = summarize(readings, meters=meters, thresholds=thr)
    assert ref.alerts.height >= 3  # injected spikes were found
    cuts = [0, 700, 701, 3000, readings.height]
    p = _pipeline(store, meters, thr)
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        p.ingest(readings.slice(a, b - a), source="town")
    # A restart from the checkpoint, then a replay of the last batch (a client retry):
    # duplicates only, nothing new, no alert repeated.
    p = Pipeline(store, Settings(), name="meters-test", kind=KIND)
    again = p.ingest(readings.slice(3000, 500), source="town")
    assert again.accepted == 0 and again.rejected.height == 500
    assert all(r.startswith(("duplicate:", "late:")) for r in again.rejected["reason"])
    p.finish(source="town")

    ms = MeterStore(store)
    assert_frame_equal(ms.days(), ref.days.sort("meter_id", "date"))
    spikes = ms.alerts(limit=100_000).drop("acked_ts").sort("meter_id", "start_ts")
    assert_frame_equal(spikes, ref.alerts.sort("meter_id", "start_ts"))
    # The episode model: one notification per spike episode, at its start, none doubled.
    notes = store.alerts(limit=100_000).filter(pl.col("rule") == SPIKE_RULE)
    assert sorted(zip(notes["cell_id"], notes["ts"], strict=True)) == sorted(
        zip(ref.alerts["meter_id"], ref.alerts["start_ts"], strict=True))
    # A notification's value is the opening reading's power, however the stream was cut.
    first = notes.join(readings, left_on=["cell_id", "ts"], right_on=["meter_id", "ts"])
    assert first.height == notes.height and (first["value"] == first["power_w"]).all()
    episodes = store.alert_episodes(limit=100_000).filter(pl.col("rule") == SPIKE_RULE)
    assert episodes.height == ref.alerts.height and set(episodes["state"]) == {"resolved"}
    assert store.rows(READINGS.name, unbounded=True).height == readings.height


def test_meter_tables_contract(store: Store) -> None:
    """The generic store holds the meter tables alike on both backends: dates round-trip,
    upserts replace by key, raw readings are insert-if-absent, range / IN reads."""
    day = {"meter_id": ["m1", "m1", "m2"], "date": [dt.date(2026, 1, 1), dt.date(2026, 1, 2),
                                                    dt.date(2026, 1, 1)],
           "status": ["closed", "open", "closed"], "energy_wh": [1.5, 2.0, float("nan")],
           "n_readings": [10, 3, 7]}
    store.commit(CommitBatch(tables={DAYS.name: pl.DataFrame(day)}))
    store.commit(CommitBatch(tables={DAYS.name: pl.DataFrame(
        {"meter_id": ["m1"], "date": [dt.date(2026, 1, 2)], "status": ["closed"],
         "energy_wh": [4.0], "n_readings": [9]})}))
    got = store.rows(DAYS.name, ranges={"date": (dt.date(2026, 1, 2), None)})
    assert got.select("meter_id", "date", "status", "energy_wh").rows() == [
        ("m1", dt.date(2026, 1, 2), "closed", 4.0)]
    nan_day = store.rows(DAYS.name, filters={"meter_id": "m2"})
    assert nan_day["energy_wh"].is_null().all()  # an undefined metric is missing (NULL)
    both = store.rows(DAYS.name, filters={"meter_id": ["m1", "m2"]}, order=("date", "meter_id"),
                      descending=True, limit=2)
    assert both.select("meter_id", "date").rows() == [("m1", dt.date(2026, 1, 2)),
                                                      ("m2", dt.date(2026, 1, 1))]
    r1 = pl.DataFrame({"meter_id": ["m1", "m1"], "ts": [1.0, 2.0], "power_w": [5.0, 6.0]})
    store.commit(CommitBatch(tables={READINGS.name: r1}))
    store.commit(CommitBatch(tables={READINGS.name: r1.with_columns(pl.col("power_w") * 10)}))
    kept = store.rows(READINGS.name, ranges={"ts": (None, 1.5)})
    assert kept.select("ts", "power_w").rows() == [(1.0, 5.0)]  # the first write of a key wins
    spike = {"meter_id": ["m1"], "start_ts": [1.0], "status": ["open"], "peak_w": [900.0],
             "n_readings": [1]}
    store.commit(CommitBatch(tables={SPIKES.name: pl.DataFrame(spike)}))
    ms = MeterStore(store)
    ms.ack_alert("m1", 1.0, at=5.0)
    store.commit(CommitBatch(tables={SPIKES.name: pl.DataFrame({**spike, "status": ["closed"]})}))
    row = ms.alerts(meter_id="m1").row(0, named=True)
    assert (row["status"], row["acked_ts"]) == ("closed", 5.0)  # the ack survives the upsert


def test_a_bad_reading_is_a_dead_letter_not_a_crash(store: Store) -> None:
    p = Pipeline(store, Settings(), name="meters-bad", kind=MeterKind())
    res = p.ingest(pl.DataFrame({"meter_id": ["a", "a", None], "ts": [0.0, 60.0, 120.0],
                                 "power_w": [1.0, float("inf"), 3.0]}), source="bad")
    assert res.accepted == 1
    assert sorted(res.rejected.select("row", "field").rows()) == [(1, "power_w"), (2, "meter_id")]
    dead = store.dead_letters(limit=10)
    assert set(dead["source"]) == {"bad"} and dead.height == 2


def test_a_table_of_an_earlier_layout_gains_its_new_columns(tmp_path: Path) -> None:
    """A meter table made by the earlier hand-written meter store (no ``updated_at``)
    is given the spec's missing columns when the store opens with the kind."""
    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE meter_thresholds (meter_id TEXT, p97_w DOUBLE PRECISION, "
                "PRIMARY KEY (meter_id))")
    con.execute("INSERT INTO meter_thresholds VALUES ('m1', 1200.0)")
    con.close()
    with open_store(f"duckdb:///{path}", kinds=[KIND]) as st:
        ms = MeterStore(st)
        ms.put_thresholds(pl.DataFrame({"meter_id": ["m2"], "p97_w": [900.0], "n_readings": [4]}))
        got = ms.thresholds().select("meter_id", "p97_w", "n_readings").rows()
    assert got == [("m1", 1200.0, None), ("m2", 900.0, 4)]
