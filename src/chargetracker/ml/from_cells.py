"""Daily pack records derived from ChargeTracker's own cell telemetry.

Cells carry their pack (VIN) in metadata (``attributes`` key ``pack_id`` or ``vin``).
Per cell and UTC day the raw measurements give a mean voltage, a mean current and the
temperature range; per pack and day:

* ``total_voltage_v`` = sum of the cells' daily mean voltages (a series pack), V;
* ``total_current_a`` = mean of the cells' daily mean currents, A (+ charging);
* ``cell_max_v`` / ``cell_min_v`` = highest / lowest daily mean cell voltage, V;
* ``max_temperature_c`` / ``min_temperature_c`` = extremes over the pack's cells, degC.

A pack-day is emitted only when all of the pack's known cells reported that day (a
missing cell would fake a small spread); otherwise the day stays empty. Labels are left
empty: an alarm is what the model predicts.
"""

from __future__ import annotations

import json

import polars as pl

from ..errors import SchemaError
from .records import PACK_SCHEMA

__all__ = ["CELL_DAY_SCHEMA", "cell_day_summary", "daily_pack_records", "merge_cell_days",
           "pack_of_cells", "pack_records_from_days"]


def pack_of_cells(cells: pl.DataFrame, *, key: str = "pack_id") -> pl.DataFrame:
    """(cell_id, vin) from a cell metadata frame: a ``vin`` / ``pack_id`` column, or
    the key in the JSON ``attributes``. Cells without one are left out."""
    if key in cells.columns:
        out = cells.select("cell_id", pl.col(key).cast(pl.Utf8).alias("vin"))
    elif "vin" in cells.columns:
        out = cells.select("cell_id", pl.col("vin").cast(pl.Utf8))
    elif "attributes" in cells.columns:
        def pick(text: str | None) -> str | None:
            try:
                attrs = json.loads(text) if text else {}
            except ValueError:
                return None
            v = attrs.get(key, attrs.get("vin")) if isinstance(attrs, dict) else None
            return None if v is None else str(v)

        # One call per cell (metadata, not samples).
        out = cells.select("cell_id", pl.col("attributes").map_elements(
            pick, return_dtype=pl.Utf8).alias("vin"))
    else:
        raise SchemaError(f"cell metadata has no {key!r}, 'vin' or 'attributes' column",
                          field=key)
    return out.filter(pl.col("vin").is_not_null() & (pl.col("vin") != ""))


#: Per cell and UTC day: samples, sums of voltage [V] and current [A], temperature range
#: [degC]. Running sums, so a stream folds batch after batch into it.
CELL_DAY_SCHEMA: dict[str, pl.DataType] = {
    "cell_id": pl.Utf8(), "day": pl.Int32(), "n": pl.Int64(), "sum_v": pl.Float64(),
    "sum_i": pl.Float64(), "tmax": pl.Float64(), "tmin": pl.Float64(),
}


def cell_day_summary(measurements: pl.DataFrame) -> pl.DataFrame:
    """:data:`CELL_DAY_SCHEMA` of canonical measurements (cell_id, ts [s, UTC],
    voltage_v, current_a, temperature_c?)."""
    for c in ("cell_id", "ts", "voltage_v", "current_a"):
        if c not in measurements.columns:
            raise SchemaError(f"measurements need column {c!r}", field=c)
    temp = (pl.col("temperature_c") if "temperature_c" in measurements.columns
            else pl.lit(None, pl.Float64))
    m = measurements.select(
        "cell_id", (pl.col("ts") // 86_400).cast(pl.Int32).alias("day"),
        pl.col("voltage_v").cast(pl.Float64), pl.col("current_a").cast(pl.Float64),
        temp.cast(pl.Float64).alias("temperature_c"))
    return m.group_by("cell_id", "day").agg(
        pl.len().cast(pl.Int64).alias("n"), pl.col("voltage_v").sum().alias("sum_v"),
        pl.col("current_a").sum().alias("sum_i"), pl.col("temperature_c").max().alias("tmax"),
        pl.col("temperature_c").min().alias("tmin")).cast(CELL_DAY_SCHEMA)  # type: ignore[arg-type]


def merge_cell_days(*parts: pl.DataFrame) -> pl.DataFrame:
    """Several :data:`CELL_DAY_SCHEMA` frames as one (sums added, ranges widened)."""
    frames = [p for p in parts if p.height]
    if not frames:
        return pl.DataFrame(schema=CELL_DAY_SCHEMA)
    return pl.concat(frames).group_by("cell_id", "day").agg(
        pl.col("n").sum(), pl.col("sum_v").sum(), pl.col("sum_i").sum(), pl.col("tmax").max(),
        pl.col("tmin").min()).sort("cell_id", "day").cast(CELL_DAY_SCHEMA)  # type: ignore[arg-type]


def pack_records_from_days(days: pl.DataFrame, packs: pl.DataFrame) -> pl.DataFrame:
    """Daily pack records (:data:`~.records.PACK_SCHEMA`) from per cell-day summaries
    (:data:`CELL_DAY_SCHEMA`) and (cell_id, vin)."""
    per_cell = days.select("cell_id", "day", (pl.col("sum_v") / pl.col("n")).alias("v"),
                           (pl.col("sum_i") / pl.col("n")).alias("i"), "tmax", "tmin")
    members = packs.group_by("vin").agg(pl.len().alias("n_cells"))
    joined = per_cell.join(packs, on="cell_id", how="inner")
    per_pack = joined.group_by("vin", "day").agg(
        pl.col("v").sum().alias("total_voltage_v"), pl.col("i").mean().alias("total_current_a"),
        pl.col("v").max().alias("cell_max_v"), pl.col("v").min().alias("cell_min_v"),
        pl.col("tmax").max().alias("max_temperature_c"),
        pl.col("tmin").min().alias("min_temperature_c"), pl.len().alias("reported"))
    full = per_pack.join(members, on="vin").filter(pl.col("reported") == pl.col("n_cells"))
    return full.select(
        "vin", pl.col("day").cast(pl.Date).alias("date"), "total_voltage_v", "total_current_a",
        "cell_max_v", "cell_min_v", "max_temperature_c", "min_temperature_c",
        pl.lit(None, pl.Int8).alias("label"),
    ).sort("vin", "date").cast(PACK_SCHEMA)  # type: ignore[arg-type]


def daily_pack_records(measurements: pl.DataFrame, packs: pl.DataFrame) -> pl.DataFrame:
    """Daily pack records (:data:`~.records.PACK_SCHEMA`) from canonical measurements
    (cell_id, ts [s, UTC], voltage_v, current_a, temperature_c?) and (cell_id, vin)."""
    return pack_records_from_days(cell_day_summary(measurements), packs)
