"""Streaming machinery shared by every reader.

A reader turns one file into canonical measurement frames (:data:`schema.MEASUREMENT_SCHEMA`:
``ts`` in s since the epoch UTC, ``voltage_v`` in V, ``current_a`` in A with **+ = charging**)
plus optional *reference columns* (the cycler's own cumulative capacity in Ah and energy in
Wh) and dead letters (:data:`schema.DEAD_LETTER_SCHEMA`) for rows it cannot use.

Text files are read in blocks of at most ``chunk_rows`` lines: memory is bounded by the chunk
size, never by the file size. Each block is parsed by Polars' CSV parser with every column as
text, then converted with vectorized expressions (no Python loop per row). Bad rows become dead
letters naming the file, the 1-based **line number** in the file, the column and the reason;
the good rows next to them are kept. Missing columns raise :class:`SchemaError` when the reader
is opened.
"""

from __future__ import annotations

import csv
import io
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import polars as pl

from ..errors import ReaderError, SchemaError
from ..schema import CELL_SCHEMA, DEAD_LETTER_SCHEMA, MEASUREMENT_SCHEMA, dead_letters, validate
from .fields import (  # noqa: F401 - re-exported: readers and sources import them from here
    OLE_EPOCH_DAYS,
    ColumnLookup,
    Field,
    _field_exprs,
    _norm,
    datetime_to_epoch,
    duration_seconds,
    time_scale,
    unit_scale,
)
from .source import Sniff, open_text, skip, sniff

__all__ = [
    "REFERENCE_COLUMNS",
    "ReadChunk",
    "Reader",
    "TextReader",
    "Field",
    "ColumnLookup",
    "datetime_to_epoch",
    "time_scale",
    "MAX_COLUMNS",
    "OLE_EPOCH_DAYS",
    "duration_seconds",
    "shown_columns",
]

#: Widest header read: a cycler export has tens of columns, a few hundred with aux channels.
#: A wider one is a wrong separator or a hostile file; refusing it bounds time and memory.
MAX_COLUMNS = 2000


def shown_columns(columns: Sequence[str], limit: int = 40) -> str:
    """Column names for a message: the first ``limit`` and how many more."""
    cols = [str(c)[:60] for c in list(columns)[:limit]]
    more = len(columns) - len(cols)
    return f"{cols}" + (f" and {more:,} more" if more > 0 else "")

#: Optional cycler reference columns a reader may return with ``keep_reference=True``.
#: Units: Ah and Wh, as the cycler accumulated them (Arbin/Battery Archive: cumulative
#: within the test; Maccor ``capacity_ah``/``energy_wh``: the file's unsigned Amp-hr/Watt-hr).
REFERENCE_COLUMNS: dict[str, pl.DataType] = {
    "charge_capacity_ah": pl.Float64(),
    "discharge_capacity_ah": pl.Float64(),
    "charge_energy_wh": pl.Float64(),
    "discharge_energy_wh": pl.Float64(),
    "capacity_ah": pl.Float64(),
    "energy_wh": pl.Float64(),
}

@dataclass(frozen=True, slots=True)
class ReadChunk:
    """One chunk of a file.

    ``frame``: canonical columns (schema order) followed by any reference columns;
    ``rejected``: dead letters (:data:`schema.DEAD_LETTER_SCHEMA`), ``row`` = 1-based line
    number in a text file (0-based row index in a Parquet file).
    """

    frame: pl.DataFrame
    rejected: pl.DataFrame


def _blank_metadata(cell_id: str) -> dict[str, Any]:
    meta: dict[str, Any] = {k: None for k in CELL_SCHEMA}
    meta["cell_id"] = cell_id
    return meta


