"""On the real files in ../shared/data/meters: daily energy against an independent numpy
trapezoid, shares and the unmetered rest adding up, and the files' own derived columns."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from chargetracker.meters import MeterConfig, house_breakdown, house_days, summarize
from chargetracker.meters.analysis import analyze_files, read_files
from chargetracker.meters.readers import ReadOptions

_REPO = Path(__file__).resolve().parents[2]
_CANDIDATES = [_REPO / ".." / "shared" / "data" / "meters", _REPO / ".." / ".." / "shared" / "data" / "meters"]
METERS = next((p for p in _CANDIDATES if p.is_dir()), None)
pytestmark = [pytest.mark.realdata,
              pytest.mark.skipif(METERS is None, reason="../shared/data/meters is absent "
                                 "(reference data is only on developer and CI machines)")]

DEVICESCOPE = ["UKDALE_House2_2013-07.csv.gz", "REFIT_House2_2014-05.csv.gz",
               "REFIT_House20_2014-05.csv.gz", "IDEAL_House65_2018-02.csv.gz",
               "IDEAL_House175_2018-01.csv.gz"]


def _columns(name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The file read with the csv module: naive times as UTC, columns as float arrays."""
    assert METERS is not None
    path = METERS / name
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    ts = np.array([dt.datetime.fromisoformat(r[0]).replace(tzinfo=dt.UTC).timestamp()
                   if "+" not in r[0] else dt.datetime.fromisoformat(r[0]).timestamp() for r in body])
    cols = {h: np.array([float(r[k]) for r in body]) for k, h in enumerate(header) if k}
    return ts, cols


def _daily_trapezoid(ts: np.ndarray, p: np.ndarray, exclude: np.ndarray | None = None
                     ) -> dict[dt.date, float]:
    """kWh per UTC day: np.trapezoid on each day's readings plus the next midnight's."""
    out = {}
    day0 = np.floor(ts / 86400.0)
    for d in np.unique(day0):
        lo, hi = d * 86400.0, (d + 1) * 86400.0
        m = (ts >= lo) & (ts <= hi)
        t, q = ts[m], p[m]
        w = np.ones(len(t) - 1, bool) if exclude is None else ~exclude[np.flatnonzero(m)[:-1]]
        seg = 0.5 * (q[1:] + q[:-1]) * np.diff(t)
        out[dt.date(1970, 1, 1) + dt.timedelta(days=int(d))] = float(seg[w].sum()) / 3.6e6
    return out


@pytest.mark.parametrize("name", DEVICESCOPE)
def test_daily_mains_energy_equals_numpy_trapezoid(name: str) -> None:
    assert METERS is not None
    ts, cols = _columns(name)
    # Zero-run detection off: the plain trapezoid over real timestamps.
    cfg = MeterConfig(zero_run_limit_s=1e9)
    a = analyze_files([METERS / name], cfg)
    mains = a.days.filter(pl.col("meter_id").str.ends_with("/Aggregate"))
    ref = _daily_trapezoid(ts, cols["Aggregate"])
    got = dict(zip(mains["date"].to_list(), mains["energy_kwh"].to_list(), strict=True))
    assert set(got) == set(ref)
    for d, v in ref.items():
        assert got[d] == pytest.approx(v, rel=1e-10, abs=1e-12), d
    # Every closed day of a complete 1-minute grid is fully covered.
    closed = mains.filter(pl.col("status") == "closed")
    assert (closed["coverage"] == 1.0).all() and (closed["n_readings"] == 1440).all()
    # Shares and the unmetered rest add up to the mains.
    hd = a.houses
    assert np.allclose(hd["appliances_kwh"] + hd["unmetered_kwh"], hd["mains_kwh"], rtol=1e-12)
    parts = house_breakdown(a.days, a.meters).group_by("house_id", "date").agg(
        pl.col("share_of_mains").sum(), pl.col("energy_kwh").sum())
    j = parts.join(hd, on=["house_id", "date"])
    assert np.allclose(j["share_of_mains"], 1.0, rtol=1e-12)
    assert np.allclose(j["energy_kwh"], j["mains_kwh"], rtol=1e-12)


