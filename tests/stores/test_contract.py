"""The store contract: every backend (see conftest.STORE_BACKENDS) must pass all of it."""

from __future__ import annotations

import json
import threading
import time

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chargetracker.errors import SchemaError, StoreError, ValidationError
from chargetracker.schema import CELL_SCHEMA, CYCLE_SCHEMA, MEASUREMENT_SCHEMA, STEP_SCHEMA
from chargetracker.stores.base import TREND_METRICS, Checkpoint, CommitBatch, Store
from chargetracker.stores.url import open_store

EVIL = "x'; DROP TABLE cycles; --"


def _fleet(frames, store: Store) -> None:
    """Three cells in two groups; cell c3 has no metadata row of its own."""
    store.commit(CommitBatch(
        cells=frames.cells(
            {"cell_id": "c1", "group": "A", "chemistry": "NMC", "test_type": "1C",
             "nominal_capacity_ah": 2.5, "attributes": json.dumps({"site": "lab1", "batch": "7"})},
            {"cell_id": "c2", "group": "A", "chemistry": "LFP", "test_type": "1C",
             "nominal_capacity_ah": 3.0, "attributes": json.dumps({"site": "lab2"})},
            {"cell_id": "c4", "group": "B", "chemistry": "LFP", "test_type": "2C",
             "nominal_capacity_ah": 3.0, "attributes": None},
        ),
        cycles=frames.cycles(
            frames.cycle("c1", 1, discharge_ah=2.0), frames.cycle("c1", 2, discharge_ah=1.9),
            frames.cycle("c1", 3, status="open", discharge_ah=0.5),
            frames.cycle("c2", 1, discharge_ah=2.8), frames.cycle("c2", 2, discharge_ah=2.7),
            frames.cycle("c4", 1, discharge_ah=2.9),
            frames.cycle("c3", 1, discharge_ah=1.0),
        ),
    ))


# -- round trips ---------------------------------------------------------------------
def test_commit_round_trip_every_table(store: Store, frames) -> None:
    cells = frames.cells({"cell_id": "c1", "group": "A", "chemistry": "NMC", "test_type": "1C",
                          "nominal_capacity_ah": 2.5, "v_min": 2.5, "v_max": 4.2,
                          "attributes": json.dumps({"site": "lab1"})})
    meas = frames.measurements("c1", [1.0, 2.0, 3.5])
    steps = frames.steps(frames.step("c1", 1, 1), frames.step("c1", 2, 1, kind="discharge",
                                                               status="open"))
    cycles = frames.cycles(frames.cycle("c1", 1, status="open"))
    alerts = frames.alerts({"ts": 3.5, "cell_id": "c1", "group": "A", "rule": "over_temperature",
                            "severity": "critical", "value": 61.0, "threshold": 60.0, "cycle": 1,
                            "message": "61 degC > 60 degC"})
    dead = frames.dead_letters({"source": "file.csv", "row": 7, "cell_id": "c1", "ts": 2.0,
                                "field": "voltage_v", "reason": "NaN", "payload": "{}"})
    store.commit(CommitBatch(
        measurements=meas, steps=steps, cycles=cycles, dead_letters=dead, alerts=alerts,
        cells=cells, checkpoints=[Checkpoint("pipe", b"\x00state\xff", {"offset": 42})],
        counters={"file.csv": {"accepted": 3, "rejected": 1}},
    ))
    assert_frame_equal(store.cells(), cells)
    assert_frame_equal(store.measurements("c1"), meas)
    assert_frame_equal(store.steps("c1"), steps)
    assert_frame_equal(store.cycles("c1"), cycles)
    got_alerts = store.alerts()
    assert_frame_equal(got_alerts.select(alerts.columns), alerts)
    assert got_alerts["acknowledged"].to_list() == [False]
    assert got_alerts["id"].dtype == pl.Int64
    got_dead = store.dead_letters()
    assert_frame_equal(got_dead.select(dead.columns), dead)
    assert got_dead["received_at"][0] == pytest.approx(time.time(), abs=60)
    cp = store.load_checkpoint("pipe")
    assert cp == Checkpoint("pipe", b"\x00state\xff", {"offset": 42})
    stats = store.ingest_stats()
    assert stats["samples_total"] == 3 and stats["rejected_total"] == 1
    assert store.cells_count() == 1


