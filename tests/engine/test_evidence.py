"""Hand-derived cases for the rules that decide from evidence: gaps, the learnt rest
threshold, partial cycles, noise runs and step-boundary rows sharing a timestamp."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from chargetracker.config import EngineConfig
from chargetracker.engine import flush, new_state, summarize, update

from .streams import trigger_times

T0 = 1_700_000_000.0


def frame(ts, i, v=None, cell="c1", **extra) -> pl.DataFrame:
    ts = np.asarray(ts, dtype=float)
    i = np.asarray(i, dtype=float)
    v = np.full(ts.shape, 3.7) if v is None else np.asarray(v, dtype=float)
    data = {"cell_id": [cell] * len(ts), "ts": T0 + ts, "voltage_v": v, "current_a": i}
    data.update(extra)
    return pl.DataFrame(data)


def coin_cell(i_a: float = 0.5e-3, charge_s: float = 36000.0, discharge_s: float = 30000.0,
              labels: bool = False) -> pl.DataFrame:
    """A coin cell logged on triggers: rest at 1 s, then each CC step 1 s after its start,
    the interval growing 1, 2, 5, ... 200 s; a final rest logged every 60 s."""
    rest = np.arange(0.0, 61.0, 1.0)
    chg = trigger_times(60.0, 60.0 + charge_s)
    dis = trigger_times(chg[-1], chg[-1] + discharge_s)
    tail = dis[-1] + np.arange(60.0, 601.0, 60.0)
    ts = np.concatenate([rest, chg, dis, tail])
    cur = np.concatenate([np.zeros(rest.size), np.full(chg.size, i_a), np.full(dis.size, -i_a),
                          np.zeros(tail.size)])
    extra = {}
    if labels:
        extra["step"] = np.concatenate([np.full(rest.size, 1), np.full(chg.size, 2),
                                        np.full(dis.size, 3), np.full(tail.size, 4)])
    return frame(ts, cur, **extra)


# -- 1. gaps from evidence ----------------------------------------------------------
def test_trigger_logging_of_a_coin_cell_is_all_integrated() -> None:
    # 0.5 mA for 36000 s = 5 mAh in, 30000 s = 4.1667 mAh out, every interval real.
    s = summarize(coin_cell())
    c = s.cycles.row(0, named=True)
    assert c["gap_count"] == 0 and c["gap_excluded_s"] == 0.0 and c["gap_missing_ah"] == 0.0
    assert c["charge_ah"] == pytest.approx(5e-3, rel=1e-12)
    assert c["discharge_ah"] == pytest.approx(0.5e-3 * 30000 / 3600, rel=1e-12)
    assert c["coulombic_efficiency"] == pytest.approx(30000 / 36000, rel=1e-12)
    assert c["status"] == "closed"  # whole: opens at rest, ends in the rest after discharge


def test_biologic_pattern_60_s_discharge_600_s_charge() -> None:
    # As in gcpl.pr_182.1.mpt: discharge logged every 60 s, charge every 600 s from its
    # first point; the cycler's labels mark the steps. 0.22 mA, 10 h each way.
    i = 0.22e-3
    d = np.arange(60.0, 36000.0 + 60.0, 60.0)
    c = d[-1] + np.arange(600.0, 36000.0 + 600.0, 600.0)
    ts = np.concatenate([[0.0], d, c, c[-1] + [600.0, 1200.0]])
    cur = np.concatenate([[0.0], np.full(d.size, -i), np.full(c.size, i), [0.0, 0.0]])
    step = np.concatenate([[1], np.full(d.size, 2), np.full(c.size, 3), [4, 4]])
    s = summarize(frame(ts, cur, step=step))
    assert s.steps.get_column("gap_count").sum() == 0
    chg = s.steps.filter(pl.col("kind") == "charge").row(0, named=True)
    dis = s.steps.filter(pl.col("kind") == "discharge").row(0, named=True)
    assert chg["charge_ah"] == pytest.approx(i * 36000 / 3600, rel=1e-12)
    assert dis["discharge_ah"] == pytest.approx(i * 36000 / 3600, rel=1e-12)


def test_dropout_far_beyond_the_logger_is_a_gap_with_its_charge_estimated() -> None:
    # 1 Hz at 1 A, then nothing for 300 s although the current is the same after it:
    # the logger never pauses like that in a charge, so the data is missing.
    t = np.concatenate([np.arange(0.0, 101.0), 400.0 + np.arange(0.0, 101.0)])
    t = np.concatenate([[-1.0], t])
    cur = np.concatenate([[0.0], np.ones(t.size - 1)])
    s = summarize(frame(t, cur), EngineConfig(current_epsilon_a=0.01))
    c = s.cycles.row(0, named=True)
    assert c["gap_count"] == 1
    assert c["gap_excluded_s"] == pytest.approx(300.0)
    assert c["gap_missing_ah"] == pytest.approx(300.0 / 3600)
    assert c["charge_ah"] == pytest.approx(201.0 / 3600)  # 1 + 100 + 100 s integrated


def test_current_change_across_a_long_pause_is_a_gap_even_before_the_habit_is_known() -> None:
    # Three samples: 1 A, then 200 s later 0.2 A. The current did not hold, so what it did
    # in between is unknown.
    s = summarize(frame([0.0, 10.0, 210.0], [1.0, 1.0, 0.2]), EngineConfig(current_epsilon_a=0.01))
    assert s.steps.get_column("gap_count").sum() == 1
    assert s.steps.get_column("gap_missing_ah").sum() == pytest.approx(0.5 * 1.2 * 200 / 3600)


def test_step_timer_decides_pauses_and_vouches_for_long_intervals() -> None:
    cfg = EngineConfig(current_epsilon_a=0.01)
    # 1 Hz for 20 s, then one interval of 1000 s on the clock but 1 s on the step timer:
    # the clock jumped (or the channel was paused): excluded.
    t = np.concatenate([np.arange(0.0, 21.0), [1020.0, 1021.0]])
    st = np.concatenate([np.arange(0.0, 21.0), [21.0, 22.0]])
    s = summarize(frame(t, np.ones(t.size), step=np.ones(t.size, dtype=np.int64), step_time_s=st), cfg)
    assert s.steps.get_column("gap_count").item() == 1
    assert s.steps.get_column("gap_excluded_s").item() == pytest.approx(1000.0)
    # The same clock interval with the step timer advancing 1000 s too, at a steady
    # current: the cycler ran the step all along, only logging sparsely.
    st2 = np.concatenate([np.arange(0.0, 21.0), [1020.0, 1021.0]])
    s2 = summarize(frame(t, np.ones(t.size), step=np.ones(t.size, dtype=np.int64), step_time_s=st2), cfg)
    assert s2.steps.get_column("gap_count").item() == 0
    assert s2.steps.get_column("charge_ah").item() == pytest.approx(1021.0 / 3600)


def test_long_rest_intervals_are_never_gaps() -> None:
    # Logged at 1 s for a minute, then the rest is logged every 1800 s: no charge moves.
    t = np.concatenate([np.arange(0.0, 61.0), 60.0 + 1800.0 * np.arange(1, 5)])
    s = summarize(frame(t, np.zeros(t.size)), EngineConfig(current_epsilon_a=0.01))
    assert s.steps.get_column("gap_count").item() == 0
    assert s.steps.get_column("duration_s").item() == pytest.approx(t[-1])


# -- 2. the rest threshold from the cell's own data ---------------------------------
def test_microampere_cell_without_nominal_capacity_has_efficiencies() -> None:
    s = summarize(coin_cell(i_a=20e-6))
    kinds = s.steps.get_column("kind").to_list()
    assert kinds == ["rest", "charge", "discharge", "rest"]
    c = s.cycles.row(0, named=True)
    assert c["coulombic_efficiency"] == pytest.approx(30000 / 36000, rel=1e-12)
    assert math.isfinite(c["energy_efficiency"])


@pytest.mark.parametrize("eps", [None, 1e-9, 1e-6, 1e-3, 1.0])
def test_integration_never_depends_on_epsilon(eps: float | None) -> None:
    # With the cycler's step labels the boundaries do not depend on epsilon, and the
    # integrals are identical to the last bit whatever epsilon says about rest.
    f = coin_cell(labels=True)
    ref = summarize(f).steps
    s = summarize(f, EngineConfig(current_epsilon_a=eps)).steps
    for col in ("charge_ah", "discharge_ah", "charge_wh", "discharge_wh"):
        assert s.get_column(col).to_list() == ref.get_column(col).to_list()


def test_learnt_epsilon_ignores_single_spikes() -> None:
    # A 1 A spike of one sample in a 1 mA cycle must not make the whole cycle "rest".
    t = np.arange(0.0, 400.0)
    cur = np.where(t < 100, 0.0, np.where(t < 200, 1e-3, np.where(t < 300, -1e-3, 0.0)))
    cur[150] = 1.0
    s = summarize(frame(t, cur))
    assert s.steps.get_column("kind").to_list() == ["rest", "charge", "discharge", "rest"]


# -- 3. partial cycles ----------------------------------------------------------------
def _two_cycles(first_i: float = 1.0, **extra) -> pl.DataFrame:
    # charge 100 s, rest, discharge 90 s, rest; twice; then a last charge sample.
    period = np.arange(0.0, 220.0)
    i = np.where(period < 100, 1.0, np.where(period < 110, 0.0, np.where(period < 200, -1.0, 0.0)))
    ts = np.concatenate([period, 220.0 + period, [440.0, 441.0]])
    cur = np.concatenate([i, i, [1.0, 1.0]])
    cur[0] = first_i
    return frame(ts, cur, **extra)


def test_data_opening_inside_a_charge_makes_a_partial_first_cycle() -> None:
    cfg = EngineConfig(current_epsilon_a=0.01, min_step_s=0.0)
    s = summarize(_two_cycles(), cfg)
    assert s.cycles.get_column("status").to_list() == ["partial", "closed", "partial"]
    # Kept out of the retention reference: cycle 2 is the reference.
    assert s.cycles.filter(pl.col("cycle") == 2).get_column("retention").item() == 1.0
    whole = summarize(_two_cycles(first_i=0.0), cfg)
    assert whole.cycles.get_column("status").to_list() == ["closed", "closed", "partial"]


def test_step_timer_at_zero_says_the_data_opens_at_the_step_start() -> None:
    cfg = EngineConfig(current_epsilon_a=0.01, min_step_s=0.0)
    # Only the first row carries the step timer (0 s: the charge had just begun).
    f = _two_cycles().with_columns(pl.Series("step_time_s", [0.0] + [None] * 441, dtype=pl.Float64))
    s = summarize(f, cfg)
    assert s.rejected.height == 0
    assert s.cycles.get_column("status").to_list()[0] == "closed"


def test_first_cycle_giving_back_more_than_it_took_is_partial() -> None:
    # Opens at rest, 50 s charge, 90 s discharge: CE 1.8 -- the charge was partly before.
    t = np.arange(0.0, 300.0)
    cur = np.where(t < 10, 0.0, np.where(t < 60, 1.0, np.where(t < 70, 0.0, np.where(t < 160, -1.0,
                   np.where(t < 200, 0.0, 1.0)))))
    s = summarize(frame(t, cur), EngineConfig(current_epsilon_a=0.01, min_step_s=0.0))
    assert s.cycles.get_column("status").to_list()[0] == "partial"


def test_end_of_data_closes_a_whole_last_cycle_only() -> None:
    cfg = EngineConfig(current_epsilon_a=0.01, min_step_s=0.0)
    t = np.arange(0.0, 230.0)
    cur = np.where(t < 10, 0.0, np.where(t < 110, 1.0, np.where(t < 120, 0.0, np.where(t < 210, -1.0, 0.0))))
    assert summarize(frame(t, cur), cfg).cycles.get_column("status").to_list() == ["closed"]
    # Stopped in the middle of the discharge: partial.
    cut = frame(t[:180], cur[:180])
    assert summarize(cut, cfg).cycles.get_column("status").to_list() == ["partial"]
    # Streaming: open until the end of the data is declared.
    state, out = update(new_state(cfg), frame(t, cur))
    assert out.cycles.get_column("status").to_list() == ["open"]
    state, out = flush(state)
    assert out.cycles.get_column("status").to_list() == ["closed"]


# -- 4. noise never splits a cycle ----------------------------------------------------
def _noisy_rests(pulse_a: float = -0.005, pulse_s: int = 4) -> pl.DataFrame:
    # 1 Ah cell: charge 1 A 1800 s, rest 600 s with a 4-sample burst, discharge, rest
    # with a burst of the other sign; 2 cycles.
    seg = []
    for _ in range(2):
        rest1 = np.zeros(600)
        rest1[300:300 + pulse_s] = pulse_a
        rest2 = np.zeros(600)
        rest2[300:300 + pulse_s] = -pulse_a
        seg.append(np.concatenate([np.ones(1800), rest1, -np.ones(1700), rest2]))
    cur = np.concatenate([[0.0], *seg])
    return frame(np.arange(cur.size, dtype=float), cur)


def test_noise_runs_merge_into_their_rest_and_never_start_a_cycle() -> None:
    cells = pl.DataFrame({"cell_id": ["c1"], "nominal_capacity_ah": [1.0]})  # eps = 2 mA
    s = summarize(_noisy_rests(), cells=cells)
    assert s.steps.get_column("kind").to_list() == ["rest", "charge", "rest", "discharge", "rest"] * 1 + [
        "charge", "rest", "discharge", "rest"]
    assert s.cycles.height == 2
    # Without the capacity rule, the bursts (4 s >= min_step_s) became steps and cycles.
    split = summarize(_noisy_rests(), EngineConfig(min_step_capacity_fraction=0.0), cells=cells)
    assert split.cycles.height > 2


def test_a_real_short_pulse_is_kept() -> None:
    # 10 s at 1 A on a 1 Ah cell: 10 A s > 0.1 % of 3600 A s.
    cells = pl.DataFrame({"cell_id": ["c1"], "nominal_capacity_ah": [1.0]})
    s = summarize(_noisy_rests(pulse_a=-1.0, pulse_s=10), cells=cells)
    pulses = s.steps.filter(pl.col("duration_s").is_between(5, 20))
    assert pulses.height == 4
    assert (pulses.get_column("mean_current_a").abs() == 1.0).all()


# -- 5. step-boundary rows sharing a timestamp ----------------------------------------
def test_step_boundary_rows_sharing_a_timestamp_are_kept() -> None:
    # A step's last point and the next step's first logged at t = 2; a true repeat of
    # the t = 2 step-2 row is still a duplicate.
    f = frame([0, 1, 2, 2, 3, 4, 2], [1, 1, 1, -1, -1, -1, -1], step=[1, 1, 1, 2, 2, 2, 2])
    for cfg in (EngineConfig(current_epsilon_a=0.01, lateness_s=0.0, min_step_s=0.0),
                EngineConfig(current_epsilon_a=0.01, lateness_s=5.0, min_step_s=0.0)):
        s = summarize(f, cfg)
        assert s.rejected.height == 1 and s.rejected.get_column("row").item() == 6
        st = s.steps.sort("step")
        assert st.get_column("n_samples").to_list() == [3, 3]
        assert st.get_column("charge_ah").to_list() == pytest.approx([2 / 3600, 0.0])
        assert st.get_column("discharge_ah").to_list() == pytest.approx([0.0, 2 / 3600])
        # Streamed row by row it is the same.
        state = new_state(cfg)
        rows = []
        for k in range(f.height):
            state, out = update(state, f.slice(k, 1))
            rows.append(out.rejected)
        state, out = flush(state)
        assert sum(r.height for r in rows) == 1
        assert out.steps.sort("step").get_column("n_samples").to_list()[-1] == 3
