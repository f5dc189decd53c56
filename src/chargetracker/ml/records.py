"""Daily pack records: the canonical schema, parsing and validation.

One row per vehicle (VIN) and calendar day::

    vin, date, total_voltage_v [V], total_current_a [A, + charging], cell_max_v [V],
    cell_min_v [V], max_temperature_c [degC], min_temperature_c [degC], label [0/1, optional]

A day without data is a row whose six signals are all null (NaN), or simply no row at
all: windows are built on the calendar, so a missing date is the same as an empty row.
The reference sample's column names (``VIN, Date, TotalVoltage, TotalCurrent,
CellMaxVoltage, CellMinVoltage, MaxTemperature, MinTemperature, Label``) are accepted
and renamed. ``label`` is the alarm of that day (1 = "cell consistency poor").

Validation never raises on the first bad row: :func:`validate_records` splits a frame
into the accepted rows and the rejected ones, each with the VIN, date, field and reason
(a dead letter). :func:`require_valid` raises :class:`~chargetracker.errors.ValidationError`
naming the first of them, for callers (training) that need a clean file.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..errors import SchemaError, ValidationError

__all__ = [
    "ALIASES",
    "PACK_SCHEMA",
    "REJECT_SCHEMA",
    "SIGNALS",
    "ValidatedRecords",
    "conform_records",
    "parse_records_csv",
    "require_valid",
    "small_columns",
    "validate_records",
    "validate_small",
]

#: The six daily signals, in the reference's column order (also the order of the 84
#: reference features within one day).
SIGNALS: tuple[str, ...] = (
    "total_voltage_v", "total_current_a", "cell_max_v", "cell_min_v",
    "max_temperature_c", "min_temperature_c",
)

PACK_SCHEMA: dict[str, pl.DataType] = {
    "vin": pl.Utf8(),
    "date": pl.Date(),
    **{s: pl.Float64() for s in SIGNALS},
    "label": pl.Int8(),   # 1 = consistency alarm that day, 0 = none, null = unknown
}

#: Rejected rows (dead letters): the 0-based input row, VIN and date as given, the field
#: to blame and why.
REJECT_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.Int64(), "vin": pl.Utf8(), "date": pl.Utf8(), "field": pl.Utf8(),
    "reason": pl.Utf8(),
}

#: Reference (AWS sample) column names -> canonical names; matched case-insensitively.
ALIASES: dict[str, str] = {
    "vin": "vin", "date": "date", "totalvoltage": "total_voltage_v",
    "totalcurrent": "total_current_a", "cellmaxvoltage": "cell_max_v",
    "cellminvoltage": "cell_min_v", "maxtemperature": "max_temperature_c",
    "mintemperature": "min_temperature_c", "label": "label",
    **{s: s for s in SIGNALS},
}

#: Physically plausible ranges; outside them a value is an input error, not data.
_RANGES: dict[str, tuple[float, float]] = {
    "total_voltage_v": (0.0, 2000.0),
    "total_current_a": (-5000.0, 5000.0),
    "cell_max_v": (0.0, 10.0),
    "cell_min_v": (0.0, 10.0),
    "max_temperature_c": (-60.0, 150.0),
    "min_temperature_c": (-60.0, 150.0),
}
_MAX_VIN = 64
_NULL_STRINGS = ["", "nan", "NaN", "NAN", "null", "NULL", "None", "NA", "N/A"]


@dataclass(frozen=True, slots=True)
class ValidatedRecords:
    """Accepted rows (:data:`PACK_SCHEMA`, sorted by vin, date) and rejected rows."""

    records: pl.DataFrame
    rejected: pl.DataFrame

    @property
    def n_rejected(self) -> int:
        return self.rejected.height


def parse_records_csv(data: bytes, *, source: str = "input") -> pl.DataFrame:
    """Daily records from CSV bytes (header required), every column read as text.

    Types are checked by :func:`validate_records`, so that a bad value is reported with
    its VIN and date instead of failing the whole parse.
    """
    try:
        return pl.read_csv(io.BytesIO(data), infer_schema=False, truncate_ragged_lines=False)
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise ValidationError(f"not a readable CSV file: {str(exc).splitlines()[0]}",
                              source=source) from exc


def conform_records(frame: pl.DataFrame, *, source: str = "input") -> pl.DataFrame:
    """Rename reference/canonical column names; raise SchemaError for missing columns.

    Unknown extra columns are dropped (they may be a user's own annotations).
    """
    rename: dict[str, str] = {}
    for col in frame.columns:
        canon = ALIASES.get(col.strip().lower())
        if canon is not None and canon not in rename.values():
            rename[col] = canon
    missing = [c for c in ("vin", "date", *SIGNALS) if c not in rename.values()]
    if missing:
        raise SchemaError(f"missing column(s) {', '.join(missing)}; daily pack records need "
                          f"vin, date, {', '.join(SIGNALS)} (label optional)",
                          field=missing[0], source=source)
    out = frame.select([pl.col(old).alias(new) for old, new in rename.items()])
    for name, dtype in out.schema.items():
        if dtype == pl.Object or isinstance(dtype, pl.List | pl.Struct | pl.Array):
            raise SchemaError(f"column {name!r} holds {dtype} values, not text or numbers",
                              field=name, source=source)
    if "label" not in out.columns:
        out = out.with_columns(pl.lit(None, pl.Utf8()).alias("label"))
    return out


def _as_text(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Utf8).str.strip_chars()


def _date_expr() -> pl.Expr:
    # ISO dates; a timestamp's date part is accepted too (daily records often carry one).
    text = _as_text("date").str.slice(0, 10)
    return text.str.strptime(pl.Date, "%Y-%m-%d", strict=False)


def validate_records(frame: pl.DataFrame, *, source: str = "input",
                     with_rows: bool = False) -> ValidatedRecords:
    """Check every row of a daily-records frame (any column types); never raises for a
    bad row, only for missing columns (:class:`SchemaError`).

    A row is rejected when: the VIN is empty, longer than 64 characters or holds control
    characters; the date is not an ISO date; a signal is not a number, infinite or
    outside its plausible range; cell_min_v > cell_max_v or min > max temperature; the
    label is not 0/1; or another row has the same (vin, date) (both are rejected: which
    one is right cannot be told). ``with_rows``: the accepted rows keep their 0-based
    input ``row`` (Int64) as a last column.
    """
    df = conform_records(frame, source=source).with_row_index("row")
    schema = df.schema
    vin = _as_text("vin")
    dtype = schema["date"]
    if dtype == pl.Date:
        date_p = pl.col("date")
    elif isinstance(dtype, pl.Datetime):
        date_p = pl.col("date").dt.date()
    else:
        date_p = _date_expr()
    exprs: list[pl.Expr] = [vin.alias("vin_s"), _as_text("date").alias("date_s"),
                            date_p.alias("date_p")]
    for s in SIGNALS:
        if schema[s].is_numeric() or schema[s] == pl.Null:
            # Typed input (Parquet, JSON numbers): no text round trip.
            exprs.append(pl.col(s).cast(pl.Float64).fill_nan(None).alias(f"{s}__v"))
            exprs.append(pl.lit(False).alias(f"{s}__bad"))
            continue
        text = _as_text(s)
        null = text.is_null() | text.is_in(_NULL_STRINGS)
        exprs.append(pl.when(null).then(None).otherwise(text.cast(pl.Float64, strict=False))
                     .alias(f"{s}__v"))
        exprs.append((~null & text.cast(pl.Float64, strict=False).is_null()).alias(f"{s}__bad"))
    ltext = _as_text("label")
    lnull = ltext.is_null() | ltext.is_in(_NULL_STRINGS)
    lval = ltext.cast(pl.Float64, strict=False)
    exprs.append(pl.when(lnull).then(None).otherwise(lval).alias("label__v"))
    exprs.append((~lnull & (lval.is_null() | ~lval.is_in([0.0, 1.0]))).alias("label__bad"))
    df = df.select("row", *exprs)

    checks: list[tuple[pl.Expr, str, str]] = [
        (pl.col("vin_s").is_null() | (pl.col("vin_s") == ""), "vin", "empty VIN"),
        (pl.col("vin_s").str.len_chars() > _MAX_VIN, "vin", f"VIN longer than {_MAX_VIN} characters"),
        (pl.col("vin_s").str.contains(r"[\x00-\x1f\x7f]"), "vin", "VIN holds control characters"),
        (pl.col("date_p").is_null(), "date", "not an ISO date (YYYY-MM-DD)"),
    ]
    for s in SIGNALS:
        lo, hi = _RANGES[s]
        v = pl.col(f"{s}__v")
        checks.append((pl.col(f"{s}__bad"), s, "not a number"))
        checks.append((v.is_infinite(), s, "infinite value"))
        checks.append(((v < lo) | (v > hi), s, f"outside the plausible range {lo:g}..{hi:g}"))
    checks.append((pl.col("cell_min_v__v") > pl.col("cell_max_v__v"), "cell_min_v",
                   "cell_min_v is greater than cell_max_v"))
    checks.append((pl.col("min_temperature_c__v") > pl.col("max_temperature_c__v"),
                   "min_temperature_c", "min_temperature_c is greater than max_temperature_c"))
    checks.append((pl.col("label__bad"), "label", "label must be 0 or 1 (or empty)"))
    dup = pl.struct("vin_s", "date_p").is_duplicated() & pl.col("date_p").is_not_null()
    checks.append((dup, "date", "duplicate (vin, date): another row has the same VIN and day"))

    field_e: pl.Expr = pl.lit(None, pl.Utf8)
    reason_e: pl.Expr = pl.lit(None, pl.Utf8)
    for cond, fld, why in reversed(checks):  # the first failing check names the row
        hit = cond.fill_null(False)
        field_e = pl.when(hit).then(pl.lit(fld)).otherwise(field_e)
        reason_e = pl.when(hit).then(pl.lit(why)).otherwise(reason_e)
    df = df.with_columns(field_e.alias("field"), reason_e.alias("reason"))

    bad = df.filter(pl.col("reason").is_not_null())
    rejected = bad.select(pl.col("row").cast(pl.Int64), pl.col("vin_s").alias("vin"),
                          pl.col("date_s").alias("date"), "field", "reason")
    good = df.filter(pl.col("reason").is_null()).select(
        pl.col("vin_s").alias("vin"), pl.col("date_p").alias("date"),
        *[pl.col(f"{s}__v").fill_nan(None).alias(s) for s in SIGNALS],
        pl.col("label__v").cast(pl.Int8).alias("label"),
        *([pl.col("row").cast(pl.Int64)] if with_rows else []),
    ).sort("vin", "date")
    return ValidatedRecords(good, rejected.cast(REJECT_SCHEMA))  # type: ignore[arg-type]


def require_valid(frame: pl.DataFrame, *, source: str = "input") -> pl.DataFrame:
    """Validated records, or :class:`ValidationError` naming the first bad row's VIN,
    date and field (and how many rows are bad)."""
    checked = validate_records(frame, source=source)
    if checked.n_rejected:
        first = checked.rejected.row(0, named=True)
        more = f" ({checked.n_rejected} bad rows in all)" if checked.n_rejected > 1 else ""
        raise ValidationError(
            f"VIN {first['vin']!r}, date {first['date']!r}: {first['reason']}{more}",
            field=first["field"], row=int(first["row"]), source=source)
    return checked.records


def empty_records() -> pl.DataFrame:
    """A frame with :data:`PACK_SCHEMA` and no rows."""
    return pl.DataFrame(schema=PACK_SCHEMA)


def signal_matrix(records: pl.DataFrame) -> np.ndarray:
    """The six signals as a float64 (n, 6) array, NaN where missing."""
    return records.select(SIGNALS).to_numpy().astype(np.float64, copy=False)


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _fast_number(v: object) -> tuple[bool, float | None]:
    """(ok, value) of a JSON scalar for the small-input path: None/NaN is missing; a
    bool, text or infinity is not handled here (ok False: the full path decides)."""
    if v is None:
        return True, None
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False, None
    f = float(v)
    if math.isnan(f):
        return True, None
    return (math.isfinite(f), f)


def validate_small(rows: list[dict[str, object]], *, vin: str | None = None
                   ) -> pl.DataFrame | None:
    """The accepted records of a few JSON rows (one HTTP prediction), checked in plain
    Python, or None when :func:`validate_records` must decide (see
    :func:`small_columns`, whose columns this returns as a sorted frame)."""
    cols = small_columns(rows, vin=vin)
    return None if cols is None else pl.DataFrame(cols, schema=PACK_SCHEMA).sort("vin", "date")


def small_columns(rows: list[dict[str, object]], *, vin: str | None = None
                  ) -> dict[str, list[object]] | None:
    """:func:`validate_small`'s checks, the accepted rows as Python lists per
    :data:`PACK_SCHEMA` column (input order, dates as ``datetime.date``), or None.

    The polars checks have a fixed cost of several ms per call, which dominated a single
    prediction. This path accepts only input that passes every rule of
    :func:`validate_records` (typed numbers, ISO dates, known column names, no
    duplicates); anything else -- any bad or unusual value -- returns None so that the
    full validation produces its exact rejections. The result then equals
    ``validate_records(...).records``.
    """
    if not rows or len(rows) > 400:
        return None
    cols: dict[str, list[object]] = {k: [] for k in PACK_SCHEMA}
    seen: set[tuple[str, dt.date]] = set()
    for r in rows:
        canon: dict[str, object] = {}
        for k, v in r.items():
            c = ALIASES.get(str(k).strip().lower())
            if c is not None:
                if c in canon:
                    return None
                canon[c] = v
        if vin is not None:
            given = canon.get("vin")
            if given is not None and given != vin:
                return None
            canon["vin"] = vin
        v_ = canon.get("vin")
        d_ = canon.get("date")
        if not isinstance(v_, str) or not 0 < len(v_) <= _MAX_VIN or not v_.isprintable():
            return None
        if not isinstance(d_, str) or not _ISO_DAY.match(d_):
            return None
        try:
            day = dt.date.fromisoformat(d_[:10])
        except ValueError:
            return None
        if (v_, day) in seen:
            return None
        seen.add((v_, day))
        vals: dict[str, float | None] = {}
        for s in SIGNALS:
            if s not in canon:
                return None
            ok, f = _fast_number(canon[s])
            lo, hi = _RANGES[s]
            if not ok or (f is not None and not lo <= f <= hi):
                return None
            vals[s] = f
        for a, b in (("cell_min_v", "cell_max_v"), ("min_temperature_c", "max_temperature_c")):
            lo_v, hi_v = vals[a], vals[b]
            if lo_v is not None and hi_v is not None and lo_v > hi_v:
                return None
        ok, lab = _fast_number(canon.get("label"))
        if not ok or lab not in (None, 0.0, 1.0):
            return None
        cols["vin"].append(v_)
        cols["date"].append(day)
        for s in SIGNALS:
            cols[s].append(vals[s])
        cols["label"].append(None if lab is None else int(lab))
    return cols
