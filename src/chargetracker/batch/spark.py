"""The Spark engine of the backfill: ``spark.read.parquet`` of the archive ->
``repartition(cell_id)`` -> ``groupBy("cell_id").applyInArrow`` (``applyInPandas`` on Spark
3.5) running the per-cell analysis in the Python workers -> one tagged-union frame,
streamed to the driver as Arrow IPC blobs."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import polars as pl
import pyarrow as pa

from ..config import EngineConfig
from ..errors import ChargeTrackerError, ConfigError
from ..schema import MEASUREMENT_SCHEMA
from ..stores.archive import ARCHIVE_SCHEMA, PARTITION_SCHEMA, parse_day
from .results import RESULT_ARROW_SCHEMA, RESULT_SCHEMA, BackfillError, analyze_frame

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession

__all__ = ["ARCHIVE_DDL", "RESULT_DDL", "Udf", "as_result", "iter_spark_results", "short_error",
           "spark_results"]

Udf = Literal["auto", "arrow", "pandas"]
_MEASUREMENT_COLUMNS = list(MEASUREMENT_SCHEMA)


def _spark_type(dtype: pl.DataType) -> str:
    return {pl.Utf8(): "string", pl.Int64(): "bigint", pl.Float64(): "double"}[dtype]


def _ddl(schema: Mapping[str, pl.DataType]) -> str:
    return ", ".join(f"`{c}` {_spark_type(t)}" for c, t in schema.items())


#: Spark schema of the archive (file columns + partition columns, all typed).
ARCHIVE_DDL = _ddl({**ARCHIVE_SCHEMA, **PARTITION_SCHEMA})
RESULT_DDL = _ddl(RESULT_SCHEMA)


def _arrow_udf(config: EngineConfig, nominal: Mapping[str, float]) -> Callable[[pa.Table], pa.Table]:
    def analyze_cell(table: pa.Table) -> pa.Table:
        frame = cast(pl.DataFrame, pl.from_arrow(table))
        return analyze_frame(frame, config, nominal).to_arrow().cast(RESULT_ARROW_SCHEMA)

    return analyze_cell


def _pandas_udf(config: EngineConfig, nominal: Mapping[str, float]) -> Callable[[Any], Any]:
    def analyze_cell(pdf: Any) -> Any:
        # NaN in float columns of a pandas frame is null in Spark; the engine treats a
        # missing temperature or step time like NaN, so nothing changes.
        frame = pl.from_pandas(pdf, nan_to_null=True)
        return analyze_frame(frame, config, nominal).to_pandas()

    return analyze_cell


def spark_results(
    spark: SparkSession,
    source: str | Path,
    *,
    config: EngineConfig | None = None,
    nominal: Mapping[str, float] | None = None,
    cells: Sequence[str] | None = None,
    groups: Sequence[str | None] | None = None,
    since: Any = None,
    until: Any = None,
    partitions: int | None = None,
    udf: Udf = "auto",
) -> SparkFrame:
    """The Spark job (lazy): a DataFrame of RESULT_SCHEMA rows for the archive at ``source``.

    ``source`` is the archive root (a local path, or any URI Spark reads: hdfs://,
    s3a://). Filters select partitions (group, date) and cells before the shuffle.
    """
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    cfg = config or EngineConfig()
    caps = dict(nominal or {})
    root = str(source)
    try:
        df = spark.read.schema(ARCHIVE_DDL).option("basePath", root).parquet(root)
    except AnalysisException as exc:
        raise ConfigError(f"cannot read archive {root!r}: {exc}") from exc
    if cells is not None:
        df = df.where(F.col("cell_id").isin(list(cells)))
    if groups is not None:
        named = [g for g in groups if g is not None]
        cond = F.col("group").isin(named) if named else F.lit(False)
        if any(g is None for g in groups):
            cond = cond | F.col("group").isNull()
        df = df.where(cond)
    lo, hi = parse_day(since), parse_day(until)
    if lo is not None:
        df = df.where(F.col("date") >= lo.isoformat())
    if hi is not None:
        df = df.where(F.col("date") <= hi.isoformat())
    df = df.select(*_MEASUREMENT_COLUMNS, "group")
    n = partitions or int(spark.conf.get("spark.sql.shuffle.partitions") or 4)
    grouped = df.repartition(n, "cell_id").groupBy("cell_id")
    use = udf
    if use == "auto":
        use = "arrow" if hasattr(grouped, "applyInArrow") else "pandas"
    if use == "arrow":
        return grouped.applyInArrow(_arrow_udf(cfg, caps), RESULT_DDL)
    if use == "pandas":
        return grouped.applyInPandas(_pandas_udf(cfg, caps), RESULT_DDL)
    raise ConfigError(f"udf must be auto, arrow or pandas, got {udf!r}")


#: Result rows per Arrow IPC blob sent from a Spark task to the driver.
_BLOB_ROWS = 65_536


def _to_ipc(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow: pack result batches into Arrow IPC blobs (one binary cell each)."""
    pending: list[pa.RecordBatch] = []
    rows = 0

    def blob() -> pa.RecordBatch:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, pending[0].schema) as writer:
            for b in pending:
                writer.write_batch(b)
        return pa.RecordBatch.from_arrays([pa.array([sink.getvalue().to_pybytes()], pa.binary())],
                                          names=["ipc"])

    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        rows += batch.num_rows
        if rows >= _BLOB_ROWS:
            yield blob()
            pending, rows = [], 0
    if pending:
        yield blob()


def iter_spark_results(results: SparkFrame) -> Iterator[pl.DataFrame]:
    """Stream a :func:`spark_results` frame to the driver as RESULT_SCHEMA Polars frames.

    One Spark partition at a time (``toLocalIterator``), as Arrow IPC blobs: the
    driver holds one partition's results, never the whole backfill.
    """
    blobs = results.mapInArrow(_to_ipc, "ipc binary")
    try:
        for row in blobs.toLocalIterator(prefetchPartitions=True):
            table = pa.ipc.open_stream(io.BytesIO(row["ipc"])).read_all()
            yield as_result(cast(pl.DataFrame, pl.from_arrow(table)))
    except ChargeTrackerError:
        raise
    except Exception as exc:  # Py4J / Spark job errors
        raise BackfillError(f"Spark backfill failed: {short_error(exc)}") from exc


def as_result(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(pl.col(c).cast(t) for c, t in RESULT_SCHEMA.items())


def short_error(exc: BaseException, limit: int = 2000) -> str:
    text = str(exc).strip()
    return text if len(text) <= limit else text[:limit] + " ..."
