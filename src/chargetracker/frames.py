"""Conforming a frame to a column layout: the one function every layer uses for it.

(:func:`chargetracker.schema.conform` is the canonical-measurement form of it, with the
reader-facing messages; :func:`chargetracker.schema.validate` then judges the rows.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from .errors import SchemaError

__all__ = ["ColumnLayout", "column", "conform_frame", "frame_from_columns", "frame_from_series", "gather",
           "null_column", "same_dtype"]


def conform_frame(
    frame: pl.DataFrame,
    schema: Mapping[str, pl.DataType],
    *,
    table: str,
    required: Sequence[str] = (),
    fill_nan: bool = False,
) -> pl.DataFrame:
    """Select ``schema``'s columns in order, cast strictly, add absent optional ones as null.

    Extra columns are ignored. Raises :class:`SchemaError` naming the table (as source)
    and the column when a required column is missing or a column cannot be cast (e.g.
    text in ``cycle``). ``fill_nan`` turns NaN into null (a metric that is undefined,
    like the efficiency of a cycle without charge, is missing, not a number). A frame
    that already has the layout is returned with its columns untouched (no copy).
    """
    have = set(frame.columns)  # the list is rebuilt on every access
    missing = [c for c in required if c not in have]
    if missing:
        raise SchemaError(f"missing required column(s) {missing}", field=missing[0], source=table)
    cols: list[pl.Series] = []
    for name, dtype in schema.items():
        if name not in have:
            cols.append(pl.Series(name, [None] * frame.height, dtype=dtype))
            continue
        s = frame.get_column(name)
        if not same_dtype(s.dtype, dtype):
            if s.dtype == pl.Null:
                s = s.cast(dtype)
            else:
                try:
                    s = s.cast(dtype, strict=True)
                except pl.exceptions.PolarsError as exc:
                    bad = _first_bad(s, dtype)
                    raise SchemaError(
                        f"cannot store {s.dtype} as {dtype}"
                        + (f" (value {s[bad]!r})" if bad is not None else ""),
                        field=name, row=bad, source=table,
                    ) from exc
        if fill_nan and dtype == pl.Float64:
            s = s.fill_nan(None)
        cols.append(s)
    return pl.DataFrame(cols)


def _first_bad(s: pl.Series, dtype: pl.DataType) -> int | None:
    try:
        casted = s.cast(dtype, strict=False)
    except pl.exceptions.PolarsError:
        return None
    idx = (casted.is_null() & s.is_not_null()).arg_true()
    return int(idx[0]) if len(idx) else None


# -- building frames from NumPy columns, per batch ------------------------------------
#
# A live fleet's engine output is two ~30-column tables per 1-second batch, often of a few
# hundred rows: the fixed cost of each construction is what counts. ``pl.Series(name,
# ndarray)`` spends ~4 us per column in Python checks before Polars' own constructor
# (which copies the values in ~0.3 us), and ``Series.gather`` goes through the expression
# engine (~40 us, for 30 rows or 10,000). The constructors below call Polars' constructors
# directly when this Polars has them (same values, same dtypes; tests/test_frames.py holds
# the two paths equal) and fall back to the public API otherwise.
try:
    from polars._plr import PyDataFrame as _PyDataFrame
    from polars._plr import PySeries as _PySeries
except ImportError:  # another Polars layout: the public constructors below
    _PyDataFrame = _PySeries = None

_FAST = _PySeries is not None and all(
    hasattr(_PySeries, m) for m in ("new_f64", "new_i64", "new_u32", "gather_with_series"))


def gather(series: pl.Series, index: np.ndarray) -> pl.Series:
    """``series.gather(index)`` for non-negative int indices (out of range: Polars'
    error), without the expression engine's fixed cost."""
    if not _FAST:
        return series.gather(index)
    idx = _PySeries.new_u32("", np.ascontiguousarray(index, dtype=np.uint32), True)
    return pl.Series._from_pyseries(series._s.gather_with_series(idx))


#: How :func:`column` builds a column: from float64 or int64 NumPy values directly.
_F64, _I64, _OTHER = 0, 1, 2


