"""How one source column becomes one canonical column: units, times, durations, names.

Shared by every reader: :class:`Field` (one planned column), :class:`ColumnLookup` (find a
column by its normalized name and unit suffix), the unit scales, and the vectorized
conversions (:func:`datetime_to_epoch`, :func:`duration_seconds`) that turn text into
numbers without a Python loop per row.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl

from ..errors import SchemaError
from .durations import parse_durations, parse_durations_series

__all__ = ["Field", "ColumnLookup", "datetime_to_epoch", "duration_seconds", "time_scale",
           "unit_scale", "OLE_EPOCH_DAYS"]

_TIME_SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "min": 60.0, "h": 3600.0}

#: Naive datetime layouts tried in order (the file's local time; see ``timezone``).
_NAIVE_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%m/%d/%Y %H:%M:%S%.f",
    "%m/%d/%Y %I:%M:%S %p",
    "%Y-%m-%d %I:%M:%S %p",
    "%m/%d/%Y %H:%M",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
)
#: Layouts with an explicit UTC offset (a trailing ``Z`` is rewritten to ``+00:00``).
_AWARE_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%:z",
    "%Y-%m-%d %H:%M:%S%.f%:z",
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
)


def time_scale(unit: str) -> float:
    """Seconds per ``unit`` (s, ms, us, min, h)."""
    try:
        return _TIME_SCALE[unit]
    except KeyError:
        raise SchemaError(f"unknown time unit {unit!r}; use one of {sorted(_TIME_SCALE)}") from None


def datetime_to_epoch(
    expr: pl.Expr, *, timezone: str = "UTC", fmt: str | None = None
) -> pl.Expr:
    """Text timestamps -> float seconds since the epoch (UTC); null where unparseable.

    Naive timestamps are read as local time in ``timezone`` (IANA name, default UTC);
    timestamps with an offset (``+02:00``, ``Z``) are exact. ``fmt`` is a strptime layout;
    without it a fixed list of ISO-8601 and US layouts is tried in order, the first that
    reads a value wins (layout by layout, stopping once every value is read).
    """
    s = expr.str.strip_chars().str.replace(r"Z$", "+00:00")
    if fmt is not None:
        return _layout(s, fmt, timezone)
    layouts = [_layout(pl.col("__text"), f, timezone).alias("__epoch")
               for f in (*_NAIVE_FORMATS, *_AWARE_FORMATS)]

    def first_layout(text: pl.Series) -> pl.Series:
        # The coalesce of every layout, layout by layout, stopping once every value is
        # read (or is a number, which the callers read as epoch s instead): a file has
        # one layout, so each value is parsed about once instead of twelve times.
        frame = text.alias("__text").to_frame()
        numbers = text.len() - text.cast(pl.Float64, strict=False).null_count()
        out: pl.Series | None = None
        for layout in layouts:
            got = frame.select(layout).to_series()
            out = got if out is None else out.fill_null(got)
            unread = out.null_count() - text.null_count()  # null counts: no pass
            if unread == 0:
                break
            if unread == numbers:  # perhaps only numbers are left: make sure
                missing = out.is_null() & text.is_not_null()
                if text.filter(missing).cast(pl.Float64, strict=False).null_count() == 0:
                    break
        assert out is not None
        return out.alias(text.name)

    return s.map_batches(first_layout, return_dtype=pl.Float64, is_elementwise=True)


def _layout(s: pl.Expr, fmt: str, timezone: str) -> pl.Expr:
    """Text in one strptime layout -> epoch s (null where it does not fit); a naive layout
    is local time in ``timezone``."""
    if "%z" in fmt or "%:z" in fmt:
        dt = s.str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC")
        return dt.dt.epoch("us").cast(pl.Float64) / 1e6
    dt = s.str.to_datetime(fmt, strict=False, time_unit="us")
    if timezone != "UTC":
        dt = dt.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
    return dt.dt.epoch("us").cast(pl.Float64) / 1e6


@dataclass(frozen=True, slots=True)
class Field:
    """How one source column becomes one parsed column.

    ``kind``: ``float`` (value * scale + offset), ``int`` (an integral number, ``1.0`` is
    fine), ``str``, ``datetime`` (text -> epoch s via :func:`datetime_to_epoch`; numbers are
    epoch s, or ms when > 1e11) or ``epoch`` (numbers only, already scaled to seconds by
    ``scale``). ``strict=False`` turns an unreadable value into null instead of rejecting
    the row; ``probe_only`` fields are parsed from the first lines only (to calibrate).
    """

    out: str
    source: str
    kind: Literal["float", "int", "str", "datetime", "epoch", "duration"] = "float"
    scale: float = 1.0
    offset: float = 0.0
    required: bool = False
    strict: bool = True
    timezone: str = "UTC"
    fmt: str | None = None
    canonical: str | None = None  # the canonical/reference column it feeds, for messages
    probe_only: bool = False  # only read from the first lines, to calibrate the time origin


def _norm(name: str) -> tuple[str, str | None]:
    """('Current(A)' | 'Current (A)' | 'current_a') -> key 'current', unit 'a'."""
    unit = None
    m = re.search(r"(?:\(([^)]*)\)|\[([^\]]*)\])\s*$", name)
    base = name
    if m:
        unit = (m.group(1) if m.group(1) is not None else m.group(2)).strip().lower()
        base = name[: m.start()]
    key = re.sub(r"[^0-9a-z]", "", base.lower())
    return key, unit


class ColumnLookup:
    """Find columns by normalized name, ignoring case, spaces, underscores and a unit suffix."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self._by_key: dict[str, tuple[str, str | None]] = {}
        for c in self.columns:
            key, unit = _norm(c)
            self._by_key.setdefault(key, (c, unit))

    def find(self, *keys: str, prefix: bool = False) -> tuple[str, str | None] | None:
        """(source column, unit) for the first key present, else None."""
        for k in keys:
            if k in self._by_key:
                return self._by_key[k]
        if prefix:
            for k in keys:
                for key, hit in self._by_key.items():
                    if key.startswith(k):
                        return hit
        return None


