"""Message formats of the measurements topic (encode for producers, decode for workers).

Every message carries two headers:

``ct-format``
    ``json``  -- one JSON object per message (what simple devices send), e.g.
    ``{"cell_id": "A1", "ts": 1767225600.0, "voltage_v": 3.71, "current_a": -2.5,
    "temperature_c": 25.1}``; optional keys ``cycle``, ``step``, ``step_time_s``;
    unknown keys are ignored. ``ts`` is seconds since the epoch (UTC), current is
    positive when charging.

    ``arrow`` -- an Arrow IPC *stream* holding a batch of measurements (the canonical
    columns; Arrow-level LZ4/ZSTD buffer compression allowed) for throughput.

    A message without the header is sniffed: ``{`` starts JSON, the IPC continuation
    marker ``FF FF FF FF`` starts Arrow. Any other value of the header is an unknown
    format and goes to the dead letters.
``ct-type``
    ``measurement`` (default), ``cell`` (cell metadata in :data:`CELL_SCHEMA` columns,
    JSON object or Arrow, so that groups and nominal capacities travel in order with
    the samples of the cell) or ``end-of-stream`` (no payload; the worker flushes the
    engine state of the partition: the explicit end of a finite stream).

Decoding is vectorized: a run of JSON messages is parsed in one call to Polars' NDJSON
reader; only when that fails are the runs bisected to find the bad messages. Whether a
message is accepted never depends on its neighbours, so a replay with a different
batching decodes identically (exactly-once needs that).

The limits and safety rules are those of the HTTP API (:mod:`chargetracker.decoding`):
a message nested deeper than ``DecodeLimits.max_depth`` or wider than ``max_columns``
never reaches Polars' native parser (which would crash the worker) and becomes a dead
letter naming the limit; Arrow payloads get the API's column rules (``canonicalize``).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from ..decoding import (
    DEFAULT_LIMITS,
    DecodeError,
    DecodeLimits,
    canonicalize,
    check_width,
    is_fatal,
    json_shape,
    loads,
)
from ..errors import SchemaError
from ..schema import DEAD_LETTER_SCHEMA, MEASUREMENT_SCHEMA, conform, dead_letters

__all__ = [
    "FORMAT_HEADER",
    "TYPE_HEADER",
    "FORMATS",
    "TYPES",
    "JSON",
    "ARROW",
    "MEASUREMENT",
    "CELL",
    "END_OF_STREAM",
    "Decoded",
    "encode_json",
    "encode_arrow",
    "decode_measurements",
    "headers_of",
    "offset_of",
    "partition_of",
    "sniff_format",
]

FORMAT_HEADER = "ct-format"
TYPE_HEADER = "ct-type"
JSON = "json"
ARROW = "arrow"
FORMATS: tuple[str, ...] = (JSON, ARROW)
MEASUREMENT = "measurement"
CELL = "cell"
END_OF_STREAM = "end-of-stream"
TYPES: tuple[str, ...] = (MEASUREMENT, CELL, END_OF_STREAM)

_ARROW_MARKER = b"\xff\xff\xff\xff"
#: Dead-letter payloads keep at most this much of a rejected message, characters.
MAX_PAYLOAD_CHARS = 4096

_FLOAT_FIELDS = ("ts", "voltage_v", "current_a", "temperature_c", "step_time_s")
_INT_FIELDS = ("cycle", "step")


@dataclass(frozen=True, slots=True)
class Decoded:
    """Measurements decoded from a run of messages, in message order.

    ``frame``: canonical rows (:data:`MEASUREMENT_SCHEMA`); ``offsets``: the Kafka offset
    of the message each row came from (int64, one per row); ``rejected``: dead letters
    (:data:`DEAD_LETTER_SCHEMA`) whose ``row`` is the offset of the rejected message.
    """

    frame: pl.DataFrame
    offsets: np.ndarray
    rejected: pl.DataFrame


# -- headers -------------------------------------------------------------------------
_FORMAT_NAMES = {b"json": JSON, b"arrow": ARROW}


def headers_of(headers: Any) -> tuple[str | None, str | None]:
    """(ct-format, ct-type) of a message's headers (list of pairs or dict); None when absent."""
    if not headers:
        return None, None
    if len(headers) == 1 and not isinstance(headers, dict):
        # Fast path (one call per message): the sink's measurement messages carry only
        # the format header.
        key, value = headers[0]
        if key == FORMAT_HEADER and value in _FORMAT_NAMES:
            return _FORMAT_NAMES[value], None
    fmt = typ = None
    items = headers.items() if isinstance(headers, dict) else headers
    for key, value in items:
        if isinstance(value, str):
            value = value.encode()
        if key == FORMAT_HEADER:
            fmt = value.decode("utf-8", "replace") if value is not None else ""
        elif key == TYPE_HEADER:
            typ = value.decode("utf-8", "replace") if value is not None else ""
    return fmt, typ


