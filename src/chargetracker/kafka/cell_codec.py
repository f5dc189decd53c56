"""Cell metadata messages (``ct-type: cell``) of the measurements topic: encode for
producers, decode for workers. The formats and safety rules are those of
:mod:`.codec` (JSON object or array, Arrow IPC; nesting bounded before any parser)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import polars as pl
import pyarrow as pa

from ..decoding import DEFAULT_LIMITS, DecodeError, json_shape, loads
from ..errors import SchemaError
from ..schema import CELL_SCHEMA, DEAD_LETTER_SCHEMA, dead_letters
from .codec import (
    ARROW,
    FORMAT_HEADER,
    FORMATS,
    JSON,
    _kind,
    _letter,
    _payload,
    _read_arrow,
    sniff_format,
)

__all__ = ["encode_cells_json", "decode_cells", "decode_cell_messages"]


def encode_cells_json(cells: pl.DataFrame) -> list[tuple[str, bytes]]:
    """(cell_id, JSON object) per cell row; ``attributes`` is sent as a JSON object."""
    cols = [c for c in CELL_SCHEMA if c in cells.columns]
    if "cell_id" not in cols:
        raise SchemaError("cells need a cell_id column", field="cell_id")
    out = []
    for row in cells.select(cols).to_dicts():
        attrs = row.get("attributes")
        if isinstance(attrs, str) and attrs:
            try:
                row["attributes"] = json.loads(attrs)
            except ValueError:
                pass
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in row.items()}
        out.append((str(row["cell_id"]), json.dumps(clean, separators=(",", ":")).encode()))
    return out


def decode_cells(value: bytes | None, fmt: str | None, offset: int, *, source: str
                 ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(cells in CELL_SCHEMA, dead letters) of one ``ct-type: cell`` message."""
    return decode_cell_messages([value], [fmt], [offset], source=source)


def decode_cell_messages(values: Sequence[bytes | None], formats: Sequence[str | None],
                         offsets: Sequence[int], *, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(cells in CELL_SCHEMA, dead letters) of a run of ``ct-type: cell`` messages.

    A JSON message holds one cell object (or an array of them); an Arrow message a table
    with a ``cell_id`` column and any CELL_SCHEMA columns. Later rows of a cell win.
    """
    rows: list[dict[str, object]] = []
    tables: list[pl.DataFrame] = []
    letters: list[dict[str, object]] = []
    for value, fmt, offset in zip(values, formats, offsets, strict=True):
        fmt = fmt or sniff_format(value)
        try:
            if not value:
                raise SchemaError("empty message", field="message")
            if fmt == JSON:
                depth = json_shape(value, per_line=False).max_depth()
                if depth > DEFAULT_LIMITS.max_depth:
                    raise SchemaError(f"JSON nested {depth} levels deep; the limit is "
                                      f"{DEFAULT_LIMITS.max_depth}", field="message")
                try:
                    obj = loads(value)
                except DecodeError as exc:
                    raise SchemaError(f"invalid JSON: {exc.reason}", field="message") from None
                objs = obj if isinstance(obj, list) else [obj]
                if not all(isinstance(r, dict) for r in objs):
                    raise SchemaError("expected a JSON object (or an array of objects)", field="message")
                parsed = [_cell_row(r) for r in objs]
                for r in parsed:
                    _check_cell(r)
                rows.extend(parsed)
            elif fmt == ARROW:
                if rows:
                    tables.append(pl.DataFrame(rows, schema=CELL_SCHEMA))
                    rows = []
                tables.append(_arrow_cells(value))
            else:
                raise SchemaError(f"unknown format {fmt!r}; expected one of {list(FORMATS)}",
                                  field=FORMAT_HEADER)
        except SchemaError as exc:
            letters.append(_letter(source, offset, exc.field, f"cell message: {exc.reason}",
                                   _payload(value)))
    if rows:
        tables.append(pl.DataFrame(rows, schema=CELL_SCHEMA))
    cells = pl.concat(tables) if tables else pl.DataFrame(schema=CELL_SCHEMA)
    if len(tables) > 1 or cells.height > 1:
        cells = cells.unique(subset=["cell_id"], keep="last", maintain_order=True)
    rejected = dead_letters(letters) if letters else pl.DataFrame(schema=DEAD_LETTER_SCHEMA)
    return cells, rejected


def _check_cell(row: dict[str, object]) -> None:
    cid = row.get("cell_id")
    if not isinstance(cid, str) or not cid or "\x00" in cid:
        raise SchemaError("missing or invalid cell_id", field="cell_id")
    cap = row.get("nominal_capacity_ah")
    if cap is not None and not (isinstance(cap, float) and math.isfinite(cap) and cap > 0):
        raise SchemaError("nominal_capacity_ah must be a positive number", field="nominal_capacity_ah")


def _arrow_cells(value: bytes) -> pl.DataFrame:
    try:
        raw = _read_arrow(value)
    except (pa.ArrowException, pl.exceptions.PolarsError, ValueError, OSError) as exc:
        raise SchemaError(f"broken Arrow IPC stream: {exc}", field="message") from None
    if "cell_id" not in raw.columns:
        raise SchemaError("missing column cell_id", field="cell_id")
    try:
        df = raw.select([pl.col(c).cast(t) if c in raw.columns else pl.lit(None, t).alias(c)
                         for c, t in CELL_SCHEMA.items()])
    except pl.exceptions.PolarsError as exc:
        raise SchemaError(f"cannot convert cells: {exc}", field="message") from None
    cid = df.get_column("cell_id")
    if (cid.is_null() | (cid == "") | cid.str.contains("\x00", literal=True)).fill_null(True).any():
        raise SchemaError("missing or invalid cell_id", field="cell_id")
    cap = df.get_column("nominal_capacity_ah")
    if (cap.is_not_null() & ~(cap.is_finite() & (cap > 0))).fill_null(False).any():
        raise SchemaError("nominal_capacity_ah must be a positive number", field="nominal_capacity_ah")
    return df


def _cell_row(obj: dict[str, object]) -> dict[str, object]:
    row: dict[str, object] = {}
    for name, dtype in CELL_SCHEMA.items():
        v = obj.get(name)
        if name == "attributes" and v is not None and not isinstance(v, str):
            v = json.dumps(v)
        if v is not None:
            if dtype == pl.Float64 and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise SchemaError(f"expected a number, got {_kind(v)}", field=name)
            if dtype == pl.Utf8 and not isinstance(v, str):
                raise SchemaError(f"expected a string, got {_kind(v)}", field=name)
            if dtype == pl.Float64:
                v = float(v)  # type: ignore[arg-type]
        row[name] = v
    return row
