"""Fade rate, knee detection and the forecast of cycles to 80 % retention."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from chargetracker.engine.trend import cell_trends, fit_trend


def test_linear_fade_and_forecast() -> None:
    x = np.arange(1, 101, dtype=float)
    tr = fit_trend(x, 1.0 - 0.001 * x)
    assert tr.fade_rate_per_cycle == pytest.approx(-0.001)
    assert math.isnan(tr.knee_cycle)
    assert tr.cycles_to_80pct == pytest.approx(200.0)


def test_knee_is_found_and_drives_the_forecast() -> None:
    x = np.arange(1, 201, dtype=float)
    y = np.where(x < 120, 1 - 0.0005 * x, 1 - 0.0005 * 120 - 0.004 * (x - 120))
    tr = fit_trend(x, y + np.random.default_rng(0).normal(0, 2e-4, x.size))
    assert tr.knee_cycle == pytest.approx(120, abs=3)
    assert tr.recent_fade_rate_per_cycle == pytest.approx(-0.004, rel=0.05)
    # 0.94 - 0.004 (x - 120) = 0.8 at x = 155
    assert tr.cycles_to_80pct == pytest.approx(155, abs=2)


def test_not_fading_forecasts_infinity_and_empty_is_nan() -> None:
    assert fit_trend(np.arange(10.0), np.ones(10)).cycles_to_80pct == math.inf
    assert math.isnan(fit_trend(np.array([]), np.array([])).fade_rate_per_cycle)


def test_cell_trends_uses_closed_cycles_only() -> None:
    cycles = pl.DataFrame({
        "cell_id": ["a"] * 4, "cycle": [1, 2, 3, 4],
        "status": ["closed", "closed", "closed", "open"],
        "retention": [1.0, 0.99, 0.98, 0.10],
    })
    t = cell_trends(cycles).row(0, named=True)
    assert t["n_cycles"] == 3
    assert t["fade_rate_per_cycle"] == pytest.approx(-0.01)