def offset_of(msg: Any) -> int:
    """A consumed message's offset (-1 when the client reports none)."""
    off = msg.offset()
    return -1 if off is None else int(off)


def partition_of(msg: Any) -> int:
    """A consumed message's partition (-1 when the client reports none)."""
    p = msg.partition()
    return -1 if p is None else int(p)


def sniff_format(value: bytes | None) -> str | None:
    """``json`` or ``arrow`` from the first bytes of a message without a format header."""
    if not value:
        return None
    if value.startswith(_ARROW_MARKER):
        return ARROW
    if value.lstrip()[:1] == b"{":
        return JSON
    return None


# -- encoding ------------------------------------------------------------------------
def encode_json(frame: pl.DataFrame) -> list[bytes]:
    """One JSON object per row (canonical columns; columns that are all null omitted).

    Floats are written in shortest round-trip form, so decoding gives the same bits.
    NaN becomes ``null``.
    """
    df = conform(frame)
    keep = [c for c in df.columns if c in ("cell_id", "ts", "voltage_v", "current_a")
            or df.get_column(c).null_count() < df.height]
    encoded = df.select(pl.struct(keep).struct.json_encode().alias("j")).get_column("j")
    return [s.encode() for s in encoded.to_list()]


def encode_arrow(frame: pl.DataFrame, *, compression: str | None = "lz4") -> bytes:
    """An Arrow IPC stream of the canonical columns (``compression``: lz4, zstd or None)."""
    table = conform(frame).to_arrow(compat_level=pl.CompatLevel.oldest())
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


# -- decoding: measurements ----------------------------------------------------------
def _payload(value: bytes | None) -> str:
    if value is None:
        return ""
    text = value[: MAX_PAYLOAD_CHARS * 4].decode("utf-8", "replace")[:MAX_PAYLOAD_CHARS]
    # PostgreSQL text cannot hold NUL; keep it visible instead.
    return text.replace("\x00", "\\u0000")


def _letter(source: str, offset: int, field: str | None, reason: str,
            payload: str, cell_id: str | None = None, ts: float | None = None) -> dict[str, object]:
    return {"source": source, "row": int(offset), "cell_id": cell_id, "ts": ts,
            "field": field, "reason": reason, "payload": payload}


def _json_diagnosis(value: bytes, error: str) -> tuple[str | None, str, str | None]:
    """(field, reason, cell_id) for a JSON message the fast parser refused."""
    try:
        obj = loads(value)
    except DecodeError as exc:
        return "message", f"invalid JSON: {exc.reason}", None
    if not isinstance(obj, dict):
        return "message", f"expected a JSON object, got {type(obj).__name__}", None
    cid = obj.get("cell_id")
    cell_id = cid if isinstance(cid, str) else None
    for name in _FLOAT_FIELDS:
        v = obj.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            return name, f"expected a number, got {_kind(v)}", cell_id
        if isinstance(v, float) and math.isnan(v):
            return name, "NaN", cell_id
        if isinstance(v, float) and math.isinf(v) or isinstance(v, int) and abs(v) > 1e300:
            return name, "infinite value", cell_id
    for name in _INT_FIELDS:
        v = obj.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int):
            return name, f"expected an integer, got {_kind(v)}", cell_id
        if not -(2**63) <= v < 2**63:
            return name, "integer out of the 64-bit range", cell_id
    if cid is not None and not isinstance(cid, str | int | float):
        return "cell_id", f"expected a string, got {_kind(cid)}", None
    return None, f"cannot decode measurement: {error}", cell_id


