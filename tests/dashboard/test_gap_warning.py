"""The cell page warns when cycles had data gaps (issue 9: say so loudly)."""

from __future__ import annotations

import polars as pl

from chargetracker.dashboard.pages.cell import gap_warning
from chargetracker.dashboard.tables import cycle_table


def _cycles(gap_s: list[float], missing: list[float]) -> pl.DataFrame:
    n = len(gap_s)
    return pl.DataFrame({"cycle": list(range(1, n + 1)), "gap_excluded_s": gap_s,
                         "gap_missing_ah": missing})


def test_no_warning_without_gaps() -> None:
    assert gap_warning(_cycles([0.0, 0.0], [0.0, 0.0])) is None
    assert gap_warning(pl.DataFrame({"cycle": [1]})) is None
    assert gap_warning(_cycles([float("nan")], [float("nan")])) is None


def test_warning_names_cycles_time_and_missing_charge() -> None:
    div = gap_warning(_cycles([0.0, 1200.0, 600.0], [0.0, 0.05, 0.025]))
    assert div is not None
    text = str(div.children)
    assert "2 cycle(s) (2, 3)" in text and "1,800 s" in text and "0.075 Ah" in text


def test_cycle_table_shows_gap_columns() -> None:
    _, columns = cycle_table(pl.DataFrame())
    fields = [c["field"] for c in columns]
    assert "gap_excluded_s" in fields and "gap_missing_ah" in fields
