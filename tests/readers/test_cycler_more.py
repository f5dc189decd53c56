"""Every real file of ../shared/data/cycler-more through ``chargetracker analyze FILE`` (no
flags, format auto), per-cycle Ah/Wh and CE/EE against the cycler's own counters.

Tolerances (issue 9's acceptance): Ah and Wh within 0.5 % on full cycles, CE and EE within
0.005. Files whose voltage reaches 0 V or below (BioLogic half cells vs. a reference,
a Neware channel at -0.09 V) have a cycler energy that is not V·I (see docs/readers.md): their
Wh/EE are not compared. A file marked xfail misses a tolerance for a reason still open
(its entry in ENGINE_XFAIL says which number and why); the shared-data skip applies only
where ../shared/data is absent (users' machines), never in CI.
"""

from __future__ import annotations

import contextlib
import gzip
import io
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from chargetracker.cli import main
from chargetracker.readers import read_file

from .cycler_reference import compare, reference_cycles

_REPO = Path(__file__).resolve().parents[2]
# <repo>/../shared; a git worktree one level deeper (wt/<name>) finds it one more level up.
DATA = next((p for p in (_REPO.parent / "shared" / "data" / "cycler-more",
                         _REPO.parent.parent / "shared" / "data" / "cycler-more") if p.is_dir()),
            _REPO.parent / "shared" / "data" / "cycler-more")

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"reference data not found at {DATA}"),
]

FILES = {
    # file: (format, cycles analyze reports)
    "00_test_04_MB_C01.mpr": ("biologic_mpr", 1),
    "20160805_test001_45_cc_01.Channel_Normal_Table.csv": ("arbin", 18),
    "20160805_test001_45_cc_01.res": ("arbin_res", 18),
    "2017-05-09_test-TC-contact_CH33.csv": ("arbin", 1),
    "PredictionDiagnostics_000109_tztest.010": ("maccor", 4),
    "gcpl.issue_211.mpt": ("biologic_mpt", 5),
    "gcpl.pr_182.1.mpt": ("biologic_mpt", 5),
    "maccor_001.txt": ("maccor", 1),
    "maccor_002.txt": ("maccor", 2),
    "neware_uio.csv": ("neware_csv", 4),
    "nw_regular_export_ife_example.csv": ("neware_csv", 20),
    "pec.csv": ("pec", 3),
    "test.nda": ("neware_nda", 2),
    "test.ndax": ("neware_nda", 1),
    "test_Nova_Form-CH01-01_short.csv": ("novonix", 1),
    "xTESLADIAG_000038.078": ("maccor", 24),
}

ENGINE_XFAIL: dict[str, str] = {}

#: Files whose cycler energy counter is a right-endpoint sum over the logged points. EC-Lab
#: adds Ewe_i * <I>_i * dt_i at each recorded row i (reproduced to 1e-8 on every row by
#: test_ec_lab_energy_counter_is_a_sum_over_the_logged_points), so on 10 mV / 600 s logging
#: it is biased by -(1/2) sum(dV_i * I_i * dt_i) against the trapezoid (high on a charge, where
#: V rises, low on a discharge). Their Wh and EE tolerance adds that bias bound, computed from
#: the file's own points (docs/readers.md, "EC-Lab energy counters"); Ah and CE keep 0.5 % and
#: 0.005. Only this file's Wh is compared (the other .mpt crosses 0 V).
RECTANGLE_ENERGY = {"gcpl.pr_182.1.mpt"}

TOL_AH_WH = 0.005
TOL_EFF = 0.005


def _analyze(path: Path, tmp_path: Path) -> tuple[int, pl.DataFrame]:
    out = tmp_path / "cycles.parquet"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["analyze", str(path), "--no-progress", "--out", str(out)])
    return rc, pl.read_parquet(out)


def _params() -> list[object]:
    out = []
    for name in FILES:
        marks = [pytest.mark.xfail(reason=ENGINE_XFAIL[name], strict=False)] \
            if name in ENGINE_XFAIL else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", _params())