def test_schemas_of_empty_reads(store: Store) -> None:
    assert store.cells().schema == pl.Schema(CELL_SCHEMA)
    assert store.cycles().schema == pl.Schema(CYCLE_SCHEMA)
    assert store.steps("none").schema == pl.Schema(STEP_SCHEMA)
    assert store.measurements("none", max_points=10).schema == pl.Schema(MEASUREMENT_SCHEMA)
    assert store.metric_values("discharge_ah").columns == ["group", "cell_id", "cycle", "value"]
    assert store.alerts().height == 0 and store.dead_letters().height == 0
    assert store.cell("none") is None
    assert store.load_checkpoint("none") is None
    assert store.cells_count() == 0
    stats = store.ingest_stats()
    assert stats["samples_total"] == 0 and stats["lag_s"] is None
    assert stats["samples_per_s"] == 0.0
    assert store.ingest_rate_series(0.0).columns == ["wall", "samples", "rejected"]


def test_cell_detail(store: Store, frames) -> None:
    _fleet(frames, store)
    store.commit(CommitBatch(measurements=frames.measurements("c1", [10.0, 11.0, 12.0]),
                             steps=frames.steps(frames.step("c1", 1, 1), frames.step("c1", 2, 1))))
    c1 = store.cell("c1")
    assert c1 is not None
    assert c1["group"] == "A" and c1["chemistry"] == "NMC"
    assert c1["attributes"] == {"site": "lab1", "batch": "7"}
    assert c1["n_measurements"] == 3 and c1["first_ts"] == 10.0 and c1["last_ts"] == 12.0
    assert c1["n_steps"] == 2 and c1["n_cycles"] == 3 and c1["n_closed_cycles"] == 2
    assert c1["latest_cycle"]["cycle"] == 3 and c1["latest_cycle"]["status"] == "open"
    # A cell seen only in data is listed, with null metadata.
    c3 = store.cell("c3")
    assert c3 is not None and c3["group"] is None and c3["attributes"] == {}
    assert c3["n_cycles"] == 1
    assert store.cell("nope") is None


# -- idempotency ---------------------------------------------------------------------
def test_same_batch_twice_is_idempotent(store: Store, frames) -> None:
    batch = CommitBatch(
        measurements=frames.measurements("c1", [1.0, 2.0, 3.0]),
        steps=frames.steps(frames.step("c1", 1, 1), frames.step("c1", 2, 1)),
        cycles=frames.cycles(frames.cycle("c1", 1)),
        cells=frames.cells({"cell_id": "c1", "group": "A"}),
        alerts=frames.alerts({"ts": 3.0, "cell_id": "c1", "rule": "r", "cycle": 1}),
        checkpoints=[Checkpoint("p", b"s", {"o": 3})],
    )
    store.commit(batch)
    before = (store.measurements("c1"), store.steps("c1"), store.cycles(), store.cells(),
              store.alerts().drop("id"))
    store.commit(batch)
    after = (store.measurements("c1"), store.steps("c1"), store.cycles(), store.cells(),
             store.alerts().drop("id"))
    for b, a in zip(before, after, strict=True):
        assert_frame_equal(b, a)
    assert store.measurements("c1").height == 3
    assert store.alerts().height == 1


def test_open_cycle_replaced_when_closed(store: Store, frames) -> None:
    store.commit(CommitBatch(cycles=frames.cycles(frames.cycle("c1", 1, status="open",
                                                               discharge_ah=0.7))))
    assert store.metric_values("discharge_ah").height == 0
    store.commit(CommitBatch(cycles=frames.cycles(frames.cycle("c1", 1, status="closed",
                                                               discharge_ah=2.0))))
    cyc = store.cycles()
    assert cyc.height == 1
    assert cyc["status"][0] == "closed" and cyc["discharge_ah"][0] == 2.0
    assert store.metric_values("discharge_ah")["value"].to_list() == [2.0]


def test_duplicate_keys_within_one_batch_last_wins(store: Store, frames) -> None:
    store.commit(CommitBatch(
        cycles=frames.cycles(frames.cycle("c1", 1, status="open", discharge_ah=1.0),
                             frames.cycle("c1", 1, status="closed", discharge_ah=2.0)),
        measurements=pl.concat([frames.measurements("c1", [1.0, 2.0]),
                                frames.measurements("c1", [2.0, 3.0])]),
    ))
    assert store.cycles()["discharge_ah"].to_list() == [2.0]
    meas = store.measurements("c1")
    assert meas["ts"].to_list() == [1.0, 2.0, 3.0]
    # Raw rows are insert-if-absent: the first row of a key wins, as on a replay.
    assert meas["voltage_v"].to_list() == pytest.approx([3.7, 3.701, 3.701])


