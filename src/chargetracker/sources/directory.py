"""Watch a directory of cycler exports: pick up new files and rows appended to growing ones.

This is how a lab's cycler PC writes its data: one export per channel/test, appended
while the test runs, a line at a time (so a poll may see half a line). Each poll lists
the directory (files matching ``pattern``, in name order; hidden and temporary files
skipped), opens new files once their header and first data line are complete (the format
is detected from the header), and reads the complete lines appended since the last poll.
A partly written last line waits for its newline.

Position: ``{"files": {name: {"offset": bytes, "line": n}}, "failed": {name: reason}}``;
``name`` is the path relative to the watched directory. A file that cannot be read (an
unrecognised header, a missing column) is not retried forever: once its header has been
stable for ``settle_s`` it is recorded as failed, with one dead letter naming the file and
the reason. A file that shrinks below its committed offset (replaced or truncated) is
treated the same way rather than re-read, which would double count.

Files that cannot grow line by line (compressed, UTF-16 or code-page text, a vendor's binary
file: see :mod:`chargetracker.readers.source`) are read whole through their reader once
their size has been stable for ``settle_s``; their position is ``{"offset": size, "line":
0}`` (line 0 = read whole).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import ReaderError, SchemaError, SourceError, SourceUnavailable, UnknownFormat
from ..readers import GenericOptions, open_reader
from ..readers.source import sniff
from ..schema import CELL_SCHEMA, DEAD_LETTER_SCHEMA, MEASUREMENT_SCHEMA
from .base import Batch
from .lines import LineParser, read_lines

__all__ = ["DirectorySource"]

_SKIP_SUFFIXES = (".tmp", ".part", ".swp", ".lock", ".crdownload")


@dataclass
class _Tail:
    offset: int | None = None          # None: not opened yet
    line: int | None = None
    parser: LineParser | None = None
    fh: Any = None
    failed: str | None = None
    first_error_at: float | None = None
    error_size: int | None = None
    send_cells: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class DirectorySource:
    """New and growing cycler files in one directory (never done: it waits for more)."""

    def __init__(self, path: str | os.PathLike[str], *, name: str | None = None,
                 pattern: str = "*", format: str = "auto", options: GenericOptions | None = None,
                 timezone: str = "UTC", recursive: bool = False, settle_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.name = name or f"dir:{self.path}"
        self.pattern = pattern
        self.format = format
        self.options = options
        self.timezone = timezone
        self.recursive = recursive
        self.settle_s = float(settle_s)
        self._clock = clock
        self._tails: dict[str, _Tail] = {}
        if not self.path.is_dir():
            raise SourceUnavailable(f"{self.path}: no such directory to watch")

    @property
    def done(self) -> bool:
        return False

    @property
    def position(self) -> dict[str, Any]:
        files = {k: {"offset": t.offset, "line": t.line} for k, t in sorted(self._tails.items())
                 if t.offset is not None and t.failed is None}
        failed = {k: t.failed for k, t in sorted(self._tails.items()) if t.failed is not None}
        return {"files": files, "failed": failed}

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        """Per file: format, offset, line, failed (for status displays)."""
        return {k: {"format": t.parser.format if t.parser else None, "offset": t.offset,
                    "line": t.line, "failed": t.failed} for k, t in sorted(self._tails.items())}

    # -- scanning -----------------------------------------------------------------------
    def _list(self) -> list[str]:
        try:
            it = self.path.rglob(self.pattern) if self.recursive else self.path.glob(self.pattern)
            names = []
            for p in it:
                rel = p.relative_to(self.path).as_posix()
                base = p.name
                if base.startswith((".", "~")) or base.endswith(_SKIP_SUFFIXES) or not p.is_file():
                    continue
                names.append(rel)
        except OSError as exc:
            raise SourceUnavailable(f"{self.path}: cannot list: {exc.strerror or exc}") from exc
        return sorted(names)

    def _fail(self, rel: str, tail: _Tail, reason: str) -> pl.DataFrame:
        tail.failed = reason
        tail.close()
        return pl.DataFrame({
            "source": [str(self.path / rel)], "row": [None], "cell_id": [None], "ts": [None],
            "field": ["file"], "reason": [reason], "payload": [None],
        }, schema=DEAD_LETTER_SCHEMA)

    def _try_open(self, rel: str, tail: _Tail) -> pl.DataFrame | None:
        """Open the file's reader once its header and a first data line are complete."""
        p = self.path / rel
        try:
            size = p.stat().st_size
            with p.open("rb") as fh:
                head = fh.read(1 << 16)
        except OSError:
            return None          # vanished or unreadable for now: try again next poll
        complete = head[: head.rfind(b"\n") + 1]
        if complete.count(b"\n") < 2:
            return None
        try:
            parser = LineParser(p, self.format, options=self.options, timezone=self.timezone)
            if parser.parquet:
                raise UnknownFormat(f"{p}: Parquet files cannot be watched (they do not grow); "
                                    "use a file source")
            with p.open("rb") as fh:
                first = read_lines(fh, parser.data_offset, 1)
            if first.n_lines == 0:
                return None      # header complete, first data line not yet
        except (UnknownFormat, SchemaError, ReaderError) as exc:
            # A header still being written looks like a bad one: give up only when the
            # file has stopped changing for settle_s.
            now = self._clock()
            if tail.first_error_at is None or tail.error_size != size:
                tail.first_error_at, tail.error_size = now, size
            if now - tail.first_error_at >= self.settle_s:
                return self._fail(rel, tail, f"cannot read file: {exc}")
            return None
        except OSError:
            return None
        tail.parser = parser
        if tail.offset is None:
            tail.offset, tail.line = parser.data_offset, parser.first_line
        try:
            tail.fh = p.open("rb")
        except OSError:
            tail.parser = None
            return None
        return None

    def _whole_file(self, rel: str) -> bool:
        try:
            info = sniff(self.path / rel)
        except (ReaderError, OSError):
            return False
        return not (info.plain and info.kind == "text")

    def _read_whole(self, rel: str, tail: _Tail) -> tuple[list[pl.DataFrame], list[pl.DataFrame],
                                                         list[pl.DataFrame]] | None:
        """A compressed/binary/re-encoded file, read whole once its size is stable."""
        p = self.path / rel
        try:
            size = p.stat().st_size
        except OSError:
            return None
        if tail.line == 0 and tail.offset is not None:
            if size != tail.offset:
                tail.failed = (f"file changed after being read whole ({tail.offset} -> {size} "
                               "bytes); not re-read, which would double count")
            return None  # done
        now = self._clock()
        if tail.error_size != size or tail.first_error_at is None:
            tail.first_error_at, tail.error_size = now, size
        if now - tail.first_error_at < self.settle_s:
            return None  # may still be being written
        try:
            reader = open_reader(p, self.format, options=self.options, timezone=self.timezone)
            frames, dead = [], []
            for chunk in reader:
                frames.append(chunk.frame)
                dead.append(chunk.rejected)
        except (UnknownFormat, SchemaError, ReaderError) as exc:
            return [], [self._fail(rel, tail, f"cannot read file: {exc}")], []
        tail.offset, tail.line = size, 0
        cell = pl.DataFrame([reader.metadata], schema=CELL_SCHEMA)
        return frames, [d for d in dead if d.height], [cell]

    # -- Source -------------------------------------------------------------------------
    def poll(self, max_rows: int) -> Batch | None:
        frames: list[pl.DataFrame] = []
        rejected: list[pl.DataFrame] = []
        cells: list[pl.DataFrame] = []
        budget = max(1, int(max_rows))
        for rel in self._list():
            if budget <= 0:
                break
            tail = self._tails.setdefault(rel, _Tail())
            if tail.failed is not None:
                continue
            if tail.parser is None and (tail.line == 0 or self._whole_file(rel)):
                got = self._read_whole(rel, tail)
                if got is not None:
                    frames.extend(f.select(list(MEASUREMENT_SCHEMA)) for f in got[0])
                    rejected.extend(got[1])
                    cells.extend(got[2])
                    budget -= sum(f.height for f in got[0])
                continue
            if tail.parser is None:
                dead = self._try_open(rel, tail)
                if dead is not None:
                    rejected.append(dead)
                if tail.parser is None:
                    continue
            assert tail.offset is not None and tail.line is not None
            try:
                cur = (self.path / rel).stat()
                if cur.st_ino != os.fstat(tail.fh.fileno()).st_ino:
                    # Rewritten as a whole (copy, atomic rename): keep reading the new
                    # file from the same offset, as long as it did not shrink.
                    tail.close()
                    tail.fh = (self.path / rel).open("rb")
                size = os.fstat(tail.fh.fileno()).st_size
            except OSError:
                continue
            if size < tail.offset:
                rejected.append(self._fail(
                    rel, tail, f"file shrank below the committed offset {tail.offset} "
                    f"(now {size} bytes); not re-read, which would double count; give new "
                    "data a new file name"))
                continue
            if size == tail.offset:
                continue
            try:
                block = read_lines(tail.fh, tail.offset, budget)
            except OSError as exc:
                raise SourceError(f"{self.path / rel}: read failed: {exc.strerror or exc}") from exc
            if block.n_lines == 0:
                continue
            chunk = tail.parser.parse(block, tail.line)
            tail.offset += block.n_bytes
            tail.line += block.n_lines
            budget -= block.n_lines
            if chunk.frame.height:
                frames.append(chunk.frame.select(list(MEASUREMENT_SCHEMA)))
            if chunk.rejected.height:
                rejected.append(chunk.rejected)
            if tail.send_cells:
                cells.append(tail.parser.cells)
                tail.send_cells = False
        if not frames and not rejected:
            return None
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=MEASUREMENT_SCHEMA)
        return Batch(
            frame, self.position,
            cells=pl.concat(cells).cast(CELL_SCHEMA) if cells else None,  # type: ignore[arg-type]
            rejected=pl.concat(rejected) if rejected else None,
        )

    def seek(self, position: Any) -> None:
        for t in self._tails.values():
            t.close()
        self._tails = {}
        if position is None:
            return
        try:
            for rel, pos in dict(position.get("files", {})).items():
                self._tails[rel] = _Tail(offset=int(pos["offset"]), line=int(pos["line"]))
            for rel, reason in dict(position.get("failed", {})).items():
                self._tails[rel] = _Tail(failed=str(reason))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"{self.name}: unreadable position {position!r}") from exc

    def close(self) -> None:
        for t in self._tails.values():
            t.close()

    def __repr__(self) -> str:
        return f"DirectorySource({self.name!r}, files={len(self._tails)})"
