"""One local Spark session for the whole test run (starting one costs ~10 s of JVM start-up,
so the cell and meter Spark tests share it; stopped at the end of the session)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    pytest.importorskip("pyspark", reason="PySpark not installed (pip install '.[scale]')")
    from chargetracker.batch.session import spark_session
    from chargetracker.config import SparkConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        session = spark_session(SparkConfig(master="local[2]"), conf={"spark.driver.memory": "1g"})
    yield session
    session.stop()
