"""Offline analysis of cycler files: readers -> engine, streaming, chunk by chunk.

``analyze("run.csv")`` returns the per-cycle table; :func:`analyze_files` returns
cycles, steps, rejected rows and cell metadata for several files at once.

Cell metadata (nominal capacity, group, chemistry...) comes, per cell, from (last wins):
the file's own header, a cells file (``cells=``: a CELL_SCHEMA table, CSV or Parquet; by
default the companion ``X.cells.parquet``/``X.cells.csv`` beside ``X.parquet`` as written by
``chargetracker simulate``), then ``nominal_capacity_ah`` for every cell of every file. A
multi-cell file (a ``cell_id`` column) gets one metadata row per cell it holds.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from .config import EngineConfig, Settings, StatsConfig
from .engine.stats import deviations
from .errors import ConfigError
from .kinds import cell_kind
from .readers import GenericOptions, open_reader
from .runtime.step import AlertPolicy, StepContext, advance, finish
from .schema import CELL_SCHEMA, DEAD_LETTER_SCHEMA

__all__ = ["Analysis", "analyze", "analyze_files", "group_table", "companion_cells",
           "read_cells"]

#: Per-file summary of an analysis: what was read from each file.
FILE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.Utf8(), "format": pl.Utf8(), "rows": pl.Int64(), "rejected": pl.Int64(),
    "cells": pl.Int64(),
}

Progress = Callable[[int, int], None]  # (bytes_read, total_bytes) of the current file


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything one analysis produced (frames in the schema layouts)."""

    cycles: pl.DataFrame
    steps: pl.DataFrame
    rejected: pl.DataFrame
    cells: pl.DataFrame
    #: One row per file (:data:`FILE_SCHEMA`): a file with ``rows == rejected == 0`` held
    #: no data at all (e.g. a header only).
    files: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=FILE_SCHEMA))


def companion_cells(path: str | os.PathLike[str]) -> Path | None:
    """``X.cells.parquet`` (or ``.csv``) beside ``X.<ext>``, when it exists."""
    p = Path(path)
    name = p.name
    for ext in (".gz", ".bz2", ".xz", ".zip"):
        name = name.removesuffix(ext)
    stem = Path(name).stem  # fleet.parquet -> fleet, run.2024.csv.gz -> run.2024
    for ext in (".parquet", ".csv"):
        cand = p.with_name(f"{stem}.cells{ext}")
        if cand.is_file() and cand != p:
            return cand
    return None


