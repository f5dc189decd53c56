"""Offline analysis of cycler files: readers -> engine, streaming, chunk by chunk.

``analyze("run.csv")`` returns the per-cycle table; :func:`analyze_files` returns
cycles, steps, rejected rows and cell metadata for several files at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from .config import EngineConfig, StatsConfig
from .engine import flush, new_state, update
from .engine.stats import deviations
from .readers import GenericOptions, open_reader
from .schema import CELL_SCHEMA, DEAD_LETTER_SCHEMA

__all__ = ["Analysis", "analyze", "analyze_files", "group_table"]

Progress = Callable[[int, int], None]  # (bytes_read, total_bytes) of the current file


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything one analysis produced (frames in the schema layouts)."""

    cycles: pl.DataFrame
    steps: pl.DataFrame
    rejected: pl.DataFrame
    cells: pl.DataFrame


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
) -> Analysis:
    """Analyze files with bounded memory: each is streamed through the incremental engine."""
    state = new_state(config)
    steps: list[pl.DataFrame] = []
    cycles: list[pl.DataFrame] = []
    rejected: list[pl.DataFrame] = []
    metas: list[dict[str, Any]] = []
    for k, path in enumerate(paths):
        reader = open_reader(path, format, cell_id=cell_ids[k] if cell_ids else None,
                             options=options, chunk_rows=chunk_rows, **(reader_kw or {}))
        meta = dict(reader.metadata)
        if nominal_capacity_ah is not None:
            meta["nominal_capacity_ah"] = nominal_capacity_ah
        cell_frame = pl.DataFrame([{c: meta.get(c) for c in CELL_SCHEMA}], schema=CELL_SCHEMA)
        metas.append({c: meta.get(c) for c in CELL_SCHEMA})
        for chunk in reader:
            rejected.append(chunk.rejected)
            state, out = update(state, chunk.frame, cells=cell_frame, source=reader.source)
            steps.append(out.steps)
            cycles.append(out.cycles)
            # Engine rejections (late, duplicate) are named by the file, row = chunk row.
            rejected.append(out.rejected.with_columns(pl.lit(reader.source).alias("source")))
            if progress is not None:
                progress(reader.source, reader.bytes_read, reader.total_bytes)
    state, out = flush(state)
    steps.append(out.steps)
    cycles.append(out.cycles)
    rejected.append(out.rejected)

    def fold(parts: list[pl.DataFrame], keys: list[str]) -> pl.DataFrame:
        return pl.concat(parts).unique(subset=keys, keep="last", maintain_order=True).sort(keys)

    cells = pl.DataFrame(metas, schema=CELL_SCHEMA) if metas else pl.DataFrame(schema=CELL_SCHEMA)
    rej = pl.concat([r for r in rejected if r.height] or [pl.DataFrame(schema=DEAD_LETTER_SCHEMA)])
    return Analysis(fold(cycles, ["cell_id", "cycle"]), fold(steps, ["cell_id", "step"]), rej, cells)


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
