"""Ingest payloads -> canonical measurement frames: JSON, NDJSON, CSV, Arrow IPC, Parquet.

One decoder for every entry point (HTTP bodies, Kafka messages), with one set of
:class:`~chargetracker.decoding.structure.DecodeLimits`:

==============  ===============================================================
``json``        array of measurement objects, or ``{"measurements": [...] |
                {col: [...]}, "cells": [...]}``
``ndjson``      one measurement object per line
``csv``         header row with canonical column names
``arrow``       Arrow IPC stream; ``arrow-file``: Arrow IPC file
``parquet``     Parquet
==============  ===============================================================

Problems with the *batch* (malformed JSON, nesting beyond the limit, too many columns,
a column of the wrong type, a missing required column) raise :class:`DecodeError` (a
:class:`~chargetracker.errors.SchemaError`) naming the field and, when known, the row or
line. Problems with single *rows* (NaN, out of range, missing value) are left to the
pipeline's validation. JSON reaches Polars' native reader only after
:func:`~chargetracker.decoding.structure.json_shape` has bounded its nesting and width;
otherwise Python's ``json`` reads it, and only the canonical keys of each object are
turned into columns (extra fields are listed as ignored, never decoded).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import SchemaError
from ..schema import MEASUREMENT_SCHEMA
from .columns import NUMERIC_COLUMNS, canonicalize, is_fatal
from .structure import DEFAULT_LIMITS, DecodeLimits, json_shape, short

__all__ = ["FORMATS", "DecodeError", "DecodedBatch", "decode_batch", "loads", "json_kind",
           "check_width", "ignored_names"]

FORMATS: tuple[str, ...] = ("json", "ndjson", "csv", "arrow", "arrow-file", "parquet")


class DecodeError(SchemaError):
    """A payload that cannot be decoded as a whole; ``code`` is the API error code
    (``malformed_body``, ``empty_batch``, ``invalid_input``, ``too_complex``)."""

    def __init__(self, reason: str, *, code: str = "malformed_body", field: str | None = None,
                 row: int | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(reason, field=field, row=row)
        self.code = code
        self.details = details


@dataclass
class DecodedBatch:
    """A decoded payload: canonical measurements (may be empty), the raw ``cells`` list of
    a JSON envelope (validated by the caller), and the ignored (non-canonical) columns:
    at most ``limits.max_listed`` names, ``ignored_total`` of them in all."""

    frame: pl.DataFrame
    cells: list[Any] | None = None
    ignored_columns: list[str] = field(default_factory=list)
    ignored_total: int = 0


def decode_batch(body: bytes, fmt: str, charset: str | None = None, *, source: str = "api",
                 limits: DecodeLimits = DEFAULT_LIMITS) -> DecodedBatch:
    """Decode ``body`` of format ``fmt`` (one of :data:`FORMATS`)."""
    if not body.strip():
        raise DecodeError("empty body: send a batch of measurements", code="empty_batch")
    if charset and charset.replace("-", "") not in ("utf8", "usascii", "ascii"):
        if fmt in ("json", "ndjson"):
            raise DecodeError(f"JSON must be UTF-8, not {short(charset)}", field="Content-Type",
                              code="invalid_input")
        if fmt == "csv":
            try:
                body = body.decode(charset).encode("utf-8")
            except (LookupError, UnicodeDecodeError):
                raise DecodeError(f"cannot decode the CSV body as {short(charset)}",
                                  field="Content-Type", code="invalid_input") from None
    cells = None
    if fmt == "json":
        raw, cells = _json(body, limits)
    elif fmt == "ndjson":
        raw = _ndjson(body, limits)
    elif fmt == "csv":
        _check_csv_header(body, limits)
        raw = _native(lambda: pl.read_csv(io.BytesIO(body), infer_schema=False), "CSV")
    elif fmt == "arrow":
        _check_arrow_schema(lambda: pa.ipc.open_stream(pa.BufferReader(body)).schema,
                            "an Arrow IPC stream", limits)
        raw = _native(lambda: pl.read_ipc_stream(io.BytesIO(body)), "an Arrow IPC stream")
    elif fmt == "arrow-file":
        _check_arrow_schema(lambda: pa.ipc.open_file(pa.BufferReader(body)).schema,
                            "an Arrow IPC file", limits)
        raw = _native(lambda: pl.read_ipc(io.BytesIO(body)), "an Arrow IPC file")
    elif fmt == "parquet":
        _check_arrow_schema(lambda: pq.read_schema(pa.BufferReader(body)), "Parquet", limits)
        raw = _native(lambda: pl.read_parquet(io.BytesIO(body)), "Parquet")
    else:
        raise DecodeError(f"unsupported format {short(fmt)}; use one of {list(FORMATS)}",
                          code="invalid_input")
    check_width(raw.width, limits)
    ignored, total = ignored_names(raw.columns, limits)
    if raw.width == 0 and raw.height == 0:
        return DecodedBatch(pl.DataFrame(schema=MEASUREMENT_SCHEMA), cells, ignored, total)
    try:
        frame, _ = canonicalize(raw, source=source)
    except pl.exceptions.PanicException as exc:  # a BaseException: never let it escape
        raise DecodeError(f"cannot convert the batch to the canonical schema: "
                          f"{short(str(exc))}", code="invalid_input") from None
    return DecodedBatch(frame, cells, ignored, total)


def check_width(columns: int, limits: DecodeLimits) -> None:
    """Refuse a batch with more columns than ``limits.max_columns``."""
    if columns > limits.max_columns:
        raise DecodeError(f"the batch has {columns} columns; the limit is {limits.max_columns} "
                          f"(canonical columns: {list(MEASUREMENT_SCHEMA)})", code="too_complex",
                          details={"columns": columns, "limit": limits.max_columns})


def ignored_names(columns: list[str], limits: DecodeLimits) -> tuple[list[str], int]:
    """(the first ``max_listed`` non-canonical column names, shortened; how many in all)."""
    names = [c for c in columns if c not in MEASUREMENT_SCHEMA]
    return [_name(c) for c in names[: limits.max_listed]], len(names)


def _name(name: str) -> str:
    clean = name.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    clean = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in clean)
    return clean if len(clean) <= 64 else clean[:63] + "…"


def _native(read: Any, what: str) -> pl.DataFrame:
    try:
        return read()  # type: ignore[no-any-return]
    except BaseException as exc:  # PanicException derives from BaseException
        if is_fatal(exc):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DecodeError(f"the body is not valid {what}: {_clean_message(msg)}") from None


def _clean_message(msg: str) -> str:
    """A native reader's message without the binary it may quote."""
    text = msg.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= 200 else text[:199] + "…"


