"""Binary classification metrics on probabilities (numpy, no per-sample Python).

* ROC-AUC: the Mann-Whitney statistic with ties counted one half (= trapezoidal area
  under the ROC curve).
* PR-AUC: average precision, ``sum_k (R_k - R_{k-1}) P_k`` over distinct score
  thresholds, high to low (the step-wise area scikit-learn reports; no interpolation).
* Brier score: mean squared error of the probability against the 0/1 outcome.
* precision / recall / F1 at a threshold: alarm when ``p >= threshold``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["average_precision", "best_f1_threshold", "binary_report", "brier", "confusion",
           "roc_auc"]


def _check(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.int8).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels ({y.size}) and scores ({p.size}) differ in length")
    return y, p


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    y, p = _check(y, p)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    # Average ranks of ties (1-based).
    first = np.r_[True, ps[1:] != ps[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], ps.size]
    avg_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(p.size)
    ranks[order] = avg_rank[group]
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (area under the precision-recall step curve); NaN without
    positives."""
    y, p = _check(y, p)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(1 - ys)
    last = np.r_[ps[1:] != ps[:-1], True]  # last index of each distinct score
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    y, p = _check(y, p)
    return float(np.mean((p - y) ** 2)) if y.size else float("nan")


def confusion(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    """(tp, fp, tn, fn) with alarm = ``p >= threshold``."""
    y, p = _check(y, p)
    a = p >= threshold
    tp = int(np.sum(a & (y == 1)))
    fp = int(np.sum(a & (y == 0)))
    fn = int(np.sum(~a & (y == 1)))
    return tp, fp, int(y.size - tp - fp - fn), fn


def binary_report(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC-AUC, PR-AUC, Brier, and precision/recall/F1 at ``threshold``."""
    tp, fp, tn, fn = confusion(y, p, threshold)
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {"roc_auc": roc_auc(y, p), "pr_auc": average_precision(y, p), "brier": brier(y, p),
            "precision": precision, "recall": recall, "f1": f1, "threshold": float(threshold),
            "n": float(len(np.asarray(y))), "positives": float(np.sum(np.asarray(y) == 1)),
            "tp": float(tp), "fp": float(fp), "tn": float(tn), "fn": float(fn)}


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The score threshold (alarm when ``p >= t``) that maximizes F1 on (y, p); the
    midpoint between the chosen score and the next lower one, so that it generalizes
    to unseen scores. 0.5 when there is no positive."""
    y, p = _check(y, p)
    n_pos = int(y.sum())
    if n_pos == 0 or y.size == 0:
        return 0.5
    order = np.argsort(-p, kind="mergesort")
    ys, ps = y[order], p[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(1 - ys)
    last = np.r_[ps[1:] != ps[:-1], True]
    idx = np.flatnonzero(last)
    f1 = 2 * tp[idx] / (tp[idx] + fp[idx] + n_pos)
    k = int(np.argmax(f1))
    hi = ps[idx[k]]
    lo = ps[idx[k] + 1] if idx[k] + 1 < ps.size else 0.0
    return float(0.5 * (hi + lo))
