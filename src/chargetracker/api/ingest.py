"""Decoding of ingest bodies into canonical measurement frames.

Formats (by ``Content-Type``):

==========================================  =======================================
``application/json``                        array of measurement objects, or
                                            ``{"measurements": [...] | {col: [...]},
                                            "cells": [...]}``
``application/x-ndjson``                    one measurement object per line
``text/csv``                                header row with canonical column names
``application/vnd.apache.arrow.stream``     Arrow IPC stream (fastest)
``application/vnd.apache.arrow.file``       Arrow IPC file
``application/vnd.apache.parquet``          Parquet
==========================================  =======================================

Problems with the *batch* (malformed JSON, a column of the wrong type, a missing
required column) raise :class:`~chargetracker.errors.SchemaError` naming the field and,
when known, the row: the API answers 422. Problems with single *rows* (NaN, out of
range, missing value) are left to the pipeline, which keeps the good rows and stores the
bad ones as dead letters. Everything is vectorized; Python only walks rows on the error
path, to name the culprit.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from pydantic import ValidationError as PydanticValidationError

from ..errors import SchemaError
from ..schema import CELL_SCHEMA, MEASUREMENT_SCHEMA, conform
from .errors import ApiError
from .models import CellRecord

__all__ = ["MEDIA_TYPES", "ParsedBatch", "media_format", "parse_body", "canonicalize",
           "cells_frame"]

#: Content-Type -> format name.
MEDIA_TYPES: dict[str, str] = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "text/csv": "csv",
    "application/vnd.apache.arrow.stream": "arrow",
    "application/vnd.apache.arrow.file": "arrow-file",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
}

_FLOAT_COLUMNS = ("voltage_v", "current_a", "temperature_c", "step_time_s")
_INT_COLUMNS = ("cycle", "step")
_I64 = (-(2**63), 2**63 - 1)


@dataclass
class ParsedBatch:
    """A decoded body: canonical measurements (may be empty) and optional cell metadata."""

    frame: pl.DataFrame
    cells: pl.DataFrame | None = None
    ignored_columns: list[str] = field(default_factory=list)


def media_format(content_type: str | None) -> tuple[str, str | None]:
    """(format name, charset) of a Content-Type header; 415 when unsupported."""
    if not content_type:
        raise ApiError(415, "missing Content-Type; use one of " + ", ".join(sorted(MEDIA_TYPES)),
                       field="Content-Type")
    main, _, params = content_type.partition(";")
    fmt = MEDIA_TYPES.get(main.strip().lower())
    if fmt is None:
        raise ApiError(415, f"unsupported Content-Type {main.strip()[:100]!r}; use one of "
                       + ", ".join(sorted(MEDIA_TYPES)), field="Content-Type")
    charset = None
    for p in params.split(";"):
        k, _, v = p.partition("=")
        if k.strip().lower() == "charset":
            charset = v.strip().strip('"').lower() or None
    return fmt, charset


# -- entry point ---------------------------------------------------------------------
def parse_body(body: bytes, fmt: str, charset: str | None = None, *,
               source: str = "api") -> ParsedBatch:
    """Decode ``body`` of format ``fmt`` (see :data:`MEDIA_TYPES`) into a ParsedBatch."""
    if not body.strip():
        raise ApiError(422, "empty request body: send a batch of measurements", code="empty_batch")
    if charset and charset.replace("-", "") not in ("utf8", "usascii", "ascii"):
        if fmt in ("json", "ndjson"):
            raise ApiError(422, f"JSON must be UTF-8, not {charset!r}", field="Content-Type")
        if fmt == "csv":
            try:
                body = body.decode(charset).encode("utf-8")
            except (LookupError, UnicodeDecodeError) as exc:
                raise ApiError(422, f"cannot decode the CSV body as {charset!r}: {exc}",
                               field="Content-Type") from None
    cells = None
    if fmt == "json":
        raw, cells = _json(body)
    elif fmt == "ndjson":
        raw = _ndjson(body)
    elif fmt == "csv":
        raw = _binary(lambda: pl.read_csv(io.BytesIO(body), infer_schema=False), "CSV")
    elif fmt == "arrow":
        raw = _binary(lambda: pl.read_ipc_stream(io.BytesIO(body)), "an Arrow IPC stream")
    elif fmt == "arrow-file":
        raw = _binary(lambda: pl.read_ipc(io.BytesIO(body)), "an Arrow IPC file")
    elif fmt == "parquet":
        raw = _binary(lambda: pl.read_parquet(io.BytesIO(body)), "Parquet")
    else:  # pragma: no cover - media_format only yields the above
        raise ApiError(415, f"unsupported format {fmt!r}")
    if raw.width == 0 and raw.height == 0:
        return ParsedBatch(pl.DataFrame(schema=MEASUREMENT_SCHEMA), cells)
    try:
        frame, ignored = canonicalize(raw, source=source)
    except pl.exceptions.PanicException as exc:  # a BaseException: never let it escape
        raise ApiError(422, f"cannot convert the batch to the canonical schema: {exc}",
                       code="invalid_input") from None
    return ParsedBatch(frame, cells, ignored)


def _fatal(exc: BaseException) -> bool:
    """True for exceptions that must propagate (not input problems)."""
    return isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit | MemoryError)


def _binary(read: Any, what: str) -> pl.DataFrame:
    try:
        return read()  # type: ignore[no-any-return]
    except BaseException as exc:  # PanicException derives from BaseException
        if _fatal(exc):
            raise
        msg = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise ApiError(422, f"the body is not valid {what}: {msg}", code="malformed_body") from None


# -- JSON ----------------------------------------------------------------------------
def _loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise ApiError(422, f"the body is not valid UTF-8 (byte {exc.start})",
                       code="malformed_body") from None
    except json.JSONDecodeError as exc:
        raise ApiError(422, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
                       f"(char {exc.pos})", code="malformed_body",
                       details={"line": exc.lineno, "column": exc.colno, "position": exc.pos}) from None
    except RecursionError:
        raise ApiError(422, "malformed JSON: nested too deeply", code="malformed_body") from None


#: A JSON boolean as the value of a numeric canonical column. Polars would read it as
#: 0/1, so such bodies take the slow path, which names the row.
_BOOL_VALUE = re.compile(
    rb'"(?:ts|voltage_v|current_a|temperature_c|cycle|step|step_time_s)"\s*:\s*(?:true|false)')
_NUMERIC = ("ts", "voltage_v", "current_a", "temperature_c", "cycle", "step", "step_time_s")


def _has_bool_value(body: bytes) -> bool:
    # A plain substring test first (memchr speed); the regex only when it could match.
    return (b"true" in body or b"false" in body) and _BOOL_VALUE.search(body) is not None


def _json(body: bytes) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    head = body.lstrip()[:1]
    if head == b"[":
        if not _has_bool_value(body):
            try:
                # Fast path: Polars' JSON reader (Rust) for the common array-of-objects body.
                return pl.read_json(io.BytesIO(body), infer_schema_length=None), None
            except BaseException as exc:
                if _fatal(exc):
                    raise
        # Slow path, only for bodies Polars refused: say exactly what is wrong.
        return _rows_frame(_loads(body), "measurements"), None
    if head != b"{":
        doc = _loads(body)  # raises for malformed JSON
        raise ApiError(422, "expected a JSON array of measurement objects or an object "
                       f"{{\"measurements\": [...], \"cells\": [...]}}, got {_json_type(doc)}",
                       code="invalid_input")
    doc = _loads(body)
    unknown = sorted(set(doc) - {"measurements", "cells"})
    if unknown:
        raise ApiError(422, f"unknown key {unknown[0]!r} in the batch object; expected "
                       "'measurements' and/or 'cells'", field=unknown[0])
    meas = doc.get("measurements", [])
    if isinstance(meas, list):
        frame = _rows_frame(meas, "measurements")
    elif isinstance(meas, dict):
        frame = _columns_frame(meas)
    else:
        raise ApiError(422, "'measurements' must be an array of objects or an object of "
                       f"column arrays, got {_json_type(meas)}", field="measurements")
    cells = doc.get("cells")
    return frame, (cells_frame(cells) if cells else None)


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(v), type(v).__name__)


def _rows_frame(rows: Any, where: str) -> pl.DataFrame:
    if not isinstance(rows, list):
        raise ApiError(422, f"{where} must be an array of objects, got {_json_type(rows)}",
                       field=where)
    if not rows:
        return pl.DataFrame()
    if not all(type(r) is dict for r in rows):
        bad = next(i for i, r in enumerate(rows) if type(r) is not dict)
        raise SchemaError(f"expected a measurement object, got {_json_type(rows[bad])}",
                          field=where, row=bad)
    for name in _NUMERIC:
        hit = next((i for i, r in enumerate(rows) if type(r.get(name)) is bool), None)
        if hit is not None:
            raise SchemaError("expected a number, got a boolean", field=name, row=hit)
    try:
        return pl.from_dicts(rows, infer_schema_length=None)
    except BaseException as exc:  # mixed types Polars cannot unify: find the column
        if _fatal(exc):
            raise
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return _columns_frame({k: [r.get(k) for r in rows] for k in keys})


def _columns_frame(columns: dict[str, Any]) -> pl.DataFrame:
    lengths = {len(v) for v in columns.values() if isinstance(v, list)}
    data: dict[str, pl.Series] = {}
    for name, values in columns.items():
        if not isinstance(values, list):
            raise SchemaError(f"a column must be an array, got {_json_type(values)}", field=name)
        if name not in MEASUREMENT_SCHEMA:
            # Not canonical: only reported as ignored, never decoded.
            data[name] = pl.Series(name, [None] * len(values), dtype=pl.Null)
            continue
        data[name] = _json_column(name, values)
    if len(lengths) > 1:
        raise ApiError(422, f"columns have different lengths {sorted(lengths)}",
                       field="measurements")
    return pl.DataFrame(data)


def _json_column(name: str, values: list[Any]) -> pl.Series:
    try:
        series = pl.Series(name, values, strict=True)
    except BaseException as exc:
        if _fatal(exc):
            raise
    else:
        if not (name in _NUMERIC and series.dtype.is_integer()
                and any(type(v) is bool for v in values)):
            return series
    # Only when Polars refused the values (e.g. ints mixed with floats): look closer.
    kinds = [_json_type(v) for v in values]
    present = [k for k in kinds if k != "null"]
    if present and all(k == "a number" for k in present):
        return pl.Series(name, values, dtype=pl.Float64, strict=False)
    first = present[0] if present else "null"
    bad = next((i for i, k in enumerate(kinds) if k not in ("null", first)), None)
    got = kinds[bad] if bad is not None else "unknown"
    raise SchemaError(f"mixed value types: {got} among {first} values", field=name, row=bad)


def _ndjson(body: bytes) -> pl.DataFrame:
    if not _has_bool_value(body):
        try:
            return pl.read_ndjson(io.BytesIO(body), infer_schema_length=None)
        except BaseException as exc:
            if _fatal(exc):
                raise
    rows = []
    for lineno, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except UnicodeDecodeError:
            raise ApiError(422, f"line {lineno}: not valid UTF-8", code="malformed_body",
                           details={"line": lineno}) from None
        except json.JSONDecodeError as exc:
            raise ApiError(422, f"malformed JSON on line {lineno}: {exc.msg} at column {exc.colno}",
                           code="malformed_body", details={"line": lineno, "column": exc.colno}) from None
        except RecursionError:
            raise ApiError(422, f"line {lineno}: nested too deeply", code="malformed_body") from None
    return _rows_frame(rows, "line")


# -- cells ---------------------------------------------------------------------------
def cells_frame(cells: Any) -> pl.DataFrame:
    """Validated cell metadata records -> CELL_SCHEMA frame (attributes as JSON text)."""
    if not isinstance(cells, list):
        raise ApiError(422, f"'cells' must be an array of objects, got {_json_type(cells)}",
                       field="cells")
    records = []
    for i, c in enumerate(cells):
        try:
            rec = CellRecord.model_validate(c)
        except PydanticValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err.get("loc", ()))
            raise ApiError(422, f"cells[{i}]{'.' + loc if loc else ''}: {err.get('msg')}",
                           field=f"cells[{i}]{'.' + loc if loc else ''}") from None
        row = rec.model_dump()
        try:
            row["attributes"] = json.dumps(row["attributes"], sort_keys=True, allow_nan=False,
                                           default=str)
        except ValueError:
            raise ApiError(422, f"cells[{i}].attributes: NaN and infinity are not allowed",
                           field=f"cells[{i}].attributes") from None
        records.append(row)
    return pl.DataFrame([{k: r.get(k) for k in CELL_SCHEMA} for r in records], schema=CELL_SCHEMA)


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
            raise SchemaError(f"cannot read {col[row]!r} as seconds since the epoch or an "
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
            raise SchemaError(f"cannot read {col[row]!r} as an integer", field=name, row=row,
                              source=source)
        arr = values.to_numpy()
        finite = np.isfinite(arr)
        with np.errstate(invalid="ignore"):
            bad = ~np.isnan(arr) & (~finite | (arr != np.floor(arr)) | (np.abs(arr) > 2.0**62))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise SchemaError(f"{col[row]!r} is not an integer", field=name, row=row, source=source)
        return pl.lit(values.fill_nan(None).cast(pl.Int64)).alias(name)
    raise SchemaError(f"expected an integer, got {_dtype_name(dtype)}", field=name, source=source)