def test_overlapping_measurements_are_not_duplicated(store: Store, frames) -> None:
    store.commit(CommitBatch(measurements=frames.measurements("c1", [1.0, 2.0, 3.0])))
    store.commit(CommitBatch(measurements=frames.measurements("c1", [2.0, 3.0, 4.0, 5.0])))
    assert store.measurements("c1")["ts"].to_list() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_cell_metadata_upsert(store: Store, frames) -> None:
    store.upsert_cells(frames.cells({"cell_id": "c1", "group": "A", "chemistry": "NMC"}))
    store.upsert_cells(frames.cells({"cell_id": "c1", "group": "B", "chemistry": "NMC"},
                                    {"cell_id": "c2", "group": "B"}))
    cells = store.cells()
    assert cells["cell_id"].to_list() == ["c1", "c2"]
    assert cells["group"].to_list() == ["B", "B"]
    # Data for a cell does not wipe its metadata.
    store.commit(CommitBatch(measurements=frames.measurements("c1", [1.0])))
    assert store.cell("c1")["group"] == "B"


# -- atomicity -----------------------------------------------------------------------
def test_wrong_typed_column_rolls_back_everything(store: Store, frames) -> None:
    store.commit(CommitBatch(checkpoints=[Checkpoint("p", b"old", {"o": 1})],
                             counters={"s": {"accepted": 1}}))
    bad_steps = frames.steps(frames.step("c1", 1, 1)).with_columns(
        pl.lit("not a number").alias("n_samples"))
    with pytest.raises(SchemaError) as err:
        store.commit(CommitBatch(
            measurements=frames.measurements("c1", [1.0, 2.0]),
            cycles=frames.cycles(frames.cycle("c1", 1)),
            steps=bad_steps,
            checkpoints=[Checkpoint("p", b"new", {"o": 2})],
            counters={"s": {"accepted": 2}},
        ))
    assert err.value.field == "n_samples"
    assert store.load_checkpoint("p") == Checkpoint("p", b"old", {"o": 1})
    assert store.measurements("c1").height == 0
    assert store.cycles().height == 0
    assert store.ingest_stats()["samples_total"] == 1


def test_constraint_violation_in_database_rolls_back(store: Store, frames) -> None:
    """A failure inside the transaction (null key, caught by the database, after the
    checkpoint, raw rows and steps were written) leaves the previous state."""
    store.commit(CommitBatch(checkpoints=[Checkpoint("p", b"old", {"o": 1})],
                             cycles=frames.cycles(frames.cycle("c1", 1, discharge_ah=2.0))))
    bad_cycles = frames.cycles(frames.cycle("c1", 1, discharge_ah=9.0),
                               frames.cycle("c1", 2)).with_columns(
        pl.when(pl.col("cycle") == 2).then(None).otherwise(pl.col("cell_id")).alias("cell_id"))
    with pytest.raises(StoreError):
        store.commit(CommitBatch(
            measurements=frames.measurements("c1", [1.0, 2.0]),
            steps=frames.steps(frames.step("c1", 1, 1)),
            cycles=bad_cycles,
            alerts=frames.alerts({"ts": 1.0, "cell_id": "c1", "rule": "r"}),
            checkpoints=[Checkpoint("p", b"new", {"o": 2})],
            counters={"s": {"accepted": 2}},
        ))
    assert store.load_checkpoint("p") == Checkpoint("p", b"old", {"o": 1})
    assert store.measurements("c1").height == 0
    assert store.steps("c1").height == 0
    assert store.cycles()["discharge_ah"].to_list() == [2.0]
    assert store.alerts().height == 0
    assert store.ingest_stats()["samples_total"] == 0
    # The store is still usable afterwards.
    store.commit(CommitBatch(checkpoints=[Checkpoint("p", b"new", {"o": 2})]))
    assert store.load_checkpoint("p").state == b"new"


def test_missing_key_column_names_field(store: Store, frames) -> None:
    with pytest.raises(SchemaError) as err:
        store.commit(CommitBatch(cycles=frames.cycles(frames.cycle("c1", 1)).drop("cycle")))
    assert err.value.field == "cycle"


