"""``chargetracker backfill``: recompute steps and cycles from the Parquet archive.

Examples::

    chargetracker backfill --engine spark --input archive/ --store duckdb:///ct.duckdb
    chargetracker backfill --engine local --input archive/ --store duckdb:///ct.duckdb \\
        --groups nmc-new --cycle-start discharge
    chargetracker backfill --engine spark --master spark://head:7077 --sink executors \\
        --input hdfs:///ct/archive --store postgresql://ct@db/ct
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from ..config import EngineConfig, Settings
from ..errors import ConfigError

__all__ = ["register", "run"]


def _split_list(values: list[str] | None) -> list[str] | None:
    """``--cells a b --cells c,d`` -> [a, b, c, d]; None when the flag was not given."""
    if values is None:
        return None
    out = [v.strip() for item in values for v in item.split(",")]
    return [v for v in out if v]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    defaults = Settings()
    p = sub.add_parser(
        "backfill", help="recompute steps and cycles from the Parquet archive (Spark or local)",
        description="Recompute steps and cycles of archived raw measurements with the same "
        "engine as the live pipeline and upsert them into the store: history, re-analysis "
        "after an engine setting changed, or a cell group added later.")
    p.add_argument("--engine", choices=("spark", "local"), default="spark",
                   help="spark (local[2] unless --master) or local (this process, no Spark)")
    p.add_argument("--config", metavar="FILE",
                   help="pipeline config TOML (as for 'run'): store, archive_dir and [engine] "
                   "settings; flags override it")
    p.add_argument("--input", metavar="ARCHIVE",
                   help="archive root (root/group=G/date=YYYY-MM-DD/part-*.parquet); "
                   "default: archive_dir of the settings")
    p.add_argument("--store", metavar="URL",
                   help=f"store to write to (default: the settings', {defaults.store_url})")
    p.add_argument("--cells", nargs="+", action="extend", metavar="CELL",
                   help="only these cell ids (space or comma separated)")
    p.add_argument("--groups", nargs="+", action="extend", metavar="GROUP",
                   help="only these groups")
    p.add_argument("--since", metavar="DATE", help="first UTC day, YYYY-MM-DD (inclusive); "
                   "the window is analysed as if history started there")
    p.add_argument("--until", metavar="DATE", help="last UTC day, YYYY-MM-DD (inclusive)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    s = p.add_argument_group("spark")
    s.add_argument("--master",
                   help=f"Spark master (default {defaults.spark.master}); e.g. spark://host:7077")
    s.add_argument("--partitions", type=int, metavar="N",
                   help="partitions of the per-cell stage (default spark.sql.shuffle.partitions)")
    s.add_argument("--sink", choices=("driver", "executors"), default="driver",
                   help="commit results from the driver (default; DuckDB) or from each task "
                   "(a server store such as PostgreSQL)")
    s.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Spark setting, e.g. --conf spark.driver.memory=4g")
    g = p.add_argument_group("engine (defaults: the engine's)")
    g.add_argument("--epsilon", type=float, metavar="A", help="rest/charge current threshold, A")
    g.add_argument("--min-step", type=float, metavar="S", help="minimum step duration, s")
    g.add_argument("--gap-limit", type=float, metavar="S", help="fixed gap limit, s (default adaptive)")
    g.add_argument("--cycle-start", choices=["charge", "discharge"],
                   help="a cycle starts at the first charge (default) or discharge")
    g.add_argument("--ignore-labels", action="store_true", help="detect cycles/steps from current only")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> Settings:
    if not args.config:
        return Settings()
    from ..runtime.config import load_pipeline_config

    return load_pipeline_config(args.config).settings


def _engine_config(args: argparse.Namespace, base: EngineConfig) -> EngineConfig:
    kw: dict[str, object] = {}
    if args.epsilon is not None:
        kw["current_epsilon_a"] = args.epsilon
    if args.min_step is not None:
        kw["min_step_s"] = args.min_step
    if args.gap_limit is not None:
        kw["gap_limit_s"] = args.gap_limit
    if args.cycle_start is not None:
        kw["cycle_start"] = args.cycle_start
    if args.ignore_labels:
        kw["use_cycle_labels"] = False
        kw["use_step_labels"] = False
    return replace(base, **kw)  # type: ignore[arg-type]


def _spark_conf(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--conf {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def run(args: argparse.Namespace) -> int:
    from ..batch import run_backfill
    from ..stores.url import open_store

    settings = _settings(args)
    archive = args.input or settings.archive_dir
    if not archive:
        raise ConfigError("give the archive with --input ARCHIVE (or archive_dir in --config)")
    if args.partitions is not None and args.partitions < 1:
        raise ConfigError("--partitions must be >= 1")
    spark = replace(settings.spark, master=args.master) if args.master else settings.spark
    url = args.store or settings.store_url
    base = settings.engine
    if not args.config:
        # The settings the stream ran with, recorded in the archive (a fresh store then
        # gets the stream's numbers); a --config file's [engine] is explicit and wins.
        from ..batch.backfill import archived_engine_config
        from ..stores.archive import ParquetArchive

        base = archived_engine_config(ParquetArchive(archive)) or base
    options: dict[str, Any] = {
        "engine": args.engine, "config": _engine_config(args, base),
        "cells": _split_list(args.cells), "groups": _split_list(args.groups),
        "since": args.since, "until": args.until, "spark_config": spark,
        "spark_conf": _spark_conf(args.conf), "partitions": args.partitions, "sink": args.sink,
    }
    store = open_store(url)
    try:
        result = run_backfill(archive, store, store_url=url, **options)
    finally:
        store.close()
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        d = result.as_dict()
        print(f"backfill ({d['engine']}): {d['cells']} cells, {d['samples']} samples "
              f"-> {d['steps']} steps, {d['cycles']} cycles ({d['closed_cycles']} closed) "
              f"in {d['seconds']:.1f} s ({d['samples_per_s'] or 0:,.0f} samples/s)")
        if result.duplicates:
            print(f"  {result.duplicates} duplicate archived row(s) skipped (replayed batches)")
        if result.new_cells:
            print(f"  {result.new_cells} cell(s) added to the store with their archive group")
        if result.dead_letters:
            print(f"  {result.dead_letters} row(s) rejected by the engine; see the store's dead letters",
                  file=sys.stderr)
    return 0
