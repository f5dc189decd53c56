"""Local (no Spark) backfill: equals the streaming results and per-cell summarize,
writes through the store, re-analyses with a changed configuration."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from chargetracker.batch import backfill, local_results, split_results
from chargetracker.batch.backfill import RESULT_ARROW_SCHEMA, _executor_sink, analyze_frame
from chargetracker.cli import main
from chargetracker.config import EngineConfig
from chargetracker.engine import summarize
from chargetracker.errors import ConfigError
from chargetracker.schema import CELL_SCHEMA
from chargetracker.stores.archive import ParquetArchive
from chargetracker.stores.url import open_store

from .conftest import StreamedFleet, assert_frames_equal


def per_cell_summaries(accepted: pl.DataFrame, cells: pl.DataFrame,
                       config: EngineConfig | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """engine.summarize of each cell's archived samples, sorted by ts, on its own."""
    steps, cycles = [], []
    for _, part in accepted.sort("cell_id", "ts").group_by("cell_id", maintain_order=True):
        cid = part.get_column("cell_id")[0]
        s = summarize(part, config, cells=cells.filter(pl.col("cell_id") == cid))
        assert s.rejected.height == 0
        steps.append(s.steps)
        cycles.append(s.cycles)
    return (pl.concat(steps).sort("cell_id", "step"), pl.concat(cycles).sort("cell_id", "cycle"))


def seeded_store(url: str, fleet: StreamedFleet) -> None:
    with open_store(url) as store:
        store.upsert_cells(fleet.cells)


def test_local_backfill_equals_streaming_and_per_cell_summarize(streamed_fleet: StreamedFleet) -> None:
    fleet = streamed_fleet
    out = split_results(local_results(fleet.archive, nominal=fleet.nominal, engine_rows=150_000))
    # The live engine's results, batch by batch (with late/duplicate rows rejected) ...
    assert fleet.rejected > 0 and fleet.cycles.height > 1000
    assert_frames_equal(out.steps, fleet.steps)
    assert_frames_equal(out.cycles, fleet.cycles)
    # ... and summarize per cell over the archived samples.
    steps, cycles = per_cell_summaries(fleet.accepted, fleet.cells)
    assert_frames_equal(out.steps, steps)
    assert_frames_equal(out.cycles, cycles)
    assert out.dead_letters.height == 0
    info = out.cells
    assert info.height == fleet.cells.height
    assert int(info["n_samples"].sum()) == fleet.accepted.height
    assert int(info["duplicates"].sum()) == 0
    assert dict(zip(info["cell_id"], info["group"], strict=True)) == fleet.groups


def test_without_nominal_capacity_results_differ(streamed_fleet: StreamedFleet) -> None:
    # The nominal capacity sets the rest threshold and the equivalent full cycles (the
    # learnt threshold may coincide with C/500): backfill must pass it.
    cid = streamed_fleet.cells["cell_id"][0]
    part = streamed_fleet.accepted.filter(pl.col("cell_id") == cid)
    with_cap = split_results([analyze_frame(part, EngineConfig(), streamed_fleet.nominal)])
    without = split_results([analyze_frame(part, EngineConfig(), {})])
    assert_frames_equal(with_cap.cycles, streamed_fleet.cycles.filter(pl.col("cell_id") == cid))
    assert not with_cap.cycles.equals(without.cycles)


def test_replayed_batches_under_new_ids_are_dropped_as_duplicates(
        tmp_path: Path, streamed_fleet: StreamedFleet) -> None:
    archive = ParquetArchive(tmp_path / "arch")
    groups = streamed_fleet.groups
    batches = streamed_fleet.batches[:12]
    for batch_id, rows in batches:
        archive.append(rows, groups, batch_id)
    # A replay under the same id changes nothing; under another id it duplicates rows.
    archive.append(batches[3][1], groups, batches[3][0])
    archive.append(batches[5][1], groups, "replayed-differently")
    n_rows = sum(r.height for _, r in batches)
    assert archive.read().height == n_rows + batches[5][1].height
    once = pl.concat([r for _, r in batches])
    steps, cycles = per_cell_summaries(once, streamed_fleet.cells)
    out = split_results(local_results(archive, nominal=streamed_fleet.nominal))
    assert_frames_equal(out.steps, steps)
    assert_frames_equal(out.cycles, cycles)
    assert int(out.cells["duplicates"].sum()) == batches[5][1].height
    assert out.dead_letters.height == 0


