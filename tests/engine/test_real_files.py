"""Engine numbers against cyclers' own cumulative columns on real files (tests/data)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from chargetracker.analysis import analyze_files
from chargetracker.config import EngineConfig
from chargetracker.engine import summarize
from chargetracker.readers import read_file

DATA = Path(__file__).resolve().parents[1] / "data"
ARBIN = DATA / "arbin_example.csv"
CALCE = DATA / "CALCE_CX2-33_prism_LCO_25C_0-100_0.5-0.5C_d_timeseries.csv"
REF = ["charge_capacity_ah", "discharge_capacity_ah", "charge_energy_wh", "discharge_energy_wh"]
OURS = ["charge_ah", "discharge_ah", "charge_wh", "discharge_wh"]


def _arbin_reference(frame: pl.DataFrame) -> pl.DataFrame:
    # Arbin's cumulative columns restart each cycle; the first cycle started mid-charge,
    # so per-cycle values are differences between the cycle's first and last rows.
    return frame.group_by("cycle", maintain_order=True).agg(
        [(pl.col(c).last() - pl.col(c).first()).alias(c) for c in REF]
    ).sort("cycle")


@pytest.mark.parametrize("variant", ["labels+step_time", "labels", "no_labels"])
def test_arbin_per_cycle_within_tolerance_of_cycler(variant: str) -> None:
    frame, rejected, _ = read_file(ARBIN, keep_reference=True)
    assert rejected.height == 0
    ref = _arbin_reference(frame)
    inp = frame
    if variant == "labels":
        inp = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("step_time_s"))
    elif variant == "no_labels":
        inp = frame.with_columns(pl.lit(None, dtype=pl.Int64).alias("cycle"),
                                 pl.lit(None, dtype=pl.Int64).alias("step"),
                                 pl.lit(None, dtype=pl.Float64).alias("step_time_s"))
    s = summarize(inp, EngineConfig())
    cycles = s.cycles.sort("cycle")
    assert cycles.get_column("cycle").to_list() == [1, 2]
    # Cycle 1 starts inside the cycler's cycle (CE 5.6: its charge came before the data);
    # cycle 2 is whole and the file has ended: closed.
    assert cycles.get_column("status").to_list() == ["partial", "closed"]
    worst = 0.0
    for ours, theirs in zip(OURS, REF, strict=True):
        a = cycles.get_column(ours).to_numpy()
        b = ref.get_column(theirs).to_numpy()
        err = abs(a - b) / b
        worst = max(worst, float(err.max()))
        # Contract: within 0.5 %; with step time and labels the design expects < 0.05 %.
        assert err.max() < 0.005, (ours, a, b)
    if variant == "labels+step_time":
        assert worst < 0.0005, worst


def test_arbin_internal_resistance_close_to_cycler_column() -> None:
    frame, _, _ = read_file(ARBIN)
    s = summarize(frame)
    ir = s.cycles.get_column("internal_resistance_ohm").to_numpy()
    # The cycler's own DC resistance column reads 0.0167 to 0.0171 ohm.
    assert ((ir > 0.012) & (ir < 0.025)).all(), ir


def test_arbin_streamed_in_small_chunks_equals_batch() -> None:
    frame, _, _ = read_file(ARBIN)
    batch = summarize(frame)
    streamed = analyze_files([ARBIN], chunk_rows=97)
    assert streamed.cycles.equals(batch.cycles)
    assert streamed.steps.equals(batch.steps)


def test_calce_battery_archive_against_its_cumulative_columns() -> None:
    # The excerpt covers the first 450 s of cycle 1 (rest, then 0.674 A CC charge),
    # logged every 30 s with capacity rounded to 1 mAh. Within the charge step the
    # integral must match the archive's cumulative columns to their rounding.
    frame, rejected, meta = read_file(CALCE, keep_reference=True)
    assert rejected.height == 0 and meta["chemistry"] == "LCO"
    s = summarize(frame)
    charge = s.steps.filter(pl.col("kind") == "charge").row(0, named=True)
    rows = frame.filter(pl.col("current_a") > 0)
    ref_ah = rows.get_column("charge_capacity_ah")[-1] - rows.get_column("charge_capacity_ah")[0]
    ref_wh = rows.get_column("charge_energy_wh")[-1] - rows.get_column("charge_energy_wh")[0]
    first, last = rows.get_column("ts")[0], rows.get_column("ts")[-1]
    inner = summarize(frame.filter(pl.col("ts") >= first)).steps.row(0, named=True)
    assert inner["charge_ah"] == pytest.approx(ref_ah, abs=1.5e-3)
    assert inner["charge_wh"] == pytest.approx(ref_wh, abs=1.5e-3)
    assert inner["duration_s"] == pytest.approx(last - first)
    assert charge["mode"] == "CC"
    assert s.cycles.get_column("cycle").to_list() == [1]


def test_calce_cycle_data_is_the_archive_reference_layout() -> None:
    # The archive's own per-cycle summary: used by benchmarks on full files; here we
    # check the engine's cycle columns cover every quantity the archive reports.
    cd = pl.read_csv(DATA / "CALCE_CX2-33_prism_LCO_25C_0-100_0.5-0.5C_d_cycle_data.csv")
    mapping = {"Charge_Capacity (Ah)": "charge_ah", "Discharge_Capacity (Ah)": "discharge_ah",
               "Charge_Energy (Wh)": "charge_wh", "Discharge_Energy (Wh)": "discharge_wh",
               "Min_Voltage (V)": "min_v", "Max_Voltage (V)": "max_v",
               "Min_Current (A)": "min_current_a", "Max_Current (A)": "max_current_a"}
    frame, _, _ = read_file(CALCE)
    cols = summarize(frame).cycles.columns
    assert all(c in cd.columns for c in mapping) and all(v in cols for v in mapping.values())


SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cycler"


@pytest.mark.skipif(not (SHARED / "arbin_example.csv").exists(),
                    reason="../shared/data is not on this machine (reference copy in tests/data)")
def test_shared_copy_matches_bundled_copy() -> None:
    assert (SHARED / "arbin_example.csv").read_bytes() == ARBIN.read_bytes()