def _zero_gap_intervals(p: np.ndarray, ts: np.ndarray, limit_s: float) -> tuple[np.ndarray, int]:
    """Independent run-length pass: intervals touching a >limit run of exact zeros."""
    z = p == 0.0
    edges = np.flatnonzero(np.diff(np.r_[0, z.astype(int), 0]))
    starts, ends = edges[::2], edges[1::2] - 1
    ex = np.zeros(len(p) - 1, bool)
    n = 0
    for s, e in zip(starts, ends, strict=True):
        if ts[e] - ts[s] > limit_s:
            n += 1
            ex[max(s - 1, 0) : min(e + 1, len(ex))] = True
    return ex, n


@pytest.mark.parametrize(("name", "zero_minutes"), [("REFIT_House2_2014-05.csv.gz", 230),
                                                     ("IDEAL_House65_2018-02.csv.gz", 671),
                                                     ("IDEAL_House175_2018-01.csv.gz", 584)])
def test_zero_filled_minutes_on_mains_are_excluded(name: str, zero_minutes: int) -> None:
    assert METERS is not None
    ts, cols = _columns(name)
    p = cols["Aggregate"]
    assert int((p == 0).sum()) == zero_minutes  # the data README's figure
    ex, n_runs = _zero_gap_intervals(p, ts, 300.0)
    a = analyze_files([METERS / name], MeterConfig(zero_run_limit_s=300.0))
    mains = a.days.filter(pl.col("meter_id").str.ends_with("/Aggregate"))
    assert mains["zero_run_count"].sum() == n_runs > 0
    ref = _daily_trapezoid(ts, p, ex)
    for d, v in zip(mains["date"].to_list(), mains["energy_kwh"].to_list(), strict=True):
        assert v == pytest.approx(ref[d], rel=1e-10, abs=1e-12), d
    excluded = float(np.diff(ts)[ex].sum())
    assert mains["zero_run_s"].sum() == pytest.approx(excluded)
    assert mains["covered_s"].sum() == pytest.approx(float(np.diff(ts)[~ex].sum()))


def test_uci_other_column_equals_the_unmetered_rest() -> None:
    assert METERS is not None
    name = "uci_household_sceaux_2007-01_1min.csv.gz"
    a = analyze_files([METERS / name], MeterConfig(zero_run_limit_s=1e9),
                      options=ReadOptions(exclude=("other_W",)))
    assert set(a.meters["appliance"]) == {"mains", "kitchen", "laundry", "waterheater_ac"}
    readings, meters, _ = read_files([METERS / name], options=ReadOptions(house_id="u"))
    other = summarize(readings.filter(pl.col("meter_id") == "u/other_W")).days
    j = a.houses.join(other.select("date", "energy_kwh"), on="date")
    assert j.height == 31
    # The file's own "other" (mains minus the sub-meters) is the unmetered rest.
    assert np.allclose(j["unmetered_kwh"], j["energy_kwh"], rtol=1e-9, atol=1e-9)


def test_nilmtk_synthetic_mains_equals_the_appliances_sum() -> None:
    assert METERS is not None
    name = "ukdale_house2_2013-06-07_2min.csv"
    a = analyze_files([METERS / name], MeterConfig(zero_run_limit_s=1e9),
                      options=ReadOptions(exclude=("synthetic_mains",)))
    readings, _, _ = read_files([METERS / name], options=ReadOptions(house_id="n"))
    syn = summarize(readings.filter(pl.col("meter_id") == "n/synthetic_mains")).days
    j = house_days(a.days, a.meters).join(syn.select("date", "energy_kwh"), on="date")
    # The file rounds every column to 3 decimals, so the sums agree to ~1e-5 only.
    assert j.height == 2 and np.allclose(j["appliances_kwh"], j["energy_kwh"], rtol=2e-5)
    assert (j["unmetered_kwh"] > 0).all()
