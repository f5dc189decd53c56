"""Clocks (issue 10 #2, #3): a sample with a wrong clock must judge neither lateness nor
retention. Samples beyond the future horizon are dead letters decided in the step (the
engine takes no clock); retention counts from the source's clock or the wall clock,
never from one row, and never deletes what the results do not cover yet."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from chargetracker.config import RuntimeConfig, Settings
from chargetracker.kinds import cell_kind
from chargetracker.runtime import Pipeline, Runner
from chargetracker.runtime.runner import source_clock
from chargetracker.runtime.step import StepContext, advance
from chargetracker.sources import Batch, SimulatorSource
from chargetracker.stores.duckdb import DuckDBStore

from .fleets import tiny_fleet

YEAR_3000 = 32503680000.0


def _frame(cell: str, ts: np.ndarray, current: np.ndarray | float = 1.0) -> pl.DataFrame:
    n = len(ts)
    cur = np.broadcast_to(np.asarray(current, dtype=float), (n,))
    return pl.DataFrame({"cell_id": [cell] * n, "ts": ts.astype(float),
                         "voltage_v": 3.6 + 0.2 * np.sign(cur), "current_a": cur})


class ListSource:
    """A finite source of fixed batches (a file replay in miniature)."""

    def __init__(self, frames: list[pl.DataFrame], name: str = "file:test") -> None:
        self.name = name
        self._frames = frames
        self._k = 0

    @property
    def done(self) -> bool:
        return self._k >= len(self._frames)

    def poll(self, max_rows: int) -> Batch | None:
        if self.done:
            return None
        frame = self._frames[self._k]
        self._k += 1
        return Batch(frame, {"k": self._k})

    def seek(self, position: Any) -> None:
        self._k = int(position["k"]) if position else 0

    def close(self) -> None:
        pass


def _cycling(t0: float, n: int = 1800, period: int = 300) -> pl.DataFrame:
    """1 s samples, charge / discharge alternating every ``period`` s (steps close)."""
    ts = t0 + np.arange(n, dtype=float)
    cur = np.where((np.arange(n) // period) % 2 == 0, 1.0, -1.0)
    return _frame("c1", ts, cur)


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(store_url=f"duckdb:///{tmp_path / 'ct.duckdb'}",
                    runtime=RuntimeConfig(poll_interval_s=0.01), **kw)


def test_one_row_40_days_ahead_does_not_delete_the_others(tmp_path: Path) -> None:
    """A replayed file of old data with one sample 40 days ahead of it (a cycler clock
    error, still in the past, so within the horizon): on main retention counted back
    from that row and deleted every other raw sample (1,939 -> 1)."""
    t0 = 1.5e9                                   # 2017: an old file
    data = _cycling(t0)
    bad = data.head(1).with_columns(pl.lit(t0 + 40 * 86400.0).alias("ts"))
    frame = pl.concat([data.head(900), bad, data.slice(900)])
    with DuckDBStore(tmp_path / "ct.duckdb") as store:
        stats = Runner(Pipeline(store, _settings(tmp_path)), [ListSource([frame])],
                       raw_retention_days=30.0, retention_interval_s=0.0).run()
        assert stats.pruned == 0
        kept = store.measurements("c1")
        # The engine took the rows before the wrong one; every one of them is kept.
        assert kept.height == stats.accepted
        assert kept.filter(pl.col("ts") < t0 + 1e6).height >= 900


def test_recent_data_with_a_future_row_keeps_everything_and_the_row_is_a_dead_letter(
        tmp_path: Path) -> None:
    now = time.time()
    data = _cycling(now - 3600.0)
    frame = pl.concat([data.head(600), data.head(1).with_columns(pl.lit(now + 40 * 86400.0).alias("ts")),
                       data.slice(600)])
    with DuckDBStore(tmp_path / "ct.duckdb") as store:
        stats = Runner(Pipeline(store, _settings(tmp_path)), [ListSource([frame])],
                       raw_retention_days=30.0, retention_interval_s=0.0).run()
        assert stats.accepted == data.height and stats.rejected == 1
        assert store.measurements("c1").height == data.height
        dead = store.dead_letters()
        assert dead.height == 1 and "future horizon" in dead["reason"][0]


def test_retention_never_deletes_the_open_step(tmp_path: Path) -> None:
    """Samples of a still-running step are the only record of it: kept at any age."""
    old = time.time() - 100 * 86400.0
    frame = _frame("c1", old + np.arange(600, dtype=float), 1.0)   # one long charge
    with DuckDBStore(tmp_path / "ct.duckdb") as store:
        stats = Runner(Pipeline(store, _settings(tmp_path)), [ListSource([frame])],
                       raw_retention_days=1.0, retention_interval_s=0.0,
                       finish_when_done=False).run()
        assert store.steps("c1")["status"].to_list() == ["open"]
        assert stats.pruned == 0
        assert store.measurements("c1").height == 600


def test_retention_counts_from_the_wall_clock_for_live_data(tmp_path: Path) -> None:
    """Covered samples older than the retention before the wall clock go; newer stay."""
    now = time.time()
    old = _cycling(now - 10 * 86400.0, n=1200)
    new = _cycling(now - 3600.0, n=1200)
    with DuckDBStore(tmp_path / "ct.duckdb") as store:
        stats = Runner(Pipeline(store, _settings(tmp_path)), [ListSource([old, new])],
                       raw_retention_days=2.0, retention_interval_s=0.0).run()
        assert stats.pruned == old.height
        assert store.measurements("c1")["ts"].min() >= now - 3600.0 - 1


def test_simulated_fleet_retention_and_horizon_use_the_simulated_clock(tmp_path: Path) -> None:
    cfg = tiny_fleet(cells=2, hours=1.0, seed=3, faults=())
    src = SimulatorSource(cfg, acceleration=math.inf)
    clock = source_clock(src)
    assert clock is not None and clock() == cfg.start_epoch
    with DuckDBStore(tmp_path / "ct.duckdb") as store:
        pipe = Pipeline(store, _settings(tmp_path))
        runner = Runner(pipe, [src], raw_retention_days=None)
        assert pipe.source_clock is not None
        runner.run()
        assert runner.retention_clock() == cfg.start_epoch + 3600.0
        assert pipe.now() >= time.time() - 1   # the simulation is behind the wall clock
        # A simulation running ahead of the wall clock is judged on its own clock.
        pipe.source_clock = lambda: time.time() + 10 * 86400.0
        ahead = _frame("late-sim", np.array([time.time() + 5 * 86400.0]))
        assert pipe.ingest(ahead).accepted == 1


def test_year_3000_sample_never_reaches_the_engine_nor_blocks_the_cell(tmp_path: Path) -> None:
    """On main one sample stamped year 3000 made every later real sample "late", for
    good, and /metrics lag read -3e10 s."""
    now = time.time()
    with DuckDBStore(tmp_path / "ct.duckdb") as store:
        pipe = Pipeline(store, _settings(tmp_path))
        first = _frame("c1", now - 100 + np.arange(10, dtype=float))
        assert pipe.ingest(first).accepted == 10
        res = pipe.ingest(_frame("c1", np.array([YEAR_3000])))
        assert res.accepted == 0 and res.rejected.height == 1
        assert res.rejected["field"][0] == "ts"
        assert "future horizon" in res.rejected["reason"][0]
        later = _frame("c1", now - 80 + np.arange(10, dtype=float))
        assert pipe.ingest(later).accepted == 10
        assert store.ingest_stats()["lag_s"] >= 0.0
        assert store.dead_letters().height == 1


def test_horizon_is_configurable_and_judged_in_the_step() -> None:
    kind = cell_kind(Settings())
    now = 2e9
    frame = _frame("c1", np.array([now - 10, now + 30, now + 3000, now + 7200]))
    ctx = StepContext(kind, "t", now=now, future_horizon_s=3600.0)
    state, out = advance(kind.new_state(), frame, ctx)
    assert out.rejected["row"].to_list() == [3]
    assert out.accepted == 3
    # Without a clock the step judges nothing (offline analysis takes files as they are).
    _, out = advance(kind.new_state(), frame, StepContext(kind, "t"))
    assert out.rejected.height == 0


def test_dead_letters_have_a_retention(tmp_path: Path) -> None:
    bad = pl.DataFrame({"cell_id": ["c1"], "ts": [time.time()], "voltage_v": [float("nan")],
                        "current_a": [1.0]})
    with DuckDBStore(tmp_path / "ct.duckdb") as store:
        keep = Runner(Pipeline(store, _settings(tmp_path)), [ListSource([bad])],
                      retention_interval_s=0.0).run()
        assert keep.pruned_dead_letters == 0 and store.dead_letters().height == 1
    with DuckDBStore(tmp_path / "ct.duckdb") as store:
        settings = _settings(tmp_path, dead_letter_retention_days=1e-9)
        stats = Runner(Pipeline(store, settings), [ListSource([bad], name="file:2")],
                       retention_interval_s=0.0).run()
        assert stats.pruned_dead_letters == 2 and store.dead_letters().height == 0


def test_pipeline_toml_sets_horizon_and_dead_letter_retention() -> None:
    from chargetracker.runtime.config import pipeline_config_from_mapping

    cfg = pipeline_config_from_mapping({"dead_letter_retention_days": 2,
                                        "runtime": {"future_horizon_s": 60}})
    assert cfg.settings.dead_letter_retention_days == 2.0
    assert cfg.settings.runtime.future_horizon_s == 60.0
    assert pipeline_config_from_mapping(
        {"dead_letter_retention_days": False}).settings.dead_letter_retention_days is None
    import pytest

    from chargetracker.errors import ConfigError
    with pytest.raises(ConfigError, match="future_horizon_s"):
        RuntimeConfig(future_horizon_s=float("nan"))