def test_bad_cycle_status_and_attributes_rejected(store: Store, frames) -> None:
    with pytest.raises(SchemaError) as err:
        store.commit(CommitBatch(cycles=frames.cycles(frames.cycle("c1", 1, status="done"))))
    assert err.value.field == "status"
    with pytest.raises(SchemaError) as err:
        store.upsert_cells(frames.cells({"cell_id": "c1", "attributes": "[1, 2]"}))
    assert err.value.field == "attributes"


# -- checkpoints ---------------------------------------------------------------------
def test_checkpoint_save_overwrite_load(store: Store) -> None:
    store.commit(CommitBatch(checkpoints=[Checkpoint("a", b"1", {"file": "x.csv", "offset": 10}),
                                          Checkpoint("b", b"", {})]))
    store.commit(CommitBatch(checkpoints=[Checkpoint("a", b"2" * 100_000,
                                                     {"partitions": {"0": 5, "1": 7}})]))
    assert store.load_checkpoint("a") == Checkpoint("a", b"2" * 100_000,
                                                    {"partitions": {"0": 5, "1": 7}})
    assert store.load_checkpoint("b") == Checkpoint("b", b"", {})
    with pytest.raises(ValidationError) as err:
        store.commit(CommitBatch(checkpoints=[Checkpoint("c", b"", {"bad": object()})]))
    assert err.value.field == "position"


def test_checkpoints_by_prefix_several_in_one_batch(store: Store) -> None:
    """One checkpoint per input partition (Kafka workers), all committed in one batch and
    loaded back by prefix; the prefix is literal (``%`` and ``_`` are not wildcards)."""
    cps = [Checkpoint(f"worker:measurements:{p}", bytes([p]) * 3, {"offset": 100 + p})
           for p in (0, 1, 2, 10)]
    store.commit(CommitBatch(checkpoints=[*cps, Checkpoint("worker:other:0", b"o", {}),
                                          Checkpoint("w_rker%x", b"w", {})]))
    got = store.load_checkpoints("worker:measurements:")
    assert got == sorted(cps, key=lambda c: c.name)
    # A later batch replaces some of them, atomically with the rest of the batch.
    store.commit(CommitBatch(checkpoints=[Checkpoint("worker:measurements:1", b"n", {"offset": 7}),
                                          Checkpoint("worker:measurements:2", b"m", {"offset": 9})]))
    assert [c.position["offset"] for c in store.load_checkpoints("worker:measurements:")] == [
        100, 7, 110, 9]  # by name: ...:10 sorts before ...:2
    assert store.load_checkpoints("worker:measurements:1") == [
        Checkpoint("worker:measurements:1", b"n", {"offset": 7}),
        Checkpoint("worker:measurements:10", bytes([10]) * 3, {"offset": 110})]
    assert store.load_checkpoints("w_") == [Checkpoint("w_rker%x", b"w", {})]
    assert store.load_checkpoints("w%") == []
    assert store.load_checkpoints("nothing") == []
    assert len(store.load_checkpoints("")) == 6


# -- filters and pagination ----------------------------------------------------------
def test_cell_filters_and_pagination(store: Store, frames) -> None:
    _fleet(frames, store)
    ids = lambda df: df["cell_id"].to_list()  # noqa: E731
    assert ids(store.cells()) == ["c1", "c2", "c3", "c4"]
    assert ids(store.cells(filters={"group": "A"})) == ["c1", "c2"]
    assert ids(store.cells(filters={"chemistry": "LFP"})) == ["c2", "c4"]
    assert ids(store.cells(filters={"chemistry": "LFP", "test_type": "2C"})) == ["c4"]
    assert ids(store.cells(filters={"site": "lab1"})) == ["c1"]
    assert ids(store.cells(filters={"site": ["lab1", "lab2"]})) == ["c1", "c2"]
    assert ids(store.cells(filters={"nominal_capacity_ah": "3"})) == ["c2", "c4"]
    assert ids(store.cells(filters={"group": []})) == []
    assert ids(store.cells(limit=2)) == ["c1", "c2"]
    assert ids(store.cells(limit=2, offset=2)) == ["c3", "c4"]
    assert ids(store.cells(limit=2, offset=10)) == []
    assert store.cells_count() == 4
    assert store.cells_count(filters={"group": "A"}) == 2
    with pytest.raises(ValidationError) as err:
        store.cells(limit=-1)
    assert err.value.field == "limit"
    with pytest.raises(ValidationError) as err:
        store.cells(offset=-5)
    assert err.value.field == "offset"
    with pytest.raises(ValidationError):
        store.cells(filters={"nominal_capacity_ah": "big"})


