"""Probability calibration: isotonic regression (pool-adjacent-violators) and Platt
scaling (logistic on the log-odds of the raw score), both serializable as plain JSON.

A calibrator is fitted on *out-of-fold* scores of the training data only; the
evaluation never shows it a test-fold label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["Calibrator", "fit_calibrator"]

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1 - _EPS)
    return np.log(q / (1 - q))


@dataclass(frozen=True, slots=True)
class Calibrator:
    """``method``: "none", "isotonic" (``x``/``y`` knots, linear between them, flat
    outside) or "platt" (``a``, ``b``: p = 1 / (1 + exp(-(a * logit(s) + b))))."""

    method: str
    params: dict[str, Any]

    def apply(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        if self.method == "none":
            return s
        if self.method == "isotonic":
            return np.interp(s, np.asarray(self.params["x"]), np.asarray(self.params["y"]))
        if self.method == "platt":
            z = self.params["a"] * _logit(s) + self.params["b"]
            return 1.0 / (1.0 + np.exp(-z))
        raise ConfigError(f"unknown calibration method {self.method!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibrator:
        method = str(d.get("method", ""))
        if method not in ("none", "isotonic", "platt"):
            raise ConfigError(f"unknown calibration method {method!r}")
        return cls(method, dict(d.get("params") or {}))


def _pava(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic (non-decreasing) fit of y on x; knots at the block means' x range."""
    order = np.argsort(x, kind="mergesort")
    xs, ys = x[order], y[order].astype(np.float64)
    # Tied scores first pooled into one value (they must map to one probability).
    first = np.r_[True, xs[1:] != xs[:-1]]
    gid = np.cumsum(first) - 1
    ux = xs[first]
    w = np.bincount(gid).astype(np.float64)
    v = np.bincount(gid, weights=ys) / w
    # Stack-based PAVA over the unique scores: O(n) amortized. Runs once per fit on
    # at most a few thousand unique scores.
    vals: list[float] = []
    wts: list[float] = []
    lo: list[int] = []
    for i in range(ux.size):
        vals.append(float(v[i]))
        wts.append(float(w[i]))
        lo.append(i)
        while len(vals) > 1 and vals[-2] >= vals[-1]:
            wv = wts[-2] + wts[-1]
            vals[-2] = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wv
            wts[-2] = wv
            vals.pop()
            wts.pop()
            lo.pop()
    starts = np.asarray(lo)
    ends = np.r_[starts[1:], ux.size] - 1
    kx = np.ravel(np.column_stack([ux[starts], ux[ends]]))
    ky = np.repeat(np.asarray(vals), 2)
    keep = np.r_[True, kx[1:] != kx[:-1]]
    return kx[keep], ky[keep]


def _platt(s: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Logistic regression of y on logit(s) by Newton's method, with Platt's target
    smoothing (prior-corrected targets) against overconfidence."""
    z = _logit(s)
    n_pos = float(y.sum())
    n_neg = float(y.size - n_pos)
    t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    a, b = 1.0, 0.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(a * z + b)))
        g = np.array([np.sum((p - t) * z), np.sum(p - t)])
        w = p * (1 - p) + 1e-12
        h = np.array([[np.sum(w * z * z), np.sum(w * z)], [np.sum(w * z), np.sum(w)]])
        h += 1e-9 * np.eye(2)
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(a), float(b)


def fit_calibrator(method: str, scores: np.ndarray, y: np.ndarray) -> Calibrator:
    """Fit a calibrator on raw scores in [0, 1] and 0/1 labels (the training data's
    out-of-fold predictions). ``method``: none | isotonic | platt."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    yy = np.asarray(y).astype(np.int8).ravel()
    if method == "none":
        return Calibrator("none", {})
    if s.size == 0 or yy.min(initial=0) == yy.max(initial=0):
        return Calibrator("none", {})
    if method == "isotonic":
        kx, ky = _pava(s, yy)
        return Calibrator("isotonic", {"x": kx.tolist(), "y": ky.tolist()})
    if method == "platt":
        a, b = _platt(s, yy)
        return Calibrator("platt", {"a": a, "b": b})
    raise ConfigError(f"unknown calibration method {method!r}; use none, isotonic or platt")
