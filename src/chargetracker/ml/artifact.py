"""The model artifact: everything needed to score, and to trust, one trained model.

A directory of four files (this module maps it to/from ``{name: bytes}``; reading and
writing the directory is the caller's I/O):

* ``model.json`` -- the XGBoost booster in XGBoost's own JSON format (never pickle);
* ``manifest.json`` -- format version, model version, feature list, threshold,
  calibration, booster spec, training-data fingerprint, library versions, training time;
* ``model_card.json`` -- the evaluation report (:func:`~.evaluation.evaluate`);
* ``MODEL_CARD.md`` -- the same for people.

Loading checks the format version, that this code knows every listed feature, that the
booster has exactly that many inputs, and that the installed XGBoost major version can
read a model written by the recorded one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from ..errors import ConfigError
from .booster import BoostSpec, TrainedBooster, xgboost_version
from .calibration import Calibrator
from .evaluation import format_report
from .features import FEATURE_SETS
from .training import FittedModel, ModelConfig, fit_model

__all__ = ["FORMAT_VERSION", "FILES", "ModelArtifact", "build_artifact", "fingerprint_records"]

FORMAT_VERSION = 1
FILES = ("model.json", "manifest.json", "model_card.json", "MODEL_CARD.md")


def fingerprint_records(records: pl.DataFrame) -> str:
    """SHA-256 of the validated training records in a canonical CSV form (sorted by
    vin and date; floats printed by Polars' shortest round-trip)."""
    canon = records.sort("vin", "date").write_csv(float_precision=None)
    return "sha256:" + hashlib.sha256(canon.encode()).hexdigest()


@dataclass
class ModelArtifact:
    model: FittedModel
    model_version: str
    fingerprint: str
    trained_at: str
    versions: dict[str, str]
    training: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] | None = None

    @property
    def features(self) -> list[str]:
        return list(self.model.config.features)

    @property
    def threshold(self) -> float:
        return self.model.threshold

    def manifest(self) -> dict[str, Any]:
        cfg = self.model.config
        return {
            "format_version": FORMAT_VERSION,
            "model_version": self.model_version,
            "name": cfg.name,
            "features": list(cfg.features),
            "threshold": self.model.threshold,
            "calibration": self.model.calibrator.to_dict(),
            "booster": {"library": "xgboost", "params": cfg.spec.params,
                        "rounds": cfg.spec.rounds, "fill_missing": cfg.spec.fill_missing,
                        "seed": cfg.spec.seed},
            "threshold_rule": "fixed" if cfg.threshold is not None else "max F1 on out-of-fold "
                              "training predictions",
            "training_data": {"fingerprint": self.fingerprint, **self.training},
            "trained_at": self.trained_at,
            "versions": self.versions,
            "horizon_days": 14, "context_days": 14,
        }

    def to_files(self) -> dict[str, bytes]:
        files = {
            "model.json": self.model.booster.to_json(),
            "manifest.json": json.dumps(self.manifest(), indent=2, sort_keys=True).encode(),
        }
        if self.report is not None:
            files["model_card.json"] = json.dumps(_finite(self.report), indent=2).encode()
            files["MODEL_CARD.md"] = self.model_card_markdown().encode()
        return files

    def model_card_markdown(self) -> str:
        m = self.manifest()
        lines = [
            f"# Model card: {m['name']} ({self.model_version})", "",
            "Predicts whether a \"cell consistency poor\" alarm occurs on a vehicle within the "
            "next 14 days, from its previous 14+ daily pack records.", "",
            f"- trained at {self.trained_at} on {self.training.get('samples', '?')} samples "
            f"from {self.training.get('vins', '?')} vehicles; data {self.fingerprint}",
            f"- {len(m['features'])} features; calibration {m['calibration']['method']}; "
            f"alarm threshold {m['threshold']:.4f} ({m['threshold_rule']})",
            f"- versions: {', '.join(f'{k} {v}' for k, v in sorted(self.versions.items()))}",
            "",
        ]
        if self.report is not None:
            lines += ["## Evaluation", "", format_report(self.report)]
        return "\n".join(lines)

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], *, where: str = "model") -> ModelArtifact:
        for name in ("model.json", "manifest.json"):
            if name not in files:
                raise ConfigError(f"{where}: not a model directory (no {name})")
        try:
            m = json.loads(files["manifest.json"])
        except ValueError as exc:
            raise ConfigError(f"{where}/manifest.json is not valid JSON: {exc}") from exc
        fmt = m.get("format_version")
        if fmt != FORMAT_VERSION:
            raise ConfigError(f"{where}: model format version {fmt!r} is not supported "
                              f"(this ChargeTracker reads version {FORMAT_VERSION}); retrain "
                              "it with `chargetracker alarm train`")
        features = m.get("features")
        if not isinstance(features, list) or not features:
            raise ConfigError(f"{where}/manifest.json: no feature list")
        unknown = [f for f in features if f not in FEATURE_SETS["combined"]]
        if unknown:
            raise ConfigError(f"{where}: unknown feature(s) {', '.join(unknown[:5])}; the model "
                              "was trained by a different ChargeTracker version")
        recorded = str(m.get("versions", {}).get("xgboost", "0"))
        installed = xgboost_version()
        if _major(recorded) > _major(installed):
            raise ConfigError(f"{where}: written by xgboost {recorded}, installed {installed} is "
                              "older; upgrade xgboost")
        b = m.get("booster", {})
        spec = BoostSpec(dict(b.get("params", {})), int(b.get("rounds", 0)),
                         b.get("fill_missing"), int(b.get("seed", 0)))
        try:
            booster = TrainedBooster.from_json(files["model.json"], spec, list(features))
        except Exception as exc:  # xgboost raises its own XGBoostError
            raise ConfigError(f"{where}/model.json cannot be loaded: {exc}") from exc
        n_in = int(booster.booster.num_features())
        if n_in != len(features):
            raise ConfigError(f"{where}: booster has {n_in} inputs but the manifest lists "
                              f"{len(features)} features")
        cfg = ModelConfig(str(m.get("name", "model")), tuple(features), spec,
                          str(m["calibration"].get("method", "none")), float(m["threshold"]))
        fitted = FittedModel(cfg, booster, Calibrator.from_dict(m["calibration"]),
                             float(m["threshold"]))
        report = None
        if "model_card.json" in files:
            try:
                report = json.loads(files["model_card.json"])
            except ValueError as exc:
                raise ConfigError(f"{where}/model_card.json is not valid JSON: {exc}") from exc
        training = {k: v for k, v in m.get("training_data", {}).items() if k != "fingerprint"}
        return cls(fitted, str(m["model_version"]),
                   str(m.get("training_data", {}).get("fingerprint", "")),
                   str(m.get("trained_at", "")), dict(m.get("versions", {})), training, report)


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def _finite(obj: Any) -> Any:
    """NaN/inf -> None, so the JSON is standard."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def build_artifact(records: pl.DataFrame, cfg: ModelConfig, *, trained_at: str,
                   versions: Mapping[str, str], report: dict[str, Any] | None = None,
                   seed: int = 0, nthread: int = 2) -> ModelArtifact:
    """Train ``cfg`` on all labelled samples of validated ``records``.

    ``trained_at`` (ISO 8601 UTC) and ``versions`` come from the caller (no clock or
    environment is read here). The model version is ``<name>-<data hash>-<time>``.
    """
    from .features import feature_matrix
    from .windows import build_panel, build_windows

    if records.get_column("label").null_count() == records.height:
        raise ConfigError("training needs a label column (1 = alarm that day)")
    w = build_windows(build_panel(records))
    if len(w) == 0:
        raise ConfigError("no training samples: every VIN has fewer than 15 days")
    y = (w.label == 1).astype(np.int8)
    x = feature_matrix(w, cfg.features)
    fitted = fit_model(cfg, x, y, w.vin_names(), seed=seed, nthread=nthread)
    fp = fingerprint_records(records)
    stamp = "".join(ch for ch in trained_at if ch.isdigit())[:14]
    version = f"{cfg.name}-{fp[7:15]}-{stamp}"
    training = {"samples": int(len(w)), "positives": int(y.sum()),
                "vins": int(np.unique(w.vin).size), "records": int(records.height),
                "first_date": str(records.get_column("date").min()),
                "last_date": str(records.get_column("date").max())}
    return ModelArtifact(fitted, version, fp, trained_at, dict(versions), training, report)
