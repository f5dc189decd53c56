"""Validation of daily pack records: clear errors naming VIN, date and field."""

from __future__ import annotations

import polars as pl
import pytest

from chargetracker.errors import SchemaError, ValidationError
from chargetracker.ml import parse_records_csv, require_valid, validate_records

HEADER = "VIN,Date,TotalVoltage,TotalCurrent,CellMaxVoltage,CellMinVoltage,MaxTemperature,MinTemperature,Label\n"


def _csv(*lines: str) -> pl.DataFrame:
    return parse_records_csv((HEADER + "\n".join(lines) + "\n").encode())


def test_reference_columns_and_nan_rows(series_records: pl.DataFrame) -> None:
    assert series_records.height == 5805
    assert series_records.columns[:3] == ["vin", "date", "total_voltage_v"]
    signals = series_records.columns[2:8]
    empty = series_records.filter(pl.all_horizontal(pl.col(signals).is_null()))
    assert empty.height == 2041                 # "nan" text is missing, never a number
    assert empty.get_column("label").null_count() == 2021   # the README's all-NaN rows
    assert series_records.get_column("label").sum() == 73


@pytest.mark.parametrize(("line", "field", "reason"), [
    ("V1,2024-01-01,abc,1,3.7,3.6,25,24,0", "total_voltage_v", "not a number"),
    ("V1,2024-13-01,350,1,3.7,3.6,25,24,0", "date", "ISO date"),
    ("V1,2024-01-01,350,1,3.6,3.7,25,24,0", "cell_min_v", "greater than cell_max_v"),
    ("V1,2024-01-01,350,1,3.7,3.6,25,24,2", "label", "0 or 1"),
    ("V1,2024-01-01,350,1,37,3.6,25,24,0", "cell_max_v", "plausible range"),
    ("V1,2024-01-01,350,1,3.7,3.6,inf,24,0", "max_temperature_c", "infinite"),
    (",2024-01-01,350,1,3.7,3.6,25,24,0", "vin", "empty VIN"),
])
def test_bad_rows_are_named(line: str, field: str, reason: str) -> None:
    good = "V2,2024-01-01,350,1,3.7,3.6,25,24,0"
    checked = validate_records(_csv(good, line))
    assert checked.records.height == 1 and checked.records["vin"][0] == "V2"
    bad = checked.rejected.row(0, named=True)
    assert bad["field"] == field and reason in bad["reason"] and bad["row"] == 1
    with pytest.raises(ValidationError) as exc:
        require_valid(_csv(good, line))
    assert exc.value.field == field and "2024-" in str(exc.value)


def test_duplicate_days_are_both_rejected() -> None:
    checked = validate_records(_csv("V1,2024-01-01,350,1,3.7,3.6,25,24,0",
                                    "V1,2024-01-01,351,1,3.7,3.6,25,24,0",
                                    "V1,2024-01-02,351,1,3.7,3.6,25,24,0"))
    assert checked.records.height == 1
    assert checked.rejected.get_column("reason").str.contains("duplicate").all()


def test_missing_column_is_a_schema_error() -> None:
    frame = pl.DataFrame({"VIN": ["a"], "Date": ["2024-01-01"], "TotalVoltage": [1.0]})
    with pytest.raises(SchemaError) as exc:
        validate_records(frame)
    assert exc.value.field == "total_current_a"


def test_typed_input_and_no_label() -> None:
    import datetime as dt

    frame = pl.DataFrame({"vin": ["a", "a"], "date": [dt.date(2024, 1, 1), dt.date(2024, 1, 2)],
                          "total_voltage_v": [350.0, None], "total_current_a": [1, None],
                          "cell_max_v": [3.7, None], "cell_min_v": [3.6, None],
                          "max_temperature_c": [25.0, float("nan")],
                          "min_temperature_c": [24.0, None]})
    recs = require_valid(frame)
    assert recs.get_column("label").null_count() == 2
    assert recs.get_column("max_temperature_c").null_count() == 1   # NaN -> missing


def test_unreadable_csv() -> None:
    with pytest.raises(ValidationError):
        validate_records(parse_records_csv(b"\xff\xfe\x00garbage\n\x00"))


def _json_rows() -> list[dict[str, object]]:
    import csv

    from tests.ml.conftest import SERIES

    out: list[dict[str, object]] = []
    for r in csv.DictReader(SERIES.open()):
        if r["VIN"] != "JH4PC6DU52KF7SVMZ":
            continue
        out.append({k: (r[k] if k in ("VIN", "Date") else
                        (None if r[k] == "" else float(r[k]))) for k in r})
    return out[-30:]


def test_small_path_equals_full_validation() -> None:
    from chargetracker.ml.records import validate_small

    rows = _json_rows()
    rows[5] = {**rows[5], **{k: None for k in rows[5] if k not in ("VIN", "Date")}}
    fast = validate_small(rows)
    assert fast is not None
    full = validate_records(pl.DataFrame(
        {k: [None if r[k] is None else str(r[k]) for r in rows] for k in rows[0]})).records
    assert fast.equals(full)
    # the top-level VIN fills rows without one
    bare = [{k: v for k, v in r.items() if k != "VIN"} for r in rows]
    fast_vin = validate_small(bare, vin="JH4PC6DU52KF7SVMZ")
    assert fast_vin is not None and fast_vin.equals(full)


@pytest.mark.parametrize("change", [
    {"TotalVoltage": "abc"}, {"TotalVoltage": "350.1"}, {"CellMaxVoltage": 11.0},
    {"CellMinVoltage": 4.5, "CellMaxVoltage": 4.0}, {"Label": 2}, {"Label": True},
    {"Date": "2019-13-01"}, {"Date": "12/01/2019"}, {"VIN": ""}, {"VIN": "A\x01"},
    {"MaxTemperature": float("inf")}, {"MinTemperature": 30.0, "MaxTemperature": 20.0},
])
def test_small_path_defers_anything_unusual(change: dict[str, object]) -> None:
    """Any value the full checks would reject (or must parse) goes to them: None."""
    from chargetracker.ml.records import validate_small

    rows = _json_rows()
    rows[3] = {**rows[3], **change}
    assert validate_small(rows) is None


def test_small_path_defers_duplicates_and_missing_columns() -> None:
    from chargetracker.ml.records import validate_small

    rows = _json_rows()
    assert validate_small([*rows, rows[0]]) is None
    assert validate_small([{k: v for k, v in r.items() if k != "TotalCurrent"}
                           for r in rows]) is None
    assert validate_small([]) is None
