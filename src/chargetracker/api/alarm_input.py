"""Parsing of consistency-alarm request bodies: daily records given as JSON objects,
the reference's 84-value form, batch bodies (CSV, JSON, Parquet). Errors are
:class:`~chargetracker.api.errors.ApiError` 422/415 naming the field."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from typing import Any

import numpy as np
import polars as pl

from ..ml.records import _NULL_STRINGS as NULL_STRINGS
from ..ml.records import ALIASES, SIGNALS, parse_records_csv
from ..ml.windows import CONTEXT_DAYS
from .errors import ApiError

__all__ = ["body_frame", "features84", "parse_date", "records_frame", "typed_numbers"]


def records_frame(records: list[dict[str, Any]], vin: str | None) -> pl.DataFrame:
    if not records:
        raise ApiError(422, "records is empty", field="records")
    rows = []
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ApiError(422, f"records[{i}] is not an object", field=f"records.{i}")
        row = {str(k): v for k, v in r.items()}
        for k, v in row.items():
            if v is not None and not isinstance(v, str | int | float) or isinstance(v, bool):
                raise ApiError(422, f"records[{i}].{k}: expected a number, text or null",
                               field=f"records.{i}.{k}")
        if vin is not None:
            given = row.get("vin", row.get("VIN"))
            if given is not None and str(given) != vin:
                raise ApiError(422, f"records[{i}].vin {str(given)[:64]!r} differs from vin "
                               f"{vin!r}", field=f"records.{i}.vin")
            row["vin"] = vin
        rows.append({k: None if v is None else str(v) for k, v in row.items()})
    keys = sorted({k for r in rows for k in r})
    return pl.DataFrame({k: [r.get(k) for r in rows] for k in keys},
                        schema={k: pl.Utf8 for k in keys})


#: A decimal number as text (what a CSV row sent as JSON holds): exactly the strings
#: Python's float() and the full validation's text-to-Float64 cast read alike.
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NULL_TEXT = frozenset(NULL_STRINGS)
_TEXT_KEYS = frozenset(k for k, c in ALIASES.items() if c in ("vin", "date"))


def typed_numbers(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Numbers sent as text (``"3.61"``, ``"nan"``) as floats / None, so that the
    plain-Python validation (:func:`validate_small`) takes them: otherwise every such
    body paid the full polars validation (~5 ms). Anything else is left as given (the
    full validation then decides and reports it); VIN and date stay text."""
    out = []
    for r in records:
        if not isinstance(r, dict):
            return records
        row = {}
        for k, v in r.items():
            if isinstance(v, str) and str(k).strip().lower() not in _TEXT_KEYS:
                if v in _NULL_TEXT:
                    v = None
                elif _DECIMAL.fullmatch(v):
                    v = float(v)
            row[k] = v
        out.append(row)
    return out


def features84(features: str | list[float]) -> np.ndarray:
    if isinstance(features, str):
        parts = [p.strip() for p in features.split(",")]
        try:
            vals = np.array([float(p) for p in parts], dtype=np.float64)
        except ValueError:
            raise ApiError(422, "features: every value must be a number", field="features") from None
    else:
        vals = np.asarray(features, dtype=np.float64)
    n = CONTEXT_DAYS * len(SIGNALS)
    if vals.size != n:
        raise ApiError(422, f"features: expected {n} values (14 days x 6 signals), got "
                       f"{vals.size}", field="features")
    if not np.isfinite(vals).all():
        raise ApiError(422, "features: values must be finite (-1 marks missing)",
                       field="features")
    days = vals.reshape(CONTEXT_DAYS, len(SIGNALS)).copy()
    days[(days == -1.0).all(axis=1)] = np.nan
    return days.reshape(1, n)


def parse_date(text: str | None, field: str) -> np.datetime64:
    if text is None:
        return np.datetime64(dt.datetime.now(dt.UTC).date().isoformat(), "D")
    try:
        return np.datetime64(dt.date.fromisoformat(text[:10]).isoformat(), "D")
    except ValueError:
        raise ApiError(422, f"{field}: not an ISO date (YYYY-MM-DD)", field=field) from None


def body_frame(body: bytes, fmt: str) -> pl.DataFrame:
    if not body:
        raise ApiError(422, "empty body", field="body")
    if fmt == "csv":
        return parse_records_csv(body, source="body")
    if fmt == "parquet":
        try:
            return pl.read_parquet(io.BytesIO(body))
        except Exception as exc:  # polars/arrow raise several types for broken files
            raise ApiError(422, f"not a readable Parquet body: {str(exc)[:200]}",
                           field="body") from exc
    if fmt == "json":
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise ApiError(422, f"malformed JSON: {exc}", field="body") from exc
        if isinstance(data, dict) and isinstance(data.get("records"), list):
            return records_frame(data["records"], data.get("vin"))
        if isinstance(data, list):
            return records_frame(data, None)
        raise ApiError(422, "expected a JSON array of daily records or {\"records\": [...]}",
                       field="body")
    raise ApiError(415, f"unsupported format {fmt!r} here; use text/csv, application/json or "
                   "application/vnd.apache.parquet", field="Content-Type")
