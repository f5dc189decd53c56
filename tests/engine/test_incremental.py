"""Incremental = batch: any split of a stream into batches gives the batch result."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from chargetracker.config import EngineConfig
from chargetracker.engine import EngineState, flush, new_state, summarize, update

from .streams import cycling_frame, interleave


def fold(outputs: list[pl.DataFrame], keys: list[str]) -> pl.DataFrame:
    """What a store holds after upserting every output in order."""
    return pl.concat(outputs).unique(subset=keys, keep="last", maintain_order=True).sort(keys)


def run_incremental(frame: pl.DataFrame, cuts: list[int], config: EngineConfig,
                    roundtrip_at: set[int] | None = None) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    state = new_state(config)
    steps, cycles, rejected = [], [], []
    bounds = [0, *sorted({min(c, frame.height) for c in cuts}), frame.height]
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        state, out = update(state, frame.slice(a, b - a))
        steps.append(out.steps)
        cycles.append(out.cycles)
        rejected.append(out.rejected)
        if roundtrip_at and k in roundtrip_at:
            state = EngineState.from_bytes(state.to_bytes(), config)
    state, out = flush(state)
    steps.append(out.steps)
    cycles.append(out.cycles)
    rejected.append(out.rejected)
    return fold(steps, ["cell_id", "step"]), fold(cycles, ["cell_id", "cycle"]), pl.concat(rejected)


BASE = interleave(cycling_frame(cells=3, cycles=2, seed=3, noise_a=0.0004, charge_s=300,
                                rest_s=60, discharge_s=300))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=BASE.height), max_size=12),
    roundtrip=st.sets(st.integers(min_value=0, max_value=12), max_size=3),
    lateness=st.sampled_from([0.0, 2.0, 30.0]),
    min_step=st.sampled_from([0.0, 3.0, 10.0]),
    shuffle_seed=st.integers(min_value=0, max_value=2**16),
)
def test_any_split_equals_batch(cuts: list[int], roundtrip: set[int], lateness: float,
                                min_step: float, shuffle_seed: int) -> None:
    config = EngineConfig(lateness_s=lateness, min_step_s=min_step, default_epsilon_a=0.002)
    # Local disorder and duplicates, as a real network delivers them.
    rng = np.random.default_rng(shuffle_seed)
    n = BASE.height
    key = np.arange(n) + rng.uniform(0, 40, n)
    frame = BASE[np.argsort(key, kind="stable")]
    dup_rows = rng.choice(n, size=20, replace=False)
    frame = pl.concat([frame, frame[np.sort(dup_rows)]])
    batch = summarize(frame, config)
    steps, cycles, rejected = run_incremental(frame, cuts, config, roundtrip)
    assert_frame_equal(steps, batch.steps, check_exact=True)
    assert_frame_equal(cycles, batch.cycles, check_exact=True)
    assert rejected.height == batch.rejected.height
    assert sorted(rejected.get_column("reason").to_list()) == sorted(batch.rejected.get_column("reason").to_list())
    assert (batch.cycles.get_column("status") == "closed").sum() >= 3


def test_state_roundtrip_is_small_and_versioned() -> None:
    frame = cycling_frame(cells=50, cycles=1, charge_s=100, rest_s=20, discharge_s=100)
    state, _ = update(new_state(), frame)
    blob = state.to_bytes()
    assert len(blob) / 50 < 2048  # bytes per cell, pending samples included
    restored = EngineState.from_bytes(blob)
    assert restored.cell_ids == state.cell_ids
    np.testing.assert_array_equal(restored.cy[:50], state.cy[:50])


def _evidence_stream() -> pl.DataFrame:
    """What the evidence rules look at: trigger logging of a microampere cell (learnt
    epsilon), a dropout, rest noise bursts, and labelled step boundaries whose rows share
    a timestamp."""
    from .streams import trigger_times

    t_rest = np.arange(0.0, 20.0, 1.0)
    chg = trigger_times(19.0, 3000.0)
    dis = trigger_times(3000.0, 5500.0)
    ts = np.concatenate([t_rest, chg, dis, 5500.0 + np.arange(30.0, 301.0, 30.0)])
    i = np.concatenate([np.zeros(t_rest.size), np.full(chg.size, 2e-4), np.full(dis.size, -2e-4),
                        np.zeros(10)])
    i[3:7] = 3e-5  # a noise burst in the first rest
    coin = pl.DataFrame({"cell_id": "coin", "ts": 1.7e9 + ts, "voltage_v": 3.0 + 1e-4 * np.arange(ts.size),
                         "current_a": i})
    # Labelled cell at 1 Hz: the last row of each step and the first of the next share ts.
    parts, t0 = [], 1.7e9
    for cyc in (1, 2):
        for step, cur, n in ((1, 1.0, 120), (2, 0.0, 30), (3, -1.0, 110), (4, 0.0, 30)):
            t = t0 + np.arange(n, dtype=float)
            parts.append(pl.DataFrame({"cell_id": "lab", "ts": t, "voltage_v": 3.7 + 0.1 * cur,
                                       "current_a": np.full(n, cur), "cycle": cyc, "step": step,
                                       "step_time_s": np.arange(n, dtype=float)}))
            t0 = t[-1]
    lab = pl.concat(parts)
    lab = lab.filter(pl.col("ts") >= 1.7e9 + 30)  # opens 30 s into a charge: partial
    lab = lab.filter((pl.col("ts") < 1.7e9 + 350) | (pl.col("ts") > 1.7e9 + 430))  # a dropout over a step change
    return pl.concat([coin, lab], how="diagonal_relaxed").sort("ts", maintain_order=True)


EVIDENCE = _evidence_stream()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=EVIDENCE.height), max_size=10),
    roundtrip=st.sets(st.integers(min_value=0, max_value=10), max_size=3),
    lateness=st.sampled_from([0.0, 2.0, 30.0]),
    min_step=st.sampled_from([0.0, 3.0]),
)
def test_evidence_rules_any_split_equals_batch(cuts: list[int], roundtrip: set[int], lateness: float,
                                               min_step: float) -> None:
    # Default thresholds: epsilon learnt from the data, gaps judged from evidence.
    config = EngineConfig(lateness_s=lateness, min_step_s=min_step)
    batch = summarize(EVIDENCE, config)
    steps, cycles, rejected = run_incremental(EVIDENCE, cuts, config, roundtrip)
    assert_frame_equal(steps, batch.steps, check_exact=True)
    assert_frame_equal(cycles, batch.cycles, check_exact=True)
    assert rejected.height == batch.rejected.height == 0
    assert batch.steps.get_column("gap_count").sum() >= 1  # the dropout
    assert set(batch.cycles.get_column("status").to_list()) >= {"closed", "partial"}


def test_old_state_versions_are_rejected_with_a_clear_message() -> None:
    import struct

    from chargetracker.errors import EngineStateError

    blob = new_state().to_bytes()
    old = blob[:4] + struct.pack("<I", 1) + blob[8:]
    with pytest.raises(EngineStateError, match="version 1 .*re-analyse"):
        EngineState.from_bytes(old)
