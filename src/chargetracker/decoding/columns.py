"""Canonical columns and dtypes of a decoded batch (shared by every ingest format).

Accepted beyond the exact dtypes: integers for floats, integral floats for the integer
labels, numeric text, integer cell ids, ``ts`` as a timestamp or ISO-8601 text
(converted to s since the epoch, naive = UTC). A column of the wrong type raises
:class:`~chargetracker.errors.SchemaError` naming it (and the first bad row).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ..errors import SchemaError
from ..schema import MEASUREMENT_SCHEMA, conform
from .structure import short

__all__ = ["canonicalize", "is_fatal", "FLOAT_COLUMNS", "INT_COLUMNS", "NUMERIC_COLUMNS"]

FLOAT_COLUMNS = ("voltage_v", "current_a", "temperature_c", "step_time_s")
INT_COLUMNS = ("cycle", "step")
NUMERIC_COLUMNS = ("ts", *FLOAT_COLUMNS, *INT_COLUMNS)
_FLOAT_COLUMNS = FLOAT_COLUMNS
_INT_COLUMNS = INT_COLUMNS


def is_fatal(exc: BaseException) -> bool:
    """True for exceptions that must propagate (not input problems). Polars' native
    panics derive from BaseException, so input handlers catch that and re-raise these."""
    return isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit | MemoryError)


_fatal = is_fatal


# -- column types --------------------------------------------------------------------
def canonicalize(frame: pl.DataFrame, *, source: str = "api") -> tuple[pl.DataFrame, list[str]]:
    """Canonical columns and dtypes; a column of the wrong type raises SchemaError naming it.

    Accepted beyond the exact dtypes: integers for floats, integral floats for the integer
    labels, numeric text, integer cell ids, ``ts`` as a timestamp or ISO-8601 text
    (converted to s since the epoch, naive = UTC). Returns (frame, ignored column names).
    """
    ignored = [c for c in frame.columns if c not in MEASUREMENT_SCHEMA]
    exprs: list[pl.Expr] = []
    for name in frame.columns:
        if name not in MEASUREMENT_SCHEMA:
            continue
        col = frame.get_column(name)
        dtype = col.dtype
        if dtype == pl.Null:
            continue
        if name == "cell_id":
            if isinstance(dtype, pl.Categorical | pl.Enum) or dtype.is_integer():
                exprs.append(pl.col(name).cast(pl.Utf8))
            elif dtype != pl.Utf8:
                raise SchemaError(f"expected a string, got {_dtype_name(dtype)}", field=name,
                                  source=source)
        elif name == "ts":
            exprs.append(_ts_expr(col, source))
        elif name in _FLOAT_COLUMNS:
            if dtype.is_numeric():
                if dtype != pl.Float64:
                    exprs.append(pl.col(name).cast(pl.Float64))
            elif dtype != pl.Utf8:  # text: conform() names the first unreadable row
                raise SchemaError(f"expected a number, got {_dtype_name(dtype)}", field=name,
                                  source=source)
        elif name in _INT_COLUMNS:
            exprs.append(_int_expr(col, source))
    if exprs:
        frame = frame.with_columns(exprs)
    return conform(frame, source=source), ignored


def _dtype_name(dtype: pl.DataType) -> str:
    if dtype == pl.Boolean:
        return "a boolean"
    if isinstance(dtype, pl.List | pl.Array):
        return "an array"
    if isinstance(dtype, pl.Struct):
        return "an object"
    if dtype.is_numeric():
        return "a number"
    return str(dtype)


def _first(mask: pl.Series) -> int:
    return int(mask.arg_true()[0])


def _ts_expr(col: pl.Series, source: str) -> pl.Expr:
    name = col.name
    dtype = col.dtype
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            return pl.col(name).dt.replace_time_zone("UTC").dt.epoch("us").cast(pl.Float64) / 1e6
        return pl.col(name).dt.epoch("us").cast(pl.Float64) / 1e6
    if dtype == pl.Date:
        return pl.col(name).cast(pl.Datetime("us")).dt.epoch("us").cast(pl.Float64) / 1e6
    if dtype.is_numeric():
        return pl.col(name).cast(pl.Float64)
    if dtype == pl.Utf8:
        as_float = col.cast(pl.Float64, strict=False)
        bad = as_float.is_null() & col.is_not_null()
        if not bad.any():
            return pl.lit(as_float).alias(name)
        try:  # ISO-8601 text (offsets honoured, naive = UTC)
            parsed = col.str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
        except BaseException as exc:  # unparseable layout
            if _fatal(exc):
                raise
            parsed = pl.Series(name, [None] * len(col), dtype=pl.Datetime("us", "UTC"))
        epoch = parsed.dt.epoch("us").cast(pl.Float64) / 1e6
        merged = as_float.fill_null(epoch)
        still = merged.is_null() & col.is_not_null()
        if still.any():
            row = _first(still)
            raise SchemaError(f"cannot read {short(col[row])} as seconds since the epoch or an "
                              "ISO-8601 time", field=name, row=row, source=source)
        return pl.lit(merged).alias(name)
    raise SchemaError(f"expected a number (s since the epoch) or a timestamp, got "
                      f"{_dtype_name(dtype)}", field=name, source=source)


def _int_expr(col: pl.Series, source: str) -> pl.Expr:
    name = col.name
    dtype = col.dtype
    if dtype == pl.Int64:
        return pl.col(name)
    if dtype.is_integer():
        casted = col.cast(pl.Int64, strict=False)
        over = casted.is_null() & col.is_not_null()
        if over.any():
            raise SchemaError("integer out of range", field=name, row=_first(over), source=source)
        return pl.lit(casted).alias(name)
    if dtype.is_float() or dtype == pl.Utf8:
        values = col.cast(pl.Float64, strict=False)
        unreadable = values.is_null() & col.is_not_null()
        if unreadable.any():
            row = _first(unreadable)
            raise SchemaError(f"cannot read {short(col[row])} as an integer", field=name, row=row,
                              source=source)
        arr = values.to_numpy()
        finite = np.isfinite(arr)
        with np.errstate(invalid="ignore"):
            bad = ~np.isnan(arr) & (~finite | (arr != np.floor(arr)) | (np.abs(arr) > 2.0**62))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise SchemaError(f"{short(col[row])} is not an integer", field=name, row=row, source=source)
        return pl.lit(values.fill_nan(None).cast(pl.Int64)).alias(name)
    raise SchemaError(f"expected an integer, got {_dtype_name(dtype)}", field=name, source=source)
