"""Whole-file analysis: read meter files, compute thresholds, days, houses, zips, alerts.

The composition the ``meters analyze`` command and the API's file upload share. It reads
through :mod:`.readers` (I/O), so it lives beside the pure engine, not in it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl

from .aggregate import house_days, meter_days_with_share, zip_days
from .config import MeterConfig
from .engine import summarize
from .readers import ReadOptions, open_meter_file
from .schema import DEAD_LETTER_SCHEMA, METER_SCHEMA, READING_SCHEMA, UNMETERED, validate_meters
from .thresholds import compute_thresholds

__all__ = ["Analysis", "analyze_files", "read_files", "daily_table"]

DAILY_COLUMNS = ["house_id", "meter_id", "appliance", "zip", "date", "status", "energy_kwh",
                 "coverage", "share_of_mains", "n_readings", "mean_power_w", "min_power_w",
                 "max_power_w", "peak_ts", "gap_count", "zero_run_count", "zero_run_s"]


@dataclass(frozen=True, slots=True)
class Analysis:
    meters: pl.DataFrame
    days: pl.DataFrame        # DAY_SCHEMA per meter
    daily: pl.DataFrame       # DAILY_COLUMNS, with the unmetered rest per house
    houses: pl.DataFrame      # HOUSE_DAY_SCHEMA
    zips: pl.DataFrame        # ZIP_DAY_SCHEMA
    thresholds: pl.DataFrame  # THRESHOLD_SCHEMA
    alerts: pl.DataFrame      # ALERT_SCHEMA
    rejected: pl.DataFrame    # DEAD_LETTER_SCHEMA
    n_readings: int


def read_files(paths: Sequence[str | os.PathLike[str]], *, format: str = "auto",
               options: ReadOptions | None = None,
               progress: Callable[[int], None] | None = None
               ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """All readings, the meters the files imply and the readers' dead letters."""
    reads, metas, rej = [], [], []
    for path in paths:
        mf = open_meter_file(path, format=format, options=options)
        metas.append(mf.meters)
        for chunk in mf.chunks:
            reads.append(chunk.readings)
            rej.append(chunk.rejected)
            if progress is not None:
                progress(chunk.rows)
    readings = pl.concat(reads) if reads else pl.DataFrame(schema=READING_SCHEMA)
    meters = pl.concat(metas) if metas else pl.DataFrame(schema=METER_SCHEMA)
    rejected = pl.concat(rej) if rej else pl.DataFrame(schema=DEAD_LETTER_SCHEMA)
    return readings, meters, rejected


def daily_table(days: pl.DataFrame, meters: pl.DataFrame) -> pl.DataFrame:
    """Per meter and day with its share of the mains, plus one ``unmetered`` row per house day."""
    per_meter = meter_days_with_share(days, meters)
    hd = house_days(days, meters)
    rest = hd.select(
        "house_id", (pl.col("house_id") + "/" + UNMETERED).alias("meter_id"),
        pl.lit(UNMETERED).alias("appliance"), "zip", "date", pl.lit("derived").alias("status"),
        pl.col("unmetered_kwh").alias("energy_kwh"), "coverage",
        pl.when(pl.col("mains_kwh") != 0).then(pl.col("unmetered_kwh") / pl.col("mains_kwh"))
        .otherwise(None).alias("share_of_mains"))
    out = pl.concat([per_meter.select(rest.columns + DAILY_COLUMNS[len(rest.columns):]),
                     rest], how="diagonal_relaxed")
    return out.select(DAILY_COLUMNS).sort("house_id", "date", "meter_id")


def analyze_files(paths: Sequence[str | os.PathLike[str]], config: MeterConfig | None = None, *,
                  format: str = "auto", options: ReadOptions | None = None,
                  meters: pl.DataFrame | None = None, thresholds: pl.DataFrame | None = None,
                  progress: Callable[[int], None] | None = None) -> Analysis:
    """Analyse files in one batch; thresholds come from the data unless given."""
    cfg = config or MeterConfig()
    readings, implied, rejected = read_files(paths, format=format, options=options,
                                             progress=progress)
    meta = implied
    if meters is not None:
        given = validate_meters(meters, default_timezone=cfg.default_timezone)
        meta = pl.concat([given, implied.join(given, on="meter_id", how="anti")])
    meta = validate_meters(meta, default_timezone=cfg.default_timezone)
    thr = thresholds if thresholds is not None else compute_thresholds(
        readings, cfg, meter_ids=meta.get_column("meter_id").to_list() or None)
    s = summarize(readings, cfg, meters=meta, thresholds=thr)
    hd = house_days(s.days, meta)
    return Analysis(meters=meta, days=s.days, daily=daily_table(s.days, meta), houses=hd,
                    zips=zip_days(hd), thresholds=thr, alerts=s.alerts,
                    rejected=pl.concat([rejected, s.rejected]), n_readings=readings.height)
