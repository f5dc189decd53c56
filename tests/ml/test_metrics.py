"""Metrics, calibration and splits against hand-derived cases."""

from __future__ import annotations

import numpy as np
import pytest

from chargetracker.ml.calibration import Calibrator, fit_calibrator
from chargetracker.ml.metrics import (
    average_precision,
    best_f1_threshold,
    binary_report,
    brier,
    roc_auc,
)
from chargetracker.ml.splits import group_kfold, random_split, time_split


def test_roc_auc_hand_cases() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    # pairs (pos, neg): (0.35>0.1) (0.35>0.4 no) (0.8>0.1) (0.8>0.4) -> 3/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    # a tie counts one half
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_average_precision_hand_case() -> None:
    # scores high->low: 1 (P=1, R=1/2), 0, 1 (P=2/3, R=1) -> AP = 1/2*1 + 1/2*2/3
    y = [1, 0, 1, 0]
    p = [0.9, 0.8, 0.7, 0.1]
    assert average_precision(y, p) == pytest.approx(0.5 + 1 / 3)
    # ties: both at one threshold -> one step with P = 1/2
    assert average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)


def test_brier_and_report() -> None:
    assert brier([0, 1], [0.2, 0.6]) == pytest.approx((0.04 + 0.16) / 2)
    r = binary_report(np.array([1, 1, 0, 0, 0]), np.array([0.9, 0.2, 0.6, 0.1, 0.0]), 0.5)
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (1, 1, 1, 2)
    assert r["precision"] == 0.5 and r["recall"] == 0.5 and r["f1"] == 0.5


def test_best_f1_threshold() -> None:
    y = np.array([1, 1, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    # cut after 0.6: tp 3, fp 1 -> F1 6/7 (best); threshold midway to the next score
    t = best_f1_threshold(y, p)
    assert t == pytest.approx(0.4)
    assert binary_report(y, p, t)["f1"] == pytest.approx(6 / 7)


def test_isotonic_is_monotone_and_fits_block_means() -> None:
    s = np.array([0.1, 0.2, 0.3, 0.4])
    y = np.array([0, 1, 0, 1])
    cal = fit_calibrator("isotonic", s, y)
    # PAVA pools (0.2, 0.3) -> 0.5
    np.testing.assert_allclose(cal.apply(s), [0.0, 0.5, 0.5, 1.0])
    grid = np.linspace(0, 1, 101)
    assert np.all(np.diff(cal.apply(grid)) >= 0)
    again = Calibrator.from_dict(cal.to_dict())
    np.testing.assert_array_equal(again.apply(grid), cal.apply(grid))


def test_platt_recovers_a_logistic_link() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=20_000)
    s = 1 / (1 + np.exp(-z))
    y = (rng.random(z.size) < 1 / (1 + np.exp(-(2.0 * z - 1.0)))).astype(int)
    cal = fit_calibrator("platt", s, y)
    assert cal.params["a"] == pytest.approx(2.0, abs=0.1)
    assert cal.params["b"] == pytest.approx(-1.0, abs=0.1)
    # monotone: the ranking (hence ROC-AUC) is unchanged
    assert roc_auc(y, cal.apply(s)) == pytest.approx(roc_auc(y, s))


def test_group_kfold_keeps_vehicles_apart() -> None:
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, size=2000).astype(str)
    for seed in range(3):
        splits = group_kfold(groups, 5, seed=seed)
        seen = np.zeros(groups.size, int)
        for tr, te in splits:
            assert not set(groups[tr]) & set(groups[te])
            assert tr.size + te.size == groups.size
            seen[te] += 1
        assert (seen == 1).all()
        sizes = [te.size for _, te in splits]
        assert max(sizes) - min(sizes) < 200       # balanced by samples
    assert [te.tolist() for _, te in group_kfold(groups, 5, seed=0)] != \
        [te.tolist() for _, te in group_kfold(groups, 5, seed=1)]


def test_time_and_random_split() -> None:
    day = np.arange(100)
    tr, te = time_split(day, 60)
    assert day[tr].max() + 14 <= 60 and day[te].min() == 60
    tr, te = random_split(100)
    assert tr.size == 80 and te.size == 20 and not set(tr) & set(te)
