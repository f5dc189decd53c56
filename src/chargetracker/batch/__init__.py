"""The batch layer: recompute history from the Parquet archive (Spark or local).

>>> from chargetracker.batch import backfill
>>> backfill("archive/", "duckdb:///ct.duckdb", engine="spark")   # local[2] Spark
"""

from __future__ import annotations

from . import backfill as _backfill
from .backfill import *  # noqa: F403 - the package's face
from .session import spark_session

__all__ = [*_backfill.__all__, "spark_session"]
