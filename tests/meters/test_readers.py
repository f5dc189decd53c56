"""Meter readers: wide CSV[.gz], long CSV/Parquet (units, epoch/ISO, zones), REDD folders."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from chargetracker.errors import ReaderError, SchemaError, UnknownFormat
from chargetracker.meters.analysis import read_files
from chargetracker.meters.readers import (
    ReadOptions,
    detect_format,
    house_id_from_name,
    open_meter_file,
)

DATA = Path(__file__).resolve().parents[2] / "src" / "chargetracker" / "meters" / "data"
UKDALE = DATA / "UKDALE_House2_2013-07-excerpt.csv.gz"


def test_house_id_from_file_name() -> None:
    assert house_id_from_name("UKDALE_House2_2013-07.csv.gz") == "UKDALE_House2"
    assert house_id_from_name("ukdale_house2_2013-06-07_2min.csv") == "ukdale_house2"
    assert house_id_from_name("/x/house_7.csv") == "house_7"


def test_wide_gz_file_real_excerpt() -> None:
    mf = open_meter_file(UKDALE, options=ReadOptions(timezone="Europe/London"))
    assert mf.format == "wide"
    assert mf.meters.get_column("meter_id").to_list() == [
        "UKDALE_House2/Aggregate", "UKDALE_House2/Kettle", "UKDALE_House2/Dishwasher",
        "UKDALE_House2/WashingMachine", "UKDALE_House2/Microwave"]
    assert mf.meters.get_column("appliance").to_list()[0] == "mains"
    r = pl.concat([c.readings for c in mf.chunks])
    assert r.height == 5 * 7 * 1440
    first = r.filter(pl.col("meter_id") == "UKDALE_House2/Aggregate").row(0, named=True)
    # 2013-07-01 00:00 London (BST) is 2013-06-30 23:00 UTC.
    assert first["ts"] == dt.datetime(2013, 7, 1, tzinfo=ZoneInfo("Europe/London")).timestamp()
    assert first["power_w"] == 143.5


def test_wide_options_mains_house_exclude_units(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("timestamp,total_kW,fridge_W,voltage_V,other\n"
                 "2024-01-01T00:00:00+01:00,1.5,100,230,5\n"
                 "2024-01-01T00:01:00+01:00,,oops,231,6\n"
                 "not a time,1,1,1,1\n")
    mf = open_meter_file(f, options=ReadOptions(house_id="H9", mains="total_kW", exclude=("other",)))
    assert mf.meters.select("meter_id", "appliance").rows() == [("H9/total_kW", "mains"),
                                                                ("H9/fridge_W", "fridge")]
    chunks = list(mf.chunks)
    r = pl.concat([c.readings for c in chunks])
    rej = pl.concat([c.rejected for c in chunks])
    t0 = dt.datetime(2023, 12, 31, 23, 0, tzinfo=dt.UTC).timestamp()
    assert r.rows() == [("H9/total_kW", t0, 1500.0, None), ("H9/fridge_W", t0, 100.0, None)]
    got = {(x["row"], x["field"], x["reason"]) for x in rej.iter_rows(named=True)}
    assert got == {(2, "fridge_W", "not a number"), (3, "timestamp", "cannot read the time")}
    with pytest.raises(ReaderError, match="--mains"):
        open_meter_file(f, options=ReadOptions(mains="nope"))


def test_long_csv_column_map_kw_and_epoch(tmp_path: Path) -> None:
    f = tmp_path / "long.csv"
    f.write_text("sensor,t,kw\nA,1700000000,1.25\nB,1700000060,0.5\nA,1700000060,x\n")
    with pytest.raises(UnknownFormat):  # no recognisable column without a map
        detect_format(f)
    opts = ReadOptions(columns={"meter_id": "sensor", "ts": "t", "power_w": "kw"})
    assert detect_format(f, opts) == "long"
    readings, meters, rej = read_files([f], options=opts)
    assert readings.rows() == [("A", 1.7e9, 1250.0, None), ("B", 1700000060.0, 500.0, None)]
    assert meters.height == 0
    assert rej.select("row", "field", "meter_id").rows() == [(2, "kw", "A")]


def test_long_parquet_iso_naive_in_zone(tmp_path: Path) -> None:
    f = tmp_path / "r.parquet"
    pl.DataFrame({"meter_id": ["m", "m"], "time": ["2024-03-31 00:30:00", "2024-03-31 02:30:00"],
                  "power_w": [1.0, 2.0], "energy_kwh": [1.0, 1.5]}).write_parquet(f)
    readings, _, _ = read_files([f], options=ReadOptions(timezone="Europe/London"))
    assert readings.get_column("ts").to_list() == [
        dt.datetime(2024, 3, 31, 0, 30, tzinfo=dt.UTC).timestamp(),
        dt.datetime(2024, 3, 31, 1, 30, tzinfo=dt.UTC).timestamp()]  # 02:30 BST
    assert readings.get_column("energy_wh").to_list() == [1000.0, 1500.0]


def test_long_missing_power_column_names_field(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    f.write_text("meter_id,ts,volts\na,1,230\n")
    with pytest.raises(SchemaError) as exc:
        read_files([f])
    assert exc.value.field == "power_w"


def _redd(folder: Path) -> None:
    folder.mkdir()
    (folder / "labels.dat").write_text("1 mains\n2 mains\n3 kettle\n")
    rng = np.random.default_rng(0)
    for ch in (1, 2, 3):
        ts = 1303132929 + np.arange(0, 3600, 3)
        with open(folder / f"channel_{ch}.dat", "w") as fh:
            for t, p in zip(ts, rng.uniform(50, 500, len(ts)), strict=True):
                fh.write(f"{t} {p:.2f}\n")
    with open(folder / "channel_3.dat", "a") as fh:
        fh.write("1303136600 NaNx\n")


def test_redd_folder(tmp_path: Path) -> None:
    h = tmp_path / "house_1"
    _redd(h)
    assert detect_format(h) == "redd"
    readings, meters, rej = read_files([h], options=ReadOptions(timezone="America/New_York"))
    assert meters.select("meter_id", "appliance").rows() == [
        ("house_1/channel_1", "mains"), ("house_1/channel_2", "mains"), ("house_1/channel_3", "kettle")]
    assert readings.height == 3 * 1200
    assert rej.select("source", "row", "field").rows() == [(str(h / "channel_3.dat"), 1200, "watts")]
    from chargetracker.meters import house_days, summarize

    s = summarize(readings, meters=meters)
    hd = house_days(s.days, meters)
    mains = s.days.filter(pl.col("meter_id") != "house_1/channel_3").get_column("energy_kwh").sum()
    assert hd.get_column("mains_kwh").sum() == pytest.approx(mains)  # two phases add up


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("a,b\n1,2\n")
    with pytest.raises(UnknownFormat, match="neither"):
        open_meter_file(f)
    with pytest.raises(ReaderError, match="no such"):
        open_meter_file(tmp_path / "none.csv")
    g = tmp_path / "y.csv.gz"
    with gzip.open(g, "wt") as fh:
        fh.write("Time,Aggregate\n2024-01-01 00:00:00,5\n")
    assert open_meter_file(g).format == "wide"
