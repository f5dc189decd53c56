"""Binary cycler files: the file is decoded into one table, then planned like a text export.

A vendor's binary file (an Access database, a Neware ``.nda``, a BioLogic ``.mpr``) has no
lines to stream: its decoder yields the whole measurement table. :class:`FrameReader` turns
that table into the same column plan (:meth:`TextReader._plan`) and conversions
(:meth:`TextReader._finish`) as the vendor's text export, so both give identical frames, and
yields it in chunks of ``chunk_rows`` rows. Memory is that of the decoded table (typically a
few times the file size). ``row`` in dead letters is the 1-based record number.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import polars as pl

from ..errors import ChargeTrackerError, ReaderError
from .base import ReadChunk, Reader
from .chunk import process_chunk
from .fields import ColumnLookup
from .text import TextReader, _dedupe

__all__ = ["FrameReader"]


class FrameReader(TextReader):
    """Base of the binary-format readers: subclasses implement :meth:`_load`.

    Put it first among the bases, before the text reader whose plan it reuses, e.g.
    ``class ArbinResReader(FrameReader, ArbinReader)``.
    """

    #: What the file is, for messages ("an Arbin .res file").
    what: str = "a binary file"

    def __init__(self, path: str | os.PathLike[str], **kw: Any) -> None:
        Reader.__init__(self, path, **kw)
        try:
            table = self._load()
        except ChargeTrackerError:
            raise
        except Exception as exc:  # noqa: BLE001 - third-party decoders raise anything
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ReaderError(
                f"{self.name}: looks like {self.what} but cannot be decoded ({reason}); "
                "export it as CSV from the cycler's software and analyze that"
            ) from None
        table = table.rename(dict(zip(table.columns, _dedupe(table.columns), strict=True)))
        self._table = table
        self.columns = list(table.columns)
        self._header_lines = 0
        self._data_offset = 0
        self.fields = self._plan(ColumnLookup(self.columns))
        parsed, _ = self._parse_fields(table.head(self.probe_lines))
        self._calibrate(parsed)

    @abstractmethod
    def _load(self) -> pl.DataFrame:
        """The file's measurement table, with the vendor's column names."""

    def __iter__(self) -> Iterator[ReadChunk]:
        self.bytes_read = 0
        self.rows_read = 0
        self.rows_rejected = 0
        n = self._table.height
        for start in range(0, n, self.chunk_rows):
            raw = self._table.slice(start, self.chunk_rows)
            lines = pl.int_range(start + 1, start + 1 + raw.height, dtype=pl.Int64, eager=True)
            chunk = process_chunk(self, raw, lines)
            self.bytes_read = int(self.total_bytes * min(start + raw.height, n) / max(n, 1))
            self.rows_read += chunk.frame.height
            self.rows_rejected += chunk.rejected.height
            yield chunk
        self.bytes_read = self.total_bytes


def require_module(name: str, package: str, what: str) -> Any:
    """Import ``name`` or raise a ReaderError saying which package reads ``what``."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise ReaderError(f"reading {what} needs the '{package}' package: pip install "
                          f"{package}") from None