def read_cells(path: str | os.PathLike[str]) -> pl.DataFrame:
    """A cells metadata file (CSV or Parquet, CELL_SCHEMA columns; ``cell_id`` required)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            magic = fh.read(4)
        frame = pl.read_parquet(p) if magic == b"PAR1" else pl.read_csv(p, infer_schema_length=0)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ConfigError(f"{p.name}: cannot read the cells file: {str(exc)[:200]}") from None
    if "cell_id" not in frame.columns:
        raise ConfigError(f"{p.name}: a cells file needs a cell_id column; columns seen: "
                          f"{frame.columns[:30]}")
    extra = [c for c in frame.columns if c not in CELL_SCHEMA]
    cols = [pl.col(c).cast(t, strict=False) if c in frame.columns else pl.lit(None, dtype=t).alias(c)
            for c, t in CELL_SCHEMA.items() if c != "attributes"]
    if "attributes" in frame.columns:
        attrs = pl.col("attributes").cast(pl.Utf8)
    elif extra:
        attrs = pl.struct([pl.col(c).cast(pl.Utf8) for c in extra]).struct.json_encode()
    else:
        attrs = pl.lit(None, dtype=pl.Utf8)
    return frame.select(*cols, attrs.alias("attributes")).select(list(CELL_SCHEMA)).unique(
        "cell_id", keep="last", maintain_order=True)


def _json_object(text: Any) -> dict[str, Any]:
    try:
        val = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {"attributes": text}
    return val if isinstance(val, dict) else {"attributes": val}


def _cell_rows(ids: list[str], meta: dict[str, Any], known: pl.DataFrame | None,
               nominal: float | None) -> pl.DataFrame:
    """Metadata rows for ``ids``: the file's metadata, overlaid by the cells file, then the
    nominal capacity option."""
    rows = []
    by_id = {r["cell_id"]: r for r in known.iter_rows(named=True)} if known is not None else {}
    for cid in ids:
        row = {c: meta.get(c) for c in CELL_SCHEMA}
        row["cell_id"] = cid
        for k, v in by_id.get(cid, {}).items():
            if v is None:
                continue
            if k == "attributes":
                row[k] = json.dumps({**_json_object(row.get(k)), **_json_object(v)},
                                    default=str, sort_keys=True)
            else:
                row[k] = v
        if nominal is not None:
            row["nominal_capacity_ah"] = nominal
        rows.append(row)
    return pl.DataFrame(rows, schema=CELL_SCHEMA)

def analyze_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    format: str = "auto",
    config: EngineConfig | None = None,
    options: GenericOptions | None = None,
    cell_ids: Sequence[str] | None = None,
    nominal_capacity_ah: float | None = None,
    chunk_rows: int = 250_000,
    progress: Callable[[str, int, int], None] | None = None,
    reader_kw: dict[str, Any] | None = None,
    cells: str | os.PathLike[str] | pl.DataFrame | None = None,
) -> Analysis:
    """Analyze files with bounded memory: each is streamed through the incremental engine.

    ``cells``: a cells metadata table or file for every file (default: each file's
    companion, see :func:`companion_cells`); ``nominal_capacity_ah`` applies to every cell.
    """
    if nominal_capacity_ah is not None and not (math.isfinite(nominal_capacity_ah)
                                                and nominal_capacity_ah > 0):
        raise ConfigError(f"nominal capacity must be a finite number > 0 Ah, got "
                          f"{nominal_capacity_ah!r}")
    kind = cell_kind(Settings(engine=config or EngineConfig()))
    # Offline: no alerts, no raw rows, no checkpoints, no live clock (a file is taken as
    # it is; the live drivers judge the future horizon against theirs).
    base = StepContext(kind, alerts=AlertPolicy.none(), store_raw=False)
    state = kind.new_state()
    steps: list[pl.DataFrame] = []
    cycles: list[pl.DataFrame] = []
    rejected: list[pl.DataFrame] = []
    metas: dict[str, dict[str, Any]] = {}
    files: list[dict[str, Any]] = []
    given = read_cells(cells) if isinstance(cells, (str, os.PathLike)) else cells
    for k, path in enumerate(paths):
        reader = open_reader(path, format, cell_id=cell_ids[k] if cell_ids else None,
                             options=options, chunk_rows=chunk_rows, **(reader_kw or {}))
        meta = dict(reader.metadata)
        known = given
        if known is None and (comp := companion_cells(path)) is not None:
            known = read_cells(comp)
        seen: set[str] = set()
        for chunk in reader:
            ids = chunk.frame.get_column("cell_id").unique(maintain_order=True).to_list() \
                if chunk.frame.height else []
            new = [c for c in ids if c not in seen]
            cell_frame = None
            if new:
                # Only cells present in the data: a metadata row alone would add a cell.
                cell_frame = _cell_rows(new, meta, known, nominal_capacity_ah)
                seen.update(new)
                for r in cell_frame.iter_rows(named=True):
                    metas[r["cell_id"]] = r
            # The one micro-batch step of every driver (runtime/step.py); the reader's own
            # rejects ride with it, then the engine's (late, duplicate; row = chunk row).
            state, out = advance(state, chunk.frame, replace(
                base, source=reader.source, entities=cell_frame,
                rejected=chunk.rejected if chunk.rejected.height else None))
            steps.append(out.output.tables["steps"])
            cycles.append(out.output.tables["cycles"])
            rejected.append(out.rejected.with_columns(pl.lit(reader.source).alias("source")))
            if progress is not None:
                progress(reader.source, reader.bytes_read, reader.total_bytes)
        if not seen:
            metas.setdefault(reader.cell_id, _cell_rows([reader.cell_id], meta, known,
                                                        nominal_capacity_ah).row(0, named=True))
        files.append({"source": reader.source, "format": reader.format, "rows": reader.rows_read,
                      "rejected": reader.rows_rejected, "cells": len(seen)})
    state, end = finish(state, base)
    steps.append(end.output.tables["steps"])
    cycles.append(end.output.tables["cycles"])
    rejected.append(end.output.rejected)

    def fold(parts: list[pl.DataFrame], keys: list[str]) -> pl.DataFrame:
        return pl.concat(parts).unique(subset=keys, keep="last", maintain_order=True).sort(keys)

    cell_table = pl.DataFrame(list(metas.values()), schema=CELL_SCHEMA) if metas else \
        pl.DataFrame(schema=CELL_SCHEMA)
    rej = pl.concat([r for r in rejected if r.height] or [pl.DataFrame(schema=DEAD_LETTER_SCHEMA)])
    return Analysis(fold(cycles, ["cell_id", "cycle"]), fold(steps, ["cell_id", "step"]), rej,
                    cell_table, pl.DataFrame(files, schema=FILE_SCHEMA))


def analyze(path: str | os.PathLike[str], *, format: str = "auto",
            config: EngineConfig | None = None, **kw: Any) -> pl.DataFrame:
    """Per-cycle table of one file (see docs/metrics.md for every column)."""
    return analyze_files([path], format=format, config=config, **kw).cycles


def group_table(result: Analysis, *, key: str = "group", metric: str = "discharge_ah",
                stats: StatsConfig | None = None) -> pl.DataFrame:
    """Per-cell deviations of ``metric`` within groups of the metadata column ``key``.

    ``key`` is a CELL_SCHEMA column (group, chemistry, test_type) or a key inside
    ``attributes``; "file" groups every file together. Closed cycles only.
    """
    cells = result.cells
    if key in cells.columns:
        groups = cells.select("cell_id", pl.col(key).cast(pl.Utf8).fill_null("(none)").alias("group"))
    elif key == "file":
        groups = cells.select("cell_id", pl.lit("all").alias("group"))
    else:
        groups = cells.select(
            "cell_id",
            pl.col("attributes").str.json_path_match(f"$.{key}").fill_null("(none)").alias("group"),
        )
    values = (
        result.cycles.filter(pl.col("status") == "closed")
        .join(groups, on="cell_id", how="left")
        .select("group", "cell_id", "cycle", pl.col(metric).alias("value"))
    )
    return deviations(values, stats)