#: Dtypes without parameters: equal when their classes are.
_PLAIN = (pl.String, pl.Int64, pl.Int32, pl.Float64, pl.Boolean, pl.UInt32)


def same_dtype(have: pl.DataType, want: pl.DataType) -> bool:
    """``have == want``; a plain dtype matches by class (Polars' == costs ~3 us a call,
    paid per column per batch)."""
    return type(have) is type(want) if type(want) in _PLAIN else have == want


def _tag(dtype: pl.DataType) -> int:
    return _F64 if dtype == pl.Float64 else _I64 if dtype == pl.Int64 else _OTHER


class ColumnLayout:
    """A table schema prepared for :func:`frame_from_columns`: comparing Polars dtypes
    costs ~3 us each, so it is done once per schema, not per column per batch."""

    __slots__ = ("schema", "columns")

    def __init__(self, schema: Mapping[str, pl.DataType]) -> None:
        self.schema = dict(schema)
        self.columns = tuple((name, dtype, _tag(dtype)) for name, dtype in schema.items())


def column(name: str, values: np.ndarray | pl.Series, dtype: pl.DataType, tag: int | None = None) -> pl.Series:
    """A column of ``dtype`` from NumPy values (float64 / int64 copied as they are, NaN
    kept) or from a Series (renamed, cast when its dtype differs). ``tag``: the
    :class:`ColumnLayout`'s code for ``dtype`` when the caller has it."""
    if isinstance(values, pl.Series):
        s = values if same_dtype(values.dtype, dtype) else values.cast(dtype)
        return s if s.name == name else s.alias(name)
    if tag is None:
        tag = _tag(dtype)
    if _FAST:
        if tag == _F64 and values.dtype == np.float64:
            return pl.Series._from_pyseries(_PySeries.new_f64(name, np.ascontiguousarray(values), False))
        if tag == _I64 and values.dtype == np.int64:
            return pl.Series._from_pyseries(_PySeries.new_i64(name, np.ascontiguousarray(values), True))
    return pl.Series(name, values, dtype=dtype)


def frame_from_series(cols: Sequence[pl.Series]) -> pl.DataFrame:
    """``pl.DataFrame(cols)`` (Series of equal length, distinct names) without the public
    constructor's per-column checks (~3 us a column)."""
    if _FAST and _PyDataFrame is not None:
        return pl.DataFrame._from_pydf(_PyDataFrame([c._s for c in cols]))
    return pl.DataFrame(cols)


#: The last all-null column made per (name, dtype), reused while the length repeats (a
#: live fleet's batches): Series are immutable, so one serves every frame. Only columns
#: up to ``_NULLS_MAX_ROWS`` are kept (a large file's would stay for the process's life).
_NULLS: dict[tuple[str, type], pl.Series] = {}
_NULLS_MAX_ROWS = 65_536


def null_column(name: str, dtype: pl.DataType, n: int) -> pl.Series:
    """An all-null column of ``n`` rows (``pl.lit(None)`` of a select, materialized once)."""
    key = (name, type(dtype))
    s = _NULLS.get(key)
    if s is None or len(s) != n or not same_dtype(s.dtype, dtype):
        s = pl.Series(name, [None], dtype=dtype).new_from_index(0, n) if n else pl.Series(name, [], dtype=dtype)
        if n <= _NULLS_MAX_ROWS:
            _NULLS[key] = s
    return s


def frame_from_columns(columns: Mapping[str, np.ndarray | pl.Series],
                       schema: Mapping[str, pl.DataType] | ColumnLayout) -> pl.DataFrame:
    """A frame with ``schema``'s columns in order, from NumPy arrays or Series of equal
    length (see :func:`column`); ~0.5 us per column instead of ~5 us with a
    :class:`ColumnLayout` made once."""
    layout = schema if isinstance(schema, ColumnLayout) else ColumnLayout(schema)
    return frame_from_series([column(name, columns[name], dtype, tag) for name, dtype, tag in layout.columns])
