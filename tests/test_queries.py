"""The shared read side: group trend, deep dive and outliers over a real DuckDB store."""

from __future__ import annotations

import polars as pl
import pytest

from chargetracker.engine import new_state, summarize, update
from chargetracker.errors import NotFound, ValidationError
from chargetracker.queries import Queries
from chargetracker.runtime.pipeline import Pipeline
from chargetracker.stores.base import CommitBatch
from chargetracker.stores.url import open_store

from .engine.streams import cycling_frame


@pytest.fixture()
def store(tmp_path):
    st = open_store(f"duckdb:///{tmp_path / 'q.duckdb'}")
    yield st
    st.close()


def fill(store, *, defective: str | None = "cell-004") -> pl.DataFrame:
    frame = cycling_frame(cells=8, cycles=4, charge_s=300, rest_s=60, discharge_s=300)
    if defective:
        # The defective cell delivers 40 % less current on discharge: lower capacity.
        frame = frame.with_columns(
            pl.when((pl.col("cell_id") == defective) & (pl.col("current_a") < 0))
            .then(pl.col("current_a") * 0.6).otherwise(pl.col("current_a")).alias("current_a"))
    # A live stream (no end of data declared): the last cycle stays open.
    _, s = update(new_state(), frame)
    steps = s.steps.unique(subset=["cell_id", "step"], keep="last", maintain_order=True)
    cycles = s.cycles.unique(subset=["cell_id", "cycle"], keep="last", maintain_order=True)
    cells = pl.DataFrame({"cell_id": [f"cell-{k:03d}" for k in range(8)],
                          "group": ["A"] * 8, "chemistry": ["NMC"] * 8})
    store.commit(CommitBatch(cells=cells, steps=steps, cycles=cycles))
    return cycles


def test_group_trend_is_closed_cycles_only(store) -> None:
    cycles = fill(store, defective=None)
    q = Queries(store)
    trend = q.group_trend("discharge_ah")
    closed = cycles.filter(pl.col("status") == "closed")
    assert trend.get_column("cycle").to_list() == sorted(closed.get_column("cycle").unique().to_list())
    row = trend.filter(pl.col("cycle") == 1).row(0, named=True)
    ref = closed.filter(pl.col("cycle") == 1).get_column("discharge_ah")
    assert row["n"] == 8
    assert row["mean"] == pytest.approx(ref.mean())
    assert row["std"] == pytest.approx(ref.std())
    assert row["std_pct"] == pytest.approx(100 * ref.std() / ref.mean())
    open_trend = q.group_trend("discharge_ah", status="open")
    assert open_trend.get_column("cycle").to_list() == [4]


def test_deep_dive_sorted_by_deviation_flags_defective(store) -> None:
    fill(store)
    q = Queries(store)
    cycle, dive = q.group_cycle("A")
    assert cycle == 3  # latest complete cycle (cycle 4 is still open everywhere)
    devs = dive.get_column("pct_deviation").abs().to_list()
    assert devs == sorted(devs, reverse=True)
    assert dive.row(0, named=True)["cell_id"] == "cell-004"
    assert dive.filter(pl.col("outlier")).get_column("cell_id").to_list() == ["cell-004"]
    assert q.outliers().get_column("cell_id").to_list() == ["cell-004"]


def test_unknown_metric_and_cell(store) -> None:
    q = Queries(store)
    with pytest.raises(ValidationError) as err:
        q.group_trend("voltage; DROP TABLE cycles")
    assert err.value.field == "metric"
    with pytest.raises(NotFound):
        q.cell_trend("nope")
    cycle, dive = q.group_cycle("empty")
    assert cycle is None and dive.height == 0


def test_pipeline_raises_outlier_alert_once(store) -> None:
    frame = cycling_frame(cells=8, cycles=3, charge_s=300, rest_s=60, discharge_s=300)
    frame = frame.with_columns(
        pl.when((pl.col("cell_id") == "cell-002") & (pl.col("current_a") < 0))
        .then(pl.col("current_a") * 0.5).otherwise(pl.col("current_a")).alias("current_a"))
    pipe = Pipeline(store)
    pipe.register_cells(pl.DataFrame({"cell_id": [f"cell-{k:03d}" for k in range(8)], "group": ["A"] * 8}))
    for part in frame.sort("ts").iter_slices(5000):
        pipe.ingest(part, source="test")
    pipe.finish(source="test")
    alerts = store.alerts(limit=100)
    outl = alerts.filter(pl.col("rule") == "outlier_discharge_ah")
    assert set(outl.get_column("cell_id").to_list()) == {"cell-002"}
    assert outl.height == outl.select("cell_id", "cycle").unique().height  # no duplicates
    # Every committed cycle equals the batch analysis of the same samples.
    batch = summarize(frame)
    stored = store.cycles(None, status=None).sort(["cell_id", "cycle"])
    assert stored.get_column("discharge_ah").to_list() == batch.cycles.get_column("discharge_ah").to_list()


def test_outliers_ignore_cells_without_group(store) -> None:
    fill(store)
    s = summarize(cycling_frame(cells=1, cycles=3, charge_s=300, rest_s=60, discharge_s=300)
                  .with_columns(pl.lit("lonely").alias("cell_id")))
    store.commit(CommitBatch(steps=s.steps, cycles=s.cycles))
    assert Queries(store).outliers().get_column("cell_id").to_list() == ["cell-004"]


def test_persistent_outlier_alerts_once(store) -> None:
    frame = cycling_frame(cells=8, cycles=5, charge_s=300, rest_s=60, discharge_s=300)
    frame = frame.with_columns(
        pl.when((pl.col("cell_id") == "cell-003") & (pl.col("current_a") < 0))
        .then(pl.col("current_a") * 0.5).otherwise(pl.col("current_a")).alias("current_a"))
    pipe = Pipeline(store)
    pipe.register_cells(pl.DataFrame({"cell_id": [f"cell-{k:03d}" for k in range(8)], "group": ["A"] * 8}))
    for part in frame.sort("ts").iter_slices(3000):
        pipe.ingest(part, source="test")
    alerts = store.alerts(limit=100).filter(pl.col("rule") == "outlier_discharge_ah")
    # An outlier in every closed cycle, alerted once: when it became one.
    assert alerts.get_column("cell_id").to_list() == ["cell-003"]
    assert alerts.get_column("cycle").to_list() == [1]
