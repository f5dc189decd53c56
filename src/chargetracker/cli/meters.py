"""``chargetracker meters``: smart-meter watchdog commands (analyze, simulate, live, backfill)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import polars as pl

from ..errors import ConfigError

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("meters", help="smart-meter watchdog: daily energy, p97 thresholds, spikes",
                       description="Household mains and appliance power: daily energy per meter, "
                       "house and zip code, percentile thresholds and spike alerts.")
    msub = p.add_subparsers(dest="meters_command", metavar="SUBCOMMAND", required=True)
    _register_analyze(msub)
    _register_simulate(msub)
    _register_live(msub)
    _register_backfill(msub)


def _engine_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--gap-limit", type=float, default=600.0, metavar="S",
                   help="an interval longer than this is a gap, s (default 600)")
    g.add_argument("--zero-run-limit", type=float, default=300.0, metavar="S",
                   help="mains at exactly 0 W for longer than this is a gap, s (default 300)")
    g.add_argument("--on", type=float, default=10.0, metavar="W",
                   help="readings above this count for the percentile, W (default 10)")
    g.add_argument("--percentile", type=float, default=97.0)
    g.add_argument("--window-days", type=float, default=30.0)
    g.add_argument("--spike-margin", type=float, default=0.2,
                   help="spike when power > threshold x (1 + margin) (default 0.2)")
    g.add_argument("--spike-floor", type=float, default=100.0, metavar="W",
                   help="and power > this, W (default 100)")


def config_from_args(args: argparse.Namespace) -> Any:
    from ..meters.config import MeterConfig

    return MeterConfig(gap_limit_s=args.gap_limit, zero_run_limit_s=args.zero_run_limit,
                       on_w=args.on, percentile=args.percentile, window_days=args.window_days,
                       spike_margin=args.spike_margin, spike_floor_w=args.spike_floor,
                       default_timezone=args.timezone)


def _register_analyze(msub: Any) -> None:
    from ..meters.readers import FORMATS

    p = msub.add_parser("analyze", help="daily energy per meter and house of meter files",
                        description="Read meter files (long CSV/Parquet, wide CSV[.gz], REDD "
                        "folders) and print the per-house daily table.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", default="auto", choices=FORMATS)
    p.add_argument("--house", metavar="ID", help="house id (default: from the file or folder name)")
    p.add_argument("--mains", metavar="COLUMN", help="whole-house column of a wide file "
                   "(default: one called Aggregate or mains)")
    p.add_argument("--timezone", default="UTC", metavar="TZ",
                   help="IANA zone of naive timestamps and of the meters' days (default UTC)")
    p.add_argument("--zip", metavar="CODE", help="zip code of the house(s)")
    p.add_argument("--exclude", action="append", default=[], metavar="COLUMN",
                   help="wide-file column that is not a meter (repeatable)")
    p.add_argument("--map", action="append", default=[], metavar="CANONICAL=SOURCE",
                   help="long-file column map, e.g. --map power_w=watts --map ts=time")
    p.add_argument("--power-unit", choices=["W", "kW"], help="long-file power unit")
    p.add_argument("--meters", metavar="meters.csv", help="meter metadata (meter_id, house_id, "
                   "appliance, zip, timezone, any user key); overrides what the files imply")
    p.add_argument("--use-thresholds", metavar="thr.csv", help="judge spikes against this "
                   "threshold table instead of the files' own percentiles")
    p.add_argument("--out", required=True, metavar="daily.csv|.parquet", help="per meter and day")
    p.add_argument("--thresholds", metavar="thr.csv", help="write the threshold table")
    p.add_argument("--alerts", metavar="alerts.csv", help="write the spike episodes")
    p.add_argument("--zips", metavar="zips.csv", help="write per zip and day totals")
    p.add_argument("--rejects", metavar="rejects.csv", help="write rejected rows with reasons")
    p.add_argument("--no-progress", action="store_true")
    _engine_args(p.add_argument_group("engine"))
    p.set_defaults(func=run_analyze)


def write_table(frame: pl.DataFrame, path: str) -> None:
    if path.endswith(".parquet"):
        frame.write_parquet(path)
    elif path.endswith(".csv"):
        frame.write_csv(path)
    else:
        raise ConfigError(f"{path}: output must end in .csv or .parquet")


def _read_table(path: str) -> pl.DataFrame:
    try:
        return pl.read_parquet(path) if path.endswith(".parquet") else pl.read_csv(
            path, infer_schema_length=0)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc


def _iso(ts: pl.Expr) -> pl.Expr:
    return pl.from_epoch((ts * 1e6).cast(pl.Int64), time_unit="us").dt.replace_time_zone("UTC")


def run_analyze(args: argparse.Namespace) -> int:
    from ..meters.analysis import analyze_files
    from ..meters.readers import ReadOptions

    cfg = config_from_args(args)
    cmap = {}
    for m in args.map:
        if "=" not in m:
            raise ConfigError(f"--map {m!r}: expected CANONICAL=SOURCE")
        k, v = m.split("=", 1)
        cmap[k.strip()] = v.strip()
    if args.house and len(args.files) > 1:
        raise ConfigError("--house names one house; give one file or folder with it")
    opts = ReadOptions(house_id=args.house, mains=args.mains, timezone=args.timezone,
                       columns=cmap, power_unit=args.power_unit, exclude=tuple(args.exclude),
                       zip_code=args.zip)
    meters = _read_table(args.meters) if args.meters else None
    thr = None
    if args.use_thresholds:
        thr = _read_table(args.use_thresholds).with_columns(pl.col("p97_w").cast(pl.Float64))
    bar = None
    if not args.no_progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit=" rows", unit_scale=True, file=sys.stderr, desc="reading")
    try:
        a = analyze_files(args.files, cfg, format=args.format, options=opts, meters=meters,
                          thresholds=thr, progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    write_table(a.daily, args.out)
    if args.thresholds:
        write_table(a.thresholds, args.thresholds)
    if args.alerts:
        write_table(a.alerts.with_columns(_iso(pl.col("start_ts")).alias("start"),
                                          _iso(pl.col("peak_ts")).alias("peak_time")), args.alerts)
    if args.zips:
        write_table(a.zips, args.zips)
    if args.rejects:
        write_table(a.rejected, args.rejects)
    table = a.houses.select("house_id", "date", "mains_kwh", "appliances_kwh", "unmetered_kwh",
                            "coverage")
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True, float_precision=3, tbl_width_chars=120):
        print(table)
    n_alerts = a.alerts.height
    print(f"{a.n_readings} readings, {a.meters.height} meters, {a.houses.height} house days, "
          f"{n_alerts} spike episode(s), {a.rejected.height} rejected row(s)", file=sys.stderr)
    if a.rejected.height:
        r = a.rejected.row(0, named=True)
        print(f"first rejected: {r['source']} row {r['row']} field {r['field']!r}: {r['reason']}",
              file=sys.stderr)
    return 0


def _register_simulate(msub: Any) -> None:
    p = msub.add_parser("simulate", help="simulate houses replaying real household profiles",
                        description="Many houses replaying the real UK-DALE/REFIT/IDEAL profiles "
                        "shipped with ChargeTracker, with per-house scaling, time shifts, appliance "
                        "mixes, zip codes and injected spikes; deterministic by --seed.")
    p.add_argument("--houses", type=int, default=100)
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--interval", type=float, default=60.0, metavar="S", help="reading interval, s")
    p.add_argument("--zips", type=int, default=20, help="number of zip codes")
    p.add_argument("--start", default="2026-01-01T00:00:00Z", help="ISO time of the first reading")
    p.add_argument("--timezone", default="Europe/London", help="the houses' IANA time zone")
    p.add_argument("--spikes-per-day", type=float, default=0.3, help="injected spikes per house and day")
    p.add_argument("--out", required=True, metavar="readings.parquet|.csv")
    p.add_argument("--meters-out", metavar="PATH", help="meter metadata (default <stem>.meters.<ext>)")
    p.add_argument("--spikes-out", metavar="PATH", help="ground truth of the injected spikes")
    p.set_defaults(func=run_simulate)


def _iso_epoch(text: str) -> float:
    try:
        us = pl.Series([text]).str.to_datetime(time_zone="UTC").dt.epoch("us").item()
    except pl.exceptions.PolarsError as exc:
        raise ConfigError(f"--start {text!r}: not an ISO time") from exc
    return int(us) / 1e6


def _side_path(out: str, kind: str) -> str:
    stem, _, ext = out.rpartition(".")
    return f"{stem}.{kind}.{ext}"


def run_simulate(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from ..meters.calendar import check_timezone
    from ..meters.simulator import SimConfig, house_specs, injected_spikes, load_profiles, simulate

    if not (args.out.endswith(".parquet") or args.out.endswith(".csv")):
        raise ConfigError(f"{args.out}: output must end in .parquet or .csv")
    check_timezone(args.timezone, field="--timezone")
    start = _iso_epoch(args.start)
    cfg = SimConfig(houses=args.houses, days=args.days, seed=args.seed, start_ts=float(start),
                    interval_s=args.interval, n_zips=args.zips, timezone=args.timezone,
                    spikes_per_house_day=args.spikes_per_day)
    profiles = load_profiles()
    metas, n = [], 0
    writer = None
    try:
        with open(args.out, "wb") as fh:
            for k, (meters, readings) in enumerate(simulate(cfg, profiles)):
                metas.append(meters)
                n += readings.height
                if args.out.endswith(".parquet"):
                    table = readings.to_arrow()
                    if writer is None:
                        writer = pq.ParquetWriter(fh, table.schema, compression="zstd")
                    writer.write_table(table)
                else:
                    readings.write_csv(fh, include_header=k == 0)
            if writer is not None:
                writer.close()
    except OSError as exc:
        raise ConfigError(f"{args.out}: cannot write: {exc}") from exc
    write_table(pl.concat(metas), args.meters_out or _side_path(args.out, "meters"))
    if args.spikes_out:
        write_table(injected_spikes(cfg, house_specs(cfg, profiles), profiles), args.spikes_out)
    print(f"{n} readings of {sum(m.height for m in metas)} meters in {cfg.houses} houses -> {args.out}",
          file=sys.stderr)
    return 0


def _register_live(msub: Any) -> None:
    p = msub.add_parser("live", help="stream simulated houses to a running server, paced",
                        description="Replay simulated houses in real time (x --speed) into "
                        "POST /api/v1/meters/readings of a running `chargetracker serve`, and "
                        "recompute the thresholds every --recompute-hours of simulated time.")
    p.add_argument("--url", default="http://127.0.0.1:8050", help="server base URL")
    p.add_argument("--api-key", help="API key for writes (or $CHARGETRACKER_API_KEY)")
    p.add_argument("--houses", type=int, default=20)
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed", type=float, default=600.0, help="simulated seconds per wall second")
    p.add_argument("--interval", type=float, default=60.0, metavar="S")
    p.add_argument("--spikes-per-day", type=float, default=2.0)
    p.add_argument("--recompute-hours", type=float, default=6.0)
    p.add_argument("--start", default=None, help="ISO time of the first reading (default: now)")
    p.set_defaults(func=run_live)


def run_live(args: argparse.Namespace) -> int:
    import io
    import os
    import time

    import httpx

    from ..meters.simulator import SimConfig, house_specs, live_batches, load_profiles, meters_frame

    key = args.api_key or os.environ.get("CHARGETRACKER_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    start = time.time() if args.start is None else _iso_epoch(args.start)
    cfg = SimConfig(houses=args.houses, days=args.days, seed=args.seed, start_ts=float(start),
                    interval_s=args.interval, spikes_per_house_day=args.spikes_per_day)
    profiles = load_profiles()
    meters = meters_frame(cfg, house_specs(cfg, profiles), profiles)
    sent = 0
    try:
        with httpx.Client(base_url=args.url, timeout=60.0, headers=headers) as c:
            r = c.post("/api/v1/meters/meters", json=meters.drop("attributes").to_dicts())
            if r.status_code != 200:
                raise ConfigError(f"{args.url}: registering meters failed: {r.status_code} {r.text[:300]}")
            next_recompute = cfg.start_ts + args.recompute_hours * 3600.0
            for frame in live_batches(cfg, profiles, speed=args.speed):
                buf = io.BytesIO()
                frame.write_ipc_stream(buf)
                r = c.post("/api/v1/meters/readings", content=buf.getvalue(), params={"source": "live-sim"},
                           headers={"Content-Type": "application/vnd.apache.arrow.stream"})
                if r.status_code != 200:
                    raise ConfigError(f"{args.url}: ingest failed: {r.status_code} {r.text[:300]}")
                sent += frame.height
                newest = float(frame["ts"].to_numpy().max())
                if newest >= next_recompute:
                    c.post("/api/v1/meters/thresholds/recompute", params={"as_of": newest})
                    next_recompute = newest + args.recompute_hours * 3600.0
    except httpx.TransportError as exc:
        raise ConfigError(f"{args.url}: cannot reach the server: {exc}") from exc
    print(f"{sent} readings of {meters.height} meters sent to {args.url}", file=sys.stderr)
    return 0


def _register_backfill(msub: Any) -> None:
    p = msub.add_parser("backfill", help="daily energy and thresholds recomputed from a Parquet archive",
                        description="The batch layer: every meter's daily energy and its percentile "
                        "threshold recomputed from an archive of readings (Parquet files or folders, "
                        "grouped by meter), locally (compiled, 2 threads) or on Spark; same numbers.")
    p.add_argument("archive", nargs="+", metavar="PATH",
                   help="Parquet files or folders of them, or a meter archive folder written by "
                   "`worker --kind meter --archive DIR` (its meter metadata is used unless --meters)")
    p.add_argument("--engine", choices=["local", "spark"], default="local")
    p.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    p.add_argument("--meters", metavar="FILE", help="meter metadata (csv/parquet: meter_id, "
                   "house_id, appliance, zip, timezone)")
    p.add_argument("--as-of", metavar="ISO", help="end of the threshold window (default: newest reading)")
    p.add_argument("--out", required=True, metavar="daily.parquet|.csv", help="per meter and day")
    p.add_argument("--thresholds", required=True, metavar="thr.csv|.parquet")
    p.add_argument("--timezone", default="UTC", metavar="TZ",
                   help="zone of meters without metadata (default UTC)")
    _engine_args(p.add_argument_group("engine"))
    p.set_defaults(func=run_backfill)


def _parquet_files(paths: list[str]) -> list[str]:
    from pathlib import Path

    out: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            # Hive convention: "_meters/", "_meta/" and ".tmp" names are not data.
            out.extend(str(f) for f in sorted(path.rglob("*.parquet"))
                       if not any(part.startswith(("_", ".")) for part in f.relative_to(path).parts))
        elif path.exists():
            out.append(str(path))
        else:
            raise ConfigError(f"{raw}: no such file or folder")
    if not out:
        raise ConfigError(f"no Parquet files in {paths}")
    return out


def _meter_archive(paths: list[str]) -> Any:
    """The ParquetArchive at ``paths`` when it is one folder written as a meter archive
    (``_meta/layout.json``, e.g. by ``worker --kind meter --archive DIR``), else None."""
    from pathlib import Path

    from ..stores.archive import METER_ARCHIVE, ParquetArchive

    if len(paths) != 1 or not (Path(paths[0]) / "_meta" / "layout.json").is_file():
        return None
    return ParquetArchive(paths[0], layout=METER_ARCHIVE)  # refuses another kind's archive


def _archive_chunks(archive: Any) -> Any:
    """Whole meters, one house (archive group) at a time, sorted by meter and time."""
    for group in archive.groups():
        frame = archive.read(groups=[group]).drop("group", "date")
        yield frame.sort("meter_id", "ts", maintain_order=True)


def run_backfill(args: argparse.Namespace) -> int:
    import time

    from ..meters.schema import validate_meters

    cfg = config_from_args(args)
    archive = _meter_archive(args.archive)
    meters = _read_table(args.meters) if args.meters else None
    if meters is None and archive is not None and archive.entities().height:
        meters = archive.entities()  # the metadata the stream ran with, kept beside the data
    if meters is not None:
        meters = validate_meters(meters, default_timezone=cfg.default_timezone)
    as_of = _iso_epoch(args.as_of) if args.as_of else None
    t0 = time.perf_counter()
    if args.engine == "local" and archive is not None:
        from ..meters.batch import recompute

        if as_of is None:  # one threshold window for every house: the archive's newest reading
            as_of = archive.scan().select(pl.col("ts").max()).collect().item()
        results = list(recompute(_archive_chunks(archive), cfg, meters=meters, as_of=as_of))
    elif args.engine == "local":
        from ..meters.batch import recompute_parquet

        results = list(recompute_parquet(_parquet_files(args.archive), cfg, meters=meters, as_of=as_of))
    if args.engine == "local":
        n = sum(r.n_readings for r in results)
        days = pl.concat([r.days for r in results]).sort("meter_id", "date") if results else None
        thr = pl.concat([r.thresholds for r in results]).sort("meter_id") if results else None
        rejected = sum(r.rejected.height for r in results)
    else:
        from ..batch.session import session_scope
        from ..config import SparkConfig
        from ..meters.spark import collect_meter_results, spark_meter_results

        with session_scope(SparkConfig(master=args.master)) as spark:
            paths = args.archive if archive is None else [str(f) for f in archive.files()]
            days, thr = collect_meter_results(spark_meter_results(
                spark, paths, config=cfg, meters=meters, as_of=as_of))
        n = int(days.get_column("n_readings").sum()) if days.height else 0
        rejected = 0
    if days is None or thr is None:
        raise ConfigError(f"no readings in {args.archive}")
    write_table(days, args.out)
    write_table(thr, args.thresholds)
    extra = f", {rejected} dead letters" if rejected else ""
    print(f"{args.engine}: {n:,} readings -> {days.height:,} meter days, {thr.height:,} thresholds"
          f"{extra} in {time.perf_counter() - t0:.1f} s -> {args.out}, {args.thresholds}",
          file=sys.stderr)
    return 0
