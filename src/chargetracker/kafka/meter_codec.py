"""Messages of a meter-readings topic (``chargetracker worker --kind meter``), keyed by
``meter_id``: encode for producers, decode for workers.

Headers as on the measurements topic (:mod:`.codec`): ``ct-format`` ``json`` or
``arrow`` (sniffed when absent), ``ct-type`` ``measurement`` (default: readings),
``meter`` (meter metadata, so that zones and mains flags travel in order with the
readings) or ``end-of-stream``.

* **JSON** readings: one object (``{"meter_id": "h1/mains", "ts": 1767225600.0,
  "power_w": 412.5}``, optional ``energy_wh``; unknown keys ignored), NDJSON (one object
  per line) or an array of objects. ``ts`` is seconds since the epoch (UTC), power in W.
* **Arrow** readings: an IPC stream with the READING_SCHEMA columns (``ts`` may be a
  timestamp).
* **Meter** messages: a METER_SCHEMA object or array (``attributes`` a JSON object), or
  an Arrow table; validated here, a bad one is a dead letter naming field and reason.

The limits and safety rules are the API's (:mod:`chargetracker.decoding`): a message
nested deeper or wider than ``DecodeLimits`` never reaches a native parser. JSON lines
are decoded in one call to Polars' NDJSON reader per run and bisected only when that
fails, so whether a line is accepted never depends on its neighbours (a replay with a
different batching decodes identically). Row checks (NaN, ranges, missing values) are the
meter kind's validation.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from ..decoding import DEFAULT_LIMITS, DecodeError, check_width, is_fatal, json_shape, loads
from ..errors import ChargeTrackerError, SchemaError
from ..meters.schema import METER_SCHEMA, READING_SCHEMA, validate_meters
from ..schema import DEAD_LETTER_SCHEMA, dead_letters
from .codec import (
    ARROW,
    FORMAT_HEADER,
    FORMATS,
    JSON,
    Decoded,
    _decode_arrow,
    _kind,
    _letter,
    _payload,
    _read_arrow,
)

__all__ = ["METER", "decode_meter_messages", "decode_readings", "encode_meters_json",
           "encode_readings_arrow", "encode_readings_json"]

#: ``ct-type`` of meter metadata messages.
METER = "meter"
_REQUIRED = ("meter_id", "ts", "power_w")
_NUMBERS = ("ts", "power_w", "energy_wh")
_ARROW_MARKER = b"\xff\xff\xff\xff"


def sniff(value: bytes | None) -> str | None:
    if not value:
        return None
    if value.startswith(_ARROW_MARKER):
        return ARROW
    return JSON if value.lstrip()[:1] in (b"{", b"[") else None


# -- encoding ------------------------------------------------------------------------
def encode_readings_json(frame: pl.DataFrame) -> list[tuple[str, bytes]]:
    """(meter_id, JSON object) per reading (shortest round-trip floats; a null counter
    is omitted)."""
    df = frame.select([pl.col(c).cast(t) for c, t in READING_SCHEMA.items() if c in frame.columns])
    keep = [c for c in df.columns if c in _REQUIRED or df.get_column(c).null_count() < df.height]
    values = df.select(pl.struct(keep).struct.json_encode()).to_series().to_list()
    return list(zip(df.get_column("meter_id").to_list(), [v.encode() for v in values], strict=True))


def encode_readings_arrow(frame: pl.DataFrame, *, max_rows: int = 8192,
                          compression: str | None = "lz4") -> list[tuple[str, bytes]]:
    """(meter_id, Arrow IPC stream) per meter and up to ``max_rows`` of its readings
    (a message keyed by its meter, so the producer's partitioner keeps meters whole)."""
    df = frame.select([pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c)
                       for c, t in READING_SCHEMA.items()])
    out = []
    for (meter,), sub in df.partition_by("meter_id", as_dict=True, maintain_order=True).items():
        for start in range(0, sub.height, max_rows):
            table = sub.slice(start, max_rows).to_arrow(compat_level=pl.CompatLevel.oldest())
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema,
                                   options=pa.ipc.IpcWriteOptions(compression=compression)) as w:
                w.write_table(table)
            out.append((str(meter), sink.getvalue().to_pybytes()))
    return out