_UNIT_SCALE = {
    None: 1.0, "": 1.0, "a": 1.0, "v": 1.0, "s": 1.0, "ah": 1.0, "wh": 1.0, "c": 1.0,
    "ma": 1e-3, "mv": 1e-3, "mah": 1e-3, "mwh": 1e-3, "ms": 1e-3,
    "min": 60.0, "h": 3600.0, "hr": 3600.0, "kwh": 1e3, "sec": 1.0,
    "seconds": 1.0, "second": 1.0, "minutes": 60.0, "hours": 3600.0,
    "°c": 1.0, "degc": 1.0, "ºc": 1.0, "?": 1.0, "a.h": 1.0, "ma.h": 1e-3, "w.h": 1.0,
}


def unit_scale(unit: str | None, column: str) -> float:
    """Factor from a column's unit suffix to A, V, s, Ah, Wh (SchemaError if unknown)."""
    try:
        return _UNIT_SCALE[unit]
    except KeyError:
        raise SchemaError(f"unsupported unit {unit!r} in column {column!r}", field=column) from None


@functools.lru_cache(maxsize=1024)
def _field_exprs(f: Field, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr | None, pl.Expr]:
    """(value, fail condition, reason) for one field over a column of ``dtype``; the
    condition is None where no value can fail (a number column read as a number).

    Cached: expressions are immutable, and building them costs more than evaluating them
    on a probe of 1,000 lines (every file of a fleet has the same few plans)."""
    col = pl.col(f.source)
    is_text = dtype == pl.Utf8
    if is_text:
        s = col.str.strip_chars()
        s = pl.when(s == "").then(None).otherwise(s)
    else:
        s = col
    present = s.is_not_null()
    shown = pl.concat_str([pl.lit("'"), s.cast(pl.Utf8), pl.lit("'")])

    bad: pl.Expr | None
    if f.kind == "str":
        value = s.cast(pl.Utf8)
        bad = None
        reason = pl.lit("")
    elif f.kind == "int" and dtype.is_integer():
        value = s.cast(pl.Int64)
        bad = None
        reason = pl.lit("")
    elif f.kind == "int":
        num = s.cast(pl.Float64, strict=False) if is_text else s.cast(pl.Float64)
        integral = num.is_finite() & (num == num.floor())
        value = pl.when(integral).then(num.cast(pl.Int64, strict=False)).otherwise(None)
        bad = present & ~integral.fill_null(False)
        reason = pl.concat_str([pl.lit("not an integer: "), shown])
    elif f.kind == "datetime":
        if is_text:
            num = s.cast(pl.Float64, strict=False)
            parsed = datetime_to_epoch(s, timezone=f.timezone, fmt=f.fmt)
            value = pl.coalesce(_epoch_number(num, f.scale), parsed)
        elif isinstance(dtype, pl.Datetime):
            dt = s if dtype.time_zone is not None or f.timezone == "UTC" else \
                s.dt.replace_time_zone(f.timezone, ambiguous="earliest", non_existent="null")
            value = dt.dt.epoch("us").cast(pl.Float64) / 1e6
        elif isinstance(dtype, pl.Date):
            value = s.cast(pl.Datetime("us")).dt.epoch("us").cast(pl.Float64) / 1e6
        else:
            num = s.cast(pl.Float64, strict=False)
            value = _epoch_number(num, f.scale)
        bad = present & value.is_null()
        reason = pl.concat_str([pl.lit("not a timestamp: "), shown])
    elif f.kind == "duration":
        num = s.cast(pl.Float64, strict=False) if is_text else s.cast(pl.Float64)
        value = num * f.scale
        if is_text:
            value = s.map_batches(functools.partial(_number_or_duration, scale=f.scale),
                                  return_dtype=pl.Float64, is_elementwise=True)
        bad = present & value.is_null()
        reason = pl.concat_str([pl.lit("not a duration: "), shown])
    else:  # float / epoch
        num = s.cast(pl.Float64, strict=False)
        value = num * f.scale + f.offset if (f.scale != 1.0 or f.offset != 0.0) else num
        # A number column (the typed fast path, Parquet) has nothing left to fail.
        bad = None if dtype.is_numeric() else present & num.is_null()
        reason = pl.concat_str([pl.lit("not a number: "), shown])
    if not f.strict:
        bad = None
    if f.required:
        bad = ~present if bad is None else bad | ~present
        reason = pl.when(~present).then(pl.lit("missing value")).otherwise(reason)
    return value, bad, reason