def test_analyze_matches_cycler_counters(name: str, tmp_path: Path,
                                         record_property: pytest.RecordProperty) -> None:
    path = DATA / name
    fmt, n_cycles = FILES[name]
    frame, rejected, meta = read_file(path)
    assert meta["attributes"] and f'"format": "{fmt}"' in meta["attributes"]
    assert frame.height > 0
    rc, cycles = _analyze(path, tmp_path)
    assert rc == 0
    assert cycles.height == n_cycles
    ref = reference_cycles(path)
    diff = compare(cycles, ref)
    if diff.height == 0:
        record_property("worst", "no full cycle in the cycler's counters")
        return
    energy_ok = float(frame.get_column("voltage_v").min()) > 0.0  # type: ignore[arg-type]
    ah_cols = ["d_charge_ah", "d_discharge_ah"]
    wh_cols = ["d_charge_wh", "d_discharge_wh"] if energy_ok else []
    worst = {c: float(diff.get_column(c).max()) for c in [*ah_cols, *wh_cols]}  # type: ignore[arg-type]
    worst_ce = float(diff.get_column("d_ce").max())  # type: ignore[arg-type]
    worst_ee = float(diff.get_column("d_ee").max()) if energy_ok else 0.0  # type: ignore[arg-type]
    summary = (f"{name}: {fmt}, {cycles.height} cycles, {diff.height} full; worst "
               f"{max(worst.values()):.3%} ({max(worst, key=worst.__getitem__)}), "
               f"CE {worst_ce:.4f}, EE {worst_ee:.4f}" + ("" if energy_ok else
                                                          " (Wh not compared: V <= 0)"))
    record_property("worst", summary)
    print(summary)
    assert max(worst[c] for c in ah_cols) <= TOL_AH_WH, summary
    assert worst_ce <= TOL_EFF, summary
    if name in RECTANGLE_ENERGY:
        bound = diff.with_columns(pl.col("cycle").cast(pl.Int64)).join(
            _rectangle_bound(frame), on="cycle", how="left")
        for side in ("charge", "discharge"):
            tol = TOL_AH_WH + bound.get_column(f"b_{side}")
            assert (bound.get_column(f"d_{side}_wh") <= tol).all(), (summary, bound)
        tol_ee = TOL_EFF + bound.get_column("ee") * (bound.get_column("b_charge")
                                                     + bound.get_column("b_discharge"))
        assert (bound.get_column("d_ee") <= tol_ee).all(), (summary, bound)
        return
    assert max(worst.values()) <= TOL_AH_WH, summary
    assert worst_ee <= TOL_EFF, summary


def _rectangle_bound(frame: pl.DataFrame) -> pl.DataFrame:
    """Per cycle: |right-endpoint sum - trapezoid| / Wh for charge and discharge, i.e.
    (1/2) sum |dV_i * I_i| dt_i over sum |V_i * I_i| dt_i, and the right-endpoint EE."""
    d = frame.sort("ts").select(
        "cycle", pl.col("current_a").alias("i"),
        (pl.col("ts").diff().fill_null(0.0)).alias("dt"),
        pl.col("voltage_v").alias("v"), pl.col("voltage_v").diff().fill_null(0.0).alias("dv"))
    parts = []
    for side, cond in (("charge", pl.col("i") > 0), ("discharge", pl.col("i") < 0)):
        parts.append(d.filter(cond).group_by("cycle").agg(
            (0.5 * (pl.col("dv") * pl.col("i")).abs() * pl.col("dt")).sum().alias(f"h_{side}"),
            ((pl.col("v") * pl.col("i")).abs() * pl.col("dt")).sum().alias(f"w_{side}")))
    j = parts[0].join(parts[1], on="cycle")
    return j.select("cycle", (pl.col("h_charge") / pl.col("w_charge")).alias("b_charge"),
                    (pl.col("h_discharge") / pl.col("w_discharge")).alias("b_discharge"),
                    (pl.col("w_discharge") / pl.col("w_charge")).alias("ee"))


def test_res_and_its_exported_table_read_identically(tmp_path: Path) -> None:
    res, _, _ = read_file(DATA / "20160805_test001_45_cc_01.res", keep_reference=True)
    gz = tmp_path / "cell.res.gz"
    gz.write_bytes(gzip.compress((DATA / "20160805_test001_45_cc_01.res").read_bytes()))
    assert read_file(gz, keep_reference=True)[0].equals(res.with_columns(
        pl.lit("cell", dtype=pl.Utf8).alias("cell_id")))
    csv, _, _ = read_file(DATA / "20160805_test001_45_cc_01.Channel_Normal_Table.csv",
                          keep_reference=True)
    assert res.height == csv.height == 10_261
    for col in ("ts", "voltage_v", "current_a", "charge_capacity_ah", "discharge_energy_wh"):
        a, b = res.get_column(col).to_numpy(), csv.get_column(col).to_numpy()
        assert abs(a - b).max() < 1e-5, col
    assert res.get_column("cycle").to_list() == csv.get_column("cycle").to_list()
    # DateTime is an OLE date: the test starts on 2016-08-05 (local time, read as UTC).
    assert 1470355200 <= res.get_column("ts")[0] < 1470441600


