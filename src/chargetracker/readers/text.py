"""Delimited text exports read in blocks of lines.

:class:`TextReader` is the base of every text format: a subclass names its header layout
(:meth:`TextReader._read_header`), its column plan (:meth:`TextReader._plan`) and how parsed
columns become canonical ones (:meth:`TextReader._finish`). The file is read in blocks of
about 16 MiB (:mod:`.blocks`); memory is bounded by the block size, never by the file size.

Each block is first parsed by Polars' CSV parser with only the planned columns, numbers as
numbers (the fast path: as fast as a plain typed ``polars.read_csv``). A block that is not
clean (a value that is not a number, a blank or ragged line, odd quoting) is parsed again
with every column as text, so that every bad line is found and named exactly; the good
rows beside it are kept. Chunks hold at most ``chunk_rows`` rows.
"""

from __future__ import annotations

import csv
import io
import os
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np
import polars as pl

from ..errors import ReaderError, SchemaError
from .base import MAX_COLUMNS, REFERENCE_COLUMNS, ReadChunk, Reader, shown_columns
from .blocks import block_size, count_lines, read_blocks, split_lines
from .chunk import process_chunk
from .fields import ColumnLookup, Field, _field_exprs
from .source import open_text, skip

__all__ = ["TextReader"]


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
    #: Which typed-parse layout read the last block (see :meth:`_parse_block_typed`).
    _typed_attempt: int = 0
    #: Rows of the probe converted first (0: convert the whole probe); see
    #: :meth:`_head_calibrates`.
    calibration_head_rows: int = 0
    #: True while the probe is parsed: the typed parse then reads probe-only fields too.
    _probing: bool = False

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
        block = self._transform_block(_first_lines(probe[:cut], self.probe_lines))
        raw = self._parse_probe(block)
        parsed = None
        if self.calibration_head_rows:
            # Field values are row by row, so the head's rows equal the full probe's first
            # rows; when they settle the calibration, the other rows are not converted
            # (the string datetime parse of the probe is most of the open cost).
            head, _ = self._parse_fields(raw.head(self.calibration_head_rows))
            parsed = head if self._head_calibrates(head) else None
        if parsed is None:
            parsed, _ = self._parse_fields(raw)
        self._calibrate(parsed)

    def _parse_probe(self, block: bytes) -> pl.DataFrame:
        """The probe lines parsed for calibration: typed (every field, probe-only ones
        included) when that layout reads them one row a line, else as text.

        The typed parse is the one clean blocks are read with, so the calibration sees the
        values the data will have; it costs a fraction of the text parse and of the string
        field expressions (the open cost of a small file, issue 14)."""
        attempt, self._probing = self._typed_attempt, True
        # Labels as numbers (as the text parse reads them; calibration uses none): no failed
        # parse for labels written "1.0"; times written as text are read as text at once.
        self._typed_attempt = 2 if self._text_times_first(block) else 1
        try:
            typed = self._parse_block_typed(block)
        finally:
            self._probing = False
            # The first data block starts from the layout its first line asks for: a failed
            # parse of a 16 MiB block costs ~1.5 ms (two for Neware's clock times). Only the
            # speed depends on it (every layout gives the same field values); with no clear
            # sign, the order is that without the probe.
            self._typed_attempt = self._data_layout(block, attempt)
        if typed is not None and typed.height == count_lines(block):
            return typed
        return self._parse_block(block)

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

    def _head_calibrates(self, head: pl.DataFrame) -> bool:
        """True when :meth:`_calibrate` of ``head`` (the probe's first rows, converted)
        gives exactly what it gives for the whole probe. Only with ``calibration_head_rows``."""
        return False

    def _origin_settled(self, head: pl.DataFrame) -> bool:
        """True when :meth:`_calibrate_origin` of the whole probe gives what it gives for
        ``head``: a start_time option, no epoch or test time column, or a first row having
        both in the head (the first such row of the probe, the head being its prefix)."""
        if self.start_time is not None:
            return True
        if "__epoch" not in head.columns or "__test_time" not in head.columns:
            return True
        return self._origin_from(head, "__epoch", "__test_time") is not None

    @abstractmethod
    def _finish(self, parsed: pl.DataFrame) -> pl.DataFrame:
        """Parsed fields -> canonical (+ reference) columns. May add ``__reject_field`` and
        ``__reject_reason`` (null = keep) to reject rows for format-specific reasons. Keeps a
        parsed ``cell_id`` as it is (the fused pass, :mod:`.fused`, checks it as a field)."""

    def _finish_fused(self, cols: dict[str, pl.Series]) -> dict[str, pl.Series] | None:
        """:meth:`_finish` of clean parsed columns for the fused pass (:mod:`.fused`), as
        columns by name, without building a frame and running expressions on it (each costs
        a fraction of a millisecond a chunk); None: the pass calls :meth:`_finish`. An
        override gives exactly the values :meth:`_finish` gives and never rejects a row."""
        return None

    def _finish_origin(self, cols: dict[str, pl.Series], rel: str,
                       drop: tuple[str, ...] = ()) -> dict[str, pl.Series]:
        """``ts`` = ``rel`` + the test start (``self._origin``), ``rel`` and ``drop``
        removed: the :meth:`_finish_fused` of tables whose ``_finish`` is that expression
        (the same float64 addition, so the same values)."""
        out = {k: v for k, v in cols.items() if k != rel and k not in drop}
        out["ts"] = (cols[rel] + self._origin).alias("ts")
        return out

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
        # NumPy, not a filter query (one per call, twice an open): nulls read as NaN.
        e = probe.get_column(epoch).cast(pl.Float64).to_numpy()
        t = probe.get_column(rel).cast(pl.Float64).to_numpy()
        hit = np.flatnonzero(np.isfinite(e) & np.isfinite(t))
        if hit.size == 0:
            return None
        return float(e[hit[0]] - t[hit[0]])

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
            for block in read_blocks(fh, block_size(self.chunk_rows)):
                n_bytes = len(block)
                block = self._transform_block(block)
                raw = self._parse_block_typed(block)
                if raw is not None:
                    pieces = [(raw.slice(at, self.chunk_rows), line_no + at)
                              for at in range(0, raw.height, self.chunk_rows)]
                else:
                    pieces = []
                    at = line_no
                    for part, n_lines in split_lines(block, self.chunk_rows):
                        text = self._parse_block(part)
                        if text.height != n_lines:  # pragma: no cover - _parse_block guarantees it
                            raise ReaderError(f"{self.name}: internal line count mismatch near "
                                              f"line {at}")
                        pieces.append((text, at))
                        at += n_lines
                total = sum(p.height for p, _ in pieces)
                start, done = self.bytes_read, 0
                for piece, first in pieces:
                    chunk = process_chunk(self, piece, first)
                    done += piece.height
                    # Decoded bytes of a compressed file outnumber the file's: clamp the progress.
                    self.bytes_read = min(start + n_bytes * done // max(total, 1), self.total_bytes)
                    self.rows_read += chunk.frame.height
                    self.rows_rejected += chunk.rejected.height
                    yield chunk
                line_no += total
                # The block and its parse are not needed any more: free them before the next
                # read (see blocks._read_blocks_seekable).
                del block, raw, pieces
        self.bytes_read = self.total_bytes

    def _parse_block_typed(self, block: bytes) -> pl.DataFrame | None:
        """Fast path: only the planned columns, numbers parsed as numbers, one row a line.

        Returns None whenever the block is not clean (a value that is not a number, a
        blank or ragged line, odd quoting): the text path then finds and names every bad
        line exactly. Clean blocks, the usual case, skip the per-value text handling.
        """
        if not block or self.decimal_comma:
            return None
        wanted = [f for f in self.fields if self._probing or not f.probe_only]
        sources = list(dict.fromkeys(f.source for f in wanted))
        numeric = {f.source for f in wanted if f.kind in ("float", "int", "epoch")}
        required = {f.source for f in wanted if f.required} & numeric
        text = {f.source for f in wanted if f.kind == "str"}
        # Durations and times written as numbers (s, epoch s) parse as numbers; "1d 02:03:04"
        # or "2024-05-01 12:00:00" only as text.
        durations = {f.source for f in wanted if f.kind in ("duration", "datetime")} - text
        idx = sorted(self.columns.index(c) for c in sources)
        ints = {f.source for f in wanted if f.kind == "int"} - text
        df = None
        # Labels as integers first ("1.0" needs the float attempt); then as text.
        attempts = [(ints, durations), (set(), durations), (set(), set())]
        if not durations:
            attempts = attempts[::2]
        # Start with the layout that read the previous block: a file whose durations are
        # text ("00:01:00") would otherwise fail two parses per block before the third.
        first = min(self._typed_attempt, len(attempts) - 1)
        for k in [first, *(k for k in range(len(attempts)) if k != first)]:
            as_int, as_number = attempts[k]
            # Every column by position (the header's names); only the projected ones are parsed.
            schema = {c: (pl.Int64 if c in as_int else pl.Float64
                          if (c in numeric or c in as_number) and c not in text
                          else pl.Utf8) for c in self.columns}
            try:
                df = pl.read_csv(
                    block, has_header=False, columns=idx, schema=schema,
                    separator=self.separator, quote_char='"', raise_if_empty=False,
                )
                self._typed_attempt = k
                break
            except (pl.exceptions.PolarsError, ValueError):
                continue
        if df is None:
            return None
        if df.width != len(idx) or df.height == 0:
            return None
        if any(df.get_column(c).null_count() for c in required):
            return None
        # One row per line: a quoted field holding a newline would shift the line numbers.
        if b'"' in block and df.height != count_lines(block):
            return None
        return df

    def _data_layout(self, block: bytes, default: int) -> int:
        """The typed-parse layout (see :meth:`_parse_block_typed`) that the data fields of the
        first line of ``block`` need when that is plain: a duration or datetime written as
        clock text (a ``:``) needs the text layout, an integer label written as a float
        (``1.0``, ``1E+000``) the float one; ``default`` otherwise."""
        wanted = [f for f in self.fields if not f.probe_only and f.source in self.columns]
        text = {f.source for f in wanted if f.kind == "str"}
        times = {f.source for f in wanted if f.kind in ("duration", "datetime")} - text
        ints = {f.source for f in wanted if f.kind == "int"} - text
        end = block.find(b"\n")
        cells = _split_header(_decode(block if end < 0 else block[:end]), self.separator)

        def cell(source: str) -> str:
            at = self.columns.index(source)
            return cells[at].strip() if at < len(cells) else ""

        if any(":" in cell(c) for c in times):
            return 2
        if any(c for c in ints if any(ch in cell(c) for ch in ".eE")):
            return 1  # labels as floats (with or without times as numbers)
        return default

    def _text_times_first(self, block: bytes) -> bool:
        """True when the first line of ``block`` has a duration or datetime field written as
        text ("2024-05-01 12:00:00"): the typed parse then reads those as text at once. Only
        the speed depends on it: every layout gives the same field values."""
        end = block.find(b"\n")
        cells = _split_header(_decode(block if end < 0 else block[:end]), self.separator)
        for f in self.fields:
            if f.kind not in ("duration", "datetime") or f.source not in self.columns:
                continue
            at = self.columns.index(f.source)
            try:
                float(cells[at])
            except (IndexError, ValueError):
                return True
        return False

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

    def _parse_fields(
        self, raw: pl.DataFrame,
    ) -> tuple[pl.DataFrame, list[tuple[Field, pl.Expr | None, pl.Expr]]]:
        """Parsed values for every field, plus (field, fail condition or None, reason)."""
        exprs: list[pl.Expr] = []
        checks: list[tuple[Field, pl.Expr | None, pl.Expr]] = []
        for f in self.fields:
            value, fail, reason = _field_exprs(f, raw.schema[f.source])
            exprs.append(value.alias(f.out))
            checks.append((f, fail, reason))
        return raw.select(exprs), checks


def _first_lines(data: bytes, n: int) -> bytes:
    """The first ``n`` lines of ``data`` without the newline after the last one (all of
    ``data`` when it has fewer): ``b"\\n".join(data.split(b"\\n")[:n])`` without splitting
    a MiB into lines."""
    if n <= 0:
        return b""
    # n splits only: n small pieces and the rest, whose length places the n-th newline.
    parts = data.split(b"\n", n)
    if len(parts) <= n:
        return data
    return data[: len(data) - len(parts[-1]) - 1]


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
