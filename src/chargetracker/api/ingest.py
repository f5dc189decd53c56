"""HTTP ingest bodies: Content-Type -> format, then the shared decoder.

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

Decoding itself (and its limits: nesting depth, columns, listed names) lives in
:mod:`chargetracker.decoding`, shared with the Kafka codec. Problems with the *batch*
answer 422 naming the field and, when known, the row or line; problems with single
*rows* are left to the pipeline, which keeps the good rows and stores the bad ones as
dead letters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from pydantic import ValidationError as PydanticValidationError

from ..decoding import DEFAULT_LIMITS, DecodeError, DecodeLimits, canonicalize, decode_batch
from ..decoding import json_kind as _json_type
from ..decoding import short as _short
from ..schema import CELL_SCHEMA
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


@dataclass
class ParsedBatch:
    """A decoded body: canonical measurements (may be empty), optional cell metadata and
    the ignored columns (at most ``DecodeLimits.max_listed`` names; ``ignored_total``)."""

    frame: pl.DataFrame
    cells: pl.DataFrame | None = None
    ignored_columns: list[str] = field(default_factory=list)
    ignored_total: int = 0


def media_format(content_type: str | None) -> tuple[str, str | None]:
    """(format name, charset) of a Content-Type header; 415 when unsupported."""
    if not content_type:
        raise ApiError(415, "missing Content-Type; use one of " + ", ".join(sorted(MEDIA_TYPES)),
                       field="Content-Type")
    main, _, params = content_type.partition(";")
    fmt = MEDIA_TYPES.get(main.strip().lower())
    if fmt is None:
        raise ApiError(415, f"unsupported Content-Type {_short(main.strip())}; use one of "
                       + ", ".join(sorted(MEDIA_TYPES)), field="Content-Type")
    charset = None
    for p in params.split(";"):
        k, _, v = p.partition("=")
        if k.strip().lower() == "charset":
            charset = v.strip().strip('"').lower() or None
    return fmt, charset


def parse_body(body: bytes, fmt: str, charset: str | None = None, *,
               source: str = "api", limits: DecodeLimits = DEFAULT_LIMITS) -> ParsedBatch:
    """Decode ``body`` of format ``fmt`` (see :data:`MEDIA_TYPES`) into a ParsedBatch."""
    try:
        decoded = decode_batch(body, fmt, charset, source=source, limits=limits)
    except DecodeError as exc:
        raise ApiError(422, exc.reason, code=exc.code, field=exc.field,
                       details=exc.details) from None
    cells = cells_frame(decoded.cells) if decoded.cells else None
    return ParsedBatch(decoded.frame, cells, decoded.ignored_columns, decoded.ignored_total)


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