def _check_csv_header(body: bytes, limits: DecodeLimits) -> None:
    # The header's separators bound its fields (quoted commas only over-count): a
    # million-column header is refused before a parser allocates a column for each.
    end = body.find(b"\n")
    header = body if end < 0 else body[:end]
    fields = header.count(b",") + 1
    if fields > limits.max_columns:
        raise DecodeError(f"the CSV header has {fields} fields; the limit is "
                          f"{limits.max_columns}", code="too_complex", field="header",
                          details={"columns": fields, "limit": limits.max_columns})


def _check_arrow_schema(read_schema: Any, what: str, limits: DecodeLimits) -> None:
    """Refuse a too-wide Arrow/Parquet payload from its schema, before reading data."""
    try:
        schema = read_schema()
    except BaseException as exc:
        if is_fatal(exc):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DecodeError(f"the body is not valid {what}: {_clean_message(msg)}") from None
    check_width(len(schema), limits)


# -- JSON ----------------------------------------------------------------------------
def loads(body: bytes, *, line: int | None = None) -> Any:
    """``json.loads`` with every failure as a :class:`DecodeError` (never a crash:
    Python's parser raises ``RecursionError`` where a native one overflows its stack)."""
    where = f"line {line}: " if line is not None else ""
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{where}not valid UTF-8 (byte {exc.start})",
                          details={"line": line} if line else None) from None
    except json.JSONDecodeError as exc:
        raise DecodeError(f"malformed JSON{' on ' + where[:-2] if line else ''}: {exc.msg} at "
                          f"line {exc.lineno} column {exc.colno} (char {exc.pos})",
                          details={"line": line or exc.lineno, "column": exc.colno,
                                   "position": exc.pos}) from None
    except RecursionError:
        raise DecodeError(f"{where}JSON nested too deeply", code="too_complex") from None
    except ValueError as exc:  # e.g. an integer literal of more than 4,300 digits
        raise DecodeError(f"{where}unreadable JSON value: {short(str(exc))}") from None


