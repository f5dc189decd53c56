"""Decoding of ingest payloads, shared by the HTTP API and the Kafka codec.

:func:`decode_batch` turns a JSON, NDJSON, CSV, Arrow IPC or Parquet payload into a
canonical measurement frame under one set of :class:`DecodeLimits` (nesting depth,
columns, listed names); :func:`json_shape` measures JSON nesting before any native
parser sees it; :func:`canonicalize` gives a frame the canonical columns and dtypes.
"""

from .columns import FLOAT_COLUMNS, INT_COLUMNS, NUMERIC_COLUMNS, canonicalize, is_fatal
from .formats import (
    FORMATS,
    DecodedBatch,
    DecodeError,
    check_width,
    decode_batch,
    ignored_names,
    json_kind,
    loads,
)
from .structure import DEFAULT_LIMITS, DecodeLimits, JsonShape, json_shape, short

__all__ = [
    "DEFAULT_LIMITS",
    "FLOAT_COLUMNS",
    "FORMATS",
    "INT_COLUMNS",
    "NUMERIC_COLUMNS",
    "DecodeError",
    "DecodeLimits",
    "DecodedBatch",
    "JsonShape",
    "canonicalize",
    "check_width",
    "decode_batch",
    "ignored_names",
    "is_fatal",
    "json_kind",
    "json_shape",
    "loads",
    "short",
]
