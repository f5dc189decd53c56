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

ENGINE_XFAIL = {
    "gcpl.pr_182.1.mpt":
        "Ah within 0.05 % and CE within 0.0004 since the evidence-based gap rule (issue 9 #1), "
        "but discharge Wh is 1.5 % from BioLogic's own counter on this 60 s / 600 s logging: "
        "not yet explained",
}

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
    assert max(worst.values()) <= TOL_AH_WH, summary
    assert worst_ce <= TOL_EFF and worst_ee <= TOL_EFF, summary


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
