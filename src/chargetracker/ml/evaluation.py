"""Honest evaluation: models compared on the same vehicle-disjoint splits.

Protocols (every model sees exactly the same splits):

* ``grouped_cv``: GroupKFold by VIN (``folds``), repeated ``repeats`` times with VINs
  reshuffled. Per repeat, out-of-fold probabilities are pooled over the folds and
  scored once (ROC-AUC, PR-AUC, Brier; precision/recall/F1 with each fold's own
  threshold, chosen on that fold's training data). Reported: mean/std/min/max over
  repeats of the pooled figures, and mean/std over all folds.
* ``time_split`` (when a cutoff date is given): train on samples whose 14 label days
  end before the cutoff, test on prediction dates from the cutoff on.
* ``random_split``: the reference's leaky random 4:1 split, for comparison only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from .features import feature_matrix
from .metrics import average_precision, binary_report, brier, roc_auc
from .splits import group_kfold, random_split, time_split
from .training import ModelConfig, fit_model
from .windows import Windows

__all__ = ["EvaluationPlan", "evaluate", "format_report", "sample_summary"]

_METRICS = ("roc_auc", "pr_auc", "brier", "precision", "recall", "f1", "threshold")


@dataclass(frozen=True)
class EvaluationPlan:
    folds: int = 5
    repeats: int = 1
    seed: int = 0
    time_cutoff_day: int | None = None   # days since 1970-01-01
    random_split: bool = True


def sample_summary(w: Windows) -> dict[str, int]:
    y = w.label == 1
    return {"samples": len(w), "positives": int(y.sum()), "vins": int(np.unique(w.vin).size),
            "vins_with_positive": int(np.unique(w.vin[y]).size),
            "empty_windows": int(np.isnan(w.reference_matrix()).all(axis=1).sum()),
            "records": int((~np.isnan(w.panel.x).all(axis=1)).sum())}


def _spread(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    a = a[~np.isnan(a)]
    if a.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"),
                "max": float("nan"), "n": 0}
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}


def _pooled(y: np.ndarray, p: np.ndarray, alarm: np.ndarray) -> dict[str, float]:
    tp = int(np.sum(alarm & (y == 1)))
    fp = int(np.sum(alarm & (y == 0)))
    fn = int(np.sum(~alarm & (y == 1)))
    return {"roc_auc": roc_auc(y, p), "pr_auc": average_precision(y, p), "brier": brier(y, p),
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")}


def _check_disjoint(vin: np.ndarray, train: np.ndarray, test: np.ndarray) -> None:
    shared = np.intersect1d(vin[train], vin[test])
    if shared.size:  # a programming error, never a data problem
        raise AssertionError(f"{shared.size} vehicles on both sides of a grouped split")


def evaluate(w: Windows, configs: Sequence[ModelConfig], plan: EvaluationPlan, *,
             nthread: int = 2) -> dict[str, Any]:
    """Evaluate each config on the same splits; a JSON-serializable report."""
    y = (w.label == 1).astype(np.int8)
    if (w.label < 0).any():
        raise ConfigError("evaluation needs labelled samples only")
    vin = w.vin
    matrices = {cfg.name: feature_matrix(w, cfg.features) for cfg in configs}
    report: dict[str, Any] = {
        "data": sample_summary(w),
        "plan": {"folds": plan.folds, "repeats": plan.repeats, "seed": plan.seed,
                 "time_cutoff_day": plan.time_cutoff_day, "random_split": plan.random_split},
        "models": {},
    }
    repeats = [group_kfold(vin, plan.folds, seed=plan.seed + r) for r in range(plan.repeats)]
    for cfg in configs:
        x = matrices[cfg.name]
        pooled_runs: list[dict[str, float]] = []
        fold_runs: list[dict[str, float]] = []
        fold_models: list[dict[str, Any]] = []
        for r, splits in enumerate(repeats):
            p = np.full(y.size, np.nan)
            alarm = np.zeros(y.size, bool)
            for f, (tr, te) in enumerate(splits):
                _check_disjoint(vin, tr, te)
                m = fit_model(cfg, x[tr], y[tr], vin[tr], seed=plan.seed + 97 * r + f,
                              nthread=nthread)
                p[te] = m.predict(x[te])
                alarm[te] = p[te] >= m.threshold
                fold_runs.append(binary_report(y[te], p[te], m.threshold))
                if r == 0:
                    fold_models.append({"threshold": m.threshold,
                                        "calibration": m.calibrator.to_dict(),
                                        "test_vins": int(np.unique(vin[te]).size),
                                        "test_samples": int(te.size)})
            pooled_runs.append(_pooled(y, p, alarm))
        entry: dict[str, Any] = {
            "features": len(cfg.features), "calibration": cfg.calibration,
            "threshold_rule": "fixed" if cfg.threshold is not None else "max F1 on training folds",
            "grouped_cv": {
                "pooled": {k: _spread([run[k] for run in pooled_runs]) for k in pooled_runs[0]},
                "per_fold": {k: _spread([run[k] for run in fold_runs]) for k in _METRICS},
                "folds_first_repeat": fold_models,
            },
        }
        if plan.time_cutoff_day is not None:
            tr, te = time_split(w.day, plan.time_cutoff_day)
            m = fit_model(cfg, x[tr], y[tr], vin[tr], seed=plan.seed, nthread=nthread)
            pt = m.predict(x[te])
            entry["time_split"] = {**binary_report(y[te], pt, m.threshold),
                                   "train_samples": int(tr.size)}
        if plan.random_split:
            tr, te = random_split(y.size, seed=plan.seed)
            m = fit_model(cfg, x[tr], y[tr], vin[tr], seed=plan.seed, nthread=nthread)
            pr = m.predict(x[te])
            entry["random_split_leaky"] = binary_report(y[te], pr, m.threshold)
        report["models"][cfg.name] = entry
    return report


def _f(v: float) -> str:
    return "n/a" if v is None or v != v else f"{v:.3f}"


def format_report(report: dict[str, Any]) -> str:
    """The report as a Markdown table (one row per model and protocol)."""
    d = report["data"]
    plan = report["plan"]
    lines = [
        f"Samples {d['samples']:,} ({d['positives']:,} positive) from {d['vins']} vehicles "
        f"({d['vins_with_positive']} with a positive); {d['empty_windows']} empty windows.",
        "",
        f"Grouped CV: GroupKFold by VIN, {plan['folds']} folds x {plan['repeats']} repeat(s), "
        "pooled out-of-fold; mean ± std over repeats (P/R/F1 at each fold's own threshold).",
        "",
        "| model | protocol | ROC-AUC | PR-AUC | Brier | precision | recall | F1 | threshold |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in report["models"].items():
        g = e["grouped_cv"]["pooled"]
        thr = e["grouped_cv"]["per_fold"]["threshold"]
        cells = [f"{_f(g[k]['mean'])} ± {_f(g[k]['std'])}" for k in
                 ("roc_auc", "pr_auc", "brier", "precision", "recall", "f1")]
        lines.append(f"| {name} | grouped CV | {' | '.join(cells)} | {_f(thr['mean'])} |")
        fold = e["grouped_cv"]["per_fold"]
        cells = [f"{_f(fold[k]['mean'])} ± {_f(fold[k]['std'])}" for k in
                 ("roc_auc", "pr_auc", "brier", "precision", "recall", "f1")]
        lines.append(f"| {name} | per fold | {' | '.join(cells)} | {_f(thr['mean'])} |")
        for key, label in (("time_split", "time split"), ("random_split_leaky",
                                                           "random 4:1 (leaky)")):
            if key in e:
                t = e[key]
                cells = [_f(t[k]) for k in ("roc_auc", "pr_auc", "brier", "precision",
                                            "recall", "f1", "threshold")]
                lines.append(f"| {name} | {label} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"