def test_cycles_and_steps_queries(store: Store, frames) -> None:
    _fleet(frames, store)
    cyc = store.cycles()
    assert list(zip(cyc["cell_id"], cyc["cycle"], strict=True)) == [
        ("c1", 1), ("c1", 2), ("c1", 3), ("c2", 1), ("c2", 2), ("c3", 1), ("c4", 1)]
    assert store.cycles("c1", status="open")["cycle"].to_list() == [3]
    assert store.cycles("c1", status="closed")["cycle"].to_list() == [1, 2]
    assert store.cycles(limit=2, offset=1)["cycle"].to_list() == [2, 3]
    with pytest.raises(ValidationError) as err:
        store.cycles(status="half")
    assert err.value.field == "status"
    store.commit(CommitBatch(steps=frames.steps(
        frames.step("c1", 3, 2), frames.step("c1", 1, 1), frames.step("c1", 2, 1))))
    assert store.steps("c1")["step"].to_list() == [1, 2, 3]
    assert store.steps("c1", cycle=1)["step"].to_list() == [1, 2]
    assert store.steps("c1", limit=1, offset=1)["step"].to_list() == [2]


def test_cycle_starts_of_closed_cycles_in_one_query(store: Store, frames) -> None:
    _fleet(frames, store)
    keys = pl.DataFrame({"cell_id": ["c2", "c1", "c1", "c1", "nope", EVIL, "c2"],
                         "cycle": [2, 1, 3, 9, 1, 1, 2]})
    got = store.cycle_starts(keys)
    assert got.columns == ["cell_id", "cycle", "start_ts"]
    # c1 cycle 3 is open, c1 cycle 9 and the unknown cells do not exist; keys repeat.
    assert [(c, y) for c, y, _ in got.iter_rows()] == [("c1", 1), ("c2", 2)]
    want = store.cycles(status="closed").select("cell_id", "cycle", "start_ts")
    assert_frame_equal(got, want.join(got.select("cell_id", "cycle"), on=["cell_id", "cycle"],
                                      how="semi"), check_dtypes=False)
    # The generic (per-cell) form of the port gives the same rows.
    assert_frame_equal(Store.cycle_starts(store, keys).sort("cell_id", "cycle"), got,
                       check_dtypes=False)
    assert store.cycle_starts(keys.clear()).height == 0
    many = pl.DataFrame({"cell_id": ["c1"] * 4500, "cycle": list(range(4500))})
    assert store.cycle_starts(many)["cycle"].to_list() == [1, 2]


def test_measurements_range_and_downsampling(store: Store, frames) -> None:
    ts = [float(t) for t in range(1000)]
    store.commit(CommitBatch(measurements=frames.measurements("c1", ts)))
    store.commit(CommitBatch(measurements=frames.measurements("c2", ts[:10])))
    assert store.measurements("c1").height == 1000
    rng = store.measurements("c1", start_ts=100.0, end_ts=199.0)
    assert rng["ts"].to_list() == [float(t) for t in range(100, 200)]
    for max_points in (1, 7, 300, 999, 1000, 5000):
        got = store.measurements("c1", max_points=max_points)
        assert 0 < got.height <= max_points
        assert got["ts"].is_sorted()
        assert got["ts"][0] == 0.0
        assert set(got["ts"].to_list()) <= set(ts)  # real samples, not averages
    assert store.measurements("c1", max_points=1000).height == 1000
    assert store.measurements("c1", start_ts=500.0, max_points=50).height <= 50
    with pytest.raises(ValidationError):
        store.measurements("c1", max_points=0)


