"""Fitting one alarm model: booster, calibration and threshold from training data only.

:func:`fit_model` sees only the training samples it is given. When the model is
calibrated or its threshold is to be chosen, it first builds *out-of-fold* scores of
those training samples with an inner GroupKFold by VIN, fits the calibrator on them and
picks the F1-optimal threshold on the calibrated scores; then it trains the final
booster on all training samples. No test sample ever reaches any of the three.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import ConfigError
from .booster import BASELINE_PARAMS, BoostSpec, TrainedBooster, train_booster
from .calibration import Calibrator, fit_calibrator
from .features import feature_names
from .metrics import best_f1_threshold
from .splits import group_kfold

__all__ = ["BASELINE", "CHARGETRACKER", "FittedModel", "ModelConfig", "fit_model"]


@dataclass(frozen=True)
class ModelConfig:
    """What to fit. ``threshold`` None = choose on the training folds (max F1)."""

    name: str
    features: tuple[str, ...]
    spec: BoostSpec = field(default_factory=BoostSpec)
    calibration: str = "isotonic"
    threshold: float | None = None
    inner_folds: int = 4

    def with_features(self, feature_set: str) -> ModelConfig:
        return replace(self, features=tuple(feature_names(feature_set)))


#: The reference: 84 raw values, NaN filled with -1, fixed threshold 0.15, no calibration.
BASELINE = ModelConfig("reference-xgboost", tuple(feature_names("reference")),
                       BoostSpec(dict(BASELINE_PARAMS), 200, fill_missing=-1.0),
                       calibration="none", threshold=0.15)
#: ChargeTracker's model: engineered features, NaN kept missing, Platt calibration
#: (monotone, so it keeps the ranking -- isotonic steps tie scores and cost ROC-AUC),
#: threshold chosen on training folds.
CHARGETRACKER = ModelConfig("chargetracker-xgboost", tuple(feature_names("engineered")),
                              calibration="platt")


@dataclass
class FittedModel:
    """A trained booster with its calibrator and alarm threshold (on calibrated p)."""

    config: ModelConfig
    booster: TrainedBooster
    calibrator: Calibrator
    threshold: float
    train_vins: frozenset[str] = frozenset()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Calibrated probability of an alarm within the 14-day horizon."""
        return np.clip(self.calibrator.apply(self.booster.predict(x)), 0.0, 1.0)


def fit_model(cfg: ModelConfig, x: np.ndarray, y: np.ndarray, groups: np.ndarray, *,
              seed: int = 0, nthread: int = 2) -> FittedModel:
    """Fit ``cfg`` on training samples (x, y) of vehicles ``groups``."""
    y = np.asarray(y).astype(np.int8)
    if x.shape[0] != y.size or y.size != np.asarray(groups).size:
        raise ConfigError("features, labels and groups differ in length")
    if y.size == 0 or y.min() == y.max():
        raise ConfigError("training needs samples of both classes (alarm and no alarm)")
    spec = replace(cfg.spec, seed=seed)
    names = list(cfg.features)
    calibrator = Calibrator("none", {})
    threshold = cfg.threshold
    if cfg.calibration != "none" or threshold is None:
        n_groups = np.unique(groups).size
        k = min(cfg.inner_folds, n_groups)
        if k < 2:
            raise ConfigError("choosing a threshold or calibrating needs at least 2 vehicles")
        oof = np.full(y.size, np.nan)
        for tr, te in group_kfold(groups, k, seed=seed + 1000):
            if y[tr].min() == y[tr].max():
                continue  # an inner fold with one class cannot train; its OOF stays NaN
            oof[te] = train_booster(x[tr], y[tr], spec, names, nthread=nthread).predict(x[te])
        ok = ~np.isnan(oof)
        calibrator = fit_calibrator(cfg.calibration, oof[ok], y[ok])
        if threshold is None:
            threshold = best_f1_threshold(y[ok], calibrator.apply(oof[ok]))
    booster = train_booster(x, y, spec, names, nthread=nthread)
    return FittedModel(cfg, booster, calibrator, float(threshold),
                       frozenset(str(g) for g in np.unique(groups)))
