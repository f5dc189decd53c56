"""The batch layer: recompute history from the Parquet archive (Spark or local).

>>> from chargetracker.batch import backfill
>>> backfill("archive/", "duckdb:///ct.duckdb", engine="spark")   # local[2] Spark
"""

from __future__ import annotations

from .backfill import (
    RESULT_SCHEMA,
    BackfillError,
    BackfillOutput,
    BackfillResult,
    analyze_frame,
    backfill,
    collect_output,
    iter_spark_results,
    load_cells,
    local_results,
    run_backfill,
    spark_results,
    split_results,
)
from .session import spark_session

__all__ = [
    "RESULT_SCHEMA",
    "BackfillError",
    "BackfillOutput",
    "BackfillResult",
    "analyze_frame",
    "backfill",
    "collect_output",
    "iter_spark_results",
    "load_cells",
    "local_results",
    "run_backfill",
    "spark_results",
    "spark_session",
    "split_results",
]
