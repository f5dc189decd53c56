"""Canonical meter reading, meter metadata and the engine's output tables.

A reading is ``meter_id, ts, power_w[, energy_wh]``: ``ts`` seconds since the Unix epoch
(UTC, float64), ``power_w`` the meter's active power in W (negative = export, e.g. solar),
``energy_wh`` an optional cumulative counter of the meter, Wh. Metadata lives apart: each
meter belongs to a house (``house_id``), has an ``appliance`` (``mains`` for the
whole-house meter; a house may have several mains meters, one per phase, which add up),
a ``zip`` code and an IANA ``timezone`` whose midnight splits its days. Any other key is
kept as JSON in ``attributes``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..errors import SchemaError, ValidationError
from ..schema import DEAD_LETTER_SCHEMA as CELL_DEAD_LETTER_SCHEMA
from .calendar import check_timezone

__all__ = [
    "READING_SCHEMA",
    "METER_SCHEMA",
    "DAY_SCHEMA",
    "HOUSE_DAY_SCHEMA",
    "ZIP_DAY_SCHEMA",
    "THRESHOLD_SCHEMA",
    "ALERT_SCHEMA",
    "DEAD_LETTER_SCHEMA",
    "MAINS",
    "UNMETERED",
    "ReadingLimits",
    "ValidatedReadings",
    "validate_readings",
    "validate_meters",
    "dead_letters",
]

MAINS = "mains"
UNMETERED = "unmetered"

READING_SCHEMA: dict[str, pl.DataType] = {
    "meter_id": pl.Utf8(),
    "ts": pl.Float64(),          # s since epoch, UTC
    "power_w": pl.Float64(),     # W
    "energy_wh": pl.Float64(),   # cumulative counter, Wh, nullable
}
REQUIRED_READING_COLUMNS: tuple[str, ...] = ("meter_id", "ts", "power_w")

METER_SCHEMA: dict[str, pl.DataType] = {
    "meter_id": pl.Utf8(),
    "house_id": pl.Utf8(),
    "appliance": pl.Utf8(),      # "mains" for a whole-house meter
    "zip": pl.Utf8(),            # nullable
    "timezone": pl.Utf8(),       # IANA name
    "attributes": pl.Utf8(),     # JSON object of any user keys
}

#: One meter's local day, keyed by (meter_id, date).
DAY_SCHEMA: dict[str, pl.DataType] = {
    "meter_id": pl.Utf8(),
    "date": pl.Date(),           # local date in the meter's time zone
    "status": pl.Utf8(),         # open (the stream has not passed its end) | closed
    "day_start_ts": pl.Float64(),  # local midnight, s since epoch
    "day_length_s": pl.Float64(),  # 86400, or 82800 / 90000 on DST days
    "first_ts": pl.Float64(),
    "last_ts": pl.Float64(),
    "n_readings": pl.Int64(),
    "energy_wh": pl.Float64(),   # trapezoid over integrated intervals
    "energy_kwh": pl.Float64(),
    "covered_s": pl.Float64(),   # integrated time
    "coverage": pl.Float64(),    # covered_s / day_length_s
    "mean_power_w": pl.Float64(),  # energy / covered time
    "min_power_w": pl.Float64(),
    "max_power_w": pl.Float64(),
    "peak_ts": pl.Float64(),     # first reading at max_power_w
    "gap_count": pl.Int64(),     # intervals longer than the gap limit ending this day
    "zero_run_count": pl.Int64(),  # suspicious mains zero runs (excluded)
    "zero_run_s": pl.Float64(),  # time excluded for them
    "counter_wh": pl.Float64(),  # the meter's own counter over the integrated intervals
}

HOUSE_DAY_SCHEMA: dict[str, pl.DataType] = {
    "house_id": pl.Utf8(),
    "date": pl.Date(),
    "zip": pl.Utf8(),
    "mains_kwh": pl.Float64(),
    "appliances_kwh": pl.Float64(),
    "unmetered_kwh": pl.Float64(),   # mains minus the appliances
    "n_appliances": pl.Int64(),
    "coverage": pl.Float64(),        # of the mains (the smallest over mains phases)
}

ZIP_DAY_SCHEMA: dict[str, pl.DataType] = {
    "zip": pl.Utf8(),
    "date": pl.Date(),
    "total_kwh": pl.Float64(),
    "houses_reporting": pl.Int64(),
    "mean_kwh_per_house": pl.Float64(),
    "median_kwh_per_house": pl.Float64(),
}

THRESHOLD_SCHEMA: dict[str, pl.DataType] = {
    "meter_id": pl.Utf8(),
    "p97_w": pl.Float64(),       # the configured percentile, W; null without "on" readings
    "n_readings": pl.Int64(),    # "on" readings in the window
    "window_start_ts": pl.Float64(),
    "window_end_ts": pl.Float64(),
}

#: One spike episode, keyed by (meter_id, start_ts); an open episode is updated when it ends.
ALERT_SCHEMA: dict[str, pl.DataType] = {
    "meter_id": pl.Utf8(),
    "house_id": pl.Utf8(),
    "zip": pl.Utf8(),
    "start_ts": pl.Float64(),
    "status": pl.Utf8(),         # open | closed
    "end_ts": pl.Float64(),      # last reading above the limit
    "duration_s": pl.Float64(),
    "peak_w": pl.Float64(),
    "peak_ts": pl.Float64(),
    "threshold_w": pl.Float64(),
    "ratio": pl.Float64(),       # peak_w / threshold_w
    "n_readings": pl.Int64(),
}

#: The cell dead-letter schema with the entity named meter_id (same columns, same order).
DEAD_LETTER_SCHEMA: dict[str, pl.DataType] = {
    ("meter_id" if name == "cell_id" else name): dtype for name, dtype in CELL_DEAD_LETTER_SCHEMA.items()}


@dataclass(frozen=True, slots=True)
class ReadingLimits:
    """Plausibility limits; readings outside are dead letters with the reason."""

    power_w: tuple[float, float] = (-1.0e6, 1.0e7)
    ts: tuple[float, float] = (0.0, 1.0e11)
    max_meter_id_length: int = 256


@dataclass(frozen=True, slots=True)
class ValidatedReadings:
    good: pl.DataFrame
    rejected: pl.DataFrame
    #: Original 0-based row of each good row.
    rows: np.ndarray


def dead_letters(rows: list[dict[str, object]] | None = None) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema=DEAD_LETTER_SCHEMA)
    return pl.DataFrame([{k: r.get(k) for k in DEAD_LETTER_SCHEMA} for r in rows],
                        schema=DEAD_LETTER_SCHEMA)


def _cast(frame: pl.DataFrame, schema: dict[str, pl.DataType], required: tuple[str, ...],
          source: str | None) -> pl.DataFrame:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SchemaError(f"missing required column(s) {missing}; columns are {list(schema)}",
                          field=missing[0], source=source)
    exprs = []
    for name, dtype in schema.items():
        if name not in frame.columns:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
            continue
        col = frame.get_column(name)
        if col.dtype == dtype:
            exprs.append(pl.col(name))
            continue
        casted = col.cast(dtype, strict=False)
        bad = (casted.is_null() & col.is_not_null()).arg_true()
        if len(bad):
            row = int(bad[0])
            raise SchemaError(f"cannot read {col[row]!r} as {dtype}", field=name, row=row,
                              source=source)
        exprs.append(pl.lit(casted).alias(name))
    return frame.select(exprs)


def validate_readings(frame: pl.DataFrame, *, limits: ReadingLimits | None = None,
                      source: str = "input", row_offset: int = 0) -> ValidatedReadings:
    """Split readings into canonical good rows and dead letters naming field and reason.

    A whole-column problem (missing column, text in a number column) raises
    :class:`SchemaError`; a bad row (missing id, NaN/inf/implausible ts or power, negative
    or non-finite counter) becomes a dead letter and the rows beside it are kept.
    """
    lim = limits or ReadingLimits()
    df = _cast(frame, READING_SCHEMA, REQUIRED_READING_COLUMNS, source)
    if _all_good(df, lim):
        return ValidatedReadings(df, dead_letters(), np.arange(df.height, dtype=np.int64))
    mid, ts, p, e = pl.col("meter_id"), pl.col("ts"), pl.col("power_w"), pl.col("energy_wh")
    checks: list[tuple[str, pl.Expr, str]] = [
        ("meter_id", mid.is_null() | (mid.str.strip_chars() == ""), "missing meter_id"),
        ("meter_id", mid.str.len_bytes() > lim.max_meter_id_length,
         f"meter_id longer than {lim.max_meter_id_length} bytes"),
    ]
    for name, c in (("ts", ts), ("power_w", p)):
        lo, hi = getattr(lim, name)
        checks += [
            (name, c.is_null(), "missing value"),
            (name, c.is_nan(), "NaN"),
            (name, c.is_infinite(), "infinite value"),
            (name, (c < lo) | (c > hi), f"outside plausible range [{lo:g}, {hi:g}]"),
        ]
    checks.append(("energy_wh", e.is_not_null() & ~e.is_finite(), "NaN or infinite counter"))
    checks.append(("energy_wh", e.is_not_null() & (e < 0), "negative cumulative counter"))
    bad_any = pl.lit(False)
    for _, cond, _ in checks:
        bad_any = bad_any | cond.fill_null(False)
    mask = df.select(bad_any.alias("bad")).get_column("bad")
    if not mask.any():
        return ValidatedReadings(df, dead_letters(), np.arange(df.height, dtype=np.int64))
    good_rows = np.flatnonzero(~mask.to_numpy())
    field_expr: pl.Expr = pl.lit("row", dtype=pl.Utf8)
    reason_expr: pl.Expr = pl.lit("invalid row", dtype=pl.Utf8)
    for fname, cond, reason in reversed(checks):
        cond = cond.fill_null(False)
        field_expr = pl.when(cond).then(pl.lit(fname)).otherwise(field_expr)
        reason_expr = pl.when(cond).then(pl.lit(reason)).otherwise(reason_expr)
    bad = df.with_row_index("__row").filter(mask).with_columns(
        field_expr.alias("__field"), reason_expr.alias("__reason"))
    body = bad.select(list(READING_SCHEMA))
    payload = [json.dumps({k: (v if not isinstance(v, float) or np.isfinite(v) else str(v))
                           for k, v in r.items()}) for r in body.to_dicts()]
    rejected = pl.DataFrame({
        "source": [source] * bad.height,
        "row": bad.get_column("__row").cast(pl.Int64) + row_offset,
        "meter_id": bad.get_column("meter_id"),
        "ts": bad.get_column("ts"),
        "field": bad.get_column("__field"),
        "reason": bad.get_column("__reason"),
        "payload": payload,
    }, schema=DEAD_LETTER_SCHEMA)
    return ValidatedReadings(df.filter(~mask), rejected, good_rows)


def _all_good(df: pl.DataFrame, lim: ReadingLimits) -> bool:
    """Cheap whole-batch check (numpy on the numbers); the per-rule pass runs only when it fails."""
    ids = df.get_column("meter_id")
    if ids.null_count():
        return False
    for name in ("ts", "power_w"):
        col = df.get_column(name)
        if col.null_count():
            return False
        v = col.to_numpy()
        lo, hi = getattr(lim, name)
        if not (np.isfinite(v).all() and v.min(initial=lo) >= lo and v.max(initial=hi) <= hi):
            return False
    e = df.get_column("energy_wh")
    if e.null_count() < df.height:
        ev = e.drop_nulls().to_numpy()
        if not (np.isfinite(ev).all() and ev.min() >= 0):
            return False
    # The string checks on each run of equal ids once (batches come grouped by meter).
    runs = ids.filter(ids.ne_missing(ids.shift(1)).fill_null(True))
    if len(runs) < len(ids) // 2:
        ids = runs
    lens = ids.str.len_bytes()
    if lens.min() == 0 or lens.max() > lim.max_meter_id_length:  # type: ignore[operator]
        return False
    return not bool(ids.str.contains(r"^\s*$").any())


def validate_meters(frame: pl.DataFrame, *, default_timezone: str = "UTC",
                    source: str = "meters") -> pl.DataFrame:
    """Canonical meter metadata; raises :class:`ValidationError` naming row, field and reason.

    Metadata is small and defines groups, so a bad row stops the load instead of being
    skipped. Columns beyond the schema are user keys, folded into ``attributes`` (JSON).
    ``appliance`` is lower-cased; ``timezone`` defaults to ``default_timezone``.
    """
    extra = [c for c in frame.columns if c not in METER_SCHEMA]
    if extra:
        attrs = [json.dumps({k: v for k, v in r.items() if v is not None}, default=str)
                 for r in frame.select(extra).to_dicts()]
        if "attributes" in frame.columns:
            merged = []
            for a, base in zip(attrs, frame.get_column("attributes").to_list(), strict=True):
                d = json.loads(base) if base else {}
                d.update(json.loads(a))
                merged.append(json.dumps(d))
            attrs = merged
        frame = frame.drop(extra).with_columns(pl.Series("attributes", attrs, dtype=pl.Utf8))
    df = _cast(frame, METER_SCHEMA, ("meter_id", "house_id", "appliance"), source)
    df = df.with_columns(
        pl.col("appliance").str.strip_chars().str.to_lowercase(),
        pl.col("timezone").fill_null(default_timezone),
    )
    for name in ("meter_id", "house_id", "appliance"):
        bad = df.get_column(name).is_null() | (df.get_column(name).str.strip_chars() == "")
        if bad.any():
            raise ValidationError(f"missing {name}", field=name, row=int(bad.arg_true()[0]),
                                  source=source)
    dup = df.get_column("meter_id").is_duplicated()
    if dup.any():
        row = int(dup.arg_true()[1]) if dup.sum() > 1 else int(dup.arg_true()[0])
        raise ValidationError(f"meter_id {df['meter_id'][row]!r} listed twice", field="meter_id",
                              row=row, source=source)
    for row, tz in enumerate(df.get_column("timezone").to_list()):
        try:
            check_timezone(tz, field="timezone", row=row)
        except ValidationError as exc:
            raise ValidationError(exc.reason, field="timezone", row=row, source=source) from None
    for row, a in enumerate(df.get_column("attributes").to_list()):
        if a is None:
            continue
        try:
            ok = isinstance(json.loads(a), dict)
        except ValueError:
            ok = False
        if not ok:
            raise ValidationError("attributes must be a JSON object", field="attributes",
                                  row=row, source=source)
    return df
