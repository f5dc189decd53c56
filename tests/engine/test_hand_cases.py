"""Hand-derived cases: every number here can be checked with pencil and paper."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chargetracker.config import EngineConfig
from chargetracker.engine import flush, new_state, summarize, update
from chargetracker.errors import SchemaError

T0 = 1_700_000_000.0
CFG = EngineConfig(current_epsilon_a=0.01, min_step_s=0.0, lateness_s=0.0)


def frame(ts, i, v=None, cell="c1", **extra) -> pl.DataFrame:
    ts = np.asarray(ts, dtype=float)
    i = np.asarray(i, dtype=float)
    v = np.full(ts.shape, 3.7) if v is None else np.asarray(v, dtype=float)
    data = {"cell_id": [cell] * len(ts), "ts": T0 + ts, "voltage_v": v, "current_a": i}
    data.update(extra)
    return pl.DataFrame(data)


def test_constant_current_over_known_time() -> None:
    # 2 A for 3600 s at 4 V: 2 Ah and 8 Wh, one charge step, CC.
    t = np.arange(0, 3601, 10.0)
    s = summarize(frame(t, np.full(t.shape, 2.0), np.full(t.shape, 4.0)), CFG)
    step = s.steps.row(0, named=True)
    assert s.steps.height == 1
    assert step["kind"] == "charge" and step["mode"] == "CC"
    assert step["charge_ah"] == pytest.approx(2.0, rel=1e-12)
    assert step["charge_wh"] == pytest.approx(8.0, rel=1e-12)
    assert step["discharge_ah"] == 0.0
    assert step["duration_s"] == pytest.approx(3600.0)
    cyc = s.cycles.row(0, named=True)
    # The data opens inside a charge and ends before any discharge: partial.
    assert cyc["status"] == "partial"
    assert cyc["coulombic_efficiency"] == 0.0  # nothing discharged yet


def test_trapezoid_on_irregular_timestamps() -> None:
    # A ramp from 0.2 to 2.2 A, sampled at uneven times: exact for the trapezoid rule.
    t = np.array([0.0, 1.0, 4.0, 4.5, 10.0])
    i = 0.2 + 0.2 * t
    s = summarize(frame(t, i), EngineConfig(current_epsilon_a=1e-3, min_step_s=0.0,
                                            lateness_s=0.0, gap_limit_s=100))
    total = s.steps.get_column("charge_ah").sum()
    # integral of (0.2 + 0.2 t) dt from 0 to 10 = 12 A s
    assert total == pytest.approx(12.0 / 3600.0, rel=1e-12)


def test_sign_change_gives_cycle_with_efficiencies() -> None:
    # charge 1 A 100 s, rest 10 s, discharge -1 A 90 s, rest 10 s, then a new charge.
    ts = np.arange(0, 221, 1.0)
    i = np.where(ts <= 100, 1.0, np.where(ts <= 110, 0.0, np.where(ts <= 200, -1.0,
                 np.where(ts <= 210, 0.0, 1.0))))
    i[0] = 0.0  # the data opens at rest, so the first cycle is whole
    v = np.where(i > 0, 4.0, np.where(i < 0, 3.0, 3.5))
    s = summarize(frame(ts, i, v), CFG)
    kinds = s.steps.get_column("kind").to_list()
    assert kinds == ["rest", "charge", "rest", "discharge", "rest", "charge"]
    c1 = s.cycles.filter(pl.col("cycle") == 1).row(0, named=True)
    assert c1["status"] == "closed"
    # The interval into each new step holds the new step's current (cycler convention):
    # charge covers 0..100 s = 100 A s; discharge covers 110..200 s = 90 A s.
    assert c1["charge_ah"] == pytest.approx(100 / 3600)
    assert c1["discharge_ah"] == pytest.approx(90 / 3600)
    assert c1["coulombic_efficiency"] == pytest.approx(0.9)
    assert c1["charge_wh"] == pytest.approx(400 / 3600)
    assert c1["discharge_wh"] == pytest.approx(270 / 3600)
    assert c1["energy_efficiency"] == pytest.approx(270 / 400)
    assert c1["mean_charge_v"] == pytest.approx(4.0)
    assert c1["mean_discharge_v"] == pytest.approx(3.0)
    assert c1["retention"] == pytest.approx(1.0)
    assert c1["throughput_ah"] == pytest.approx(190 / 3600)
    # The data ends inside cycle 2's charge: partial, not closed.
    assert s.cycles.filter(pl.col("cycle") == 2).get_column("status").item() == "partial"


def test_gap_is_not_integrated_and_counted() -> None:
    t = np.concatenate([np.arange(0, 100, 1.0), np.arange(1000, 1100, 1.0)])
    cfg = EngineConfig(current_epsilon_a=0.01, min_step_s=0.0, lateness_s=0.0)
    s = summarize(frame(t, np.ones(t.shape)), cfg)
    step = s.steps.row(0, named=True)
    assert step["gap_count"] == 1
    assert step["charge_ah"] == pytest.approx(198 / 3600)  # 99 s + 99 s, the 901 s gap skipped


def test_adaptive_gap_limit_follows_sampling_interval() -> None:
    # Sampled every 600 s: a 600 s interval is normal data, not a gap (even the first,
    # before the cell's logging habit is known: the current holds steady across it).
    t = np.arange(0, 6000 * 2, 600.0)
    s = summarize(frame(t, np.ones(t.shape)), CFG)
    assert s.steps.get_column("gap_count").sum() == 0
    t2 = np.arange(0, 20 * 0.01, 0.01)  # 10 ms sampling, then a 5 s hole
    t2 = np.concatenate([t2, t2[-1] + 5 + t2])
    s2 = summarize(frame(t2, np.ones(t2.shape)), EngineConfig(current_epsilon_a=0.01, gap_min_s=1.0))
    assert s2.steps.get_column("gap_count").sum() == 1


def test_duplicates_dropped_and_reported() -> None:
    f = frame([0, 1, 1, 2, 3], [1, 1, 5, 1, 1])
    s = summarize(f, CFG)
    assert s.steps.get_column("charge_ah").item() == pytest.approx(3 / 3600)
    assert s.rejected.height == 1
    r = s.rejected.row(0, named=True)
    assert r["field"] == "ts" and "duplicate" in r["reason"] and r["row"] == 2
    assert '"current_a":5.0' in r["payload"]


def test_out_of_order_within_lateness_is_sorted_later_is_set_aside() -> None:
    f = frame([0, 1, 3, 2, 4, 5, 0.5], [1] * 7)
    s = summarize(f, EngineConfig(current_epsilon_a=0.01, lateness_s=2.0, min_step_s=0))
    # ts=2 arrives after 3 (1 s late, inside the window) -> sorted in.
    # ts=0.5 arrives after 5 (4.5 s late) -> rejected as late, counted, kept.
    assert s.steps.get_column("n_samples").item() == 6
    assert s.steps.get_column("charge_ah").item() == pytest.approx(5 / 3600)
    assert s.rejected.height == 1
    assert "late" in s.rejected.get_column("reason").item()
    assert s.rejected.get_column("ts").item() == pytest.approx(T0 + 0.5)


def test_cc_cv_tail_is_classified() -> None:
    t = np.arange(0, 2000, 1.0)
    i = np.where(t < 1000, 1.0, np.exp(-(t - 1000) / 300.0))
    v = np.where(t < 1000, 3.6 + 0.6 * t / 1000, 4.2)
    s = summarize(frame(t, i, v), CFG)
    assert s.steps.height == 1
    assert s.steps.get_column("mode").item() == "CC-CV"
    cv_only = summarize(frame(t[1000:], i[1000:], v[1000:]), CFG)
    assert cv_only.steps.get_column("mode").item() == "CV"


def test_rest_only() -> None:
    t = np.arange(0, 100, 1.0)
    s = summarize(frame(t, np.zeros(t.shape), np.full(t.shape, 3.3)), CFG)
    assert s.steps.get_column("kind").to_list() == ["rest"]
    c = s.cycles.row(0, named=True)
    assert c["charge_ah"] == 0 and c["discharge_ah"] == 0
    assert math.isnan(c["coulombic_efficiency"]) and math.isnan(c["retention"])


def test_single_sample_and_empty_input() -> None:
    s = summarize(frame([0.0], [1.0]), CFG)
    assert s.steps.height == 1 and s.steps.get_column("charge_ah").item() == 0.0
    assert s.steps.get_column("duration_s").item() == 0.0
    empty = summarize(frame([], []), CFG)
    assert empty.steps.height == 0 and empty.cycles.height == 0 and empty.rejected.height == 0


def test_short_runs_merge_into_neighbour() -> None:
    # A 2 s current blip inside a rest is not a step when min_step_s = 5.
    t = np.arange(0, 60, 1.0)
    i = np.where((t >= 20) & (t < 22), 1.0, 0.0)
    s = summarize(frame(t, i), EngineConfig(current_epsilon_a=0.01, min_step_s=5.0))
    assert s.steps.get_column("kind").to_list() == ["rest"]
    assert s.steps.get_column("charge_ah").item() == pytest.approx(2.5 / 3600)


def test_hysteresis_holds_state_in_band() -> None:
    # Current drifting between 0.6 and 1.2 x epsilon stays one charge step.
    t = np.arange(0, 100, 1.0)
    i = 0.01 * (0.9 + 0.3 * np.sin(t))
    i[:5] = 0.02
    s = summarize(frame(t, i), EngineConfig(current_epsilon_a=0.01, min_step_s=0.0))
    assert s.steps.get_column("kind").to_list() == ["charge"]


def test_step_time_splits_boundary_interval() -> None:
    # Step 1 at 1 A until t=9.5 (cycler says step 2 started 0.5 s before its first point).
    f = frame([0, 5, 10, 15], [1, 1, -1, -1], step=[1, 1, 2, 2], step_time_s=[0.0, 5.0, 0.5, 5.5])
    s = summarize(f, CFG)
    st = s.steps.sort("step")
    assert st.get_column("charge_ah").to_list() == pytest.approx([9.5 / 3600, 0.0])
    assert st.get_column("discharge_ah").to_list() == pytest.approx([0.0, 5.5 / 3600])
    assert st.get_column("step_label").to_list() == [1, 2]
    assert st.get_column("start_ts").to_list() == pytest.approx([T0, T0 + 9.5])


def test_step_labels_of_some_cells_only() -> None:
    # One batch, two cells: c1 logs step labels, c2 none (null). Each keeps its own.
    labelled = frame([0, 5, 10, 15], [1, 1, -1, -1], step=[1, 1, 2, 2])
    plain = frame([0, 5, 10, 15], [1, 1, -1, -1], cell="c2",
                  step=pl.Series([None] * 4, dtype=pl.Int64))
    both = summarize(pl.concat([labelled, plain]), CFG).steps
    for cell, alone in (("c1", labelled), ("c2", plain)):
        assert_frame_equal(both.filter(pl.col("cell_id") == cell), summarize(alone, CFG).steps,
                           check_exact=True)
    assert both.filter(pl.col("cell_id") == "c1").get_column("step_label").to_list() == [1, 2]
    assert both.filter(pl.col("cell_id") == "c2").get_column("step_label").null_count() == 2


def test_cycler_labels_win() -> None:
    # The cycler says cycle 7 then 8, although the current never goes negative.
    f = frame([0, 1, 2, 3], [1, 1, 1, 1], cycle=[7, 7, 8, 8])
    s = summarize(f, CFG)
    assert s.cycles.get_column("cycle").to_list() == [7, 8]
    # Cycle 7 opens inside a charge, cycle 8 ends before its discharge: both partial.
    assert s.cycles.get_column("status").to_list() == ["partial", "partial"]


def test_internal_resistance_from_current_step() -> None:
    # Rest at 3.60 V, then -2 A with an instant drop to 3.50 V: R = 0.1 / 2 = 0.05 ohm.
    t = np.arange(0, 20, 1.0)
    i = np.where(t < 10, 0.0, -2.0)
    v = np.where(t < 10, 3.60, 3.50 - 0.001 * (t - 10))
    s = summarize(frame(t, i, v), CFG)
    d = s.steps.filter(pl.col("kind") == "discharge").row(0, named=True)
    assert d["internal_resistance_ohm"] == pytest.approx(0.05)


def test_retention_and_equivalent_full_cycles() -> None:
    # Three cycles, 1 A discharges sampled every 60 s. Each discharge step also holds the
    # interval into it, so they last 3660, 3300 and 2940 s; nominal 1 Ah.
    parts, t0 = [], 0.0
    for dis_s in (3600, 3240, 2880):
        tc = t0 + np.arange(0, 3601, 60.0)
        td = tc[-1] + 60 + np.arange(0, dis_s + 1, 60.0)
        parts.append((np.concatenate([tc, td]), np.concatenate([np.ones(tc.size), -np.ones(td.size)])))
        t0 = td[-1] + 60
    tl = np.array([t0, t0 + 60])
    # A rest sample first: the data opens before the first charge (a whole first cycle).
    ts = np.concatenate([[-60.0]] + [p[0] for p in parts] + [tl])
    i = np.concatenate([[0.0]] + [p[1] for p in parts] + [np.ones(2)])
    cells = pl.DataFrame({"cell_id": ["c1"], "nominal_capacity_ah": [1.0]})
    s = summarize(frame(ts, i), EngineConfig(min_step_s=0.0), cells=cells)
    closed = s.cycles.filter(pl.col("status") == "closed").sort("cycle")
    assert closed.get_column("retention").to_list() == pytest.approx([1.0, 3300 / 3660, 2940 / 3660])
    assert closed.get_column("discharge_ah").to_list() == pytest.approx([3660 / 3600, 3300 / 3600, 2940 / 3600])
    efc = closed.get_column("equivalent_full_cycles").to_list()
    assert efc[0] == pytest.approx(1.0, rel=2e-2)
    assert np.all(np.diff(efc) > 0)


def test_bad_values_are_dead_letters_not_crashes() -> None:
    f = pl.DataFrame({
        "cell_id": ["a", "a", "a", "a", "", "a", "a"],
        "ts": [T0, T0 + 1, float("nan"), T0 + 3, T0 + 4, T0 + 5, float("inf")],
        "voltage_v": [3.7, float("inf"), 3.7, 3.7, 3.7, 1e9, 3.7],
        "current_a": [1.0, 1.0, 1.0, None, 1.0, 1.0, 1.0],
        "temperature_c": [25.0, 25.0, 25.0, 25.0, 25.0, float("nan"), 25.0],
    })
    s = summarize(f, CFG)
    rej = s.rejected.sort("row")
    assert rej.get_column("row").to_list() == [1, 2, 3, 4, 5, 6]
    assert rej.get_column("field").to_list() == ["voltage_v", "ts", "current_a", "cell_id", "voltage_v", "ts"]
    assert rej.get_column("reason").to_list()[:3] == ["infinite value", "NaN", "missing value"]
    assert s.steps.get_column("n_samples").sum() == 1  # the good row is kept


def test_schema_errors_name_the_column() -> None:
    with pytest.raises(SchemaError, match="current_a"):
        summarize(pl.DataFrame({"cell_id": ["a"], "ts": [T0], "voltage_v": [3.7]}))
    with pytest.raises(SchemaError, match="voltage_v") as err:
        summarize(pl.DataFrame({"cell_id": ["a", "a"], "ts": [T0, T0 + 1],
                                "voltage_v": ["3.7", "three"], "current_a": [1.0, 1.0]}))
    assert err.value.row == 1


def test_open_cycle_snapshot_then_closed_record() -> None:
    state = new_state(CFG)
    k = np.arange(30)
    i = np.where(k < 10, 1.0, np.where(k < 18, -1.0, np.where(k < 20, 0.0, 1.0)))
    i[0] = 0.0  # opens at rest: the first cycle is whole
    f = frame(np.arange(0, 30, 1.0), i)
    state, out = update(state, f.head(15))
    assert out.cycles.get_column("status").to_list() == ["open"]
    state, out = update(state, f.slice(15))
    assert out.cycles.filter(pl.col("cycle") == 1).get_column("status").item() == "closed"
    assert out.cycles.filter(pl.col("cycle") == 2).get_column("status").item() == "open"
    state, out = flush(state)
    # End of data inside cycle 2's charge: it can never close.
    assert out.cycles.get_column("status").to_list() == ["partial"]


def test_no_lateness_window_processes_newest_sample_at_once() -> None:
    cfg = EngineConfig(current_epsilon_a=0.01, min_step_s=0.0, lateness_s=0.0)
    state = new_state(cfg)
    state, out = update(state, frame([0, 1, 2], [1, 1, 1]))
    assert out.steps.get_column("n_samples").item() == 3  # nothing held back
    state, out = update(state, frame([2, 3], [5, 1]))  # ts=2 again: a duplicate
    assert out.rejected.get_column("reason").to_list() == [
        "duplicate timestamp: an earlier sample of this cell has the same ts"]
    assert out.steps.get_column("n_samples").item() == 4
    assert out.steps.get_column("charge_ah").item() == pytest.approx(3 / 3600)


def test_short_blips_merged_into_a_step_of_zero_mean_current() -> None:
    """1 A for 3 s, rest 2 s, -1 A for 2 s, rest: with the default minimum step length
    the blips merge into one step whose mean current is exactly 0, and the CC/CV
    classification divides by it (NumPy semantics: NaN, never an exception)."""
    f = frame(np.arange(8.0), [1.0, 1.0, 1.0, 0.0, 0.0, -1.0, -1.0, 0.0])
    s = summarize(f)
    assert s.steps.get_column("mean_current_a").to_list() == [0.0]
    assert s.steps.get_column("mode").to_list() == ["CV"]
    state, _ = update(new_state(EngineConfig()), f)
    assert_frame_equal(flush(state)[1].steps.drop("updated_at", strict=False),
                       s.steps.drop("updated_at", strict=False), check_exact=True)