# -- metric values -------------------------------------------------------------------
def test_metric_values_groups_closed_only(store: Store, frames) -> None:
    _fleet(frames, store)
    mv = store.metric_values("discharge_ah")
    assert mv.columns == ["group", "cell_id", "cycle", "value"]
    rows = set(mv.iter_rows())
    assert ("A", "c1", 3, 0.5) not in rows  # open cycle excluded
    assert rows == {("A", "c1", 1, 2.0), ("A", "c1", 2, 1.9), ("A", "c2", 1, 2.8),
                    ("A", "c2", 2, 2.7), ("B", "c4", 1, 2.9), (None, "c3", 1, 1.0)}
    by_chem = store.metric_values("discharge_ah", group_key="chemistry", filters={"group": "A"})
    assert set(by_chem.select("group", "cell_id").unique().iter_rows()) == {
        ("NMC", "c1"), ("LFP", "c2")}
    by_site = store.metric_values("discharge_ah", group_key="site")
    assert set(by_site.filter(pl.col("cell_id") == "c2")["group"]) == {"lab2"}
    since = store.metric_values("discharge_ah", since_cycle=2)
    assert since["cycle"].to_list() == [2, 2]
    all_status = store.metric_values("discharge_ah", status=None, filters={"group": "A"})
    assert all_status.height == 5


def test_metric_allow_list(store: Store) -> None:
    for metric in ("voltage_v", "cell_id", "discharge_ah; DROP TABLE cycles", ""):
        with pytest.raises(ValidationError) as err:
            store.metric_values(metric)
        assert err.value.field == "metric"
    for metric in TREND_METRICS:
        assert store.metric_values(metric).height == 0
    with pytest.raises(ValidationError) as err:
        store.metric_values("discharge_ah", group_key='x") OR 1=1 --')
    assert err.value.field == "group_key"


def test_nan_metrics_are_stored_as_missing(store: Store, frames) -> None:
    store.commit(CommitBatch(cycles=frames.cycles(
        frames.cycle("c1", 1, coulombic_efficiency=float("nan")),
        frames.cycle("c1", 2, coulombic_efficiency=0.99))))
    assert store.cycles()["coulombic_efficiency"].to_list() == [None, 0.99]
    assert store.metric_values("coulombic_efficiency")["cycle"].to_list() == [2]


# -- parameterization safety ---------------------------------------------------------
def test_hostile_strings_round_trip(store: Store, frames) -> None:
    store.commit(CommitBatch(
        cells=frames.cells({"cell_id": EVIL, "group": EVIL, "attributes": json.dumps({"k": EVIL})}),
        measurements=frames.measurements(EVIL, [1.0, 2.0]),
        steps=frames.steps(frames.step(EVIL, 1, 1)),
        cycles=frames.cycles(frames.cycle(EVIL, 1), frames.cycle("ok", 1)),
        checkpoints=[Checkpoint(EVIL, b"x", {"k": EVIL})],
    ))
    assert store.cell(EVIL)["group"] == EVIL
    assert store.cells(filters={"group": EVIL})["cell_id"].to_list() == [EVIL]
    assert store.cells(filters={"k": EVIL})["cell_id"].to_list() == [EVIL]
    assert store.cycles(EVIL).height == 1
    assert store.steps(EVIL).height == 1
    assert store.measurements(EVIL, max_points=1).height == 1
    assert store.metric_values("discharge_ah", filters={"group": EVIL})["cell_id"].to_list() == [EVIL]
    assert store.load_checkpoint(EVIL).position == {"k": EVIL}
    assert store.cells(filters={"group": "' OR '1'='1"}).height == 0
    with pytest.raises(ValidationError):
        store.cells(filters={"x'; DROP TABLE cells; --": "1"})
    # Nothing was dropped.
    assert store.cycles().height == 2 and store.cells_count() == 2


# -- alerts and dead letters ---------------------------------------------------------
def test_alerts_newest_first_and_ack(store: Store, frames) -> None:
    store.commit(CommitBatch(alerts=frames.alerts(
        {"ts": 1.0, "cell_id": "c1", "rule": "over_voltage", "value": 4.3, "threshold": 4.2},
        {"ts": 2.0, "cell_id": "c2", "rule": "over_temperature", "severity": "critical"},
    )))
    store.commit(CommitBatch(alerts=frames.alerts({"ts": 3.0, "cell_id": "c1", "rule": "outlier"})))
    al = store.alerts()
    assert al["rule"].to_list() == ["outlier", "over_temperature", "over_voltage"]
    assert al["id"].is_sorted(descending=True)
    assert al["severity"].to_list() == ["warning", "critical", "warning"]
    first_id = al["id"][-1]
    assert store.alerts(since_id=first_id)["rule"].to_list() == ["outlier", "over_temperature"]
    assert store.alerts(limit=1)["rule"].to_list() == ["outlier"]
    assert store.ack_alert(first_id, by="alice") is True
    assert store.ack_alert(first_id, by="bob") is True  # first acknowledgement kept
    acked = store.alerts(acknowledged=True)
    assert acked["id"].to_list() == [first_id]
    assert acked["acknowledged_by"][0] == "alice"
    assert acked["acknowledged_at"][0] == pytest.approx(time.time(), abs=60)
    assert store.alerts(acknowledged=False).height == 2
    assert store.ack_alert(10_000_000) is False


