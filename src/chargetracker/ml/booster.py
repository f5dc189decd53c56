"""Gradient-boosted trees (XGBoost) behind a small typed facade.

Models are kept as XGBoost's own JSON (``save_raw("json")``): readable, versioned by
the library, never pickle. xgboost is imported lazily so that the rest of ``ml`` works
without it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["BASELINE_PARAMS", "DEFAULT_PARAMS", "BoostSpec", "TrainedBooster", "train_booster",
           "xgboost_version"]

#: The reference's hyper-parameters (SageMaker XGBoost 1.0-1, 200 rounds).
BASELINE_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic", "max_depth": 7, "eta": 0.1, "gamma": 4,
    "min_child_weight": 6, "subsample": 0.8,
}
#: ChargeTracker's model: shallow, strongly regularized trees with row and column
#: subsampling, because the sample holds only ~70 vehicles (25 with alarms). Chosen on
#: grouped CV of the sample (see docs/alarms.md: a mild optimism of its own).
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic", "max_depth": 3, "eta": 0.03, "gamma": 1,
    "min_child_weight": 30, "subsample": 0.7, "colsample_bytree": 0.5, "lambda": 5.0,
}


def _xgb() -> Any:
    try:
        import xgboost
    except ImportError as exc:  # pragma: no cover - a dependency
        raise ConfigError("the alarm model needs xgboost: pip install xgboost-cpu") from exc
    return xgboost


def xgboost_version() -> str:
    return str(_xgb().__version__)


@dataclass(frozen=True)
class BoostSpec:
    """How to train: parameters, rounds, and the missing-value policy.

    ``fill_missing``: replace NaN by this value before training/predicting (the
    reference uses -1); None keeps NaN as XGBoost's native "missing" (learned default
    branch).
    """

    params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    rounds: int = 400
    fill_missing: float | None = None
    seed: int = 0

    def prepare(self, x: np.ndarray) -> np.ndarray:
        if self.fill_missing is None:
            return x
        return np.where(np.isnan(x), self.fill_missing, x)


@dataclass
class TrainedBooster:
    """A fitted model: raw scores in [0, 1] from :meth:`predict`."""

    booster: Any
    spec: BoostSpec
    feature_names: list[str]
    _threads: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def predict(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] != len(self.feature_names):
            raise ConfigError(f"model expects {len(self.feature_names)} features, got {x.shape[1]}")
        if x.shape[0] == 0:
            return np.zeros(0)
        # In-place prediction (no DMatrix copy); two threads only for big batches, where
        # they pay for their start-up (a single HTTP prediction stays on one thread).
        threads = 2 if x.shape[0] >= 20_000 else 1
        with self._lock:  # set_param is not safe beside a running prediction
            if threads != self._threads:
                self.booster.set_param({"nthread": threads})
                self._threads = threads
            out = self.booster.inplace_predict(self.spec.prepare(x), missing=np.nan)
        return np.asarray(out, dtype=np.float64)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(n, features + 1) SHAP contributions to the log-odds (last column: bias)."""
        xgb = _xgb()
        dm = xgb.DMatrix(self.spec.prepare(x), missing=np.nan, nthread=1)
        return np.asarray(self.booster.predict(dm, pred_contribs=True), dtype=np.float64)

    def to_json(self) -> bytes:
        return bytes(self.booster.save_raw(raw_format="json"))

    @classmethod
    def from_json(cls, raw: bytes, spec: BoostSpec, feature_names: list[str]) -> TrainedBooster:
        xgb = _xgb()
        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
        booster.set_param({"nthread": 1})
        return cls(booster, spec, feature_names)


def train_booster(x: np.ndarray, y: np.ndarray, spec: BoostSpec,
                  feature_names: list[str], *, nthread: int = 2) -> TrainedBooster:
    """Fit on (x, y); deterministic for a given seed and thread count."""
    xgb = _xgb()
    dm = xgb.DMatrix(spec.prepare(x), label=np.asarray(y, dtype=np.float64), missing=np.nan,
                     nthread=nthread)
    params = {**spec.params, "seed": spec.seed, "nthread": nthread, "verbosity": 0,
              "tree_method": spec.params.get("tree_method", "hist")}
    booster = xgb.train(params, dm, num_boost_round=int(spec.rounds))
    return TrainedBooster(booster, spec, list(feature_names))
