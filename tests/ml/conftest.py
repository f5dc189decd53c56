"""Shared inputs of the ml tests: the AWS sample's daily records (tests/data copy)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from chargetracker.ml import build_panel, build_windows, parse_records_csv, require_valid
from chargetracker.ml.windows import Windows

DATA = Path(__file__).resolve().parents[1] / "data"
SERIES = DATA / "bms-series_samples.csv"
BATCH_HEAD = DATA / "bms-test_batch_samples-head.csv"


@pytest.fixture(scope="session")
def series_records() -> pl.DataFrame:
    return require_valid(parse_records_csv(SERIES.read_bytes()))


@pytest.fixture(scope="session")
def series_windows(series_records: pl.DataFrame) -> Windows:
    return build_windows(build_panel(series_records))


def daily(vin: str, start: str, rows: list[tuple[float | None, ...]],
          labels: list[int | None] | None = None) -> pl.DataFrame:
    """Validated records of one VIN from consecutive days of 6-tuples (None = missing)."""
    import datetime as dt

    d0 = dt.date.fromisoformat(start)
    cols = ["total_voltage_v", "total_current_a", "cell_max_v", "cell_min_v",
            "max_temperature_c", "min_temperature_c"]
    frame = pl.DataFrame({
        "vin": [vin] * len(rows),
        "date": [(d0 + dt.timedelta(days=i)).isoformat() for i in range(len(rows))],
        **{c: [r[k] for r in rows] for k, c in enumerate(cols)},
        "label": labels if labels is not None else [0] * len(rows),
    }, schema_overrides={c: pl.Float64 for c in cols} | {"label": pl.Int64})
    return require_valid(frame)