def encode_meters_json(meters: pl.DataFrame) -> list[tuple[str, bytes]]:
    """(meter_id, JSON object) per meter (``attributes`` sent as an object)."""
    out = []
    for row in meters.select([c for c in METER_SCHEMA if c in meters.columns]).to_dicts():
        if isinstance(row.get("attributes"), str) and row["attributes"]:
            row["attributes"] = json.loads(row["attributes"])
        out.append((str(row["meter_id"]), json.dumps(row, separators=(",", ":")).encode()))
    return out


# -- decoding: readings --------------------------------------------------------------
def _diagnose(line: bytes, error: str) -> tuple[str | None, str, str | None]:
    """(field, reason, meter_id) for a JSON line the fast reader refused."""
    try:
        obj = loads(line)
    except DecodeError as exc:
        return "message", f"invalid JSON: {exc.reason}", None
    if not isinstance(obj, dict):
        return "message", f"expected a JSON object, got {_kind(obj)}", None
    mid = obj.get("meter_id")
    meter_id = mid if isinstance(mid, str) else None
    field, reason = _row_problem(obj)
    return field, reason or f"cannot decode reading: {error}", meter_id


def _row_problem(obj: dict[str, object]) -> tuple[str | None, str | None]:
    mid = obj.get("meter_id")
    if mid is not None and not isinstance(mid, str | int):
        return "meter_id", f"expected a string, got {_kind(mid)}"
    for name in _NUMBERS:
        v = obj.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            return name, f"expected a number, got {_kind(v)}"
        if isinstance(v, float) and math.isnan(v):
            return name, "NaN"
        if isinstance(v, float) and math.isinf(v) or isinstance(v, int) and abs(v) > 1e300:
            return name, "infinite value"
    return None, None


def _ndjson_run(lines: list[bytes], offs: list[int], source: str, frames: list[pl.DataFrame],
                row_offsets: list[np.ndarray], letters: list[dict[str, object]]) -> None:
    """Decode a run of one-object lines, bisecting around bad ones."""
    if not lines:
        return
    try:
        df = pl.read_ndjson(io.BytesIO(b"\n".join(lines)), schema=READING_SCHEMA)
        if df.height == len(lines):
            frames.append(df)
            row_offsets.append(np.asarray(offs, dtype=np.int64))
            return
        error = "not one JSON object per line"
    except BaseException as exc:  # Polars' native panics derive from BaseException
        if is_fatal(exc):
            raise
        error = str(exc).splitlines()[0] if str(exc) else ""
    if len(lines) == 1:
        field, reason, mid = _diagnose(lines[0], error)
        letters.append(_letter(source, offs[0], field, reason, _payload(lines[0]), mid))
        return
    mid_ = len(lines) // 2
    _ndjson_run(lines[:mid_], offs[:mid_], source, frames, row_offsets, letters)
    _ndjson_run(lines[mid_:], offs[mid_:], source, frames, row_offsets, letters)


def _document_rows(value: bytes, offset: int, source: str, frames: list[pl.DataFrame],
                   row_offsets: list[np.ndarray], letters: list[dict[str, object]]) -> None:
    """A JSON document that is not NDJSON: an array of readings or one (multi-line) object."""
    if json_shape(value, per_line=False).max_depth() > DEFAULT_LIMITS.max_depth:
        letters.append(_letter(source, offset, "message", "JSON nested deeper than "
                               f"{DEFAULT_LIMITS.max_depth} levels", _payload(value)))
        return
    # Polars' JSON reader would read a boolean as a number: such arrays take the row checks.
    if value.lstrip()[:1] == b"[" and b"true" not in value and b"false" not in value:
        try:  # an array of readings: one vectorized read; the row checks only when it fails
            df = pl.read_json(io.BytesIO(value), schema=READING_SCHEMA)
            frames.append(df)
            row_offsets.append(np.full(df.height, offset, dtype=np.int64))
            return
        except BaseException as exc:  # Polars' native panics derive from BaseException
            if is_fatal(exc):
                raise
    try:
        doc = loads(value)
    except DecodeError as exc:
        letters.append(_letter(source, offset, "message", f"invalid JSON: {exc.reason}",
                               _payload(value)))
        return
    objs = doc if isinstance(doc, list) else [doc]
    rows = []
    for obj in objs:  # an array message: per row of a small batch, not per sample stream
        if not isinstance(obj, dict):
            letters.append(_letter(source, offset, "message",
                                   f"expected a reading object, got {_kind(obj)}", _payload(value)))
            continue
        field, reason = _row_problem(obj)
        if reason is not None:
            mid = obj.get("meter_id")
            letters.append(_letter(source, offset, field, reason,
                                   _payload(json.dumps(obj).encode()), mid if isinstance(mid, str) else None))
            continue
        rows.append({c: (str(obj[c]) if c == "meter_id" and obj.get(c) is not None
                         else obj.get(c)) for c in READING_SCHEMA})
    if rows:
        frames.append(pl.DataFrame(rows, schema=READING_SCHEMA))
        row_offsets.append(np.full(len(rows), offset, dtype=np.int64))


