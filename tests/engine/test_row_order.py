"""Row order does not change the numbers: cells grouped (a file per cell, a sorted archive)
or interleaved in time (a live fleet, a replayed topic) give identical steps and cycles,
in one batch and in any split, on one thread and on the two-thread path."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chargetracker.config import EngineConfig
from chargetracker.engine import core, summarize

from .streams import cycling_frame, interleave
from .test_incremental import run_incremental

GROUPED = cycling_frame(cells=5, cycles=2, seed=7, noise_a=0.0004, charge_s=300, rest_s=60,
                        discharge_s=300)
CONFIG = EngineConfig(default_epsilon_a=0.002)


@pytest.fixture(params=["one thread", "two threads", "grouped visits", "both", "validation codes",
                        "blocks", "blocks, two threads"])
def threads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param in ("two threads", "both"):
        # Small enough that this data takes the parallel path (cells split across threads).
        monkeypatch.setattr(core, "_PARALLEL_ROWS", 100)
    if request.param in ("grouped visits", "both"):
        # The kernel visits interleaved rows grouped by cell in blocks of rows (the path
        # of large fleets), here in blocks of 20 rows so that many blocks are crossed.
        monkeypatch.setattr(core, "_ORDER_MIN_CELLS", 0)
        monkeypatch.setattr(core, "_ORDER_BLOCK_ROWS", 1)
    if request.param.startswith("blocks"):
        # Interleaved rows of few cells put in cell order per block of 7 rows before the
        # kernel (its run loop then takes runs of a cell's samples).
        monkeypatch.setattr(core, "_BLOCK_MIN_ROWS_PER_CELL", 0)
        monkeypatch.setattr(core, "_BLOCK_ROWS", 7)
        if request.param.endswith("two threads"):
            monkeypatch.setattr(core, "_PARALLEL_ROWS", 100)
    if request.param == "validation codes":
        # Every batch maps ids to slots from validation's codes (the path of large ones).
        monkeypatch.setattr(core, "_CODES_MIN_ROWS", 1)
    return str(request.param)


def test_interleaved_batch_equals_grouped(threads: str) -> None:
    timed = interleave(GROUPED)
    assert timed.get_column("cell_id").head(5).n_unique() == 5  # really interleaved
    grouped = summarize(GROUPED, CONFIG)
    inter = summarize(timed, CONFIG)
    assert grouped.cycles.filter(pl.col("status") == "closed").height >= 5
    assert_frame_equal(inter.steps, grouped.steps, check_exact=True)
    assert_frame_equal(inter.cycles, grouped.cycles, check_exact=True)


def test_interleaved_incremental_equals_grouped(threads: str) -> None:
    timed = interleave(GROUPED)
    grouped = summarize(GROUPED, CONFIG)
    cuts = list(range(0, timed.height, 997))
    for lateness in (0.0, 2.0):
        cfg = EngineConfig(default_epsilon_a=0.002, lateness_s=lateness)
        steps, cycles, rejected = run_incremental(timed, cuts, cfg)
        assert rejected.height == 0
        assert_frame_equal(steps, grouped.steps, check_exact=True)
        assert_frame_equal(cycles, grouped.cycles, check_exact=True)


def test_interleaved_with_late_and_duplicate_rows_equals_grouped(threads: str) -> None:
    """Rows out of order within the window are sorted in; duplicates are dead letters."""
    timed = interleave(GROUPED)
    rng = np.random.default_rng(5)
    key = np.arange(timed.height) + rng.uniform(0, 8, timed.height)  # local disorder
    pick = rng.choice(timed.height, 20, replace=False)
    # Each duplicate arrives a few rows after its original (inside the window).
    key = np.concatenate([key, key[pick] + 3.5])
    messy = pl.concat([timed, timed[pick]])[np.argsort(key, kind="stable")]
    cfg = EngineConfig(default_epsilon_a=0.002, lateness_s=30.0)
    grouped = summarize(GROUPED, cfg)
    steps, cycles, rejected = run_incremental(messy, list(range(0, messy.height, 1500)), cfg)
    assert rejected.height == 20
    assert set(rejected.get_column("reason").str.slice(0, 9).to_list()) == {"duplicate"}
    assert_frame_equal(steps, grouped.steps, check_exact=True)
    assert_frame_equal(cycles, grouped.cycles, check_exact=True)


def test_snapshot_timer_emits_fewer_snapshots_and_the_same_result() -> None:
    """With ``snapshot_interval_s`` an open snapshot comes when a cell's step or cycle
    closed, or once per interval of data time; a store upserting every output still ends
    with the batch result after flush."""
    timed = interleave(GROUPED)
    cuts = list(range(0, timed.height, 25))  # five seconds of the fleet per batch
    every = EngineConfig(default_epsilon_a=0.002, lateness_s=0.0)
    timer = EngineConfig(default_epsilon_a=0.002, lateness_s=0.0, snapshot_interval_s=30.0)
    counts = {}
    for name, cfg in (("every", every), ("timer", timer)):
        state = core.new_state(cfg)
        n_open = 0
        gaps: list[float] = []
        last_seen: dict[str, float] = {}
        for a, b in zip(cuts, [*cuts[1:], timed.height], strict=True):
            state, out = core.update(state, timed.slice(a, b - a))
            snaps = out.steps.filter(pl.col("status") == "open")
            n_open += snaps.height
            for cid, end in snaps.select("cell_id", "end_ts").iter_rows():
                if cid in last_seen:
                    gaps.append(end - last_seen[cid])
                last_seen[cid] = end
        counts[name] = (n_open, max(gaps))
    assert counts["every"][1] <= 5.2  # every batch (5 s of data) moved every cell
    assert counts["timer"][1] <= 35.2  # at most the interval + one batch of data
    assert counts["timer"][0] < counts["every"][0] / 3
    grouped = summarize(GROUPED, timer)
    steps, cycles, _ = run_incremental(timed, cuts, timer)
    assert_frame_equal(steps, grouped.steps, check_exact=True)
    assert_frame_equal(cycles, grouped.cycles, check_exact=True)


@pytest.mark.parametrize("present", [(True, True, True), (True, False, False), (False, True, False),
                                     (False, False, True), (False, False, False)])
def test_blocks_with_any_optional_columns_equal_grouped(present: tuple[bool, bool, bool],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The block gather copies only the columns present (temperature, the labels, the
    step time; a missing one is broadcast, not copied): the same numbers whichever."""
    monkeypatch.setattr(core, "_BLOCK_MIN_ROWS_PER_CELL", 0)
    monkeypatch.setattr(core, "_BLOCK_ROWS", 5)
    n = GROUPED.height
    rng = np.random.default_rng(3)
    extra = {}
    if present[0]:
        extra["temperature_c"] = pl.Series(25.0 + rng.normal(0, 0.1, n))
    if present[1]:
        extra["cycle"] = pl.Series(np.arange(n) // 700 + 1, dtype=pl.Int64)
        extra["step"] = pl.Series(np.arange(n) // 150 + 1, dtype=pl.Int64)
    if present[2]:
        extra["step_time_s"] = pl.Series((np.arange(n) % 150).astype(np.float64))
    frame = GROUPED.drop([c for c in ("temperature_c", "cycle", "step", "step_time_s")
                          if c in GROUPED.columns]).with_columns(**extra)
    grouped = summarize(frame, CONFIG)
    inter = summarize(interleave(frame), CONFIG)
    assert_frame_equal(inter.steps, grouped.steps, check_exact=True)
    assert_frame_equal(inter.cycles, grouped.cycles, check_exact=True)
