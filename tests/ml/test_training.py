"""Training and evaluation: vehicles kept apart, calibration and threshold fitted
without test data, reference baseline reproduced, artifact round trip."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from chargetracker.errors import ConfigError
from chargetracker.ml import (
    BASELINE,
    CHARGETRACKER,
    EvaluationPlan,
    ModelArtifact,
    Predictor,
    build_artifact,
    evaluate,
    feature_matrix,
    fit_model,
    format_report,
)
from chargetracker.ml.booster import BoostSpec
from chargetracker.ml.windows import Windows

#: Small, fast variants for the tests (same code paths, fewer trees).
FAST = replace(CHARGETRACKER, spec=replace(CHARGETRACKER.spec, rounds=40), inner_folds=3)
FAST_BASE = replace(BASELINE, spec=BoostSpec(dict(BASELINE.spec.params), 40, fill_missing=-1.0))


def test_calibration_and_threshold_ignore_test_labels(series_windows: Windows) -> None:
    w = series_windows
    plan = EvaluationPlan(folds=3, repeats=1, seed=0, random_split=False)
    a = evaluate(w, [FAST], plan)
    # Flip every label of fold 0's test vehicles: fold 0's calibration and threshold
    # come from its training folds only, so they must not move.
    from chargetracker.ml.splits import group_kfold

    _, te = group_kfold(w.vin, 3, seed=0)[0]
    flipped = w.label.copy()
    flipped[te] = 1 - flipped[te]
    w2 = Windows(w.panel, w.index, w.vin, w.day, flipped, w.complete)
    b = evaluate(w2, [FAST], plan)
    fa = a["models"][FAST.name]["grouped_cv"]["folds_first_repeat"]
    fb = b["models"][FAST.name]["grouped_cv"]["folds_first_repeat"]
    assert fa[0] == fb[0]
    assert fa[1] != fb[1]          # the other folds did see those labels in training


def test_report_has_both_models_on_the_same_splits(series_windows: Windows) -> None:
    cut = int(np.datetime64("2019-12-10").astype(int))
    rep = evaluate(series_windows, [FAST_BASE, FAST],
                   EvaluationPlan(folds=3, repeats=2, seed=0, time_cutoff_day=cut))
    assert rep["data"]["samples"] == 4852 and rep["data"]["positives"] == 343
    for name in (FAST_BASE.name, FAST.name):
        m = rep["models"][name]
        assert m["grouped_cv"]["pooled"]["roc_auc"]["n"] == 2
        assert 0.5 < m["grouped_cv"]["pooled"]["roc_auc"]["mean"] <= 1.0
        assert "time_split" in m and "random_split_leaky" in m
        assert sum(f["test_samples"] for f in m["grouped_cv"]["folds_first_repeat"]) == 4852
    assert rep["models"][FAST_BASE.name]["grouped_cv"]["per_fold"]["threshold"]["mean"] == 0.15
    table = format_report(rep)
    assert "random 4:1 (leaky)" in table and "grouped CV" in table


def test_fit_rejects_one_class() -> None:
    x = np.zeros((10, 3))
    with pytest.raises(ConfigError):
        fit_model(FAST, x, np.zeros(10), np.arange(10))


def test_artifact_round_trip(series_records, series_windows: Windows) -> None:  # noqa: ANN001
    art = build_artifact(series_records, FAST, trained_at="2026-01-02T03:04:05Z",
                         versions={"xgboost": "3.0.0"}, report=None)
    files = art.to_files()
    back = ModelArtifact.from_files(files)
    assert back.model_version == art.model_version and back.features == art.features
    assert back.threshold == art.threshold and back.fingerprint.startswith("sha256:")
    x = feature_matrix(series_windows, art.features)
    np.testing.assert_array_equal(back.model.predict(x), art.model.predict(x))
    p = Predictor(back).predict_records(series_records, next_day=False)
    assert p.height == 4852
    np.testing.assert_allclose(p.get_column("probability").to_numpy(), art.model.predict(x))


def test_artifact_checks_version_and_features(series_records) -> None:  # noqa: ANN001
    import json

    art = build_artifact(series_records, FAST, trained_at="2026-01-02T03:04:05Z",
                         versions={"xgboost": "3.0.0"})
    files = art.to_files()
    m = json.loads(files["manifest.json"])
    bad = dict(files, **{"manifest.json": json.dumps({**m, "format_version": 99}).encode()})
    with pytest.raises(ConfigError, match="format version"):
        ModelArtifact.from_files(bad)
    bad = dict(files, **{"manifest.json": json.dumps(
        {**m, "features": m["features"][:-1]}).encode()})
    with pytest.raises(ConfigError, match="inputs"):
        ModelArtifact.from_files(bad)
    bad = dict(files, **{"manifest.json": json.dumps(
        {**m, "features": [*m["features"][:-1], "bogus"]}).encode()})
    with pytest.raises(ConfigError, match="unknown feature"):
        ModelArtifact.from_files(bad)
    with pytest.raises(ConfigError, match="no model.json"):
        ModelArtifact.from_files({"manifest.json": files["manifest.json"]})
