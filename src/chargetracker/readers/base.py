"""What every reader is: the :class:`Reader` interface and the chunks it yields.

A reader turns one file into canonical measurement frames (:data:`schema.MEASUREMENT_SCHEMA`:
``ts`` in s since the epoch UTC, ``voltage_v`` in V, ``current_a`` in A with **+ = charging**)
plus optional *reference columns* (the cycler's own cumulative capacity in Ah and energy in
Wh) and dead letters (:data:`schema.DEAD_LETTER_SCHEMA`) for rows it cannot use: each names
the file, the 1-based **line number** (record number in a binary file), the column and the
reason; the good rows next to them are kept. Missing columns raise :class:`SchemaError` when
the reader is opened. Text formats derive from :class:`.text.TextReader`, binary ones from
:class:`.frame.FrameReader`; both convert chunks with :func:`.chunk.process_chunk`.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import ReaderError
from ..schema import CELL_SCHEMA, MEASUREMENT_SCHEMA, dead_letters
from .fields import (  # noqa: F401 - re-exported: readers and sources import them from here
    OLE_EPOCH_DAYS,
    ColumnLookup,
    Field,
    datetime_to_epoch,
    duration_seconds,
    time_scale,
    unit_scale,
)
from .source import Sniff, sniff

__all__ = [
    "REFERENCE_COLUMNS",
    "ReadChunk",
    "Reader",
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
        sniffed: Sniff | None = None,
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
        # ``sniffed``: what :func:`open_reader` already learnt from the first bytes (saves
        # reading and classifying them twice per open).
        self.sniff: Sniff = sniffed if sniffed is not None else sniff(self.path)
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


def __getattr__(name: str) -> Any:
    """``TextReader`` and ``process_chunk`` moved to :mod:`.text` and :mod:`.chunk`; the old
    import path (``readers.base``, used by ``sources.lines``) still finds them."""
    if name == "TextReader":
        from .text import TextReader

        return TextReader
    if name == "process_chunk":
        from .chunk import process_chunk

        return process_chunk
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