def test_backfill_into_duckdb_and_read_back(tmp_path: Path, streamed_fleet: StreamedFleet) -> None:
    fleet = streamed_fleet
    url = f"duckdb:///{tmp_path / 'ct.duckdb'}"
    seeded_store(url, fleet)
    result = backfill(fleet.archive.root, url, engine="local", chunk_rows=1_000)
    assert result.cells == fleet.cells.height
    assert result.samples == fleet.accepted.height
    assert (result.steps, result.cycles) == (fleet.steps.height, fleet.cycles.height)
    assert result.closed_cycles == int((fleet.cycles["status"] == "closed").sum())
    assert result.new_cells == 0 and result.dead_letters == 0
    with open_store(url) as store:
        cycles = store.cycles().sort("cell_id", "cycle")
        steps = pl.concat([store.steps(c) for c in fleet.cells["cell_id"]]).sort("cell_id", "step")
        cells = store.cells(limit=1000)
    # The store keeps an undefined metric (NaN) as null.
    assert_frames_equal(cycles, fleet.cycles, nan_as_null=True)
    assert_frames_equal(steps, fleet.steps, nan_as_null=True)
    # Known cells' metadata is untouched.
    assert_frames_equal(cells.sort("cell_id"), fleet.cells.sort("cell_id"))
    # Running it again is idempotent (upserts).
    again = backfill(fleet.archive.root, url, engine="local")
    assert again.cycles == result.cycles
    with open_store(url) as store:
        assert store.cycles().height == fleet.cycles.height


def test_config_change_reanalysis(tmp_path: Path, streamed_fleet: StreamedFleet) -> None:
    fleet = streamed_fleet
    changed = EngineConfig(cycle_start="discharge")
    url = f"duckdb:///{tmp_path / 'ct.duckdb'}"
    seeded_store(url, fleet)
    backfill(fleet.archive.root, url, engine="local", config=changed)
    steps, cycles = per_cell_summaries(fleet.accepted, fleet.cells, changed)
    with open_store(url) as store:
        stored = store.cycles().sort("cell_id", "cycle")
    assert_frames_equal(stored, cycles, nan_as_null=True)
    # The change shows: cycles now start at a discharge, so their boundaries moved.
    default = fleet.cycles
    assert not cycles.select("cell_id", "cycle", "start_ts").equals(
        default.select("cell_id", "cycle", "start_ts"))
    first = cycles.filter(pl.col("cycle") == 2).join(
        steps.filter(pl.col("cycle") == 2), on="cell_id").filter(
        pl.col("start_ts") == pl.col("start_ts_right"))
    assert set(first.get_column("kind").to_list()) == {"discharge"}


def test_new_cell_group_is_added_to_the_store(tmp_path: Path, streamed_fleet: StreamedFleet) -> None:
    fleet = streamed_fleet
    url = f"duckdb:///{tmp_path / 'ct.duckdb'}"
    new_group = sorted(set(fleet.groups.values()))[0]
    old = fleet.cells.filter(pl.col("group") != new_group)
    with open_store(url) as store:
        store.upsert_cells(old)
    result = backfill(fleet.archive.root, url, engine="local", groups=[new_group])
    members = sorted(c for c, g in fleet.groups.items() if g == new_group)
    assert result.cells == len(members) and result.new_cells == len(members)
    with open_store(url) as store:
        added = store.cells(filters={"group": new_group}, limit=1000)
        assert sorted(added["cell_id"]) == members
        # Only cell_id and group are known for them.
        assert added["nominal_capacity_ah"].null_count() == len(members)
        stored = store.cycles().sort("cell_id", "cycle")
    assert set(stored["cell_id"].unique()) == set(members)