def _arrow_rows(value: bytes) -> pl.DataFrame:
    raw = _read_arrow(value)
    missing = [c for c in _REQUIRED if c not in raw.columns]
    if missing:
        raise SchemaError(f"missing column(s) {missing}", field=missing[0])
    exprs = []
    for name, dtype in READING_SCHEMA.items():
        if name not in raw.columns:
            exprs.append(pl.lit(None, dtype).alias(name))
        elif name == "ts" and raw.schema[name].is_temporal():
            exprs.append((pl.col(name).dt.epoch("us").cast(pl.Float64) / 1e6).alias(name))
        else:
            exprs.append(pl.col(name).cast(dtype, strict=True))
    try:
        return raw.select(exprs)
    except pl.exceptions.PolarsError as exc:
        raise SchemaError(f"cannot convert the readings: {str(exc)[:200]}", field="message") from None


def decode_readings(values: Sequence[bytes | None], formats: Sequence[str | None],
                    offsets: Sequence[int], *, source: str) -> Decoded:
    """Decode reading messages of one partition, in offset order (rows in message
    order; ``offsets`` of the Decoded name each row's message; dead letters' ``row`` is
    the message offset)."""
    frames: list[pl.DataFrame] = []
    row_offsets: list[np.ndarray] = []
    letters: list[dict[str, object]] = []
    lines: list[bytes] = []
    line_offs: list[int] = []

    def end_run() -> None:
        if not lines:
            return
        shape = json_shape(b"\n".join(lines), per_line=True, max_depth=DEFAULT_LIMITS.max_depth,
                           max_keys=DEFAULT_LIMITS.max_columns)
        safe = shape.safe(DEFAULT_LIMITS)
        start = 0
        for i in np.flatnonzero(~safe).tolist():
            _ndjson_run(lines[start:i], line_offs[start:i], source, frames, row_offsets, letters)
            letters.append(_letter(source, line_offs[i], "message",
                                   f"JSON line beyond the limits ({int(shape.depth[i])} levels, "
                                   f"{int(shape.keys[i])} keys)", _payload(lines[i])))
            start = i + 1
        _ndjson_run(lines[start:], line_offs[start:], source, frames, row_offsets, letters)
        lines.clear()
        line_offs.clear()

    for value, fmt, off in zip(values, formats, offsets, strict=True):
        fmt = fmt or sniff(value)
        if not value or not value.strip():
            end_run()
            letters.append(_letter(source, off, "message", "empty message", ""))
        elif fmt == JSON:
            parts = [ln.strip() for ln in value.split(b"\n")]
            parts = [ln for ln in parts if ln]
            if all(ln[:1] == b"{" and ln[-1:] == b"}" for ln in parts):
                lines.extend(parts)  # one object or NDJSON: the vectorized path
                line_offs.extend([off] * len(parts))
            else:
                end_run()
                _document_rows(value, off, source, frames, row_offsets, letters)
        elif fmt == ARROW:
            end_run()
            _decode_arrow(value, off, source, frames, row_offsets, letters, read=_arrow_rows)
        else:
            end_run()
            letters.append(_letter(source, off, FORMAT_HEADER,
                                   f"unknown format {fmt!r}; expected one of {list(FORMATS)}"
                                   if fmt else f"no {FORMAT_HEADER} header and not recognisable "
                                   "as JSON or Arrow", _payload(value)))
    end_run()
    frame = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=READING_SCHEMA)
    offs = np.concatenate(row_offsets) if row_offsets else np.zeros(0, dtype=np.int64)
    if frame.height:
        # Runs were appended in message order except a run ended by a later message:
        # restore offset order (stable), which the engine's lateness rule depends on.
        if len(offs) > 1 and not bool(np.all(offs[1:] >= offs[:-1])):
            order = np.argsort(offs, kind="stable")
            frame, offs = frame[order], offs[order]
        nul = frame.get_column("meter_id").str.contains("\x00", literal=True).fill_null(False)
        if nul.any():
            mask = nul.to_numpy()
            letters += [_letter(source, int(o), "meter_id", "meter_id contains a NUL character",
                                "") for o in offs[mask].tolist()]
            frame, offs = frame.filter(~nul), offs[~mask]
    rejected = dead_letters(letters) if letters else pl.DataFrame(schema=DEAD_LETTER_SCHEMA)
    return Decoded(frame, offs, rejected)


