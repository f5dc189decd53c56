"""File readers: cycler exports and generic tables -> canonical measurement frames.

Usage::

    from chargetracker.readers import open_reader, read_file

    reader = open_reader("run.csv")              # format detected from the header
    for chunk in reader:                          # at most chunk_rows rows per chunk
        engine_input = chunk.frame                # schema.MEASUREMENT_SCHEMA (+ reference cols)
        dead = chunk.rejected                     # schema.DEAD_LETTER_SCHEMA, row = file line
        progress = reader.bytes_read / reader.total_bytes

    frame, rejected, metadata = read_file("small.csv", keep_reference=True)

Units and sign on output: ``ts`` s since the epoch (UTC, float64), ``voltage_v`` V,
``current_a`` A with + = charging, ``temperature_c`` degC, ``step_time_s`` s; ``cycle`` and
``step`` are the cycler's own labels. With ``keep_reference=True`` the cycler's cumulative
columns are appended when the file has them (see :data:`REFERENCE_COLUMNS`, Ah and Wh).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import polars as pl

from ..errors import UnknownFormat
from .arbin import ArbinReader
from .arbin_res import ArbinResReader
from .base import REFERENCE_COLUMNS, ReadChunk, Reader
from .battery_archive import BatteryArchiveReader
from .batterydata import BatteryDataReader
from .biologic import BioLogicMprReader, BioLogicMptReader
from .detect import FORMATS, detect, detect_format
from .generic import GenericOptions, GenericReader
from .maccor import MaccorReader
from .neware import NewareCsvReader, NewareNdaReader
from .novonix import NovonixReader
from .pec import PecReader
from .source import sniff

__all__ = [
    "FORMATS",
    "REFERENCE_COLUMNS",
    "ArbinReader",
    "ArbinResReader",
    "BioLogicMprReader",
    "BioLogicMptReader",
    "NewareCsvReader",
    "NewareNdaReader",
    "NovonixReader",
    "PecReader",
    "BatteryArchiveReader",
    "BatteryDataReader",
    "GenericOptions",
    "GenericReader",
    "MaccorReader",
    "ReadChunk",
    "Reader",
    "detect_format",
    "open_reader",
    "read_file",
]

_READERS: dict[str, type[Reader]] = {
    "arbin": ArbinReader,
    "arbin_res": ArbinResReader,
    "maccor": MaccorReader,
    "biologic_mpt": BioLogicMptReader,
    "biologic_mpr": BioLogicMprReader,
    "neware_csv": NewareCsvReader,
    "neware_nda": NewareNdaReader,
    "pec": PecReader,
    "novonix": NovonixReader,
    "battery_archive": BatteryArchiveReader,
    "batterydata": BatteryDataReader,
    "generic": GenericReader,
}


def open_reader(
    path: str | os.PathLike[str],
    format: str = "auto",
    *,
    cell_id: str | None = None,
    options: GenericOptions | None = None,
    chunk_rows: int = 250_000,
    keep_reference: bool = False,
    timezone: str = "UTC",
    start_time: float | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Reader:
    """Open ``path`` for streaming; nothing but the header and first lines is read yet.

    ``format``: one of :data:`FORMATS` or ``"auto"`` (:func:`detect_format`; a file with
    ``options`` given is read as ``"generic"``). ``cell_id`` defaults to the file name stem
    (a generic file may take it from a mapped ``cell_id`` column instead). ``timezone``: IANA
    name for naive local timestamps in the file (default UTC). ``start_time``: epoch s of the
    test start when the file has no absolute time (overrides the file's own). ``metadata``:
    extra cell metadata (CELL_SCHEMA keys, others go to ``attributes``).

    Raises :class:`UnknownFormat`, :class:`SchemaError` (a required column is missing,
    named in the message) or :class:`ReaderError` (cannot read the file).
    """
    fmt = format.lower()
    if fmt != "auto" and fmt not in _READERS:
        raise UnknownFormat(f"unknown format {format!r}; use 'auto' or one of {list(FORMATS)}")
    info = sniff(path)
    # Content decides for binary files, whatever format was asked: a binary file read as
    # text would only produce garbage (and messages full of its bytes).
    detected = detect(path, info) if (fmt == "auto" and options is None) or \
        info.kind != "text" else None
    if fmt == "auto":
        fmt = "generic" if options is not None and info.kind in ("text", "parquet") else \
            str(detected)
    elif detected is not None and detected != fmt and info.kind != "parquet":
        raise UnknownFormat(f"{os.path.basename(os.fspath(path))}: {info.what}, not a "
                            f"{fmt!r} export; use --format auto (or {detected!r})")
    kw: dict[str, Any] = dict(cell_id=cell_id, chunk_rows=chunk_rows,
                              keep_reference=keep_reference, timezone=timezone,
                              start_time=start_time, metadata=metadata, sniffed=info)
    if fmt == "generic":
        return GenericReader(path, options=options, **kw)
    return _READERS[fmt](path, **kw)


def read_file(
    path: str | os.PathLike[str], format: str = "auto", **kw: Any
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """(all good rows, dead letters, metadata) of a small file; ``kw`` as :func:`open_reader`."""
    reader = open_reader(path, format, **kw)
    frame, rejected = reader.read_all()
    return frame, rejected, reader.metadata
