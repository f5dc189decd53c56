"""The runner end to end: simulated fleet / files -> engine -> DuckDB, exactly."""

from __future__ import annotations

import math
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from chargetracker.config import AlertConfig, EngineConfig, RuntimeConfig, Settings
from chargetracker.errors import ConfigError
from chargetracker.readers import read_file
from chargetracker.runtime import Pipeline, Runner
from chargetracker.runtime.pipeline import IngestResult
from chargetracker.sim import AgeingConfig, FleetConfig, GroupConfig
from chargetracker.sources import Batch, FileSource, SimulatorSource
from chargetracker.stores.base import CommitBatch
from chargetracker.stores.duckdb import DuckDBStore

from .fleets import assert_store_equals_summary, expected_summary, tiny_fleet

DATA = Path(__file__).resolve().parents[1] / "data"


def _settings(tmp_path: Path, **runtime: Any) -> Settings:
    rt = RuntimeConfig(**{"poll_interval_s": 0.01, "max_batch_rows": 7_000, **runtime})
    return Settings(store_url=f"duckdb:///{tmp_path / 'ct.duckdb'}", runtime=rt)


def test_simulated_fleet_through_runtime_equals_engine_batch(tmp_path: Path) -> None:
    cfg = tiny_fleet(cells=6, hours=6.0, seed=21)
    settings = _settings(tmp_path)
    with DuckDBStore(tmp_path / "ct.duckdb") as store:
        pipeline = Pipeline(store, settings)
        src = SimulatorSource(cfg, acceleration=math.inf)
        stats = Runner(pipeline, [src], raw_retention_days=None).run()
        assert stats.finished and stats.batches > 10
        summary, frame = expected_summary(cfg, settings.engine)
        assert_store_equals_summary(store, summary, src.fleet.cell_ids)
        accepted = frame.height - summary.rejected.height
        ingest = store.ingest_stats()
        assert stats.accepted == accepted == ingest["samples_total"]
        assert ingest["measurements_stored"] == accepted
        # Duplicates and late rows are dead letters with a reason, never dropped silently.
        assert summary.rejected.height > 0
        assert ingest["dead_letters_stored"] == summary.rejected.height == stats.rejected
        reasons = store.dead_letters(limit=10_000).get_column("reason")
        assert reasons.str.starts_with("duplicate timestamp").any()
        assert store.cells_count() == 6


class SlowStore(DuckDBStore):
    """A DuckDB store whose commits take at least ``delay_s`` (a slow disk or server)."""

    delay_s = 0.02

    def commit(self, batch: CommitBatch) -> None:
        time.sleep(self.delay_s)
        super().commit(batch)