class Reader(ABC):
    """Iterate a file as :class:`ReadChunk` objects (canonical frames + dead letters).

    Attributes: ``format`` (format name), ``path``, ``cell_id`` (default: file name stem),
    ``metadata`` (dict with every :data:`schema.CELL_SCHEMA` key, None where unknown;
    ``attributes`` is a JSON object string), ``total_bytes`` (file size) and ``bytes_read``
    (bytes consumed so far, for a progress bar), ``rows_read`` / ``rows_rejected``.
    Iterating again re-reads the file from the start.
    """

    format: str = "?"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        cell_id: str | None = None,
        chunk_rows: int = 250_000,
        keep_reference: bool = False,
        timezone: str = "UTC",
        start_time: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        #: The file name, for messages: never the full path (an upload's temporary folder).
        self.name = self.path.name
        if not self.path.is_file():
            raise ReaderError(f"{self.name}: no such file")
        if chunk_rows < 1:
            raise ReaderError(f"chunk_rows must be >= 1, got {chunk_rows}")
        self.source = str(self.path)
        stem = self.path.stem
        if self.path.suffix.lower() in (".gz", ".bz2", ".xz", ".zip") and "." in stem:
            stem = Path(stem).stem  # run.csv.gz -> run
        self.cell_id = cell_id if cell_id is not None else stem
        self.chunk_rows = int(chunk_rows)
        self.keep_reference = keep_reference
        self.timezone = timezone
        self.start_time = start_time
        self.total_bytes = self.path.stat().st_size
        self.sniff: Sniff = sniff(self.path)
        self.bytes_read = 0
        self.rows_read = 0
        self.rows_rejected = 0
        self._attributes: dict[str, Any] = {"format": self.format, "source_file": self.path.name}
        self._meta = _blank_metadata(self.cell_id)
        self._user_meta = dict(metadata or {})

    # -- metadata ---------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, Any]:
        meta = dict(self._meta)
        attrs = dict(self._attributes)
        for k, v in self._user_meta.items():
            if k in CELL_SCHEMA and k != "attributes":
                meta[k] = v
            elif k == "attributes" and isinstance(v, Mapping):
                attrs.update(v)
            else:
                attrs[k] = v
        meta["attributes"] = json.dumps(attrs, default=str, sort_keys=True)
        return meta

    # -- iteration --------------------------------------------------------------------
    @abstractmethod
    def __iter__(self) -> Iterator[ReadChunk]: ...

    def read_all(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Every chunk concatenated: (frame, rejected). For small files."""
        frames: list[pl.DataFrame] = []
        rejected: list[pl.DataFrame] = []
        for chunk in self:
            frames.append(chunk.frame)
            rejected.append(chunk.rejected)
        frame = pl.concat(frames, how="vertical") if frames else self._empty_frame()
        rej = pl.concat(rejected, how="vertical") if rejected else dead_letters()
        return frame, rej

    def _reference_names(self) -> list[str]:
        return []

    def _empty_frame(self) -> pl.DataFrame:
        schema: dict[str, pl.DataType] = dict(MEASUREMENT_SCHEMA)
        if self.keep_reference:
            for name in self._reference_names():
                schema[name] = REFERENCE_COLUMNS[name]
        return pl.DataFrame(schema=schema)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.source!r} cell_id={self.cell_id!r}>"


class TextReader(Reader):
    """A delimited text file read in blocks of lines.

    Subclasses define the header (:meth:`_read_header`), the column plan (:meth:`_plan`)
    and the conversion of parsed columns into canonical ones (:meth:`_finish`).
    """

    separator: str = ","
    probe_lines: int = 1000
    #: Numbers written with a decimal comma (``3,71``): converted before parsing.
    decimal_comma: bool = False
    #: Epoch of the file's test time 0, s (set by :meth:`_calibrate_origin`).
    _origin: float = 0.0

    def __init__(self, path: str | os.PathLike[str], **kw: Any) -> None:
        super().__init__(path, **kw)
        try:
            with open_text(self.path, self.sniff) as fh:
                self.columns, self._header_lines, self._data_offset = self._read_header(fh)
                if len(self.columns) > MAX_COLUMNS:
                    raise SchemaError(
                        f"the header has {len(self.columns):,} columns; at most {MAX_COLUMNS:,} "
                        "are read (is the separator right?)", source=self.name)
                self.columns = _dedupe([c.strip() for c in self.columns])
                self.fields: list[Field] = self._plan(ColumnLookup(self.columns))
                probe = fh.read(1 << 20)
        except OSError as exc:
            raise ReaderError(f"{self.name}: cannot read: {exc.strerror or exc}") from None
        # Calibrate (time origin, datetime layout) on the first lines, independently of
        # chunk_rows, so that any chunking gives exactly the same frame.
        cut = probe.rfind(b"\n") + 1 if len(probe) == (1 << 20) else len(probe)
        lines = probe[:cut].split(b"\n")[: self.probe_lines]
        raw = self._parse_block(self._transform_block(b"\n".join(lines)))
        parsed, _ = self._parse_fields(raw)
        self._calibrate(parsed)

    # -- hooks --------------------------------------------------------------------------
    def _transform_block(self, block: bytes) -> bytes:
        """Rewrite a block of data lines before parsing (e.g. strip whole-line quotes)."""
        return block

    def _read_header(self, fh: BinaryIO) -> tuple[list[str], int, int]:
        """Column names, number of lines before the data, byte offset of the data."""
        line = fh.readline()
        if not line:
            raise SchemaError("empty file: no header line", source=self.name)
        text = _decode(line)
        return _split_header(text, self.separator), 1, len(line)

    @abstractmethod
    def _plan(self, cols: ColumnLookup) -> list[Field]:
        """The fields to parse; raise SchemaError naming a missing required column."""

    def _calibrate(self, probe: pl.DataFrame) -> None:
        """Learn file-wide constants (e.g. the epoch of Test_Time = 0) from the first rows."""

    @abstractmethod
    def _finish(self, parsed: pl.DataFrame) -> pl.DataFrame:
        """Parsed fields -> canonical (+ reference) columns. May add ``__reject_field`` and
        ``__reject_reason`` (null = keep) to reject rows for format-specific reasons."""

    # -- helpers for subclasses ---------------------------------------------------------
    def _require(self, cols: ColumnLookup, label: str, *keys: str,
                 prefix: bool = False) -> tuple[str, str | None]:
        hit = cols.find(*keys, prefix=prefix)
        if hit is None:
            raise SchemaError(
                f"{self.format} file lacks the {label!r} column; columns seen: "
                f"{shown_columns(cols.columns)}", field=label, source=self.name,
            )
        return hit

    def _origin_from(self, probe: pl.DataFrame, epoch: str, rel: str) -> float | None:
        """Epoch of relative time 0 from the first row having both columns."""
        if epoch not in probe.columns or rel not in probe.columns:
            return None
        both = probe.filter(pl.col(epoch).is_finite() & pl.col(rel).is_finite())
        if both.height == 0:
            return None
        return float(both[epoch][0] - both[rel][0])

    def _reference_names(self) -> list[str]:
        return [f.out for f in self.fields if f.out in REFERENCE_COLUMNS]

    def _calibrate_origin(self, probe: pl.DataFrame, how_from_file: str) -> None:
        """Epoch of test time 0 (``self._origin``): the ``start_time`` option, else the
        file's absolute time minus its test time on the first row having both."""
        origin = self._origin_from(probe, "__epoch", "__test_time")
        if self.start_time is not None:
            self._origin, how = float(self.start_time), "start_time option"
        elif origin is not None:
            self._origin, how = origin, how_from_file
        else:
            self._origin, how = 0.0, "unknown (ts is the test time, relative)"
        self._attributes["time_origin"] = how
        self._attributes["test_start_epoch_s"] = self._origin

    # -- iteration ----------------------------------------------------------------------
    def __iter__(self) -> Iterator[ReadChunk]:
        self.bytes_read = self._data_offset
        self.rows_read = 0
        self.rows_rejected = 0
        try:
            fh = open_text(self.path, self.sniff)
        except OSError as exc:
            raise ReaderError(f"{self.name}: cannot read: {exc.strerror or exc}") from None
        with fh:
            skip(fh, self._data_offset)
            line_no = self._header_lines + 1
            for block, n_lines, n_bytes in _line_blocks(fh, self.chunk_rows):
                block = self._transform_block(block)
                raw = self._parse_block_typed(block, n_lines)
                if raw is None:
                    raw = self._parse_block(block)
                if raw.height != n_lines:  # pragma: no cover - _parse_block guarantees it
                    raise ReaderError(f"{self.name}: internal line count mismatch near line {line_no}")
                lines = pl.int_range(line_no, line_no + n_lines, dtype=pl.Int64, eager=True)
                chunk = self._process(raw, lines)
                line_no += n_lines
                # Decoded bytes of a compressed file outnumber the file's: clamp the progress.
                self.bytes_read = min(self.bytes_read + n_bytes, self.total_bytes)
                self.rows_read += chunk.frame.height
                self.rows_rejected += chunk.rejected.height
                yield chunk
        self.bytes_read = self.total_bytes

    def _parse_block_typed(self, block: bytes, n_lines: int) -> pl.DataFrame | None:
        """Fast path: only the planned columns, numbers parsed as numbers.

        Returns None whenever the block is not clean (a value that is not a number, a
        blank or ragged line, odd quoting): the text path then finds and names every bad
        line exactly. Clean blocks, the usual case, skip the per-value text handling.
        """
        if self.separator == "\t" or not block or self.decimal_comma:
            return None
        wanted = [f for f in self.fields if not f.probe_only]
        sources = list(dict.fromkeys(f.source for f in wanted))
        numeric = {f.source for f in wanted if f.kind in ("float", "int", "epoch")}
        required = {f.source for f in wanted if f.required} & numeric
        text = {f.source for f in wanted if f.kind in ("str", "datetime")}
        idx = sorted(self.columns.index(c) for c in sources)
        names = [self.columns[i] for i in idx]
        # Without a header polars names columns column_1..N; rename after the projection.
        schema = {f"column_{i + 1}": (pl.Utf8 if c in text or c not in numeric else pl.Float64)
                  for i, c in zip(idx, names, strict=True)}
        try:
            df = pl.read_csv(
                io.BytesIO(block), has_header=False, columns=idx, schema_overrides=schema,
                separator=self.separator, quote_char='"', raise_if_empty=False,
            )
        except (pl.exceptions.PolarsError, ValueError):
            return None
        if df.width != len(names):
            return None
        df.columns = names
        if df.height != n_lines or any(df.get_column(c).null_count() for c in required):
            return None
        return df

    def _parse_block(self, block: bytes) -> pl.DataFrame:
        """Every line of ``block`` as one row of text columns (blank line -> all null)."""
        names = self.columns
        n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") or not block else 1)
        if n_lines == 0:
            return pl.DataFrame(schema={c: pl.Utf8 for c in names})
        try:
            df = pl.read_csv(
                io.BytesIO(block), has_header=False, new_columns=names,
                schema={c: pl.Utf8 for c in names}, separator=self.separator,
                truncate_ragged_lines=True, encoding="utf8-lossy", quote_char='"',
            )
            if df.height == n_lines:
                return df
        except pl.exceptions.PolarsError:
            pass
        # Fallback (leading blank lines, odd quoting): split lines ourselves, still vectorized.
        text = block.decode("utf-8", errors="replace")
        if text.endswith("\n"):
            text = text[:-1]
        s = pl.Series("__l", text.split("\n"), dtype=pl.Utf8)
        df = pl.DataFrame(s).select(
            pl.col("__l").str.strip_chars_end("\r")
            .str.split_exact(self.separator, len(names) - 1)
            .struct.rename_fields(names)
        ).unnest("__l")
        return df.with_columns(
            pl.col(c).str.strip_chars('"').replace("", None) for c in names
        )

    def _parse_fields(self, raw: pl.DataFrame) -> tuple[pl.DataFrame, list[tuple[Field, pl.Expr, pl.Expr]]]:
        """Parsed values for every field, plus (field, fail-condition, reason) per field."""
        exprs: list[pl.Expr] = []
        checks: list[tuple[Field, pl.Expr, pl.Expr]] = []
        for f in self.fields:
            value, fail, reason = _field_exprs(f, raw.schema[f.source])
            exprs.append(value.alias(f.out))
            checks.append((f, fail, reason))
        return raw.select(exprs), checks

    def _process(self, raw: pl.DataFrame, lines: pl.Series) -> ReadChunk:
        return process_chunk(self, raw, lines)


def process_chunk(reader: TextReader, raw: pl.DataFrame, lines: pl.Series) -> ReadChunk:
    """Parse, convert and validate one chunk of raw rows; shared by text and Parquet."""
    raw_cols = [c for c in raw.columns]
    # Blank lines carry no data: not a measurement and not worth a dead letter.
    text_cols = [c for c in raw_cols if raw.schema[c] == pl.Utf8]
    if text_cols and len(text_cols) == len(raw_cols):
        blank = pl.all_horizontal(
            [pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "") for c in raw_cols]
        )
    else:
        blank = pl.lit(False)
    raw = raw.with_columns(lines.alias("__line")).filter(~blank)
    if getattr(reader, "decimal_comma", False):
        numeric = {f.source for f in reader.fields if f.kind in ("float", "int", "epoch", "duration")}
        raw = raw.with_columns(pl.col(c).str.replace_all(",", ".", literal=True)
                               for c in numeric if raw.schema[c] == pl.Utf8)

    values: list[pl.Expr] = []
    field_expr: pl.Expr = pl.lit(None, dtype=pl.Utf8)
    reason_expr: pl.Expr = pl.lit(None, dtype=pl.Utf8)
    for f in reversed(reader.fields):
        if f.probe_only:
            continue
        value, fail, reason = _field_exprs(f, raw.schema[f.source])
        values.append(value.alias(f.out))
        fail = fail.fill_null(False)
        field_expr = pl.when(fail).then(pl.lit(f.source)).otherwise(field_expr)
        reason_expr = pl.when(fail).then(reason).otherwise(reason_expr)
    parsed = raw.select(
        pl.col("__line"), *values, field_expr.alias("__field"), reason_expr.alias("__reason")
    )
    bad_parse = parsed.filter(pl.col("__field").is_not_null()).select(
        "__line", "__field", "__reason"
    )
    ok = parsed.filter(pl.col("__field").is_null()).drop("__field", "__reason")

    frame = reader._finish(ok)
    if "cell_id" not in frame.columns:
        frame = frame.with_columns(pl.lit(reader.cell_id, dtype=pl.Utf8).alias("cell_id"))
    bad_finish = pl.DataFrame(schema={"__line": pl.Int64, "__field": pl.Utf8, "__reason": pl.Utf8})
    if "__reject_field" in frame.columns:
        rej_mask = pl.col("__reject_field").is_not_null()
        bad_finish = frame.filter(rej_mask).select(
            "__line", pl.col("__reject_field").alias("__field"),
            pl.col("__reject_reason").alias("__reason"),
        )
        frame = frame.filter(~rej_mask).drop("__reject_field", "__reject_reason")

    # Plausibility, NaN and inf checks: the one shared rule set in schema.validate.
    canon = frame.select([c for c in MEASUREMENT_SCHEMA if c in frame.columns])
    checked = validate(canon, source=reader.source)
    canonical_source = {f.canonical or f.out: f.source for f in reader.fields}
    keep_refs = [c for c in REFERENCE_COLUMNS if c in frame.columns] if reader.keep_reference else []
    if checked.rejected.height:
        idx = checked.rejected.get_column("row")
        line_of = frame.get_column("__line").gather(idx)
        mask = ~pl.int_range(0, frame.height, eager=True).is_in(idx.implode())
        good = pl.concat([checked.good, frame.filter(mask).select(keep_refs)], how="horizontal")
        bad_valid = pl.DataFrame({
            "__line": line_of,
            "__field": checked.rejected.get_column("field").replace(canonical_source),
            "__reason": checked.rejected.get_column("reason"),
            "__ts": checked.rejected.get_column("ts"),
        })
    else:
        good = pl.concat([checked.good, frame.select(keep_refs)], how="horizontal")
        bad_valid = None

    rejected = _dead_letters(reader, raw, raw_cols, bad_parse, bad_finish, bad_valid)
    return ReadChunk(good, rejected)


