"""Daily pack records from cell telemetry: hand-derived pack-days."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from chargetracker.ml import require_valid
from chargetracker.ml.from_cells import daily_pack_records, pack_of_cells

DAY = 86_400.0
T0 = 19_000 * DAY   # 2022-01-08 00:00 UTC


def _meas(cell: str, day: int, volts: list[float], amps: float, temps: list[float]) -> pl.DataFrame:
    n = len(volts)
    return pl.DataFrame({"cell_id": [cell] * n, "ts": T0 + day * DAY + 3600 * np.arange(n),
                         "voltage_v": volts, "current_a": [amps] * n, "temperature_c": temps})


def test_pack_day_from_three_cells() -> None:
    cells = pl.DataFrame({"cell_id": ["a", "b", "c", "x"],
                          "attributes": [json.dumps({"pack_id": "P1"})] * 3 + ["{}"]})
    packs = pack_of_cells(cells)
    assert sorted(packs["cell_id"].to_list()) == ["a", "b", "c"]
    m = pl.concat([
        _meas("a", 0, [3.6, 3.8], 2.0, [25, 27]),   # mean 3.7
        _meas("b", 0, [3.65, 3.65], 2.0, [24, 26]),  # mean 3.65
        _meas("c", 0, [3.5, 3.7], 2.0, [23, 30]),   # mean 3.6
        _meas("a", 1, [3.7], 1.0, [25]),            # day 1: b and c silent -> no pack-day
        _meas("x", 0, [4.0], 1.0, [20]),            # no pack: ignored
    ])
    out = require_valid(daily_pack_records(m, packs))
    assert out.height == 1
    r = out.row(0, named=True)
    assert r["vin"] == "P1" and str(r["date"]) == "2022-01-08"
    assert r["total_voltage_v"] == pytest.approx(3.7 + 3.65 + 3.6)
    assert r["cell_max_v"] == pytest.approx(3.7) and r["cell_min_v"] == pytest.approx(3.6)
    assert r["total_current_a"] == pytest.approx(2.0)
    assert (r["max_temperature_c"], r["min_temperature_c"]) == (30, 23)
    assert r["label"] is None
