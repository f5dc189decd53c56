"""Consistency-alarm model experiments under *nested* grouped CV (issue 12).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_alarm_models.py \\
        [--repeats 3] [--seed 0] [--candidates all|NAME,NAME] [--json out.json]

Every candidate and the reference run on the same outer splits: GroupKFold by VIN
(``ml.splits.group_kfold``), 5 folds x ``--repeats``, outer seeds ``--seed + r`` -- with
``--seed 0`` exactly the splits of ``chargetracker alarm evaluate`` and the model card.
Inside each outer training set, one inner GroupKFold (4 folds by VIN, the shipped
``fit_model``'s inner seed) gives out-of-fold (OOF) raw scores of every candidate. They
serve three purposes, none of which sees the outer test fold:

* the candidate's Platt calibration and max-F1 threshold (as ``fit_model`` does);
* **nested selection**: the candidate with the best inner pooled ROC-AUC + PR-AUC is the
  one this outer fold's training set would have chosen; the row ``nested-selected`` is
  the honest estimate of "pick a configuration by grouped CV, then train it";
* nothing else: the outer fold only reports.

Rows of individual candidates are the optimistic view (choosing the best row by these
same outer folds is itself selection); the ``nested-selected`` row is not. Run a second
time with another ``--seed`` (fresh outer shuffles) to check a choice on splits it was not
chosen on.

Candidates (small grid, n_jobs 1): the shipped booster; seed-bagged boosters; per-VIN
sample weights; a few hyper-parameter variants; a regularized logistic regression on
physical features and its blend with the booster; fleet-relative features (the VIN's
spread percentile among the VINs reporting the same day, from days t-14 .. t-1 only,
never labels or later days).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SERIES = ROOT / "tests" / "data" / "bms-series_samples.csv"

Scorer = Callable[[np.ndarray], np.ndarray]

#: Physical features of the logistic regression (log of the spread levels: they are
#: positive and span an order of magnitude).
LR_FEATURES = ("spread_last_v", "spread_max_v", "spread_mean_v", "spread_trend_v_per_day",
               "days_with_data", "days_spread_over_50mv", "history_spread_max_v",
               "history_spread_mean_v", "history_days_spread_over_50mv", "empty_window")
_LOG = {"spread_last_v", "spread_max_v", "spread_mean_v", "history_spread_max_v",
        "history_spread_mean_v"}
#: Operating-point features that tell packs apart (pack voltage, cells in series,
#: current, absolute temperatures, cell-voltage extremes) rather than measure
#: inconsistency: with 68 vehicles they may let the trees learn "which vehicle".
IDENTITY = ("total_voltage_mean_v", "n_series_est", "cell_min_min_v", "cell_max_max_v",
            "current_mean_a", "current_std_a", "max_temperature_max_c",
            "max_temperature_mean_c", "min_temperature_min_c")
FLEET_FEATURES = ("fleet_pct_mean", "fleet_pct_last", "fleet_pct_max", "fleet_excess_mean_v",
                  "fleet_excess_last_v")


# -- features ----------------------------------------------------------------------------
def fleet_features(w: Any) -> np.ndarray:
    """(n, 5) the VIN's cell-voltage spread relative to the fleet on the same dates.

    Per panel day: the spread's percentile among all VINs with a spread that date
    ((rank - 0.5) / count, ties averaged) and its excess over that date's median (V).
    Windowed over days t-14 .. t-1 of each sample: mean, last valid, max of the
    percentile; mean and last of the excess. Only covariates of days before t are read
    (of every VIN that day: what a fleet operator has at prediction time); no label."""
    p = w.panel
    spread = p.x[:, 2] - p.x[:, 3]
    valid = ~np.isnan(spread)
    pct = np.full(spread.size, np.nan)
    excess = np.full(spread.size, np.nan)
    days = p.day
    for d in np.unique(days[valid]):  # one step per calendar date (80), not per sample
        rows = np.flatnonzero(valid & (days == d))
        s = spread[rows]
        order = np.argsort(s, kind="mergesort")
        ss = s[order]
        first = np.r_[True, ss[1:] != ss[:-1]]
        starts = np.flatnonzero(first)
        ends = np.r_[starts[1:], ss.size]
        ranks = np.empty(rows.size)
        ranks[order] = ((starts + ends - 1) / 2.0)[np.cumsum(first) - 1]  # ties averaged
        pct[rows] = (ranks + 0.5) / rows.size
        excess[rows] = s - np.median(s)
    offs = np.arange(14) - 14
    idx = w.index[:, None] + offs[None, :]
    wp, we = pct[idx], excess[idx]

    def last(a: np.ndarray) -> np.ndarray:
        ok = ~np.isnan(a)
        j = a.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)
        return np.where(ok.any(axis=1), a[np.arange(a.shape[0]), j], np.nan)

    with warnings.catch_warnings():  # an all-NaN window (no data) is NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.column_stack([np.nanmean(wp, axis=1), last(wp), np.nanmax(wp, axis=1),
                                np.nanmean(we, axis=1), last(we)])


# -- learners ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """One configuration. ``kind``: xgb | lr | blend (mean of the xgb and lr
    probabilities); ``bag``: boosters with different seeds (and so different row and
    column subsamples), probabilities averaged; ``vin_weight``: every VIN weighs the
    same in total (sample weight 1 / its sample count, mean 1)."""

    name: str
    kind: str = "xgb"
    params: dict[str, Any] = field(default_factory=dict)
    rounds: int = 400
    bag: int = 1
    vin_weight: bool = False
    fleet: bool = False
    lr_lambda: float = 1.0
    drop: tuple[str, ...] = ()


def _xgb_fit(c: Candidate, x: np.ndarray, y: np.ndarray, g: np.ndarray, seed: int) -> Scorer:
    import xgboost as xgb

    from chargetracker.ml.booster import DEFAULT_PARAMS

    weight = None
    if c.vin_weight:
        _, inv, counts = np.unique(g, return_inverse=True, return_counts=True)
        weight = 1.0 / counts[inv]
        weight *= weight.size / weight.sum()
    dm = xgb.DMatrix(x, label=y.astype(np.float64), weight=weight, missing=np.nan, nthread=1)
    boosters = []
    for b in range(c.bag):
        params = {**DEFAULT_PARAMS, **c.params, "seed": seed + 7919 * b, "nthread": 1,
                  "verbosity": 0, "tree_method": "hist"}
        boosters.append(xgb.train(params, dm, num_boost_round=c.rounds))

    rank = str(c.params.get("objective", "")).startswith("rank:")

    def score(xt: np.ndarray) -> np.ndarray:
        s = np.mean([bo.inplace_predict(xt, missing=np.nan) for bo in boosters], axis=0)
        # a ranking objective gives margins; the logistic map keeps the order, and Platt
        # then fits the probability scale
        return 1.0 / (1.0 + np.exp(-s)) if rank else s
    return score


def _lr_design(x: np.ndarray, cols: list[int], names: list[str]) -> np.ndarray:
    out = x[:, cols].astype(np.float64)
    for j, n in enumerate(names):
        if n in _LOG:
            out[:, j] = np.log(np.maximum(out[:, j], 1e-4))
    return out


def _lr_fit(c: Candidate, x: np.ndarray, y: np.ndarray, cols: list[int],
            names: list[str]) -> Scorer:
    """L2-regularized logistic regression by Newton's method; NaN -> training median,
    standardized with training moments (all from the training rows only)."""
    a = _lr_design(x, cols, names)
    med = np.nanmedian(a, axis=0)
    med = np.where(np.isnan(med), 0.0, med)
    a = np.where(np.isnan(a), med, a)
    mu, sd = a.mean(axis=0), a.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z = np.column_stack([np.ones(a.shape[0]), (a - mu) / sd])
    beta = np.zeros(z.shape[1])
    pen = c.lr_lambda * np.r_[0.0, np.ones(z.shape[1] - 1)]
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(z @ beta)))
        grad = z.T @ (p - y) + pen * beta
        h = (z * (p * (1 - p))[:, None]).T @ z + np.diag(pen) + 1e-9 * np.eye(z.shape[1])
        step = np.linalg.solve(h, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
            break

    def score(xt: np.ndarray) -> np.ndarray:
        at = _lr_design(xt, cols, names)
        at = np.where(np.isnan(at), med, at)
        zt = np.column_stack([np.ones(at.shape[0]), (at - mu) / sd])
        return 1.0 / (1.0 + np.exp(-(zt @ beta)))
    return score


class Data:
    """Feature matrices of the sample: engineered (34) and engineered + fleet (39)."""

    def __init__(self, path: Path) -> None:
        from chargetracker.cli.alarm import read_daily
        from chargetracker.ml.features import feature_matrix, feature_names
        from chargetracker.ml.windows import build_panel, build_windows

        self.w = build_windows(build_panel(read_daily(str(path))))
        self.y = (self.w.label == 1).astype(np.int8)
        self.vin = self.w.vin
        self.names = feature_names("engineered")
        eng = feature_matrix(self.w, self.names)
        self.x_eng = eng
        self.x_fleet = np.column_stack([eng, fleet_features(self.w)])
        self.x_ref = feature_matrix(self.w, feature_names("reference"))
        self.lr_cols = [self.names.index(n) for n in LR_FEATURES]

    def matrix(self, c: Candidate) -> np.ndarray:
        x = self.x_fleet if c.fleet else self.x_eng
        if c.drop:
            keep = [j for j, n in enumerate(self.names) if n not in c.drop]
            keep += list(range(len(self.names), x.shape[1]))
            x = np.ascontiguousarray(x[:, keep])
        return x


def fit_scorer(c: Candidate, d: Data, x: np.ndarray, y: np.ndarray, g: np.ndarray,
               seed: int) -> Scorer:
    if c.kind == "xgb":
        return _xgb_fit(c, x, y, g, seed)
    if c.drop:
        raise ValueError("the logistic regression reads the full engineered matrix")
    lr = _lr_fit(c, x, y, d.lr_cols, list(LR_FEATURES))
    if c.kind == "lr":
        return lr
    xg = _xgb_fit(c, x, y, g, seed)
    return lambda xt: 0.5 * (xg(xt) + lr(xt))


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("shipped"),
    Candidate("bag5", bag=5),
    Candidate("vin-weight", vin_weight=True),
    Candidate("depth2-600", params={"max_depth": 2}, rounds=600),
    Candidate("depth4-mcw20", params={"max_depth": 4, "min_child_weight": 20}),
    Candidate("mcw60", params={"min_child_weight": 60}),
    Candidate("colsample0.3", params={"colsample_bytree": 0.3}),
    Candidate("eta0.015-800", params={"eta": 0.015}, rounds=800),
    Candidate("lr", kind="lr"),
    Candidate("blend-xgb-lr", kind="blend"),
    Candidate("fleet", fleet=True),
    Candidate("fleet-bag5", fleet=True, bag=5),
    Candidate("no-identity", drop=IDENTITY),
    Candidate("rank-pairwise", params={"objective": "rank:pairwise", "min_child_weight": 0.5,
                                       "gamma": 0.0}),
    Candidate("pos-weight3", params={"scale_pos_weight": 3.0}),
    Candidate("rounds200", rounds=200),
)


# -- evaluation --------------------------------------------------------------------------
def _metrics(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    from chargetracker.ml.metrics import average_precision, brier, roc_auc

    return roc_auc(y, p), average_precision(y, p), brier(y, p)


def _spread(v: list[float]) -> dict[str, float]:
    a = np.asarray(v)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0}


def run(d: Data, cands: list[Candidate], repeats: int, seed: int) -> dict[str, Any]:
    """Outer GroupKFold x repeats; per outer fold one inner GroupKFold for every candidate
    (calibration, threshold, nested selection). Returns pooled metrics per repeat."""
    from chargetracker.ml.calibration import fit_calibrator
    from chargetracker.ml.metrics import best_f1_threshold, binary_report
    from chargetracker.ml.splits import group_kfold
    from chargetracker.ml.training import BASELINE, fit_model

    y, vin = d.y, d.vin
    rows = [*(c.name for c in cands), "nested-selected", "reference-xgboost"]
    pooled: dict[str, list[dict[str, float]]] = {r: [] for r in rows}
    per_fold: dict[str, list[dict[str, float]]] = {r: [] for r in rows}
    chosen: list[str] = []
    for r in range(repeats):
        p = {name: np.full(y.size, np.nan) for name in rows}
        alarm = {name: np.zeros(y.size, bool) for name in rows}
        for f, (tr, te) in enumerate(group_kfold(vin, 5, seed=seed + r)):
            assert not np.intersect1d(vin[tr], vin[te]).size
            mseed = seed + 97 * r + f  # the model seed evaluate() uses
            ytr, gtr = y[tr], vin[tr]
            inner = group_kfold(gtr, 4, seed=mseed + 1000)
            inner_score: dict[str, float] = {}
            fold_out: dict[str, tuple[np.ndarray, float]] = {}
            for c in cands:
                x = d.matrix(c)
                xtr = x[tr]
                oof = np.full(tr.size, np.nan)
                for itr, ite in inner:
                    if ytr[itr].min() == ytr[itr].max():
                        continue
                    oof[ite] = fit_scorer(c, d, xtr[itr], ytr[itr], gtr[itr], mseed)(xtr[ite])
                ok = ~np.isnan(oof)
                auc, ap, _ = _metrics(ytr[ok], oof[ok])
                inner_score[c.name] = auc + ap
                cal = fit_calibrator("platt", oof[ok], ytr[ok])
                thr = best_f1_threshold(ytr[ok], cal.apply(oof[ok]))
                pt = np.clip(cal.apply(fit_scorer(c, d, xtr, ytr, gtr, mseed)(x[te])), 0, 1)
                fold_out[c.name] = (pt, thr)
            best = max(inner_score, key=lambda k: inner_score[k])
            chosen.append(best)
            fold_out["nested-selected"] = fold_out[best]
            m = fit_model(BASELINE, d.x_ref[tr], ytr, gtr, seed=mseed, nthread=1)
            fold_out["reference-xgboost"] = (m.predict(d.x_ref[te]), m.threshold)
            for name, (pt, thr) in fold_out.items():
                p[name][te] = pt
                alarm[name][te] = pt >= thr
                per_fold[name].append(binary_report(y[te], pt, thr))
        for name in rows:
            auc, ap, br = _metrics(y, p[name])
            a = alarm[name]
            tp = int(np.sum(a & (y == 1)))
            fp = int(np.sum(a & (y == 0)))
            fn = int(np.sum(~a & (y == 1)))
            pooled[name].append({"roc_auc": auc, "pr_auc": ap, "brier": br,
                                 "f1": 2 * tp / (2 * tp + fp + fn)})
        print(f"repeat {r} done ({time.process_time():.0f} CPU-s)", file=sys.stderr, flush=True)
    return {
        "pooled": {n: {k: _spread([run_[k] for run_ in v]) for k in v[0]}
                   for n, v in pooled.items()},
        "per_fold": {n: {k: _spread([fr[k] for fr in v]) for k in ("roc_auc", "pr_auc")}
                     for n, v in per_fold.items()},
        "chosen": {n: chosen.count(n) for n in sorted(set(chosen))},
    }


def table(res: dict[str, Any]) -> str:
    lines = ["| configuration | ROC-AUC (pooled) | PR-AUC (pooled) | Brier | F1 | "
             "ROC-AUC per fold | PR-AUC per fold |", "|---|---|---|---|---|---|---|"]
    for name, m in res["pooled"].items():
        pf = res["per_fold"][name]

        def c(k: str, src: dict[str, Any] = m) -> str:
            return f"{src[k]['mean']:.3f} ± {src[k]['std']:.3f}"
        lines.append(f"| {name} | {c('roc_auc')} | {c('pr_auc')} | {c('brier')} | {c('f1')} | "
                     f"{c('roc_auc', pf)} | {c('pr_auc', pf)} |")
    lines.append("")
    lines.append("nested selection chose (outer folds): " + ", ".join(
        f"{k} x{v}" for k, v in res["chosen"].items()))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="outer shuffle seed of repeat 0")
    ap.add_argument("--candidates", default="all", help="comma-separated names, or all")
    ap.add_argument("--data", default=str(SERIES))
    ap.add_argument("--json", help="also write the results as JSON here")
    args = ap.parse_args()
    cands = list(CANDIDATES) if args.candidates == "all" else [
        c for c in CANDIDATES if c.name in args.candidates.split(",")]
    w0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    d = Data(Path(args.data))
    res = run(d, cands, args.repeats, args.seed)
    wall, cpu, load1 = time.perf_counter() - w0, time.process_time() - c0, os.getloadavg()[0]
    print(f"GroupKFold by VIN, 5 folds x {args.repeats} repeats, outer seeds "
          f"{args.seed}..{args.seed + args.repeats - 1}; {len(d.y):,} samples, "
          f"{int(d.y.sum())} positive, {np.unique(d.vin).size} VINs. Pooled out-of-fold, "
          "mean ± std over repeats; per fold: mean ± std over all folds.\n")
    print(table(res))
    print(f"\nwall {wall:.0f} s, {cpu:.0f} CPU-s, load average {load0:.1f} -> {load1:.1f} "
          f"(2 cores), n_jobs 1")
    if args.json:
        Path(args.json).write_text(json.dumps({**res, "wall_s": wall, "cpu_s": cpu,
                                               "seed": args.seed, "repeats": args.repeats},
                                              indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