def test_mpt_start_time_units_and_labels() -> None:
    frame, _, meta = read_file(DATA / "gcpl.issue_211.mpt", keep_reference=True)
    # "Acquisition started on : 05/28/2025 14:23:16.145" + time/s of the first row.
    first = frame.row(0, named=True)
    assert first["ts"] == pytest.approx(1748442196.145 + 88246.51726436929, abs=1e-3)
    assert abs(frame.get_column("current_a")).max() < 2e-4  # 137 uA cell, in A
    assert frame.get_column("cycle").unique().sort().to_list() == [0, 1, 2, 3, 4]
    assert meta["nominal_capacity_ah"] == pytest.approx(0.068e-3)


def test_maccor_variants_time_and_sign() -> None:
    m1, _, _ = read_file(DATA / "maccor_001.txt")
    # TestTime "0d 00:00:5" -> 5 s after the start.
    assert m1.get_column("ts")[1] - m1.get_column("ts")[0] == pytest.approx(5.0)
    assert (m1.get_column("current_a") < 0).any() and (m1.get_column("current_a") > 0).any()
    m2, _, meta = read_file(DATA / "maccor_002.txt")
    # MIMS TestTime is in minutes: 1.0 -> 60 s, found from the DPT Time clock.
    assert m2.get_column("ts")[1] - m2.get_column("ts")[0] == pytest.approx(60.0)
    assert '"test_time_unit_s": 60.0' in meta["attributes"]


def test_nda_and_ndax_units() -> None:
    nda, _, _ = read_file(DATA / "test.nda", keep_reference=True)
    assert nda.height == 439
    assert abs(nda.get_column("current_a")).max() < 1e-3  # mA -> A, sub-mA cell
    ndax, _, _ = read_file(DATA / "test.ndax")
    assert ndax.height == 1464
    assert ndax.get_column("ts").diff().drop_nulls().min() >= 0  # type: ignore[operator]


@pytest.mark.parametrize("name", ["gcpl.pr_182.1.mpt", "gcpl.issue_211.mpt"])
def test_ec_lab_energy_counter_is_a_sum_over_the_logged_points(name: str) -> None:
    """EC-Lab's ``Energy charge/discharge`` grows at each recorded row by |Ewe_i * <I>_i| *
    (t_i - t_(i-1)): a right-endpoint sum over the very points in the file, not an integral
    at the instrument's internal rate (which no sum over the logged points could reproduce
    to 1e-6 on 600 s intervals whose V moves up to 10 mV)."""
    frame, _, _ = read_file(DATA / name, keep_reference=True)
    f = frame.sort("ts")
    power_wh = ((f.get_column("voltage_v") * f.get_column("current_a")).abs()
                * f.get_column("ts").diff().fill_null(0.0) / 3600.0).to_numpy()
    current = f.get_column("current_a").to_numpy()
    for col, sign in (("charge_energy_wh", 1.0), ("discharge_energy_wh", -1.0)):
        e = f.get_column(col).to_numpy()
        inc = np.diff(e, prepend=e[0])
        rows = (inc > 0) & (sign * current > 0)  # a drop is the half-cycle reset
        assert rows.sum() > 500
        ratio = inc[rows] / power_wh[rows]
        # 1e-4: ts is epoch s (float64 steps of 2e-7 s), some intervals last 10 ms.
        assert np.quantile(np.abs(ratio - 1.0), 0.99) < 1e-4, col
        assert inc[rows].sum() == pytest.approx(power_wh[rows].sum(), rel=1e-6), col
        # The trapezoid over the same points differs by percent: the rule matters here.
        v = f.get_column("voltage_v").to_numpy()
        trap = np.abs(0.5 * (v + np.roll(v, 1)) * current) * np.diff(
            f.get_column("ts").to_numpy(), prepend=0.0) / 3600.0
        if name == "gcpl.pr_182.1.mpt":
            assert abs(trap[rows].sum() / inc[rows].sum() - 1.0) > 0.01, col
