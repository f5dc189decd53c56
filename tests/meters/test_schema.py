"""Validation of readings and meter metadata: errors name row, field and reason."""

from __future__ import annotations

import json

import polars as pl
import pytest

from chargetracker.errors import SchemaError, ValidationError
from chargetracker.meters import summarize, validate_meters, validate_readings


def test_bad_rows_become_dead_letters_and_good_rows_stay() -> None:
    frame = pl.DataFrame({
        "meter_id": ["a", "", "a", "a", None, "a", "a"],
        "ts": [0.0, 60.0, float("nan"), 120.0, 180.0, 240.0, 300.0],
        "power_w": [1.0, 2.0, 3.0, float("inf"), 5.0, 6.0, 7.0],
        "energy_wh": [None, None, None, None, None, -1.0, 10.0],
    })
    v = validate_readings(frame, source="f.csv")
    assert v.good.get_column("ts").to_list() == [0.0, 300.0]
    assert v.rows.tolist() == [0, 6]
    got = {(r["row"], r["field"], r["reason"]) for r in v.rejected.iter_rows(named=True)}
    assert got == {
        (1, "meter_id", "missing meter_id"), (2, "ts", "NaN"), (3, "power_w", "infinite value"),
        (4, "meter_id", "missing meter_id"), (5, "energy_wh", "negative cumulative counter"),
    }
    assert (v.rejected.get_column("source") == "f.csv").all()
    assert json.loads(v.rejected.filter(pl.col("row") == 3)["payload"][0])["power_w"] == "inf"
    # The engine keeps going beside them.
    s = summarize(frame)
    assert s.rejected.height == 5 and s.days.height == 1


def test_missing_column_and_text_in_numbers_name_the_field() -> None:
    with pytest.raises(SchemaError, match="power_w"):
        validate_readings(pl.DataFrame({"meter_id": ["a"], "ts": [1.0]}))
    with pytest.raises(SchemaError) as exc:
        validate_readings(pl.DataFrame({"meter_id": ["a", "a"], "ts": [1.0, 2.0],
                                        "power_w": ["5", "five"]}), source="x.csv")
    assert exc.value.field == "power_w" and exc.value.row == 1 and "five" in str(exc.value)


def test_implausible_power_is_rejected() -> None:
    v = validate_readings(pl.DataFrame({"meter_id": ["a", "a"], "ts": [1.0, 2.0],
                                        "power_w": [-500.0, 5e9]}))
    assert v.good.height == 1  # export (negative) is real
    assert v.rejected["reason"][0].startswith("outside plausible range")


def test_meter_metadata_validation() -> None:
    ok = validate_meters(pl.DataFrame({
        "meter_id": ["h1/mains", "h1/kettle"], "house_id": ["h1", "h1"],
        "appliance": ["Mains", " Kettle"], "zip": ["75001", "75001"],
        "timezone": ["Europe/Paris", None], "floor": [None, "2"],
    }))
    assert ok.get_column("appliance").to_list() == ["mains", "kettle"]
    assert ok.get_column("timezone").to_list() == ["Europe/Paris", "UTC"]
    assert json.loads(ok["attributes"][1]) == {"floor": "2"}
    base = {"meter_id": ["a", "b"], "house_id": ["h", "h"], "appliance": ["mains", "tv"]}
    with pytest.raises(ValidationError) as exc:
        validate_meters(pl.DataFrame({**base, "timezone": ["UTC", "Mars/Olympus"]}))
    assert exc.value.row == 1 and exc.value.field == "timezone" and "IANA" in exc.value.reason
    with pytest.raises(ValidationError) as exc:
        validate_meters(pl.DataFrame({**base, "meter_id": ["a", "a"]}))
    assert exc.value.field == "meter_id" and exc.value.row == 1
    with pytest.raises(ValidationError) as exc:
        validate_meters(pl.DataFrame({**base, "house_id": ["h", None]}))
    assert exc.value.field == "house_id" and exc.value.row == 1
    with pytest.raises(SchemaError, match="appliance"):
        validate_meters(pl.DataFrame({"meter_id": ["a"], "house_id": ["h"]}))