def test_dead_letters_kept_with_reason(store: Store, frames) -> None:
    store.commit(CommitBatch(dead_letters=frames.dead_letters(
        {"source": "a.csv", "row": 1, "field": "voltage_v", "reason": "NaN"},
        {"source": "a.csv", "row": 2, "field": "ts", "reason": "missing value"},
    )))
    store.commit(CommitBatch(dead_letters=frames.dead_letters(
        {"source": "b.csv", "row": 0, "field": "cell_id", "reason": "missing cell_id",
         "payload": json.dumps({"cell_id": None})})))
    dl = store.dead_letters()
    assert dl["reason"].to_list() == ["missing cell_id", "missing value", "NaN"]
    assert dl["id"].is_sorted(descending=True)
    assert store.dead_letters(limit=1)["source"].to_list() == ["b.csv"]
    assert store.ingest_stats()["dead_letters_stored"] == 3
    with pytest.raises(SchemaError) as err:
        store.commit(CommitBatch(dead_letters=pl.DataFrame({"source": ["x"]})))
    assert err.value.field == "reason"


# -- ingest statistics ---------------------------------------------------------------
def test_ingest_stats_and_rate_series(store: Store, frames) -> None:
    t0 = time.time()
    store.commit(CommitBatch(measurements=frames.measurements("c1", [t0 - 5.0, t0 - 4.0]),
                             counters={"sim": {"accepted": 2, "rejected": 0}}))
    store.commit(CommitBatch(counters={"sim": {"accepted": 10, "rejected": 1},
                                       "file": {"accepted": 5, "rejected": 2}}))
    stats = store.ingest_stats()
    assert stats["samples_total"] == 17 and stats["rejected_total"] == 3
    assert stats["by_source"]["sim"]["accepted"] == 12
    assert stats["by_source"]["sim"]["rejected"] == 1
    assert stats["by_source"]["file"] == {"accepted": 5, "rejected": 2,
                                          "updated_at": pytest.approx(time.time(), abs=60)}
    assert stats["samples_per_s"] > 0
    assert stats["last_commit_wall"] == pytest.approx(time.time(), abs=60)
    assert stats["newest_ts"] == t0 - 4.0
    assert 4.0 <= stats["lag_s"] < 60.0
    assert stats["measurements_stored"] == 2 and stats["cells"] == 1
    series = store.ingest_rate_series(t0 - 60)
    assert series["samples"].to_list() == [2, 15]
    assert series["rejected"].to_list() == [0, 3]
    assert series["wall"].is_sorted()
    assert store.ingest_rate_series(time.time() + 3600).height == 0


# -- retention -----------------------------------------------------------------------
def test_prune_measurements(store: Store, frames) -> None:
    store.commit(CommitBatch(measurements=pl.concat([
        frames.measurements("c1", [1.0, 2.0, 3.0, 4.0]), frames.measurements("c2", [1.5, 5.0])]),
        steps=frames.steps(frames.step("c1", 1, 1, start_ts=1.0, end_ts=4.0),
                           frames.step("c2", 1, 1, start_ts=1.5, end_ts=5.0))))
    assert store.prune_measurements(3.0) == 3
    assert store.measurements("c1")["ts"].to_list() == [3.0, 4.0]
    assert store.measurements("c2")["ts"].to_list() == [5.0]
    assert store.prune_measurements(3.0) == 0


# -- persistence and concurrency -----------------------------------------------------
def test_persists_across_reopen(store: Store, store_url: str, frames) -> None:
    _fleet(frames, store)
    store.commit(CommitBatch(measurements=frames.measurements("c1", [1.0, 2.0]),
                             checkpoints=[Checkpoint("p", b"state", {"o": 9})],
                             counters={"s": {"accepted": 2}}))
    cycles = store.cycles()
    store.close()
    with pytest.raises(StoreError):
        store.cycles()
    with open_store(store_url) as again:
        assert_frame_equal(again.cycles(), cycles)
        assert again.measurements("c1").height == 2
        assert again.load_checkpoint("p") == Checkpoint("p", b"state", {"o": 9})
        assert again.ingest_stats()["samples_total"] == 2
        assert again.cell("c1")["attributes"]["site"] == "lab1"