def _kind(v: object) -> str:
    if isinstance(v, bool):
        return f"boolean {str(v).lower()}"
    if isinstance(v, str):
        return f"string {v[:40]!r}"
    if isinstance(v, float):
        return f"number {v!r}"
    if v is None:
        return "null"
    return {"dict": "object", "list": "array"}.get(type(v).__name__, type(v).__name__)


def _read_ndjson(lines: list[bytes]) -> pl.DataFrame:
    return pl.read_ndjson(io.BytesIO(b"\n".join(lines)), schema=MEASUREMENT_SCHEMA)


def _decode_json_messages(values: list[bytes], offsets: list[int], source: str,
                          frames: list[pl.DataFrame], row_offsets: list[np.ndarray],
                          letters: list[dict[str, object]],
                          limits: DecodeLimits = DEFAULT_LIMITS) -> None:
    """Decode a run of one-line JSON messages: messages beyond the nesting or width
    limits become dead letters without any parser seeing them; the rest are decoded
    in runs (vectorized)."""
    shape = json_shape(b"\n".join(values), per_line=True, max_depth=limits.max_depth,
                       max_keys=limits.max_columns)
    safe = shape.safe(limits)
    if safe.all():
        _decode_json_run(values, offsets, source, frames, row_offsets, letters)
        return
    start = 0
    for i in np.flatnonzero(~safe).tolist():
        _decode_json_run(values[start:i], offsets[start:i], source, frames, row_offsets, letters)
        if shape.depth[i] > limits.max_depth:
            reason = (f"JSON nested {int(shape.depth[i])} levels deep; the limit is "
                      f"{limits.max_depth}")
        else:
            reason = f"{int(shape.keys[i])} keys; the limit is {limits.max_columns} columns"
        letters.append(_letter(source, offsets[i], "message", reason, _payload(values[i])))
        start = i + 1
    _decode_json_run(values[start:], offsets[start:], source, frames, row_offsets, letters)


def _decode_json_run(values: list[bytes], offsets: list[int], source: str,
                     frames: list[pl.DataFrame], row_offsets: list[np.ndarray],
                     letters: list[dict[str, object]]) -> None:
    """Decode a run of JSON messages, bisecting around bad ones."""
    if not values:
        return
    try:
        df = _read_ndjson(values)
        if df.height == len(values):
            frames.append(df)
            row_offsets.append(np.asarray(offsets, dtype=np.int64))
            return
        error = "not one JSON object per message"
    except BaseException as exc:  # Polars' native panics derive from BaseException
        if is_fatal(exc):
            raise
        error = str(exc)
    if len(values) == 1:
        field, reason, cell_id = _json_diagnosis(values[0], error.splitlines()[0] if error else "")
        letters.append(_letter(source, offsets[0], field, reason, _payload(values[0]), cell_id))
        return
    mid = len(values) // 2
    _decode_json_run(values[:mid], offsets[:mid], source, frames, row_offsets, letters)
    _decode_json_run(values[mid:], offsets[mid:], source, frames, row_offsets, letters)