def _dead_letters(
    reader: TextReader,
    raw: pl.DataFrame,
    raw_cols: list[str],
    bad_parse: pl.DataFrame,
    bad_finish: pl.DataFrame,
    bad_valid: pl.DataFrame | None,
) -> pl.DataFrame:
    parts = [bad_parse.with_columns(pl.lit(None, dtype=pl.Float64).alias("__ts")),
             bad_finish.with_columns(pl.lit(None, dtype=pl.Float64).alias("__ts"))]
    if bad_valid is not None:
        parts.append(bad_valid)
    bad = pl.concat([p.select("__line", "__field", "__reason", "__ts") for p in parts],
                    how="vertical")
    if bad.height == 0:
        return dead_letters()
    # The rejected line as the file had it (JSON of its text fields), so nothing is lost.
    payload = raw.filter(pl.col("__line").is_in(bad.get_column("__line").implode())).select(
        "__line",
        pl.struct([pl.col(c).cast(pl.Utf8) for c in raw_cols]).struct.json_encode().alias("payload"),
    )
    cell_src = next((f.source for f in reader.fields if f.out == "cell_id"), None)
    out = bad.join(payload, on="__line", how="left")
    if cell_src is not None:
        cids = raw.select("__line", pl.col(cell_src).cast(pl.Utf8).alias("__cid"))
        out = out.join(cids, on="__line", how="left")
        cid_expr = pl.col("__cid")
    else:
        cid_expr = pl.lit(reader.cell_id, dtype=pl.Utf8)
    return out.sort("__line").select(
        pl.lit(reader.source, dtype=pl.Utf8).alias("source"),
        pl.col("__line").cast(pl.Int64).alias("row"),
        cid_expr.alias("cell_id"),
        pl.col("__ts").alias("ts"),
        pl.col("__field").alias("field"),
        pl.col("__reason").alias("reason"),
        pl.col("payload"),
    ).cast(DEAD_LETTER_SCHEMA)  # type: ignore[arg-type]