# -- decoding: meter metadata --------------------------------------------------------
def decode_meter_messages(values: Sequence[bytes | None], formats: Sequence[str | None],
                          offsets: Sequence[int], *, source: str,
                          default_timezone: str = "UTC") -> tuple[pl.DataFrame, pl.DataFrame]:
    """(meters in METER_SCHEMA, validated; dead letters) of a run of ``ct-type: meter``
    messages. Later rows of a meter win."""
    tables: list[pl.DataFrame] = []
    letters: list[dict[str, object]] = []
    for value, fmt, offset in zip(values, formats, offsets, strict=True):
        fmt = fmt or sniff(value)
        try:
            if not value:
                raise SchemaError("empty message", field="message")
            if fmt == JSON:
                if json_shape(value, per_line=False).max_depth() > DEFAULT_LIMITS.max_depth:
                    raise SchemaError("JSON nested too deep", field="message")
                try:
                    doc = loads(value)
                except DecodeError as exc:
                    raise SchemaError(f"invalid JSON: {exc.reason}", field="message") from None
                objs = doc if isinstance(doc, list) else [doc]
                if not objs or not all(isinstance(o, dict) for o in objs):
                    raise SchemaError("expected a meter object (or an array of them)", field="message")
                rows = [{k: (json.dumps(v) if k == "attributes" and isinstance(v, dict) else v)
                         for k, v in o.items() if k in METER_SCHEMA} for o in objs]
                for r in rows:
                    for k, v in r.items():
                        if v is not None and not isinstance(v, str):
                            raise SchemaError(f"expected a string, got {_kind(v)}", field=k)
                raw = pl.DataFrame(rows, schema={k: pl.Utf8 for k in METER_SCHEMA})
            elif fmt == ARROW:
                raw = _read_arrow(value)
                check_width(raw.width, DEFAULT_LIMITS)
            else:
                raise SchemaError(f"unknown format {fmt!r}; expected one of {list(FORMATS)}",
                                  field=FORMAT_HEADER)
            tables.append(validate_meters(raw, default_timezone=default_timezone, source=source))
        except ChargeTrackerError as exc:
            letters.append(_letter(source, offset, getattr(exc, "field", None) or "message",
                                   f"meter message: {getattr(exc, 'reason', str(exc))}",
                                   _payload(value)))
        except (pa.ArrowException, pl.exceptions.PolarsError, ValueError, OSError) as exc:
            letters.append(_letter(source, offset, "message", f"meter message: {str(exc)[:200]}",
                                   _payload(value)))
    meters = pl.concat(tables) if tables else pl.DataFrame(schema=METER_SCHEMA)
    if meters.height > 1:
        meters = meters.unique(subset=["meter_id"], keep="last", maintain_order=True)
    rejected = dead_letters(letters) if letters else pl.DataFrame(schema=DEAD_LETTER_SCHEMA)
    return meters, rejected
