"""Window and label construction: equal to the reference on its own sample."""

from __future__ import annotations

import csv

import numpy as np
import polars as pl

from chargetracker.ml import build_panel, build_windows
from chargetracker.ml.windows import Windows
from tests.ml.conftest import SERIES, daily


def _reference_loop(path: str) -> dict[tuple[str, str], tuple[np.ndarray, int]]:
    """The reference notebook's loop, restated: rows of each VIN in file order, NaN as
    read (the reference fills -1 afterwards, which does not change label or position)."""
    rows = list(csv.reader(open(path)))[1:]
    by: dict[str, list[list[str]]] = {}
    for r in rows:
        by.setdefault(r[0], []).append(r)
    out = {}
    for vin, rs in by.items():
        for t in range(14, len(rs)):
            feats = np.array([[float(v) for v in r[2:8]] for r in rs[t - 14:t]]).ravel()
            label = int(1.0 in [float(r[8]) for r in rs[t:t + 14]])
            out[(vin, rs[t][1])] = (feats, label)
    return out


def test_counts_equal_the_reference(series_windows: Windows) -> None:
    w = series_windows
    assert len(w) == 4852
    assert int((w.label == 1).sum()) == 343
    assert np.unique(w.vin[w.label == 1]).size == 16
    empty = np.isnan(w.reference_matrix()).all(axis=1)
    assert int(empty.sum()) == 269
    assert int((w.label[empty] == 1).sum()) == 69


def test_every_sample_equals_the_reference_loop(series_windows: Windows) -> None:
    ref = _reference_loop(str(SERIES))
    w = series_windows
    x = w.reference_matrix()
    names, dates = w.vin_names(), w.dates().astype(str)
    assert len(ref) == len(w)
    for i in range(len(w)):
        feats, label = ref[(names[i], dates[i])]
        np.testing.assert_array_equal(x[i], feats)
        assert label == w.label[i]


def test_hand_case_label_and_window() -> None:
    # 20 days; day k has total voltage k; an alarm on day 16 only.
    rows = [(float(k), 0.0, 3.7, 3.6, 25.0, 24.0) for k in range(20)]
    labels = [0] * 20
    labels[16] = 1
    w = build_windows(build_panel(daily("V1", "2024-01-01", rows, labels)))
    assert len(w) == 6                          # t = 14 .. 19
    assert w.label.tolist() == [1, 1, 1, 0, 0, 0]  # t <= 16 <= t+13
    x = w.reference_matrix()
    assert x[0, 0] == 0.0 and x[0, 78] == 13.0   # oldest day first, day t excluded
    assert w.dates()[0] == np.datetime64("2024-01-15")


def test_missing_dates_are_empty_days() -> None:
    rows = [(350.0, 0.0, 3.7, 3.6, 25.0, 24.0)] * 20
    full = daily("V1", "2024-01-01", rows)
    gappy = full.filter(pl.col("date") != pl.date(2024, 1, 5))
    w = build_windows(build_panel(gappy))
    assert len(w) == 6                          # the calendar, not the row count
    x = w.reference_matrix()
    assert np.isnan(x[0, 4 * 6:5 * 6]).all()     # 2024-01-05 is day 4 of the first window


def test_next_day_prediction_and_short_vins() -> None:
    rows = [(350.0, 0.0, 3.7, 3.6, 25.0, 24.0)] * 14
    recs = pl.concat([daily("LONG", "2024-01-01", rows), daily("SHORT", "2024-01-01", rows[:5])])
    assert len(build_windows(build_panel(recs))) == 0
    w = build_windows(build_panel(recs, extend_days=1), include_next_day=True)
    assert len(w) == 1 and w.vin_names()[0] == "LONG"
    assert w.dates()[0] == np.datetime64("2024-01-15") and w.label[0] == -1
