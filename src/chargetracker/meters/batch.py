"""The batch layer: recompute daily energy and thresholds from archived readings.

Meters are independent, so a large archive is processed in chunks that each hold whole
meters (e.g. the row groups of a Parquet file sorted by meter): every chunk gives its
meters' days, thresholds and alerts exactly as one pass over everything would. Two chunks
run at once (the compiled kernel releases the GIL).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl

from .config import MeterConfig
from .engine import summarize
from .thresholds import compute_thresholds

__all__ = ["ChunkResult", "recompute"]


@dataclass(frozen=True, slots=True)
class ChunkResult:
    days: pl.DataFrame
    thresholds: pl.DataFrame
    alerts: pl.DataFrame
    rejected: pl.DataFrame
    n_readings: int


def _one(chunk: pl.DataFrame, cfg: MeterConfig, meters: pl.DataFrame | None,
         as_of: float | None, alerts: bool) -> ChunkResult:
    thr = compute_thresholds(chunk, cfg, as_of=as_of)
    meta = None
    if meters is not None:
        meta = meters.join(chunk.select(pl.col("meter_id").unique()), on="meter_id", how="semi")
    s = summarize(chunk, cfg, meters=meta, thresholds=thr if alerts else None)
    return ChunkResult(s.days, thr, s.alerts, s.rejected, chunk.height)


def recompute(chunks: Iterable[pl.DataFrame], config: MeterConfig | None = None, *,
              meters: pl.DataFrame | None = None, as_of: float | None = None,
              alerts: bool = True, workers: int = 2) -> Iterator[ChunkResult]:
    """Days, thresholds (as of ``as_of``, default each chunk's newest reading) and alerts
    per chunk of whole meters, in input order. ``as_of`` should be given for a consistent
    window across chunks."""
    cfg = config or MeterConfig()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = []
        for chunk in chunks:
            pending.append(pool.submit(_one, chunk, cfg, meters, as_of, alerts))
            if len(pending) > workers:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()