class CountingSource(SimulatorSource):
    """Counts the batches it produced and how many of them are still alive in memory."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.produced = 0
        self.alive = 0
        self._lock = threading.Lock()

    def _gone(self) -> None:
        with self._lock:
            self.alive -= 1

    def poll(self, max_rows: int) -> Batch | None:
        batch = super().poll(max_rows)
        if batch is not None:
            with self._lock:
                self.produced += 1
                self.alive += 1
            weakref.finalize(batch, self._gone)
        return batch


def test_back_pressure_bounds_the_queue_and_memory(tmp_path: Path) -> None:
    cfg = tiny_fleet(cells=4, hours=6.0, seed=3, faults=())
    max_queue = 2
    settings = _settings(tmp_path, max_batch_rows=1_000, max_queue_batches=max_queue)
    with SlowStore(tmp_path / "ct.duckdb") as store:
        pipeline = Pipeline(store, settings)
        src = CountingSource(cfg, acceleration=math.inf)
        seen: list[tuple[int, int, int]] = []
        runner: Runner

        def on_commit(name: str, batch: Batch, result: IngestResult) -> None:
            seen.append((runner.queue_size, src.produced - len(seen) - 1, src.alive))

        runner = Runner(pipeline, [src], on_commit=on_commit, raw_retention_days=None)
        stats = runner.run()
        assert stats.finished and len(seen) == stats.batches > 20
        # The queue never exceeds its bound, and the source is held back: beyond the
        # batch being committed, only the queued ones, one in the engine, one handed to
        # the writer and one being polled exist (a few more are still referenced by
        # local variables until the threads move on).
        assert max(q for q, _, _ in seen) <= max_queue
        assert stats.max_queue <= max_queue
        assert max(ahead for _, ahead, _ in seen) <= max_queue + 3
        assert max(alive for _, _, alive in seen) <= max_queue + 6
        assert src.produced > 5 * (max_queue + 6)
        # The slow store throttled the source: it mostly waited on a full queue.
        assert sum(q == max_queue for q, _, _ in seen) > len(seen) // 2
        # ... and every sample still arrived, exactly.
        summary, frame = expected_summary(cfg, settings.engine)
        assert_store_equals_summary(store, summary, src.fleet.cell_ids)
        assert store.ingest_stats()["measurements_stored"] == frame.height


def test_stop_commits_in_flight_batch_and_resumes_exactly(tmp_path: Path) -> None:
    cfg = tiny_fleet(cells=4, hours=5.0, seed=8)
    settings = _settings(tmp_path, max_batch_rows=3_000)
    path = tmp_path / "ct.duckdb"
    with DuckDBStore(path) as store:
        src = SimulatorSource(cfg, acceleration=20_000.0)   # paced: ~0.9 s for the run
        commits: list[Any] = []
        runner = Runner(Pipeline(store, settings), [src],
                        on_commit=lambda n, b, r: commits.append(b.position))
        runner.start()
        deadline = time.monotonic() + 20
        while len(commits) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        runner.stop()
        stats = runner.join(timeout=20)
        assert stats.stopped and not stats.finished
        stopped_at = commits[-1]["sample"]
        assert 0 < stopped_at < 5 * 3600
    with DuckDBStore(path) as store:
        pipeline = Pipeline(store, settings)
        assert pipeline.position("simulator") == commits[-1]
        src = SimulatorSource(cfg, acceleration=math.inf)
        stats = Runner(pipeline, [src]).run()
        assert stats.finished and stats.resumed["simulator"]["sample"] == stopped_at
        summary, frame = expected_summary(cfg, settings.engine)
        assert_store_equals_summary(store, summary, src.fleet.cell_ids)
        assert store.ingest_stats()["measurements_stored"] == frame.height - summary.rejected.height
        # A third start finds the run finished and does nothing (no second flush).
        again = Runner(Pipeline(store, settings), [SimulatorSource(cfg, acceleration=math.inf)]).run()
        assert again.finished and again.batches == 0


def test_defective_cell_raises_outlier_alert_and_limits_raise_alerts(tmp_path: Path) -> None:
    ageing = AgeingConfig(fade_per_cycle=0.0003, defective_fraction=0.125,
                          defective_factor=(150.0, 150.0), knee_fraction=0.0)
    cfg = FleetConfig(groups=(GroupConfig("nmc-acc", "NMC", "accelerated", 8),),
                      seed=4, duration_s=7 * 3600.0, ageing=ageing)
    alerts = AlertConfig(over_temperature_c=None, over_voltage_v=4.15)
    settings = _settings(tmp_path, max_batch_rows=20_000).with_overrides(alerts=alerts)
    with DuckDBStore(tmp_path / "ct.duckdb") as store:
        src = SimulatorSource(cfg, acceleration=math.inf)
        defective = src.fleet.metadata["defective"]
        assert len(defective) == 1
        Runner(Pipeline(store, settings), [src]).run()
        got = store.alerts(limit=1000)
        outliers = got.filter(pl.col("rule") == "outlier_discharge_ah")
        assert outliers.height > 0
        assert set(outliers.get_column("cell_id").to_list()) == set(defective)
        assert (outliers.get_column("group") == "nmc-acc").all()
        over_v = got.filter(pl.col("rule") == "over_voltage")
        assert over_v.height > 0 and (over_v.get_column("value") > 4.15).all()
        # Identity (ts, cell, rule, cycle): every alert once, although open snapshots and
        # closed records of the same cycle were evaluated many times.
        keys = got.select("ts", "cell_id", "rule", "cycle")
        assert keys.unique().height == keys.height


def test_retention_prunes_raw_rows_on_the_data_clock(tmp_path: Path) -> None:
    cfg = tiny_fleet(cells=2, hours=6.0, seed=2, faults=())
    settings = _settings(tmp_path, max_batch_rows=5_000)
    with DuckDBStore(tmp_path / "ct.duckdb") as store:
        src = SimulatorSource(cfg, acceleration=math.inf)
        stats = Runner(Pipeline(store, settings), [src], raw_retention_days=1.0 / 24,
                       retention_interval_s=0.0).run()
        assert stats.pruned > 0
        newest = store.ingest_stats()["newest_ts"]
        kept = pl.concat([store.measurements(c) for c in src.fleet.cell_ids])
        assert kept.get_column("ts").min() >= newest - 3600.0
        assert kept.height == store.ingest_stats()["measurements_stored"] < stats.accepted
        # Results are not raw data: every cycle is still there.
        summary, _ = expected_summary(cfg, settings.engine)
        assert store.cycles().height == summary.cycles.height


def _arbin_with_bad_rows(tmp_path: Path) -> tuple[Path, list[int]]:
    lines = (DATA / "arbin_example.csv").read_text().splitlines()
    bad_lines = [20, 21, 400, 1500]              # 1-based file line numbers
    for ln in bad_lines:
        cells = lines[ln - 1].split(",")
        if ln == 21:
            cells[6] = ""                         # Current missing
        elif ln == 400:
            cells[7] = "nan"                      # Voltage NaN
        else:
            cells[7] = "3.4V?"                    # Voltage unreadable
        lines[ln - 1] = ",".join(cells)
    path = tmp_path / "cell-bad.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, bad_lines


def test_bad_rows_go_to_dead_letters_and_good_rows_beside_them_are_kept(tmp_path: Path) -> None:
    path, bad_lines = _arbin_with_bad_rows(tmp_path)
    settings = _settings(tmp_path, max_batch_rows=500)
    good, rejected, _ = read_file(path)
    assert rejected.height == len(bad_lines)
    with DuckDBStore(tmp_path / "ct.duckdb") as store:
        src = FileSource(path, name="arbin")
        stats = Runner(Pipeline(store, settings), [src]).run()
        assert stats.finished
        dead = store.dead_letters(limit=100).sort("row")
        assert dead.get_column("row").to_list() == bad_lines
        assert dead.get_column("source").unique().to_list() == [str(path)]
        assert dead.get_column("field").to_list() == ["Voltage", "Current", "Voltage", "Voltage"]
        assert dead.filter(pl.col("row") == 21).get_column("reason").item() == "missing value"
        assert dead.filter(pl.col("row") == 1500).get_column("reason").item().startswith("not a number")
        assert all(p for p in dead.get_column("payload").to_list())
        # Every good row (including the neighbours of the bad ones) is stored.
        stored = store.measurements("cell-bad")
        assert stored.height == good.height == 2142 - len(bad_lines)
        assert stored.get_column("ts").to_list() == good.sort("ts").get_column("ts").to_list()
        ingest = store.ingest_stats()["by_source"]["arbin"]
        assert ingest == {**ingest, "accepted": good.height, "rejected": len(bad_lines)}


def test_runner_rejects_duplicate_source_names(tmp_path: Path) -> None:
    cfg = tiny_fleet(cells=2, hours=1.0)
    with DuckDBStore(":memory:") as store:
        with pytest.raises(ConfigError, match="unique"):
            Runner(Pipeline(store), [SimulatorSource(cfg), SimulatorSource(cfg)])


def test_engine_config_change_is_refused_on_resume(tmp_path: Path) -> None:
    cfg = tiny_fleet(cells=2, hours=1.0, faults=())
    path = tmp_path / "ct.duckdb"
    with DuckDBStore(path) as store:
        Runner(Pipeline(store, _settings(tmp_path)), [SimulatorSource(cfg, acceleration=math.inf)]).run()
    changed = _settings(tmp_path).with_overrides(engine=EngineConfig(lateness_s=0.0))
    with DuckDBStore(path) as store:
        with pytest.raises(Exception, match="different engine configuration"):
            Pipeline(store, changed)


class FlakyStore(DuckDBStore):
    """Fails one commit (a full disk, a lost connection), then works again."""

    fail_at = 5

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.commits = 0

    def commit(self, batch: CommitBatch) -> None:
        self.commits += 1
        if self.commits == self.fail_at:
            from chargetracker.errors import StoreUnavailable

            raise StoreUnavailable("disk full (test)")
        super().commit(batch)


def test_failed_commit_stops_the_runner_and_nothing_is_lost(tmp_path: Path) -> None:
    cfg = tiny_fleet(cells=4, hours=3.0, seed=12)
    settings = _settings(tmp_path, max_batch_rows=2_000)
    path = tmp_path / "ct.duckdb"
    with FlakyStore(path) as store:
        pipeline = Pipeline(store, settings)
        runner = Runner(pipeline, [SimulatorSource(cfg, acceleration=math.inf)])
        with pytest.raises(Exception, match="disk full"):
            runner.run()
        committed = pipeline.store.load_checkpoint("embedded")
        assert committed is not None
        # The pipeline reloads the last committed state before it takes new work.
        pipeline.ingest(pl.DataFrame(schema=dict(store.measurements("x").schema)), source="api")
        assert pipeline.position("simulator") == committed.position["simulator"]
    with DuckDBStore(path) as store:
        src = SimulatorSource(cfg, acceleration=math.inf)
        assert Runner(Pipeline(store, settings), [src]).run().finished
        summary, frame = expected_summary(cfg, settings.engine)
        assert_store_equals_summary(store, summary, src.fleet.cell_ids)
        assert store.ingest_stats()["measurements_stored"] == frame.height - summary.rejected.height
