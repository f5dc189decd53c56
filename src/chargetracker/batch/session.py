"""A Spark session for the batch layer (local mode by default, or a cluster master).

PySpark is an optional dependency (``pip install 'chargetracker[scale]'``); it is only
imported when a session is made. Local mode (``local[N]``) needs Java 17+ and runs the
Python workers with this interpreter, so they import the same ChargeTracker and engine.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..config import SparkConfig
from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

__all__ = ["DEFAULT_CONF", "is_local", "running_session", "session_scope", "spark_session",
           "stop_session"]

#: Spark settings the batch layer runs with unless overridden (``conf=``/``--conf``).
DEFAULT_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # Few, large tasks: a backfill shuffles once (by cell), and the per-cell work is
    # engine-bound, not I/O-bound.
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.memory": "2g",
    "spark.sql.session.timeZone": "UTC",
    # group and date are strings in the archive ("001" must stay "001").
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Larger Arrow batches to/from the Python workers: fewer round trips per cell.
    "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
    "spark.python.worker.reuse": "true",
}
#: Extra settings in local mode: stay on loopback.
LOCAL_CONF: dict[str, str] = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}


def is_local(master: str) -> bool:
    return master == "local" or master.startswith("local[") or master.startswith("local-")


def spark_session(config: SparkConfig | None = None, *,
                  conf: Mapping[str, str] | None = None) -> SparkSession:
    """Get or create the Spark session for ``config.master`` (``local[2]`` by default).

    In local mode the Python workers run ``sys.executable`` (``spark.pyspark.python`` and
    the context's ``pythonExec``, so the process environment is left alone) and Spark
    binds to 127.0.0.1; on a cluster the cluster's Python is used and must have
    ChargeTracker installed. ``conf`` overrides :data:`DEFAULT_CONF`.
    Settings that need a new JVM (``spark.driver.memory``) only apply to the first
    session of a process.
    """
    cfg = config or SparkConfig()
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigError(
            "the Spark backfill needs PySpark: pip install 'chargetracker[scale]' "
            "(and Java 17+); or use --engine local"
        ) from exc
    settings: dict[str, Any] = dict(DEFAULT_CONF)
    local = is_local(cfg.master)
    if local:
        settings.update(LOCAL_CONF)
        settings["spark.pyspark.python"] = sys.executable
        settings["spark.pyspark.driver.python"] = sys.executable
    settings.update(conf or {})
    builder = SparkSession.builder.master(cfg.master).appName(cfg.app_name)
    for key, value in settings.items():
        builder = builder.config(key, str(value))
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # Py4J/Java start-up errors have no common base class
        raise ConfigError(f"cannot start Spark (master {cfg.master!r}): {exc}") from exc
    spark.sparkContext.setLogLevel("ERROR")
    if local:
        # PySpark takes the workers' interpreter from PYSPARK_PYTHON (default "python3",
        # which may not have ChargeTracker); tell the context directly instead.
        spark.sparkContext.pythonExec = sys.executable
    return spark


def stop_session(spark: SparkSession) -> None:
    """Stop a session made by :func:`spark_session` (and its JVM's context)."""
    spark.stop()


def running_session() -> SparkSession | None:
    """The session already running in this process, if any (PySpark installed or not)."""
    try:
        from pyspark import SparkContext
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    if SparkContext._active_spark_context is None:  # noqa: SLF001 - no public accessor
        return None
    return SparkSession.builder.getOrCreate()


@contextmanager
def session_scope(config: SparkConfig | None = None, *,
                  conf: Mapping[str, str] | None = None) -> Iterator[SparkSession]:
    """A session for one job: the running one if there is one (left running), else a
    new one from ``config`` that is stopped afterwards."""
    existing = running_session()
    if existing is not None:
        yield existing
        return
    spark = spark_session(config, conf=conf)
    try:
        yield spark
    finally:
        stop_session(spark)
