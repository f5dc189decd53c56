"""``chargetracker meters analyze`` and ``meters simulate`` end to end."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from chargetracker.cli import main

DATA = Path(__file__).resolve().parents[2] / "src" / "chargetracker" / "meters" / "data"


def test_analyze_wide_file_writes_daily_thresholds_alerts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, thr, al = tmp_path / "daily.csv", tmp_path / "thr.csv", tmp_path / "alerts.csv"
    rc = main(["meters", "analyze", str(DATA / "REFIT_House20_2014-05-excerpt.csv.gz"),
               "--timezone", "Europe/London", "--house", "R20", "--zip", "AB1",
               "--out", str(out), "--thresholds", str(thr), "--alerts", str(al), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr()
    assert "R20" in printed.out and "unmetered_kwh" in printed.out and "2014-05-03" in printed.out
    daily = pl.read_csv(out)
    assert {"house_id", "meter_id", "appliance", "date", "energy_kwh", "coverage",
            "share_of_mains"} <= set(daily.columns)
    assert set(daily["appliance"]) == {"mains", "kettle", "dishwasher", "washingmachine",
                                       "microwave", "unmetered"}
    per_day = daily.filter(pl.col("appliance") != "mains").group_by("date").agg(
        pl.col("share_of_mains").sum())
    assert ((per_day["share_of_mains"] - 1.0).abs() < 1e-9).all()
    t = pl.read_csv(thr)
    assert t.columns[:3] == ["meter_id", "p97_w", "n_readings"] and t.height == 5
    a = pl.read_csv(al)
    assert a.height > 0 and (a["zip"] == "AB1").all() and (a["ratio"] > 1.2).all()


def test_simulate_then_analyze_parquet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = tmp_path / "readings.parquet"
    assert main(["meters", "simulate", "--houses", "4", "--days", "2", "--seed", "3",
                 "--out", str(r), "--spikes-out", str(tmp_path / "sp.csv")]) == 0
    meters = tmp_path / "readings.meters.parquet"
    assert meters.exists() and pl.read_parquet(meters).height >= 4
    out = tmp_path / "daily.parquet"
    assert main(["meters", "analyze", str(r), "--meters", str(meters), "--out", str(out),
                 "--zips", str(tmp_path / "z.csv"), "--no-progress"]) == 0
    d = pl.read_parquet(out)
    assert d["house_id"].n_unique() == 4
    z = pl.read_csv(tmp_path / "z.csv")
    assert z["houses_reporting"].sum() == d.filter(pl.col("appliance") == "mains").height


def test_bad_timezone_and_bad_rows_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "h.csv"
    f.write_text("Time,Aggregate\n2024-01-01 00:00:00,100\n2024-01-01 00:01:00,abc\n"
                 "2024-01-01 00:02:00,120\n")
    assert main(["meters", "analyze", str(f), "--timezone", "Moon/Base", "--out",
                 str(tmp_path / "d.csv")]) == 2
    assert "IANA" in capsys.readouterr().err
    rej = tmp_path / "rej.csv"
    assert main(["meters", "analyze", str(f), "--out", str(tmp_path / "d.csv"), "--rejects",
                 str(rej), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "1 rejected" in err and "row 2" in err and "'Aggregate'" in err
    assert pl.read_csv(rej)["reason"].to_list() == ["not a number"]