def test_cli_local_backfill(tmp_path: Path, streamed_fleet: StreamedFleet,
                            capsys: pytest.CaptureFixture[str]) -> None:
    fleet = streamed_fleet
    url = f"duckdb:///{tmp_path / 'ct.duckdb'}"
    seeded_store(url, fleet)
    cells = sorted(fleet.groups)[:2]
    code = main(["backfill", "--engine", "local", "--input", str(fleet.archive.root),
                 "--store", url, "--cells", ",".join(cells), "--since", "2025-12-31",
                 "--until", "2026-01-02", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["cells"] == 2 and result["engine"] == "local"
    with open_store(url) as store:
        got = store.cycles().sort("cell_id", "cycle")
    assert_frames_equal(got, fleet.cycles.filter(pl.col("cell_id").is_in(cells)), nan_as_null=True)
    # Human-readable summary, and clear errors for bad arguments.
    assert main(["backfill", "--engine", "local", "--input", str(fleet.archive.root),
                 "--store", url, "--groups", "none-such"]) == 0
    assert "0 cells" in capsys.readouterr().out
    assert main(["backfill", "--engine", "local", "--input", str(tmp_path / "missing"),
                 "--store", url]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["backfill", "--engine", "local", "--input", str(fleet.archive.root),
                 "--store", url, "--since", "last week"]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_executor_sink_commits_a_partition(tmp_path: Path, streamed_fleet: StreamedFleet) -> None:
    # The function each Spark task runs with sink="executors", here in-process.
    fleet = streamed_fleet
    url = f"duckdb:///{tmp_path / 'ct.duckdb'}"
    seeded_store(url, fleet)
    cells = sorted(fleet.groups)[:4]
    part = fleet.accepted.filter(pl.col("cell_id").is_in(cells))
    union = analyze_frame(part, EngineConfig(), fleet.nominal)
    batches = union.to_arrow().cast(RESULT_ARROW_SCHEMA).to_batches(max_chunksize=50)
    sink = _executor_sink(url, set(fleet.cells["cell_id"]), chunk_rows=64)
    (counts,) = list(sink(iter(batches)))
    row = counts.to_pylist()[0]
    assert row["cells"] == 4 and row["samples"] == part.height
    with open_store(url) as store:
        assert_frames_equal(store.cycles().sort("cell_id", "cycle"),
                            fleet.cycles.filter(pl.col("cell_id").is_in(cells)), nan_as_null=True)


def test_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="engine"):
        backfill(tmp_path, "duckdb:///:memory:", engine="flink")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="sink"):
        backfill(tmp_path, "duckdb:///:memory:", sink="nowhere")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not a directory"):
        backfill(tmp_path / "missing", "duckdb:///:memory:")
    # An empty archive is a backfill of nothing.
    result = backfill(tmp_path, "duckdb:///:memory:")
    assert (result.cells, result.samples, result.cycles) == (0, 0, 0)
    assert pl.DataFrame(schema=CELL_SCHEMA).height == 0


def test_conflicting_rows_with_one_ts_are_dead_lettered(tmp_path: Path) -> None:
    # Not from a pipeline archive (those hold accepted rows only), but never silent:
    # the engine keeps one and dead-letters the other, and the store gets it.
    archive = ParquetArchive(tmp_path / "arch")
    n = 20
    base = pl.DataFrame({"cell_id": ["c1"] * n, "ts": [1_767_225_600.0 + i for i in range(n)],
                         "voltage_v": [3.7] * n, "current_a": [1.0] * n})
    archive.append(base, {"c1": "g"}, "b1")
    archive.append(base.head(1).with_columns(pl.lit(3.9).alias("voltage_v")), {"c1": "g"}, "b2")
    url = f"duckdb:///{tmp_path / 'ct.duckdb'}"
    result = backfill(archive.root, url, engine="local")
    assert (result.samples, result.duplicates, result.dead_letters) == (n + 1, 0, 1)
    assert result.new_cells == 1
    with open_store(url) as store:
        dead = store.dead_letters()
        assert dead.height == 1
        assert dead["source"][0] == "backfill" and "duplicate timestamp" in dead["reason"][0]
        assert store.cell("c1")["group"] == "g"  # type: ignore[index]


def test_cli_takes_store_and_engine_settings_from_a_pipeline_config(
        tmp_path: Path, streamed_fleet: StreamedFleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = streamed_fleet
    url = f"duckdb:///{tmp_path / 'ct.duckdb'}"
    seeded_store(url, fleet)
    config = tmp_path / "pipeline.toml"
    config.write_text(f'store = "{url}"\n\n[engine]\ncycle_start = "discharge"\n')
    cells = sorted(fleet.groups)[:3]
    assert main(["backfill", "--engine", "local", "--config", str(config), "--input",
                 str(fleet.archive.root), "--cells", *cells]) == 0
    assert "3 cells" in capsys.readouterr().out
    accepted = fleet.accepted.filter(pl.col("cell_id").is_in(cells))
    _, cycles = per_cell_summaries(accepted, fleet.cells, EngineConfig(cycle_start="discharge"))
    with open_store(url) as store:
        assert_frames_equal(store.cycles().sort("cell_id", "cycle"), cycles, nan_as_null=True)
    # The archive is required (from --input or the settings).
    assert main(["backfill", "--engine", "local", "--config", str(config)]) == 2
    assert "--input ARCHIVE" in capsys.readouterr().err
