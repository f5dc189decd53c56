"""Duration text -> seconds (readers/durations.py), hand-derived."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from chargetracker.readers.durations import parse_durations

CASES: list[tuple[str | None, float | None]] = [
    ("00:00:00", 0.0),
    ("01:02:03", 3723.0),
    ("123:04:05", 123 * 3600 + 4 * 60 + 5.0),   # Neware: hours beyond 24
    ("0d 00:00:5", 5.0),                         # Maccor: one-digit seconds
    ("1d 02:03:04", 86400 + 7384.0),
    ("1d02:03:04", 86400 + 7384.0),
    ("1-02:03:04", 86400 + 7384.0),              # BTS day separator
    ("2 01:00:00", 2 * 86400 + 3600.0),
    ("00:01:02.5", 62.5),
    ("00:00:01.123", 1.123),
    (" 02:00:00\r", 7200.0),
    ("1:2:3", 3723.0),
    # not durations
    ("", None), ("x", None), (None, None), ("01:02", None), ("01:002:03", None),
    ("01:02:03:04", None), ("-1:00:00", None), ("+1:00:00", None), ("01:02:3.4.5", None),
    ("01 :02:03", None), ("1e3:00:00", None), ("01:02:03 x", None), ("d01:02:03", None),
]


def test_hand_derived_cases() -> None:
    text = pl.Series("t", [c for c, _ in CASES], dtype=pl.Utf8)
    got = pl.DataFrame(text).select(parse_durations(pl.col("t"))).to_series().to_list()
    assert got == [w for _, w in CASES]


@pytest.mark.parametrize("frac", ["5", "25", "125", "001", "999999", "123456789"])
def test_fractions_are_the_double_a_number_parse_gives(frac: str) -> None:
    """S.fff gives exactly float("S.fff") (one rounding), so durations and numeric
    time columns agree bit for bit."""
    got = pl.DataFrame({"t": [f"00:00:17.{frac}"]}).select(parse_durations(pl.col("t"))).item()
    assert got == float(f"17.{frac}")


def test_a_long_column_in_slices_and_with_nulls() -> None:
    secs = np.arange(0, 500_000, 7)
    text = [f"{s // 3600:02d}:{(s // 60) % 60:02d}:{s % 60:02d}" for s in secs.tolist()]
    text[3] = None  # type: ignore[call-overload]
    frame = pl.DataFrame({"t": text}).slice(1)  # a sliced column: Arrow offset != 0
    got = frame.select(parse_durations(pl.col("t"))).to_series()
    assert got.null_count() == 1
    assert got.fill_null(-1.0).to_numpy()[3:].tolist() == secs[4:].astype(float).tolist()
