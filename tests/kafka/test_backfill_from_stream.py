"""The documented recovery path: a stream through a worker with ``--archive``, then a
backfill of that archive into a *fresh* store gives the stream's steps and cycles --
the archive carries the cell metadata (nominal capacity -> rest threshold) and the
engine settings the numbers depend on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import polars as pl

from chargetracker.batch import run_backfill
from chargetracker.batch.backfill import local_results
from chargetracker.batch.results import split_results
from chargetracker.config import EngineConfig, KafkaConfig, Settings
from chargetracker.kafka.worker import Worker, WorkerOptions
from chargetracker.stores.archive import ParquetArchive
from chargetracker.stores.url import open_store

from .streams import _first_difference, fleet_stream, store_steps
from .test_worker import _send


def _results(store: object) -> tuple[pl.DataFrame, pl.DataFrame]:
    cycles = store.cycles().fill_nan(None).sort("cell_id", "cycle")  # type: ignore[attr-defined]
    ids = cycles.get_column("cell_id").unique().sort().to_list()
    return cycles, store_steps(store, ids).fill_nan(None)  # type: ignore[arg-type]


def test_backfill_into_a_fresh_store_equals_the_stream(
        make_topic: Callable[..., KafkaConfig], postgres_url: str, tmp_path: Path) -> None:
    stream = fleet_stream(cells=12, hours=3.0, sample_period_s=15.0, seed=21)
    assert stream.cells.get_column("nominal_capacity_ah").is_not_null().all()
    cfg = make_topic(3)
    _send(cfg, stream, slice(None), cells=True, eos=True)
    # A non-default engine setting: it must travel with the archive too.
    engine = replace(EngineConfig(), min_step_s=5.0)
    settings = Settings(kafka=cfg, engine=engine)
    archive = tmp_path / "archive"
    with open_store(postgres_url) as store:
        Worker(store, settings, WorkerOptions(until_idle_s=1.0, store_raw=False,
                                              archive_dir=str(archive))).run()
        cycles, steps = _results(store)
    arch = ParquetArchive(archive)
    meta = arch.cells()
    assert meta.height == stream.cells.height
    assert meta.sort("cell_id").get_column("nominal_capacity_ah").to_list() == \
        stream.cells.sort("cell_id").get_column("nominal_capacity_ah").to_list()
    assert arch.engine_settings()["min_step_s"] == 5.0  # type: ignore[index]

    with open_store(f"duckdb:///{tmp_path / 'fresh.duckdb'}") as fresh:
        result = run_backfill(archive, fresh, engine="local")
        assert result.cycles == cycles.height
        assert result.new_cells == stream.cells.height
        got_cycles, got_steps = _results(fresh)
        assert got_cycles.equals(cycles), _first_difference(got_cycles, cycles)
        assert got_steps.equals(steps), _first_difference(got_steps, steps)
        # The fresh store learnt the cells' metadata from the archive.
        known = fresh.cells(limit=100)
        assert known.get_column("nominal_capacity_ah").is_not_null().all()

    # Control: without the archived metadata the numbers differ (what issue 10 saw).
    # Equivalent full cycles are throughput over the nominal capacity; without it the
    # engine falls back to the cell's own largest discharge, and epsilon to its default.
    bare = split_results(local_results(archive, config=EngineConfig(), nominal={}))
    efc = "equivalent_full_cycles"
    bare_efc = bare.cycles.sort("cell_id", "cycle").get_column(efc).fill_nan(None)
    assert bare.cycles.height != cycles.height or not bare_efc.equals(cycles.get_column(efc))