def _number_or_duration(text: pl.Series, scale: float) -> pl.Series:
    """``coalesce(number * scale, duration)`` of stripped text; the duration parse is
    skipped when every value is a number (a test time in seconds written as text)."""
    num = text.cast(pl.Float64, strict=False) * scale
    if num.null_count() == text.null_count():
        return num
    return num.fill_null(parse_durations_series(text))


def duration_seconds(text: pl.Expr) -> pl.Expr:
    """``[Nd ]hh:mm:ss[.fff]`` / ``N-hh:mm:ss`` text -> seconds (null when not a duration).

    Hours may exceed 24 (Neware writes ``123:04:05``); seconds may have one digit
    (Maccor writes ``0d 00:00:5``). Parsed by a compiled loop over the text
    (:mod:`.durations`): string expressions cost several passes per part.
    """
    return parse_durations(text)


#: Days from the OLE automation epoch (1899-12-30) to the Unix epoch.
OLE_EPOCH_DAYS = 25569.0


def _epoch_number(num: pl.Expr, scale: float) -> pl.Expr:
    """Numeric time -> s: scaled by ``scale``, or (scale 1) ms when it is > 1e11."""
    if scale != 1.0:
        return num * scale
    return pl.when(num > 1e11).then(num / 1000.0).otherwise(num)
