"""Conforming a frame to a column layout: the one function every layer uses for it.

(:func:`chargetracker.schema.conform` is the canonical-measurement form of it, with the
reader-facing messages; :func:`chargetracker.schema.validate` then judges the rows.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from .errors import SchemaError

__all__ = ["conform_frame"]


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
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SchemaError(f"missing required column(s) {missing}", field=missing[0], source=table)
    cols: list[pl.Series] = []
    for name, dtype in schema.items():
        if name not in frame.columns:
            cols.append(pl.Series(name, [None] * frame.height, dtype=dtype))
            continue
        s = frame.get_column(name)
        if s.dtype != dtype:
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