def json_kind(v: Any) -> str:
    """'a number', 'an object', ... for messages."""
    if v is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(v), type(v).__name__)


#: A JSON boolean as the value of a numeric canonical column. Polars would read it as
#: 0/1, so such bodies take the Python path, which names the row.
_BOOL_VALUE = re.compile(
    rb'"(?:ts|voltage_v|current_a|temperature_c|cycle|step|step_time_s)"\s*:\s*(?:true|false)')


def _has_bool_value(body: bytes) -> bool:
    # A plain substring test first (memchr speed); the regex only when it could match.
    return (b"true" in body or b"false" in body) and _BOOL_VALUE.search(body) is not None


def _too_deep(depth: int, line: int, limits: DecodeLimits) -> DecodeError:
    return DecodeError(f"line {line}: JSON nested {depth} levels deep; the limit is "
                       f"{limits.max_depth}", code="too_complex",
                       details={"line": line, "depth": depth, "limit": limits.max_depth})


def _json(body: bytes, limits: DecodeLimits) -> tuple[pl.DataFrame, list[Any] | None]:
    head = body.lstrip()[:1]
    shape = json_shape(body, per_line=False, max_depth=limits.max_depth,
                       max_keys=limits.max_columns)
    # Strings that do not close on their line (malformed) make the depth untrustworthy:
    # only Python's parser, which cannot crash, sees such a body.
    trusted = not shape.unbalanced.any()
    if trusted and shape.max_depth() > limits.max_depth:
        line = int(shape.depth.argmax()) + 1
        raise _too_deep(shape.max_depth(), line, limits)
    if head == b"[":
        if trusted and not _has_bool_value(body):
            try:
                # Fast path: Polars' JSON reader (Rust) for the common array-of-objects body.
                return pl.read_json(io.BytesIO(body), infer_schema_length=None), None
            except BaseException as exc:
                if is_fatal(exc):
                    raise
        # Slow path, for bodies Polars refused or may not see: say exactly what is wrong.
        return _rows_frame(loads(body), "measurements", limits), None
    doc = loads(body)
    if head != b"{" or not isinstance(doc, dict):
        raise DecodeError("expected a JSON array of measurement objects or an object "
                          f"{{\"measurements\": [...], \"cells\": [...]}}, got {json_kind(doc)}",
                          code="invalid_input")
    unknown = sorted(set(doc) - {"measurements", "cells"})
    if unknown:
        raise DecodeError(f"unknown key {short(unknown[0])} in the batch object; expected "
                          "'measurements' and/or 'cells'", field=_name(unknown[0]),
                          code="invalid_input")
    meas = doc.get("measurements", [])
    if isinstance(meas, list):
        frame = _rows_frame(meas, "measurements", limits)
    elif isinstance(meas, dict):
        frame = _columns_frame(meas, limits)
    else:
        raise DecodeError("'measurements' must be an array of objects or an object of "
                          f"column arrays, got {json_kind(meas)}", field="measurements",
                          code="invalid_input")
    cells = doc.get("cells")
    if cells is not None and not isinstance(cells, list):
        raise DecodeError(f"'cells' must be an array of objects, got {json_kind(cells)}",
                          field="cells", code="invalid_input")
    return frame, (cells or None)


def _rows_frame(rows: Any, where: str, limits: DecodeLimits) -> pl.DataFrame:
    if not isinstance(rows, list):
        raise DecodeError(f"{where} must be an array of objects, got {json_kind(rows)}",
                          field=where, code="invalid_input")
    if not rows:
        return pl.DataFrame()
    if not all(type(r) is dict for r in rows):
        bad = next(i for i, r in enumerate(rows) if type(r) is not dict)
        raise SchemaError(f"expected a measurement object, got {json_kind(rows[bad])}",
                          field=where, row=bad)
    for name in NUMERIC_COLUMNS:
        hit = next((i for i, r in enumerate(rows) if type(r.get(name)) is bool), None)
        if hit is not None:
            raise SchemaError("expected a number, got a boolean", field=name, row=hit)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    check_width(len(keys), limits)
    # Only the canonical keys become columns: extra fields (whatever they nest) are
    # reported as ignored and never handed to a native parser.
    columns: dict[str, Any] = {k: [r.get(k) for r in rows] for k in keys
                               if k in MEASUREMENT_SCHEMA}
    columns.update({k: None for k in keys if k not in MEASUREMENT_SCHEMA})
    return _columns_frame(columns, limits, height=len(rows))