def test_reads_from_threads_while_committing(store: Store, frames) -> None:
    errors: list[BaseException] = []
    reads = [0]
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                cyc = store.cycles("c1")
                # Every committed cycle came with its measurement: a reader never sees
                # half a commit.
                assert store.measurements("c1").height >= cyc.height
                store.metric_values("discharge_ah")
                store.ingest_stats()
                store.cells()
                reads[0] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 41):
            store.commit(CommitBatch(cycles=frames.cycles(frames.cycle("c1", i)),
                                     measurements=frames.measurements("c1", [float(i)]),
                                     counters={"s": {"accepted": 1}}))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert reads[0] > 0
    assert store.cycles("c1").height == 40
    assert store.ingest_stats()["samples_total"] == 40


def test_prune_keeps_samples_the_results_do_not_cover(store: Store, frames) -> None:
    """Retention deletes only raw samples that closed steps cover: never the open step's
    or open cycle's, nor a cell's samples no step has reached (issue 10 #2)."""
    closed = frames.step("c1", 1, 1, start_ts=0.0, end_ts=50.0)
    open_ = frames.step("c1", 2, 1, status="open", start_ts=50.0, end_ts=90.0)
    store.commit(CommitBatch(
        measurements=pl.concat([frames.measurements("c1", [float(t) for t in range(0, 100, 10)]),
                                frames.measurements("c2", [1.0, 2.0])]),
        steps=frames.steps(closed, open_)))
    # Everything is older than the horizon: only c1's samples before its open step go.
    assert store.prune_measurements(1e12) == 5
    assert store.measurements("c1")["ts"].to_list() == [50.0, 60.0, 70.0, 80.0, 90.0]
    assert store.measurements("c2")["ts"].to_list() == [1.0, 2.0]   # no step yet
    # An open cycle protects its samples too, even when its steps are closed.
    store.commit(CommitBatch(steps=frames.steps({**open_, "status": "closed", "end_ts": 90.0}),
                             cycles=frames.cycles(frames.cycle("c1", 1, status="open",
                                                               start_ts=60.0, end_ts=90.0))))
    assert store.prune_measurements(1e12) == 1
    assert store.measurements("c1")["ts"].to_list() == [60.0, 70.0, 80.0, 90.0]


def test_prune_dead_letters_by_received_time(store: Store, frames) -> None:
    store.commit(CommitBatch(dead_letters=frames.dead_letters(
        {"source": "api", "row": 0, "field": "ts", "reason": "bad"},
        {"source": "api", "row": 1, "field": "ts", "reason": "bad"})))
    assert store.prune_dead_letters(time.time() - 3600) == 0
    assert store.dead_letters().height == 2
    assert store.prune_dead_letters(time.time() + 1) == 2
    assert store.dead_letters().height == 0
    assert store.ingest_stats()["dead_letters_stored"] == 0


_FLOAT_CYCLE_METRICS = [c for c, t in CYCLE_SCHEMA.items() if t == pl.Float64()
                        and c not in ("start_ts", "end_ts")]


def test_every_uncomputable_metric_reads_back_as_null(store: Store, frames) -> None:
    """One meaning in every store (docs/metrics.md): a metric that cannot be computed is
    NULL, whether the engine handed NaN or null; never NaN beside NULL (issue 10 #12)."""
    nan_row = {**frames.cycle("c1", 1), **{c: float("nan") for c in _FLOAT_CYCLE_METRICS}}
    null_row = {**frames.cycle("c1", 2), **{c: None for c in _FLOAT_CYCLE_METRICS}}
    step_nan = frames.step("c1", 1, 1, **{c: float("nan") for c, t in STEP_SCHEMA.items()
                                         if t == pl.Float64() and c not in ("start_ts", "end_ts")})
    store.commit(CommitBatch(cycles=frames.cycles(nan_row, null_row), steps=frames.steps(step_nan)))
    cycles = store.cycles("c1")
    for c in _FLOAT_CYCLE_METRICS:
        assert cycles[c].to_list() == [None, None], c
        assert cycles[c].is_nan().sum() == 0, c
    steps = store.steps("c1")
    for c, t in STEP_SCHEMA.items():
        if t == pl.Float64() and c not in ("start_ts", "end_ts"):
            assert steps[c].to_list() == [None], c
