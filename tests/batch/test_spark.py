"""Spark backfill in local mode (local[2]): equals the streaming path, the local engine
and per-cell summarize exactly; writes through the store; filters; config change.

One Spark session for the module (start-up takes seconds).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from chargetracker.batch import (
    backfill,
    collect_output,
    local_results,
    spark_results,
    split_results,
)
from chargetracker.batch.session import running_session
from chargetracker.cli import main
from chargetracker.config import EngineConfig
from chargetracker.errors import ConfigError
from chargetracker.stores.archive import ParquetArchive
from chargetracker.stores.url import open_store

from .conftest import StreamedFleet, assert_frames_equal
from .test_backfill_local import per_cell_summaries, seeded_store

pytestmark = [
    pytest.mark.slow,
    # PySpark warns about pandas 3 on import of its pandas helpers; not ours to fix.
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]


@pytest.fixture(scope="module")
def spark_output(spark: object, streamed_fleet: StreamedFleet):  # type: ignore[no-untyped-def]
    return collect_output(spark_results(spark, streamed_fleet.archive.root,  # type: ignore[arg-type]
                                        nominal=streamed_fleet.nominal))


def test_spark_equals_streaming_local_and_per_cell_summarize(
        spark_output, streamed_fleet: StreamedFleet) -> None:  # type: ignore[no-untyped-def]
    fleet = streamed_fleet
    out = spark_output
    # The live path (engine.update batch by batch, late/duplicate rows rejected).
    assert_frames_equal(out.steps, fleet.steps)
    assert_frames_equal(out.cycles, fleet.cycles)
    # engine.summarize per cell on the archived samples sorted by ts.
    steps, cycles = per_cell_summaries(fleet.accepted, fleet.cells)
    assert_frames_equal(out.steps, steps)
    assert_frames_equal(out.cycles, cycles)
    # The local engine.
    local = split_results(local_results(fleet.archive, nominal=fleet.nominal))
    assert_frames_equal(out.steps, local.steps)
    assert_frames_equal(out.cycles, local.cycles)
    assert out.dead_letters.height == 0
    assert int(out.cells["n_samples"].sum()) == fleet.accepted.height
    assert dict(zip(out.cells["cell_id"], out.cells["group"], strict=True)) == fleet.groups


def test_pandas_udf_gives_the_same_numbers(spark: object, streamed_fleet: StreamedFleet) -> None:
    # applyInPandas (the Spark 3.5 path): pandas has no NaN/null distinction.
    fleet = streamed_fleet
    cells = sorted(fleet.groups)[::6]
    out = collect_output(spark_results(spark, fleet.archive.root, nominal=fleet.nominal,  # type: ignore[arg-type]
                                       cells=cells, udf="pandas"))
    assert_frames_equal(out.cycles, fleet.cycles.filter(pl.col("cell_id").is_in(cells)),
                        nan_as_null=True)
    assert_frames_equal(out.steps, fleet.steps.filter(pl.col("cell_id").is_in(cells)),
                        nan_as_null=True)


def test_spark_filters_match_the_local_engine(spark: object, streamed_fleet: StreamedFleet) -> None:
    fleet = streamed_fleet
    groups = sorted(set(fleet.groups.values()))
    cells = sorted(fleet.groups)[:20]
    kw = {"cells": cells, "groups": groups[1:3], "since": "2026-01-01", "until": "2026-01-02"}
    out = collect_output(spark_results(spark, fleet.archive.root, nominal=fleet.nominal, **kw))  # type: ignore[arg-type]
    local = split_results(local_results(fleet.archive, nominal=fleet.nominal, **kw))  # type: ignore[arg-type]
    assert out.cycles.height > 0
    assert set(out.cells["group"]) <= set(groups[1:3])
    assert set(out.cells["cell_id"]) <= set(cells)
    assert_frames_equal(out.steps, local.steps)
    assert_frames_equal(out.cycles, local.cycles)
    assert_frames_equal(out.cells, local.cells)


def test_config_change_in_spark(spark: object, streamed_fleet: StreamedFleet) -> None:
    fleet = streamed_fleet
    changed = EngineConfig(cycle_start="discharge", min_step_s=30.0)
    cells = sorted(fleet.groups)[1::5]
    out = collect_output(spark_results(spark, fleet.archive.root, nominal=fleet.nominal,  # type: ignore[arg-type]
                                       cells=cells, config=changed))
    accepted = fleet.accepted.filter(pl.col("cell_id").is_in(cells))
    steps, cycles = per_cell_summaries(accepted, fleet.cells, changed)
    assert_frames_equal(out.steps, steps)
    assert_frames_equal(out.cycles, cycles)
    assert not out.cycles.select("cell_id", "cycle", "start_ts").equals(
        fleet.cycles.filter(pl.col("cell_id").is_in(cells)).select("cell_id", "cycle", "start_ts"))


def test_spark_backfill_into_duckdb(tmp_path: Path, spark: object,
                                    streamed_fleet: StreamedFleet) -> None:
    fleet = streamed_fleet
    url = f"duckdb:///{tmp_path / 'ct.duckdb'}"
    seeded_store(url, fleet)
    result = backfill(fleet.archive.root, url, engine="spark", spark=spark,  # type: ignore[arg-type]
                      partitions=3, chunk_rows=500)
    assert result.engine == "spark"
    assert (result.cells, result.samples) == (fleet.cells.height, fleet.accepted.height)
    assert (result.steps, result.cycles) == (fleet.steps.height, fleet.cycles.height)
    with open_store(url) as store:
        cycles = store.cycles().sort("cell_id", "cycle")
        steps = pl.concat([store.steps(c) for c in fleet.cells["cell_id"]]).sort("cell_id", "step")
    assert_frames_equal(cycles, fleet.cycles, nan_as_null=True)
    assert_frames_equal(steps, fleet.steps, nan_as_null=True)


def test_spark_reads_hive_encoding_and_skips_temporary_files(
        tmp_path: Path, spark: object, streamed_fleet: StreamedFleet) -> None:
    fleet = streamed_fleet
    archive = ParquetArchive(tmp_path / "arch")
    odd = {c: ("a/b c%" if i % 2 else None) for i, c in enumerate(sorted(fleet.groups)[:4])}
    rows = fleet.accepted.filter(pl.col("cell_id").is_in(list(odd)))
    (first, *_) = archive.append(rows, odd, "b1")
    (first.parent / f".{first.name}.1.x.tmp").write_bytes(b"not parquet")
    out = collect_output(spark_results(spark, archive.root, nominal=fleet.nominal))  # type: ignore[arg-type]
    assert dict(zip(out.cells["cell_id"], out.cells["group"], strict=True)) == odd
    assert_frames_equal(out.cycles, fleet.cycles.filter(pl.col("cell_id").is_in(list(odd))))
    only_null = collect_output(spark_results(spark, archive.root, nominal=fleet.nominal,  # type: ignore[arg-type]
                                             groups=[None]))
    assert set(only_null.cells["cell_id"]) == {c for c, g in odd.items() if g is None}


def test_empty_and_missing_archives(tmp_path: Path, spark: object) -> None:
    (tmp_path / "empty").mkdir()
    out = collect_output(spark_results(spark, tmp_path / "empty"))  # type: ignore[arg-type]
    assert out.cycles.height == 0 and out.cells.height == 0
    with pytest.raises(ConfigError, match="cannot read archive"):
        spark_results(spark, tmp_path / "missing")  # type: ignore[arg-type]


def test_cli_spark_backfill_uses_the_running_session(
        tmp_path: Path, spark: object, streamed_fleet: StreamedFleet,
        capsys: pytest.CaptureFixture[str]) -> None:
    fleet = streamed_fleet
    url = f"duckdb:///{tmp_path / 'ct.duckdb'}"
    seeded_store(url, fleet)
    group = sorted(set(fleet.groups.values()))[0]
    assert main(["backfill", "--engine", "spark", "--master", "local[2]", "--input",
                 str(fleet.archive.root), "--store", url, "--groups", group,
                 "--partitions", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    members = [c for c, g in fleet.groups.items() if g == group]
    assert result["engine"] == "spark" and result["cells"] == len(members)
    with open_store(url) as store:
        got = store.cycles().sort("cell_id", "cycle")
    assert_frames_equal(got, fleet.cycles.filter(pl.col("cell_id").is_in(members)), nan_as_null=True)
    # The module's session is still running (the CLI did not stop what it did not start).
    assert running_session() is not None
    # sink=executors needs a store every worker can open.
    assert main(["backfill", "--engine", "spark", "--input", str(fleet.archive.root),
                 "--store", url, "--sink", "executors"]) == 2
    assert "server store" in capsys.readouterr().err


def test_executors_sink_into_postgresql(spark: object, streamed_fleet: StreamedFleet,
                                        request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_url")
    fleet = streamed_fleet
    seeded_store(url, fleet)
    cells = sorted(fleet.groups)[:12]
    result = backfill(fleet.archive.root, url, engine="spark", spark=spark,  # type: ignore[arg-type]
                      sink="executors", cells=cells, partitions=3)
    assert result.cells == len(cells)
    with open_store(url) as store:
        got = store.cycles().sort("cell_id", "cycle")
    assert_frames_equal(got, fleet.cycles.filter(pl.col("cell_id").is_in(cells)), nan_as_null=True)
