"""The meter batch layer on Spark: ``spark.read.parquet`` of the reading archive ->
``repartition(meter_id)`` -> ``groupBy("meter_id").applyInArrow`` (``applyInPandas`` on
Spark 3.5) running the same engine per meter in the Python workers -> one tagged frame
of daily energy rows and threshold rows.

Every meter is one group, so each worker computes exactly what the local batch layer
(:func:`~chargetracker.meters.batch.recompute_parquet`) computes for it; the threshold
window ends at one ``as_of`` for all meters (the archive's newest reading by default).
PySpark is optional and only imported by the functions that need a session.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import polars as pl
import pyarrow as pa

from ..errors import ConfigError
from .config import MeterConfig
from .engine import summarize
from .schema import DAY_SCHEMA, METER_SCHEMA, THRESHOLD_SCHEMA
from .thresholds import compute_thresholds

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession

__all__ = ["RESULT_SCHEMA", "collect_meter_results", "spark_meter_results"]

#: The tagged result row: ``kind`` is ``day`` (DAY_SCHEMA columns) or ``threshold``
#: (THRESHOLD_SCHEMA columns; ``n_readings`` is shared).
RESULT_SCHEMA: dict[str, pl.DataType] = {"kind": pl.Utf8(), **DAY_SCHEMA, **THRESHOLD_SCHEMA}
_SPARK = {pl.Utf8(): "string", pl.Int64(): "bigint", pl.Float64(): "double", pl.Date(): "date"}
RESULT_DDL = ", ".join(f"`{c}` {_SPARK[t]}" for c, t in RESULT_SCHEMA.items())
_ARROW = {pl.Utf8(): pa.string(), pl.Int64(): pa.int64(), pl.Float64(): pa.float64(),
          pl.Date(): pa.date32()}


def _one_meter(frame: pl.DataFrame, cfg: MeterConfig, meta: Mapping[str, dict[str, Any]],
               as_of: float) -> pl.DataFrame:
    thr = compute_thresholds(frame, cfg, as_of=as_of)
    ids = frame.get_column("meter_id").unique().to_list()
    rows = [meta[m] for m in ids if m in meta]
    meters = pl.DataFrame(rows, schema=METER_SCHEMA) if rows else None
    days = summarize(frame.sort("meter_id", "ts", maintain_order=True), cfg, meters=meters).days
    out = pl.concat([days.with_columns(pl.lit("day").alias("kind")),
                     thr.with_columns(pl.lit("threshold").alias("kind"))], how="diagonal")
    return out.select(pl.col(c).cast(t) for c, t in RESULT_SCHEMA.items())


def _udfs(cfg: MeterConfig, meta: Mapping[str, dict[str, Any]], as_of: float
          ) -> tuple[Callable[[pa.Table], pa.Table], Callable[[Any], Any]]:
    arrow_schema = pa.schema([(c, _ARROW[t]) for c, t in RESULT_SCHEMA.items()])

    def arrow_udf(table: pa.Table) -> pa.Table:
        frame = cast(pl.DataFrame, pl.from_arrow(table))
        return _one_meter(frame, cfg, meta, as_of).to_arrow().cast(arrow_schema)

    def pandas_udf(pdf: Any) -> Any:
        return _one_meter(pl.from_pandas(pdf), cfg, meta, as_of).to_pandas()

    return arrow_udf, pandas_udf


def spark_meter_results(spark: SparkSession, paths: str | Path | Sequence[str | Path], *,
                        config: MeterConfig | None = None, meters: pl.DataFrame | None = None,
                        as_of: float | None = None, partitions: int | None = None) -> SparkFrame:
    """The Spark job (lazy): RESULT_SCHEMA rows for the reading archive at ``paths``
    (Parquet files or folders, any URI Spark reads), one group per meter."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    cfg = config or MeterConfig()
    ps = [str(paths)] if isinstance(paths, (str, Path)) else [str(p) for p in paths]
    try:
        df = spark.read.parquet(*ps)
    except AnalysisException as exc:
        raise ConfigError(f"cannot read meter archive {ps!r}: {exc}") from exc
    missing = {"meter_id", "ts", "power_w"} - set(df.columns)
    if missing:
        raise ConfigError(f"meter archive {ps!r}: missing column(s) {sorted(missing)}")
    e = (F.col("energy_wh").cast("double") if "energy_wh" in df.columns
         else F.lit(None).cast("double")).alias("energy_wh")
    df = df.select(F.col("meter_id").cast("string"), F.col("ts").cast("double"),
                   F.col("power_w").cast("double"), e)
    if as_of is None:
        as_of = df.agg(F.max("ts")).collect()[0][0]
        if as_of is None:
            raise ConfigError(f"meter archive {ps!r} has no readings")
    meta = {r["meter_id"]: r for r in meters.to_dicts()} if meters is not None else {}
    arrow_udf, pandas_udf = _udfs(cfg, meta, float(as_of))
    n = partitions or int(spark.conf.get("spark.sql.shuffle.partitions") or 4)
    grouped = df.repartition(n, "meter_id").groupBy("meter_id")
    if hasattr(grouped, "applyInArrow"):
        return grouped.applyInArrow(arrow_udf, RESULT_DDL)
    return grouped.applyInPandas(pandas_udf, RESULT_DDL)


def collect_meter_results(results: SparkFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(days, thresholds) of a :func:`spark_meter_results` job, sorted like the local
    batch layer's output (by meter and date, by meter)."""
    if hasattr(results, "toArrow"):  # Spark 4
        frames = [cast(pl.DataFrame, pl.from_arrow(results.toArrow()))]
    else:
        frames = [pl.from_pandas(results.toPandas())]
    allr = pl.concat([pl.DataFrame(schema=RESULT_SCHEMA)] + [
        f.select(pl.col(c).cast(t) for c, t in RESULT_SCHEMA.items()) for f in frames if f.height])
    days = allr.filter(pl.col("kind") == "day").select(list(DAY_SCHEMA)).sort("meter_id", "date")
    thr = (allr.filter(pl.col("kind") == "threshold").select(list(THRESHOLD_SCHEMA))
           .sort("meter_id"))
    return days, thr
