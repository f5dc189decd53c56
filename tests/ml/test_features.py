"""Engineered features against hand-derived windows; NaN stays NaN."""

from __future__ import annotations

import numpy as np
import pytest

from chargetracker.ml import build_panel, build_windows, feature_matrix, feature_names
from chargetracker.ml.windows import Windows
from tests.ml.conftest import daily


def _one_window(rows: list[tuple[float | None, ...]]) -> Windows:
    w = build_windows(build_panel(daily("V", "2024-01-01", rows + [rows[-1]])))
    return w.take(np.arange(len(w)) == 0)


def _feat(w: Windows, name: str) -> float:
    return float(feature_matrix(w, [name])[0, 0])


def test_spread_level_trend_last() -> None:
    # spread grows 10 mV/day from 10 mV: 0.01 .. 0.14 V over 14 days; day 3 missing.
    rows: list[tuple[float | None, ...]] = [
        (350.0, 1.0, 3.7 + 0.01 * (k + 1), 3.7, 26.0, 24.0) for k in range(14)]
    rows[3] = (None,) * 6
    w = _one_window(rows)
    spreads = np.array([0.01 * (k + 1) for k in range(14) if k != 3])
    assert _feat(w, "spread_last_v") == pytest.approx(0.14)
    assert _feat(w, "spread_max_v") == pytest.approx(0.14)
    assert _feat(w, "spread_mean_v") == pytest.approx(spreads.mean())
    assert _feat(w, "spread_trend_v_per_day") == pytest.approx(0.01)
    assert _feat(w, "temp_spread_mean_c") == pytest.approx(2.0)
    assert _feat(w, "days_with_data") == 13
    assert _feat(w, "days_since_data") == 1
    assert _feat(w, "days_spread_over_50mv") == 9            # 0.06 .. 0.14
    assert _feat(w, "empty_window") == 0


def test_empty_window_is_nan_not_sentinel() -> None:
    rows: list[tuple[float | None, ...]] = [(None,) * 6] * 14
    rows[0] = (350.0, 1.0, 3.71, 3.70, 25.0, 24.0)           # one day, 14 days ago
    w = _one_window(rows)
    ref = feature_matrix(w, feature_names("reference"))
    assert np.isnan(ref[0, 6:]).all() and not (ref == -1).any()
    assert _feat(w, "days_since_data") == 14
    assert np.isnan(_feat(w, "spread_trend_v_per_day"))       # < 3 days
    w2 = _one_window([(None,) * 6] * 14)
    assert _feat(w2, "empty_window") == 1 and np.isnan(_feat(w2, "spread_mean_v"))
    assert _feat(w2, "days_since_data") == 15


def test_sets_are_consistent(series_windows: Windows) -> None:
    combined = feature_matrix(series_windows, feature_names("combined"))
    eng = feature_matrix(series_windows, feature_names("engineered"))
    np.testing.assert_array_equal(combined[:, :eng.shape[1]], eng)
    assert combined.shape == (4852, len(feature_names("engineered")) + 84)
    assert np.isfinite(eng[:, feature_names("engineered").index("days_with_data")]).all()


def test_compiled_window_features_equal_the_numpy_definition(series_windows: Windows) -> None:
    from chargetracker.ml import features as F

    # Every sample of the reference data, plus windows with empty, partly empty and
    # single-day data (the NaN paths of each reduction).
    fast, slow = F._engineered(series_windows), F._engineered_numpy(series_windows)
    assert set(fast) == set(slow)
    for name in slow:
        a, b = fast[name], slow[name]
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        ok = ~np.isnan(b)
        # The NumPy means difference panel-long cumulative sums; the kernel sums 14 days.
        np.testing.assert_allclose(a[ok], b[ok], rtol=1e-9, atol=1e-9, err_msg=name)
