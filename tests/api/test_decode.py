"""The ingest body decoder on its own: every JSON layout (compact, spaced, pretty,
NDJSON, columnar; Polars' reader or the Python fallback) gives the same frame, and tricky
bodies (separators inside strings, nested objects) are read correctly."""

from __future__ import annotations

import json

import polars as pl
import pytest

from chargetracker.api.ingest import parse_body
from chargetracker.errors import SchemaError

ROWS = [
    {"cell_id": "a}, {b", "ts": 1.5, "voltage_v": 3.0, "current_a": 0.25, "temperature_c": None},
    {"cell_id": 'c},{"ts": 9}', "ts": 2.0, "voltage_v": 3.25, "current_a": -1, "cycle": 3.0,
     "extra": [{"q": 1}, {"r": [1, {"s": "}, {"}]}]},
    {"cell_id": "d", "ts": 1e9 + 0.1, "voltage_v": 4.2, "current_a": 1e-7, "step": 2,
     "extra": {"nested": {"x": "},{"}}},
]


def _expected() -> pl.DataFrame:
    return pl.DataFrame({
        "cell_id": [r["cell_id"] for r in ROWS], "ts": [1.5, 2.0, 1e9 + 0.1],
        "voltage_v": [3.0, 3.25, 4.2], "current_a": [0.25, -1.0, 1e-7],
        "temperature_c": [None, None, None], "cycle": [None, 3, None], "step": [None, None, 2],
        "step_time_s": [None, None, None],
    }, schema={"cell_id": pl.Utf8, "ts": pl.Float64, "voltage_v": pl.Float64,
               "current_a": pl.Float64, "temperature_c": pl.Float64, "cycle": pl.Int64,
               "step": pl.Int64, "step_time_s": pl.Float64})


@pytest.mark.parametrize("layout", ["compact", "spaced", "pretty", "ndjson", "columnar"])
def test_every_json_layout_decodes_the_same(layout: str) -> None:
    if layout == "compact":
        body, fmt = json.dumps(ROWS, separators=(",", ":")), "json"
    elif layout == "spaced":
        body, fmt = json.dumps(ROWS), "json"
    elif layout == "pretty":
        body, fmt = json.dumps(ROWS, indent=2), "json"
    elif layout == "ndjson":
        body, fmt = "\n".join(json.dumps(r) for r in ROWS) + "\n", "ndjson"
    else:
        keys = list(dict.fromkeys(k for r in ROWS for k in r))
        body, fmt = json.dumps({"measurements": {k: [r.get(k) for r in ROWS] for k in keys}}), "json"
    parsed = parse_body(body.encode(), fmt)
    assert parsed.frame.equals(_expected())
    assert parsed.ignored_columns == ["extra"]


def test_separators_inside_strings_survive() -> None:
    frame = parse_body(json.dumps([{"cell_id": "x}, {y", "ts": 1, "voltage_v": 3,
                                    "current_a": 0}]).encode(), "json").frame
    assert frame.get_column("cell_id").to_list() == ["x}, {y"]


def test_float_text_round_trips_exactly() -> None:
    values = [0.1, 1 / 3, 1699999999.998935, 2.9999933080831123, 5e-324, 1.7976931348623157e308]
    rows = [{"cell_id": "f", "ts": float(k), "voltage_v": v, "current_a": v} for k, v in enumerate(values)]
    for body in (json.dumps(rows), json.dumps(rows, separators=(",", ":"))):
        frame = parse_body(body.encode(), "json").frame
        assert frame.get_column("voltage_v").to_list() == values


def test_booleans_are_refused_on_every_path() -> None:
    rows = [{"cell_id": "b", "ts": 1, "voltage_v": 3, "current_a": 0},
            {"cell_id": "b", "ts": 2, "voltage_v": 3, "current_a": False}]
    for body in (json.dumps(rows), json.dumps(rows, indent=1)):
        with pytest.raises(SchemaError) as info:
            parse_body(body.encode(), "json")
        assert info.value.field == "current_a" and info.value.row == 1
