"""Each file format parses with the canonical units and sign (+ = charging, ts in epoch s)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from chargetracker.errors import SchemaError, UnknownFormat
from chargetracker.readers import (
    FORMATS,
    REFERENCE_COLUMNS,
    GenericOptions,
    detect_format,
    open_reader,
    read_file,
)
from chargetracker.schema import CELL_SCHEMA, DEAD_LETTER_SCHEMA, MEASUREMENT_SCHEMA

DATA = Path(__file__).resolve().parents[1] / "data"
ARBIN = DATA / "arbin_example.csv"
MACCOR = DATA / "maccor_example.001"
CALCE = DATA / "CALCE_CX2-33_prism_LCO_25C_0-100_0.5-0.5C_d_timeseries.csv"
CALCE_CYCLES = DATA / "CALCE_CX2-33_prism_LCO_25C_0-100_0.5-0.5C_d_cycle_data.csv"


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def assert_canonical(frame: pl.DataFrame, extra: tuple[str, ...] = ()) -> None:
    assert frame.columns[: len(MEASUREMENT_SCHEMA)] == list(MEASUREMENT_SCHEMA)
    for name, dtype in MEASUREMENT_SCHEMA.items():
        assert frame.schema[name] == dtype, name
    assert tuple(frame.columns[len(MEASUREMENT_SCHEMA):]) == extra


# --------------------------------------------------------------------------- Arbin
def test_arbin_units_sign_time_and_labels() -> None:
    frame, rejected, meta = read_file(ARBIN)
    raw = pl.read_csv(ARBIN)
    assert frame.height == raw.height == 2142
    assert rejected.height == 0 and rejected.schema == DEAD_LETTER_SCHEMA
    assert_canonical(frame)
    assert frame["cell_id"].unique().to_list() == ["arbin_example"]
    assert meta["cell_id"] == "arbin_example" and set(meta) == set(CELL_SCHEMA)

    ts = frame["ts"].to_numpy()
    assert np.all(np.diff(ts) > 0)
    # Seconds since the epoch: starts at the file's DateTime and keeps Test_Time's intervals.
    assert ts[0] == 1499006353.0
    np.testing.assert_allclose(np.diff(ts), np.diff(raw["Test_Time"].to_numpy()), atol=1e-6)
    assert np.all(np.abs(ts - raw["DateTime"].to_numpy()) <= 1.0)

    # Arbin already writes + = charge: the CC-CV charge step (Step_Index 11) is positive.
    charge = frame.filter(pl.col("step") == 11)["current_a"]
    assert charge.min() > 0.04 and charge.max() > 1.0
    assert frame["current_a"].min() < -4.0  # the discharge
    np.testing.assert_array_equal(frame["current_a"].to_numpy(), raw["Current"].to_numpy())
    assert sorted(frame["cycle"].unique().to_list()) == [1, 2]
    assert frame["step"].to_list() == raw["Step_Index"].to_list()
    np.testing.assert_array_equal(frame["step_time_s"].to_numpy(), raw["Step_Time"].to_numpy())
    assert frame["temperature_c"].is_between(28, 33).all()


def test_arbin_reference_columns() -> None:
    frame, _, _ = read_file(ARBIN, keep_reference=True)
    refs = ("charge_capacity_ah", "discharge_capacity_ah", "charge_energy_wh",
            "discharge_energy_wh")
    assert_canonical(frame, refs)
    raw = pl.read_csv(ARBIN)
    for ref, col in zip(refs, ["Charge_Capacity", "Discharge_Capacity", "Charge_Energy",
                               "Discharge_Energy"], strict=True):
        np.testing.assert_array_equal(frame[ref].to_numpy(), raw[col].to_numpy())
        assert frame.schema[ref] == REFERENCE_COLUMNS[ref]


def test_arbin_variant_with_unit_suffixes(tmp_path: Path) -> None:
    path = tmp_path / "cell7.csv"
    path.write_text(
        "Data_Point,Test_Time(s),Date_Time,Step_Time(s),Step_Index,Cycle_Index,Current(mA),"
        "Voltage(V),Charge_Capacity(Ah),Discharge_Capacity(Ah),Charge_Energy(Wh),"
        "Discharge_Energy(Wh),Aux_Temperature_1(C)\n"
        "1,0.5,2017-07-02 14:39:13,0.5,1,1,1500,3.40,0.0,0,0,0,25.0\n"
        "2,1.75,2017-07-02 14:39:14,1.75,1,1,1500,3.41,0.0005,0,0.0017,0,25.1\n"
        "3,3.0,2017-07-02 14:39:15,0.2,2,1,-2000,3.30,0.001,0,0.0034,0,25.2\n"
    )
    assert detect_format(path) == "arbin"
    frame, rejected, _ = read_file(path, keep_reference=True)
    assert rejected.height == 0
    assert frame["current_a"].to_list() == [1.5, 1.5, -2.0]
    assert frame["temperature_c"].to_list() == [25.0, 25.1, 25.2]
    assert frame["ts"].to_list() == [epoch("2017-07-02T14:39:13"), epoch("2017-07-02T14:39:13") + 1.25,
                                     epoch("2017-07-02T14:39:13") + 2.5]
    assert frame["charge_energy_wh"].to_list() == [0.0, 0.0017, 0.0034]


# --------------------------------------------------------------------------- Maccor
def test_maccor_real_file() -> None:
    reader = open_reader(MACCOR, keep_reference=True)
    assert reader.format == "maccor"
    frame, rejected = reader.read_all()
    assert frame.height == 8 and rejected.height == 0
    assert_canonical(frame, ("capacity_ah", "energy_wh"))
    ts = frame["ts"].to_numpy()
    assert ts[0] == epoch("2016-03-31T16:05:31")
    # Test (Min) has 4 decimals: 0.1667 min = 10.002 s.
    np.testing.assert_allclose(np.diff(ts), 10.0, atol=0.005)
    assert (frame["current_a"] == 0).all()  # all rest (State R)
    assert frame["cycle"].to_list() == [0] * 8 and frame["step"].to_list() == [1] * 8
    assert frame["step_time_s"][1] == pytest.approx(0.1667 * 60)
    meta = reader.metadata
    assert meta["nominal_capacity_ah"] == pytest.approx(0.0024)  # "C-rate= 2.4 mAh"
    attrs = json.loads(meta["attributes"])
    assert attrs["test_date"] == "03/31/2016"
    assert attrs["filename"].endswith("SET-LN3024-104-1a.001")


MACCOR_SYNTH = (
    "Today's Date 04/04/2016  Date of Test:\t03/31/2016\t Filename:\tx.001\tComment/Barcode: "
    "C-rate= 1.2 Ah\r\n"
    "Rec#\tCyc#\tStep\tTest (Min)\tStep (Min)\tAmp-hr\tWatt-hr\tAmps\tVolts\tState\tES\tDPt Time\r\n"
    "1\t0\t1\t0.0000\t0.0000\t0.0\t0.0\t0.0000\t3.30\tR\t0\t03/31/2016 16:05:31\r\n"
    "2\t0\t2\t0.5000\t0.0000\t0.0\t0.0\t0.6000\t3.50\tC\t0\t03/31/2016 16:06:01\r\n"
    "3\t0\t2\t1.0000\t0.5000\t0.005\t0.018\t0.6000\t3.60\tC\t0\t03/31/2016 16:06:31\r\n"
    "4\t1\t3\t1.5000\t0.0000\t0.0\t0.0\t1.2000\t3.40\tD\t0\t03/31/2016 16:07:01\r\n"
    "5\t1\t3\t2.0000\t0.5000\t0.01\t0.034\t1.2000\t3.30\tD\t0\t03/31/2016 16:07:31\r\n"
    "6\t1\t4\t2.5000\t0.0000\t0.0\t0.0\t0.0000\t3.35\tS\t0\t03/31/2016 16:08:01\r\n"
    "7\t1\t4\t3.0000\t0.5000\t0.0\t0.0\t0.5000\t3.35\tX\t0\t03/31/2016 16:08:31\r\n"
    "8\t1\t4\t3.5000\t1.0000\t0.0\t0.0\t0.0000\t3.36\tR\t0\t03/31/2016 16:09:01\r\n"
)


def test_maccor_state_gives_the_sign(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.001"
    path.write_bytes(MACCOR_SYNTH.encode())
    frame, rejected, meta = read_file(path)
    assert meta["nominal_capacity_ah"] == 1.2
    assert frame["current_a"].to_list() == [0.0, 0.6, 0.6, -1.2, -1.2, 0.0, 0.0]
    assert frame["ts"].to_list() == [epoch("2016-03-31T16:05:31") + 30 * i for i in (0, 1, 2, 3, 4, 5, 7)]
    assert frame["step_time_s"].to_list() == [0, 0, 30, 0, 30, 0, 60]
    # Unknown state with current: the sign cannot be known -> dead letter with the line number.
    assert rejected.height == 1
    row = rejected.row(0, named=True)
    assert row["row"] == 9  # header lines 1-2, data from line 3
    assert row["field"] == "State" and "unknown State 'X'" in row["reason"]
    assert row["source"] == str(path) and json.loads(row["payload"])["State"] == "X"


def test_maccor_timezone_option(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.001"
    path.write_bytes(MACCOR_SYNTH.encode())
    utc, _, _ = read_file(path)
    chicago, _, meta = read_file(path, timezone="America/Chicago")
    # 31 March 2016 is daylight time in Chicago: UTC-5.
    np.testing.assert_allclose(chicago["ts"].to_numpy() - utc["ts"].to_numpy(), 5 * 3600)
    assert json.loads(meta["attributes"])["timezone"] == "America/Chicago"


# ------------------------------------------------------------------ Battery Archive
def test_battery_archive_timeseries() -> None:
    reader = open_reader(CALCE, keep_reference=True)
    assert reader.format == "battery_archive"
    frame, rejected = reader.read_all()
    raw = pl.read_csv(CALCE)
    assert frame.height == raw.height == 15 and rejected.height == 0
    assert_canonical(frame, ("charge_capacity_ah", "discharge_capacity_ah", "charge_energy_wh",
                             "discharge_energy_wh"))
    # Named like the archive's cycle_data file, so both describe the same cell.
    assert reader.cell_id == "CALCE_CX2-33_prism_LCO_25C_0-100_0.5-0.5C_d"
    assert reader.metadata["chemistry"] == "LCO"
    ts = frame["ts"].to_numpy()
    assert ts[0] == pytest.approx(epoch("2010-09-02T14:35:40"), abs=1e-3)
    np.testing.assert_allclose(np.diff(ts), np.diff(raw["Test_Time (s)"].to_numpy()), atol=1e-6)
    assert frame["cycle"].to_list() == [1] * 15  # written as 1.0
    assert frame["step"].is_null().all()
    assert frame["current_a"].max() == pytest.approx(0.675)  # charging is positive
    assert frame["temperature_c"].is_null().all()
    assert frame["charge_capacity_ah"].to_list() == raw["Charge_Capacity (Ah)"].to_list()
    # The archive's own summary says cycle 1 charged 0.604 Ah; these rows are its start.
    cycles = pl.read_csv(CALCE_CYCLES)
    assert frame["charge_capacity_ah"].max() < cycles["Charge_Capacity (Ah)"][0]


# --------------------------------------------------------- batterydata.energy.gov
# SYNTHETIC: no real batterydata.energy.gov file is available; this sample follows the
# column layout of that site's raw CSV (made up values, 3 cycles of a 1 Ah cell).
BATTERYDATA_SYNTH = (
    "Date_Time,Cycle_Index,Step,Time_s,Current_A,Voltage_V,Cell_Temperature_C,"
    "Charge_Capacity_Ah,Discharge_Capacity_Ah,Charge_Energy_Wh,Discharge_Energy_Wh\n"
    "2021-05-01T08:00:00,1,1,0.0,0.0,3.50,24.9,0,0,0,0\n"
    "2021-05-01T08:00:10,1,2,10.0,1.0,3.60,25.0,0,0,0,0\n"
    "2021-05-01T08:00:20,1,2,20.0,1.0,3.70,25.1,0.00278,0,0.0100,0\n"
    "2021-05-01T08:00:30,1,3,30.0,-1.0,3.50,25.2,0.00278,0,0.0100,0\n"
    "2021-05-01T08:00:40,1,3,40.0,-1.0,3.40,25.3,0.00278,0.00278,0.0100,0.0096\n"
    "2021-05-01T08:00:50,2,2,50.5,1.0,3.60,25.1,0.00556,0.00278,0.0200,0.0096\n"
)


def test_batterydata_synthetic(tmp_path: Path) -> None:
    path = tmp_path / "bd_cell.csv"
    path.write_text(BATTERYDATA_SYNTH)
    assert detect_format(path) == "batterydata"
    frame, rejected, meta = read_file(path, keep_reference=True)
    assert rejected.height == 0 and meta["cell_id"] == "bd_cell"
    assert_canonical(frame, ("charge_capacity_ah", "discharge_capacity_ah", "charge_energy_wh",
                             "discharge_energy_wh"))
    t0 = epoch("2021-05-01T08:00:00")
    assert frame["ts"].to_list() == [t0 + x for x in (0, 10, 20, 30, 40, 50.5)]
    assert frame["current_a"].to_list() == [0, 1, 1, -1, -1, 1]
    assert frame["cycle"].to_list() == [1, 1, 1, 1, 1, 2]
    assert frame["step"].to_list() == [1, 2, 2, 3, 3, 2]
    assert frame["temperature_c"][0] == 24.9
    assert frame["discharge_energy_wh"][-1] == 0.0096


def test_batterydata_without_date_uses_start_time(tmp_path: Path) -> None:
    path = tmp_path / "bd.csv"
    path.write_text("Cycle_Index,Step,Time_s,Current_A,Voltage_V,Cell_Temperature_C\n"
                    "1,1,0,0.5,3.6,25\n1,1,2.5,0.5,3.61,25\n")
    frame, _, _ = read_file(path, start_time=1.6e9)
    assert frame["ts"].to_list() == [1.6e9, 1.6e9 + 2.5]


# -------------------------------------------------------------------- detection
def test_detect_each_format(tmp_path: Path) -> None:
    assert detect_format(ARBIN) == "arbin"
    assert detect_format(MACCOR) == "maccor"
    assert detect_format(CALCE) == "battery_archive"
    bd = tmp_path / "bd.csv"
    bd.write_text(BATTERYDATA_SYNTH)
    assert detect_format(bd) == "batterydata"
    gen = tmp_path / "g.csv"
    gen.write_text("cell_id,ts,voltage_v,current_a\nA,1.7e9,3.7,1.0\n")
    assert detect_format(gen) == "generic"
    pq = tmp_path / "g.parquet"
    pl.DataFrame({"ts": [1.7e9], "voltage_v": [3.7], "current_a": [1.0]}).write_parquet(pq)
    assert detect_format(pq) == "generic"
    assert {"arbin", "maccor", "battery_archive", "batterydata", "generic"} <= set(FORMATS)


def test_unknown_format_names_what_it_saw(tmp_path: Path) -> None:
    path = tmp_path / "mystery.csv"
    path.write_text("when,volts_at_terminal,amps_in\n1,2,3\n")
    with pytest.raises(UnknownFormat, match="volts_at_terminal"):
        detect_format(path)
    with pytest.raises(UnknownFormat):
        open_reader(path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(UnknownFormat, match="empty"):
        detect_format(empty)


# -------------------------------------------------------------------- generic
def test_generic_milli_units_minutes_relative_and_discharge_positive(tmp_path: Path) -> None:
    path = tmp_path / "lab.csv"
    path.write_text("t_min;I_mA;U_mV;T_K;cyc\n0;500;3700;298.15;1\n0.5;500;3710;298.65;1\n"
                    "1.0;-1000;3600;299.15;2\n")
    opts = GenericOptions(
        columns={"ts": "t_min", "current_a": "I_mA", "voltage_v": "U_mV",
                 "temperature_c": "T_K", "cycle": "cyc"},
        time_format="relative", time_unit="min", start_time="2024-01-01T00:00:00Z",
        current_unit="mA", voltage_unit="mV", temperature_unit="K",
        sign="discharge_positive",
    )
    frame, rejected, meta = read_file(path, options=opts, cell_id="bench-3")
    assert rejected.height == 0
    t0 = epoch("2024-01-01T00:00:00")
    assert frame["ts"].to_list() == [t0, t0 + 30, t0 + 60]
    assert frame["current_a"].to_list() == [-0.5, -0.5, 1.0]  # sign flipped to + = charge
    np.testing.assert_allclose(frame["voltage_v"].to_numpy(), [3.7, 3.71, 3.6])
    np.testing.assert_allclose(frame["temperature_c"].to_numpy(), [25.0, 25.5, 26.0])
    assert frame["cycle"].to_list() == [1, 1, 2]
    assert frame["cell_id"].to_list() == ["bench-3"] * 3 and meta["cell_id"] == "bench-3"


def test_generic_iso_time_with_timezone_and_cell_column(tmp_path: Path) -> None:
    path = tmp_path / "fleet.csv"
    path.write_text(
        "time,cell,V,A\n"
        "2024-06-01 12:00:00,c1,3.7,1\n"
        "2024-06-01 12:00:01.5,c2,3.8,-1\n"
        "2024-06-01T10:00:02+00:00,c1,3.7,1\n"
        "2024-06-01T10:00:03Z,c2,3.8,-1\n"
    )
    opts = GenericOptions(columns={"ts": "time", "cell_id": "cell", "voltage_v": "V",
                                   "current_a": "A"}, time_format="iso",
                          timezone="Europe/Berlin")  # naive values are Berlin time (UTC+2)
    frame, rejected, _ = read_file(path, options=opts)
    assert rejected.height == 0
    t0 = epoch("2024-06-01T10:00:00")
    assert frame["ts"].to_list() == [t0, t0 + 1.5, t0 + 2, t0 + 3]
    assert frame["cell_id"].to_list() == ["c1", "c2", "c1", "c2"]


def test_generic_auto_time_epoch_ms_and_strptime(tmp_path: Path) -> None:
    path = tmp_path / "ms.csv"
    path.write_text("ts,voltage_v,current_a\n1700000000000,3.7,1\n1700000000250,3.7,1\n")
    frame, _, _ = read_file(path)
    assert frame["ts"].to_list() == [1.7e9, 1.7e9 + 0.25]

    path2 = tmp_path / "eu.csv"
    path2.write_text("Zeit,U,I\n01.02.2024 10:00:00,3.7,1\n01.02.2024 10:00:10,3.7,1\n")
    opts = GenericOptions(columns={"ts": "Zeit", "voltage_v": "U", "current_a": "I"},
                          time_format="%d.%m.%Y %H:%M:%S")
    frame2, _, _ = read_file(path2, options=opts)
    assert frame2["ts"].to_list() == [epoch("2024-02-01T10:00:00"), epoch("2024-02-01T10:00:10")]


def test_generic_parquet(tmp_path: Path) -> None:
    path = tmp_path / "cells.parquet"
    src = pl.DataFrame({
        "when": [datetime(2024, 1, 1, 0, 0, 0), datetime(2024, 1, 1, 0, 0, 1),
                 datetime(2024, 1, 1, 0, 0, 2)],
        "cell": ["a", "a", "b"],
        "v": [3.7, float("nan"), 3.6],
        "i": [1000.0, 1000.0, -500.0],
    })
    src.write_parquet(path)
    opts = GenericOptions(columns={"ts": "when", "cell_id": "cell", "voltage_v": "v",
                                   "current_a": "i"}, current_unit="mA")
    reader = open_reader(path, options=opts, chunk_rows=2)
    chunks = list(reader)
    assert [c.frame.height + c.rejected.height for c in chunks] == [2, 1]
    assert reader.bytes_read == reader.total_bytes
    frame = pl.concat([c.frame for c in chunks])
    rejected = pl.concat([c.rejected for c in chunks])
    t0 = epoch("2024-01-01T00:00:00")
    assert frame["ts"].to_list() == [t0, t0 + 2]
    assert frame["current_a"].to_list() == [1.0, -0.5]
    assert rejected["row"].to_list() == [1]  # 0-based row index in a Parquet file
    assert rejected["field"].to_list() == ["v"] and rejected["reason"].to_list() == ["NaN"]
    assert rejected["cell_id"].to_list() == ["a"]


def test_generic_missing_mapped_column_is_a_schema_error(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_text("t,U,I\n1,3.7,1\n")
    with pytest.raises(SchemaError, match="'Volt'") as err:
        open_reader(path, options=GenericOptions(columns={"ts": "t", "voltage_v": "Volt",
                                                          "current_a": "I"}))
    assert err.value.field == "Volt"
    with pytest.raises(SchemaError, match="voltage_v"):
        open_reader(path, format="generic", options=GenericOptions(columns={"ts": "t",
                                                                            "current_a": "I"}))
    with pytest.raises(SchemaError, match="unknown target"):
        open_reader(path, options=GenericOptions(columns={"volts": "U"}))