def _line_blocks(fh: BinaryIO, chunk_rows: int) -> Iterator[tuple[bytes, int, int]]:
    """Yield (block, lines in block, bytes in block) with at most ``chunk_rows`` lines each.

    Memory is O(read size): the file is read in pieces of at most 16 MiB, each cut at its
    last newline (the partial line is carried into the next piece); a piece holding more
    than ``chunk_rows`` lines is cut further at every ``chunk_rows``-th newline (found
    with NumPy, not a per-line loop).
    """
    read_size = int(min(max(chunk_rows * 64, 1 << 16), 1 << 24))
    carry = b""
    while True:
        data = fh.read(read_size)
        if not data:
            if carry:
                yield carry, carry.count(b"\n") + (0 if carry.endswith(b"\n") else 1), len(carry)
            return
        buf = carry + data if carry else data
        cut = buf.rfind(b"\n") + 1
        if cut == 0:
            carry = buf
            continue
        block, carry = (buf, b"") if cut == len(buf) else (buf[:cut], buf[cut:])
        n = block.count(b"\n")
        if n <= chunk_rows:
            yield block, n, len(block)
            continue
        pos = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
        start = 0
        for k in range(chunk_rows - 1, n, chunk_rows):
            end = int(pos[k]) + 1
            yield block[start:end], chunk_rows, end - start
            start = end
        if start < len(block):
            yield block[start:], n % chunk_rows, len(block) - start


def _decode(line: bytes) -> str:
    text = line.decode("utf-8", errors="replace")
    return text.lstrip("\ufeff").rstrip("\r\n")


def _split_header(text: str, sep: str) -> list[str]:
    try:
        row = next(csv.reader([text], delimiter=sep, quotechar='"'), [])
    except csv.Error:  # a stray CR or NUL inside the line: split it plainly
        row = [c.strip('"') for c in text.replace("\r", " ").replace("\0", "").split(sep)]
    # Trailing separators leave empty names; give them placeholder names.
    return [c if c.strip() else f"__extra{i}" for i, c in enumerate(row)]


def _dedupe(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            out.append(f"{n}__{seen[n]}")
        else:
            seen[n] = 0
            out.append(n)
    return out
