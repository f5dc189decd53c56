"""File-level helpers of the Parquet archive: the (entity, ts) sort keys and the
concurrent disk flushes of :meth:`~.archive.ParquetArchive.append_many`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

__all__ = ["entity_rank", "fsync_all", "fsync_one"]


def entity_rank(ids: pl.Series) -> tuple[pl.Series, np.ndarray] | None:
    """(the batch's distinct ids, sorted; each row's id as its rank among them: uint32 in
    lexical order, so sorting by it sorts by id), or None when ids are not plain
    non-null strings (the caller then sorts the strings themselves)."""
    if ids.dtype != pl.Utf8 or ids.null_count() or ids.len() == 0:
        return None
    distinct = ids.unique().sort()
    return distinct, ids.cast(pl.Enum(distinct.to_list())).to_physical().to_numpy()


def fsync_one(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_all(paths: Sequence[Path]) -> None:
    """fsync files or directories concurrently (the file system commits them in one
    journal round instead of one per call)."""
    if len(paths) == 1:
        fsync_one(paths[0])
        return
    with ThreadPoolExecutor(max_workers=min(16, len(paths))) as pool:
        for fut in [pool.submit(fsync_one, p) for p in paths]:
            fut.result()