def _read_arrow_table(value: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> pa.Table:
    """The Arrow table of one IPC stream message (zero-copy views of ``value`` when the
    buffers are uncompressed, the sink's default)."""
    try:
        reader = pa.ipc.open_stream(pa.BufferReader(value))
        check_width(len(reader.schema), limits)  # before any data is read
        return reader.read_all()
    except (SchemaError, pa.ArrowException, ValueError, OSError):
        raise
    except BaseException as exc:  # a native panic: never let it end the worker
        if is_fatal(exc):
            raise
        raise ValueError(f"unreadable Arrow data ({type(exc).__name__})") from None


def _from_arrow(table: pa.Table) -> pl.DataFrame:
    try:
        df = pl.from_arrow(table)
    except (pa.ArrowException, pl.exceptions.PolarsError, ValueError, OSError):
        raise
    except BaseException as exc:  # a native panic: never let it end the worker
        if is_fatal(exc):
            raise
        raise ValueError(f"unreadable Arrow data ({type(exc).__name__})") from None
    if not isinstance(df, pl.DataFrame):  # pragma: no cover - a table always gives a frame
        raise SchemaError("Arrow payload is not a table")
    return df


def _read_arrow(value: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> pl.DataFrame:
    return _from_arrow(_read_arrow_table(value, limits))


def _decode_arrow_run(values: list[bytes], offsets: list[int], source: str,
                      frames: list[pl.DataFrame], row_offsets: list[np.ndarray],
                      letters: list[dict[str, object]]) -> None:
    """A run of Arrow measurement messages: consecutive messages with the same schema
    are converted and canonicalized as one table (one pass instead of one per message:
    the per-message frame work was two thirds of the decode CPU). Should the joint
    table fail any check, its messages are decoded one by one, so a message's fate
    never depends on its neighbours."""
    group: list[tuple[pa.Table, int, bytes]] = []

    def end_group() -> None:
        if len(group) > 1:
            try:
                table = pa.concat_tables([t for t, _, _ in group])
                df = canonicalize(_from_arrow(table), source=source)[0]
            except (SchemaError, pa.ArrowException, pl.exceptions.PolarsError, ValueError,
                    OSError):
                df = None
            if df is not None and df.height == table.num_rows:
                if df.height:
                    frames.append(df)
                    row_offsets.append(np.repeat(np.asarray([o for _, o, _ in group], dtype=np.int64),
                                                 [t.num_rows for t, _, _ in group]))
                group.clear()
                return
        for _, off, value in group:
            _decode_arrow(value, off, source, frames, row_offsets, letters)
        group.clear()

    for value, off in zip(values, offsets, strict=True):
        try:
            table = _read_arrow_table(value)
        except (SchemaError, pa.ArrowException, ValueError, OSError):
            end_group()
            _decode_arrow(value, off, source, frames, row_offsets, letters)  # the dead letter
            continue
        if group and not table.schema.equals(group[0][0].schema):
            end_group()
        group.append((table, off, value))
    end_group()


def _decode_arrow(value: bytes, offset: int, source: str, frames: list[pl.DataFrame],
                  row_offsets: list[np.ndarray], letters: list[dict[str, object]],
                  read: Callable[[bytes], pl.DataFrame] | None = None) -> None:
    """One Arrow IPC message -> rows (``read``: the kind's reader of the payload; default
    canonical measurements) into ``frames``/``row_offsets``, or a dead letter."""
    try:
        df = (read(value) if read is not None
              else canonicalize(_read_arrow(value), source=source)[0])
    except SchemaError as exc:
        letters.append(_letter(source, offset, exc.field or "message",
                               f"Arrow batch: {exc.reason}", f"<Arrow IPC, {len(value)} bytes>"))
        return
    except (pa.ArrowException, pl.exceptions.PolarsError, ValueError, OSError) as exc:
        letters.append(_letter(source, offset, "message", f"broken Arrow IPC stream: {exc}",
                               f"<{len(value)} bytes>"))
        return
    if df.height:
        frames.append(df)
        row_offsets.append(np.full(df.height, offset, dtype=np.int64))


def decode_measurements(values: Sequence[bytes | None], formats: Sequence[str | None],
                        offsets: Sequence[int], *, source: str) -> Decoded:
    """Decode measurement messages of one partition, in offset order.

    ``formats[i]`` is the message's ``ct-format`` header (None: sniff). Messages that
    cannot be read at all (bad JSON, wrong types, NaN in JSON, unknown format, broken
    Arrow, missing columns) become dead letters naming the field; row-level checks
    (ranges, NaN in Arrow, missing values) are left to the engine's validation.
    """
    frames: list[pl.DataFrame] = []
    row_offsets: list[np.ndarray] = []
    letters: list[dict[str, object]] = []
    run_vals: list[bytes] = []
    run_offs: list[int] = []
    arrow_vals: list[bytes] = []
    arrow_offs: list[int] = []

    def end_run() -> None:
        if run_vals:
            _decode_json_messages(list(run_vals), list(run_offs), source, frames, row_offsets,
                                  letters)
            run_vals.clear()
            run_offs.clear()
        if arrow_vals:
            _decode_arrow_run(list(arrow_vals), list(arrow_offs), source, frames, row_offsets,
                              letters)
            arrow_vals.clear()
            arrow_offs.clear()

    for value, fmt, off in zip(values, formats, offsets, strict=True):
        if fmt is None:
            fmt = sniff_format(value)
            if fmt is None:
                end_run()
                letters.append(_letter(source, off, "message",
                                       "empty message" if not value else
                                       f"no {FORMAT_HEADER} header and not recognisable as JSON or Arrow",
                                       _payload(value)))
                continue
        if fmt == JSON:
            if not value or not value.strip():
                end_run()
                letters.append(_letter(source, off, "message", "empty message", ""))
                continue
            if arrow_vals:
                end_run()
            if b"\n" in value or b"\r" in value:
                # Line breaks in valid JSON are whitespace; NDJSON needs one line per message.
                value = value.replace(b"\r", b" ").replace(b"\n", b" ")
            run_vals.append(value)
            run_offs.append(off)
        elif fmt == ARROW:
            if run_vals:
                end_run()
            if not value:
                end_run()
                letters.append(_letter(source, off, "message", "empty message", ""))
                continue
            arrow_vals.append(value)
            arrow_offs.append(off)
        else:
            end_run()
            letters.append(_letter(source, off, FORMAT_HEADER,
                                   f"unknown format {fmt!r}; expected one of {list(FORMATS)}",
                                   _payload(value)))
    end_run()
    frame = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=MEASUREMENT_SCHEMA)
    offs = np.concatenate(row_offsets) if row_offsets else np.zeros(0, dtype=np.int64)
    # Runs, their bisected halves and Arrow messages were appended in message order,
    # so rows are in offset order (the engine's lateness rule depends on arrival order).
    frame, offs, nul = _reject_nul_ids(frame, offs, source)
    letters.extend(nul)
    rejected = dead_letters(letters) if letters else pl.DataFrame(schema=DEAD_LETTER_SCHEMA)
    return Decoded(frame, offs, rejected)


def _reject_nul_ids(frame: pl.DataFrame, offs: np.ndarray, source: str
                    ) -> tuple[pl.DataFrame, np.ndarray, list[dict[str, object]]]:
    """Rows whose cell_id holds a NUL character (no SQL store can keep it) are rejected."""
    if frame.height == 0:
        return frame, offs, []
    bad = frame.get_column("cell_id").str.contains("\x00", literal=True).fill_null(False)
    if not bad.any():
        return frame, offs, []
    mask = bad.to_numpy()
    rows = frame.filter(bad)
    letters = [
        _letter(source, int(o), "cell_id", "cell_id contains a NUL character",
                _payload(json.dumps(r, default=str).encode()), None, r.get("ts"))
        for o, r in zip(offs[mask].tolist(), rows.to_dicts(), strict=True)
    ]
    return frame.filter(~bad), offs[~mask], letters
