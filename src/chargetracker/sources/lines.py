"""Parse a cycler file incrementally: complete lines from a byte offset, with the file's reader.

A cycler PC appends rows to its export while a test runs, and may be caught in the middle
of writing a line. :class:`LineParser` opens the file's reader once (format detection,
column mapping, units and the time origin are all decided from the header and first
lines, exactly as a whole-file read decides them) and then converts any block of complete
lines, read from a byte offset, into canonical rows and dead letters with their true line
numbers. A whole-file read and any sequence of incremental reads give the same rows.

Parquet files cannot grow by appending; they are read by row index instead
(:meth:`LineParser.parse_rows`).

Note: this module is the one place that reaches into the readers' block parser
(``TextReader._parse_block`` / ``readers.base.process_chunk``), which the readers' own
streaming iterator uses; everything else goes through ``chargetracker.readers``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import polars as pl

from ..errors import ReaderError
from ..readers import GenericOptions, ReadChunk, open_reader
from ..readers.base import TextReader, process_chunk
from ..readers.frame import FrameReader
from ..readers.generic import is_parquet

__all__ = ["LineBlock", "LineParser", "read_lines"]


@dataclass(frozen=True, slots=True)
class LineBlock:
    """Complete lines read from ``offset``: ``data`` holds ``n_lines`` lines, ``n_bytes`` long."""

    data: bytes
    n_lines: int
    n_bytes: int


def read_lines(fh: BinaryIO, offset: int, max_lines: int, *, final: bool = False,
               max_bytes: int = 1 << 28) -> LineBlock:
    """Up to ``max_lines`` complete (newline-terminated) lines starting at byte ``offset``.

    A last line without its newline is left for later (the writer is still writing it),
    unless ``final`` (a finished file being replayed), when it is returned too.
    """
    fh.seek(offset)
    want = max(1, int(max_lines))
    read_size = int(min(max(want * 160, 1 << 16), 1 << 26))
    pieces: list[bytes] = []
    newlines = 0
    size = 0
    eof = False
    while newlines < want and size < max_bytes:
        data = fh.read(read_size)
        if not data:
            eof = True
            break
        pieces.append(data)
        size += len(data)
        newlines += data.count(b"\n")
    buf = b"".join(pieces)
    if not buf:
        return LineBlock(b"", 0, 0)
    if newlines >= want:
        pos = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10)
        end = int(pos[want - 1]) + 1
        return LineBlock(buf[:end], want, end)
    end = buf.rfind(b"\n") + 1
    if final and eof and end < len(buf):
        return LineBlock(buf, newlines + 1, len(buf))
    return LineBlock(buf[:end], newlines, end)


class LineParser:
    """The reader of one file, turned into a parser of line blocks.

    ``data_offset`` is the byte offset of the first data line, ``first_line`` its 1-based
    line number. Keyword arguments are those of :func:`chargetracker.readers.open_reader`.
    """

    def __init__(self, path: str | os.PathLike[str], format: str = "auto", *,
                 cell_id: str | None = None, options: GenericOptions | None = None,
                 timezone: str = "UTC", metadata: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.parquet = is_parquet(self.path)
        reader = open_reader(self.path, format, cell_id=cell_id, options=options,
                             timezone=timezone, metadata=metadata)
        if not isinstance(reader, TextReader):  # pragma: no cover - every reader is one
            raise ReaderError(f"{self.path}: format {reader.format!r} cannot be read incrementally")
        self.reader: TextReader = reader
        self.data_offset = int(self.reader._data_offset)
        self.first_line = int(self.reader._header_lines) + 1
        self.total_rows = int(self.reader._pf.metadata.num_rows) if self.parquet else None  # type: ignore[attr-defined]
        # Compressed, re-encoded or binary files have no byte offsets to tail: they are
        # read whole by their reader and replayed by row, like Parquet.
        self.whole = not self.parquet and (isinstance(self.reader, FrameReader)
                                           or not self.reader.sniff.plain)
        self._whole: ReadChunk | None = None
        if self.whole:
            frame, rejected = self.reader.read_all()
            self._whole = ReadChunk(frame, rejected)
            self.total_rows = frame.height

    @property
    def by_rows(self) -> bool:
        """Replayed by row number (Parquet, or a file read whole), not by byte offset."""
        return self.parquet or self.whole

    @property
    def format(self) -> str:
        return self.reader.format

    @property
    def source(self) -> str:
        return self.reader.source

    @property
    def cells(self) -> pl.DataFrame:
        """The file's cell metadata as a one-row CELL_SCHEMA frame."""
        from ..schema import CELL_SCHEMA

        return pl.DataFrame([self.reader.metadata], schema=CELL_SCHEMA)

    def parse(self, block: LineBlock, first_line: int) -> ReadChunk:
        """Canonical rows and dead letters of a block whose first line is ``first_line``."""
        raw = self.reader._parse_block(block.data)
        lines = pl.int_range(first_line, first_line + raw.height, dtype=pl.Int64, eager=True)
        return process_chunk(self.reader, raw, lines)

    def parse_rows(self, start: int, n: int) -> tuple[ReadChunk, int]:
        """Parquet only: rows ``start .. start + n - 1`` (0-based); returns the chunk and the
        number of rows read."""
        if self._whole is not None:
            part = self._whole.frame.slice(start, n)
            dead = self._whole.rejected if start == 0 else self._whole.rejected.clear()
            return ReadChunk(part, dead), part.height
        raw = pl.scan_parquet(self.path).slice(start, n).collect()
        lines = pl.int_range(start, start + raw.height, dtype=pl.Int64, eager=True)
        return process_chunk(self.reader, raw, lines), raw.height
