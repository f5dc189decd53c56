"""Replay one cycler file (Arbin, Maccor, Battery Archive, batterydata, generic CSV/Parquet).

Position: ``{"offset": bytes, "line": n}`` for a text file (byte offset of the next
unread line and its 1-based line number, so dead letters keep true line numbers after a
restart), ``{"row": n}`` for a Parquet file (rows consumed). The file is read in blocks of
complete lines with the file's own reader (:class:`~chargetracker.sources.lines.LineParser`),
so a replay gives exactly the rows and dead letters of a whole-file read. With
``follow=True`` the source keeps waiting for rows appended to the file (a live tail of
one file) instead of finishing at its end.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ReaderError, SourceError
from ..readers import GenericOptions
from .base import Batch
from .lines import LineParser, read_lines

__all__ = ["FileSource"]


class FileSource:
    """One file as a source; finishes at the end of the file unless ``follow``."""

    def __init__(self, path: str | os.PathLike[str], *, name: str | None = None,
                 format: str = "auto", cell_id: str | None = None,
                 options: GenericOptions | None = None, timezone: str = "UTC",
                 metadata: dict[str, Any] | None = None, follow: bool = False) -> None:
        self.path = Path(path)
        self.name = name or f"file:{self.path}"
        self.follow = follow
        self.parser = LineParser(self.path, format, cell_id=cell_id, options=options,
                                 timezone=timezone, metadata=metadata)
        self._offset = self.parser.data_offset
        self._line = self.parser.first_line
        self._row = 0
        self._eof = False
        self._send_cells = True
        self._fh = None if self.parser.by_rows else self._open()

    def _open(self) -> Any:
        try:
            return self.path.open("rb")
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot open: {exc.strerror or exc}") from exc

    @property
    def done(self) -> bool:
        return self._eof and not self.follow

    @property
    def position(self) -> dict[str, int]:
        if self.parser.by_rows:
            return {"row": self._row}
        return {"offset": self._offset, "line": self._line}

    def poll(self, max_rows: int) -> Batch | None:
        if self.done:
            return None
        if self.parser.by_rows:
            assert self.parser.total_rows is not None
            chunk, n = self.parser.parse_rows(self._row, max_rows)
            self._row += n
            self._eof = self._row >= self.parser.total_rows
            if n == 0:
                return None
        else:
            assert self._fh is not None
            try:
                block = read_lines(self._fh, self._offset, max_rows, final=not self.follow)
                size = os.fstat(self._fh.fileno()).st_size
            except OSError as exc:
                raise SourceError(f"{self.path}: read failed: {exc.strerror or exc}") from exc
            if block.n_lines == 0:
                self._eof = True
                return None
            try:
                chunk = self.parser.parse(block, self._line)
            except ReaderError as exc:
                raise SourceError(f"{self.path}: {exc}") from exc
            self._offset += block.n_bytes
            self._line += block.n_lines
            self._eof = self._offset >= size
        cells = None
        if self._send_cells:
            cells, self._send_cells = self.parser.cells, False
        return Batch(chunk.frame, self.position, cells=cells, rejected=chunk.rejected)

    def seek(self, position: Any) -> None:
        self._send_cells = True
        self._eof = False
        if position is None:
            self._offset, self._line, self._row = self.parser.data_offset, self.parser.first_line, 0
            return
        try:
            if self.parser.by_rows:
                self._row = int(position["row"])
            else:
                self._offset, self._line = int(position["offset"]), int(position["line"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"{self.name}: unreadable position {position!r}") from exc
        if self.parser.by_rows:
            assert self.parser.total_rows is not None
            self._eof = self._row >= self.parser.total_rows
        else:
            try:
                self._eof = self._offset >= self.path.stat().st_size
            except OSError as exc:
                raise SourceError(f"{self.path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __repr__(self) -> str:
        return f"FileSource({self.name!r}, format={self.parser.format!r}, position={self.position})"
