"""``chargetracker alarm``: train, evaluate and apply the consistency-alarm model.

Examples::

    chargetracker alarm evaluate --data series_samples.csv --folds 5 --repeats 3 \\
        --time-cutoff 2019-12-10
    chargetracker alarm train --data series_samples.csv --model models/bms
    chargetracker alarm predict --model models/bms --data today.csv --out predictions.csv
    chargetracker alarm predict --data test_batch_samples.csv --out p.csv   # default model
    chargetracker alarm inbox --dir inbox/ --store duckdb:///ct.duckdb
    chargetracker alarm simulate --vehicles 10000 --days 365 --out fleet.csv

``--data`` for train/evaluate is a CSV of daily pack records with a label column;
``predict`` also accepts the reference's headerless 84-value batch format (detected).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..errors import ConfigError, ValidationError

__all__ = ["load_artifact", "read_daily", "register", "run_evaluate", "run_predict", "run_train",
           "run_inbox", "run_simulate", "versions"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alarm", help="consistency-alarm prediction from daily pack records",
                       description="Train, evaluate and apply the model that predicts a "
                       "'cell consistency poor' alarm within the next 14 days.")
    asub = p.add_subparsers(dest="alarm_command", metavar="ACTION", required=True)

    t = asub.add_parser("train", help="train a model directory on labelled daily records")
    t.add_argument("--data", required=True, metavar="DAILY.csv")
    t.add_argument("--model", required=True, metavar="DIR", help="model directory to write")
    t.add_argument("--features", default="engineered",
                   help="feature set: engineered (default), reference (the 84 raw values), "
                   "combined")
    t.add_argument("--baseline", action="store_true",
                   help="train the reference model instead (84 values, -1 fill, threshold 0.15)")
    t.add_argument("--folds", type=int, default=5, help="folds of the model card's evaluation")
    t.add_argument("--repeats", type=int, default=1, help="repeats of the evaluation (0: none)")
    t.add_argument("--time-cutoff", metavar="DATE", help="also a time split at this date")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=run_train)

    e = asub.add_parser("evaluate", help="compare the reference model and ChargeTracker's on "
                        "vehicle-disjoint splits")
    e.add_argument("--data", required=True, metavar="DAILY.csv")
    e.add_argument("--features", default="engineered", help="feature set of ChargeTracker's model")
    e.add_argument("--folds", type=int, default=5)
    e.add_argument("--repeats", type=int, default=1)
    e.add_argument("--time-cutoff", metavar="DATE", help="time split: train before, test from")
    e.add_argument("--no-random-split", action="store_true",
                   help="skip the reference's leaky random 4:1 split")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.set_defaults(func=run_evaluate)

    q = asub.add_parser("predict", help="score daily records or 84-value rows")
    q.add_argument("--model", metavar="DIR", help="model directory (default: the packaged one)")
    q.add_argument("--data", required=True, metavar="FILE")
    q.add_argument("--out", required=True, metavar="predictions.csv")
    q.add_argument("--latest", action="store_true", help="only each VIN's last prediction day")
    q.set_defaults(func=run_predict)

    m = asub.add_parser("simulate", help="write labelled daily records of a simulated fleet "
                        "whose packs develop inconsistency")
    m.add_argument("--vehicles", type=int, default=100)
    m.add_argument("--days", type=int, default=180)
    m.add_argument("--start", default="2024-01-01", help="first day, YYYY-MM-DD")
    m.add_argument("--defect-share", type=float, default=0.15,
                   help="share of vehicles with one weak cell")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", required=True, metavar="DAILY.csv")
    m.set_defaults(func=run_simulate)

    b = asub.add_parser("inbox", help="watch a folder: score each CSV dropped in, store the "
                        "predictions, move it to processed/ or rejected/")
    b.add_argument("--dir", required=True, metavar="INBOX")
    b.add_argument("--store", default="duckdb:///chargetracker.duckdb", metavar="URL",
                   help="where predictions go (DuckDB file or PostgreSQL URL)")
    b.add_argument("--model", metavar="DIR", help="model directory (default: the packaged one)")
    b.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    b.add_argument("--settle", type=float, default=2.0,
                   help="a file is read once unchanged for this many seconds")
    b.add_argument("--once", action="store_true", help="process what is there and exit")
    b.set_defaults(func=run_inbox)


# -- helpers ---------------------------------------------------------------------------
def versions() -> dict[str, str]:
    from .. import __version__
    from ..ml.booster import xgboost_version

    return {"chargetracker": __version__, "xgboost": xgboost_version(),
            "numpy": np.__version__, "polars": pl.__version__,
            "python": ".".join(map(str, sys.version_info[:3]))}


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_daily(path: str) -> pl.DataFrame:
    """Validated daily records of a CSV file; any bad row is an error naming it."""
    from ..ml.records import parse_records_csv, require_valid

    return require_valid(parse_records_csv(_read(path), source=path), source=path)


def _cutoff(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return (dt.date.fromisoformat(text) - dt.date(1970, 1, 1)).days
    except ValueError:
        raise ConfigError(f"--time-cutoff {text!r} is not a date (YYYY-MM-DD)") from None


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# -- actions ---------------------------------------------------------------------------
def run_train(args: argparse.Namespace) -> int:
    from ..ml import BASELINE, CHARGETRACKER, EvaluationPlan, build_artifact, evaluate
    from ..ml.windows import build_panel, build_windows
    from ..stores.models import save_model

    records = read_daily(args.data)
    cfg = BASELINE if args.baseline else CHARGETRACKER.with_features(args.features)
    report: dict[str, Any] | None = None
    if args.repeats > 0:
        configs = [BASELINE] if args.baseline else [BASELINE, cfg]
        report = evaluate(build_windows(build_panel(records)), configs,
                          EvaluationPlan(args.folds, args.repeats, args.seed,
                                         _cutoff(args.time_cutoff)))
    art = build_artifact(records, cfg, trained_at=_now(), versions=versions(), report=report,
                         seed=args.seed)
    where = save_model(art, args.model)
    print(f"model {art.model_version}: {art.training['samples']} samples, "
          f"{len(art.features)} features, threshold {art.threshold:.4f} -> {where}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from ..ml import BASELINE, CHARGETRACKER, EvaluationPlan, evaluate, format_report
    from ..ml.artifact import _finite
    from ..ml.windows import build_panel, build_windows

    records = read_daily(args.data)
    report = evaluate(build_windows(build_panel(records)),
                      [BASELINE, CHARGETRACKER.with_features(args.features)],
                      EvaluationPlan(args.folds, args.repeats, args.seed,
                                     _cutoff(args.time_cutoff), not args.no_random_split))
    if args.json:
        print(json.dumps(_finite(report), indent=2))
    else:
        print(format_report(report), end="")
    return 0


def load_artifact(model: str | None) -> Any:
    from ..stores.models import load_default_model, load_model

    return load_default_model() if model is None else load_model(model)


def run_predict(args: argparse.Namespace) -> int:
    from ..ml import Predictor
    from ..ml.predict import score_bytes

    predictor = Predictor(load_artifact(args.model))
    preds, rejected = score_bytes(predictor, _read(args.data), source=args.data,
                                  latest=args.latest)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    preds.write_csv(out)
    for r in rejected.head(5).iter_rows(named=True):
        print(f"{args.data}: row {r['row'] + 2}: VIN {r['vin']!r}, date {r['date']!r}, field "
              f"{r['field']!r}: {r['reason']}", file=sys.stderr)
    if rejected.height:
        print(f"{args.data}: {rejected.height} row(s) rejected (their days count as no data)",
              file=sys.stderr)
    print(f"{preds.height} predictions ({int(preds.get_column('alarm').sum())} alarms) "
          f"by {predictor.model_version} -> {out}")
    if preds.height == 0 and rejected.height:
        raise ValidationError("no row could be scored", source=args.data)
    return 0


def run_inbox(args: argparse.Namespace) -> int:
    import time

    from ..ml import Predictor
    from ..sources.alarm_inbox import AlarmInbox
    from ..stores.packs import open_pack_store

    predictor = Predictor(load_artifact(args.model))
    with open_pack_store(args.store) as store:
        inbox = AlarmInbox(args.dir, predictor, store, settle_s=args.settle)
        print(f"watching {inbox.dir} with {predictor.model_version}", flush=True)
        while True:
            res = inbox.poll()
            for name in res.processed:
                print(f"scored {name}", flush=True)
            for name in res.rejected:
                print(f"rejected {name} (see rejected/{name}.reason.txt)", flush=True)
            if args.once:
                return 0
            time.sleep(max(0.05, args.interval))


def run_simulate(args: argparse.Namespace) -> int:
    from ..ml.fleet_sim import PackFleetConfig, simulate_pack_fleet

    if args.vehicles < 1 or args.days < 1:
        raise ConfigError("--vehicles and --days must be at least 1")
    frame = simulate_pack_fleet(PackFleetConfig(vehicles=args.vehicles, days=args.days,
                                                start=args.start,
                                                defect_share=args.defect_share,
                                                seed=args.seed))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(out)
    print(f"{frame.height:,} daily records of {args.vehicles} vehicles "
          f"({int(frame.get_column('label').sum()):,} alarm days) -> {out}")
    return 0