def _columns_frame(columns: dict[str, Any], limits: DecodeLimits, *,
                   height: int | None = None) -> pl.DataFrame:
    check_width(len(columns), limits)
    lengths = {len(v) for v in columns.values() if isinstance(v, list)}
    if height is not None:
        lengths.add(height)
    data: dict[str, pl.Series] = {}
    n = next(iter(lengths)) if len(lengths) == 1 else 0
    for name, values in columns.items():
        if name not in MEASUREMENT_SCHEMA:
            if values is not None and not isinstance(values, list):
                raise SchemaError(f"a column must be an array, got {json_kind(values)}",
                                  field=_name(name))
            # Not canonical: only reported as ignored, never decoded.
            data[name] = pl.Series(name, [None] * n, dtype=pl.Null)
            continue
        if not isinstance(values, list):
            raise SchemaError(f"a column must be an array, got {json_kind(values)}", field=name)
        data[name] = _json_column(name, values)
    if len(lengths) > 1:
        raise DecodeError(f"columns have different lengths {sorted(lengths)[:10]}",
                          field="measurements", code="invalid_input")
    return pl.DataFrame(data)


def _json_column(name: str, values: list[Any]) -> pl.Series:
    kinds = None
    if not any(type(v) in (dict, list) for v in values):
        try:
            series = pl.Series(name, values, strict=True)
        except BaseException as exc:
            if is_fatal(exc):
                raise
        else:
            if not (name in NUMERIC_COLUMNS and series.dtype.is_integer()
                    and any(type(v) is bool for v in values)):
                return series
    # Only when Polars refused the values (e.g. ints mixed with floats): look closer.
    kinds = [json_kind(v) for v in values]
    present = [k for k in kinds if k != "null"]
    if present and all(k == "a number" for k in present):
        floats: list[float | None] = []
        for i, v in enumerate(values):
            try:
                floats.append(None if v is None else float(v))
            except OverflowError:  # an integer literal beyond the float range
                raise SchemaError("number out of range", field=name, row=i) from None
        return pl.Series(name, floats, dtype=pl.Float64)
    first = present[0] if present else "null"
    bad = next((i for i, k in enumerate(kinds) if k not in ("null", first)), None)
    if bad is None and first in ("an object", "an array"):
        bad = next(i for i, k in enumerate(kinds) if k != "null")
        raise SchemaError(f"expected a scalar, got {first}", field=name, row=bad)
    got = kinds[bad] if bad is not None else "unknown"
    raise SchemaError(f"mixed value types: {got} among {first} values", field=name, row=bad)


def _ndjson(body: bytes, limits: DecodeLimits) -> pl.DataFrame:
    shape = json_shape(body, per_line=True, max_depth=limits.max_depth,
                       max_keys=limits.max_columns)
    safe = shape.safe(limits)
    if not safe.all():
        line = int((~safe).argmax())
        if shape.depth[line] > limits.max_depth:
            raise _too_deep(int(shape.depth[line]), line + 1, limits)
        raise DecodeError(f"line {line + 1}: {int(shape.keys[line])} keys; the limit is "
                          f"{limits.max_columns} columns", code="too_complex",
                          details={"line": line + 1, "limit": limits.max_columns})
    if not _has_bool_value(body):
        try:
            return pl.read_ndjson(io.BytesIO(body), infer_schema_length=None)
        except BaseException as exc:
            if is_fatal(exc):
                raise
    rows = []
    for lineno, line_bytes in enumerate(body.split(b"\n"), start=1):
        if line_bytes.strip():
            rows.append(loads(line_bytes, line=lineno))
    return _rows_frame(rows, "line", limits)
