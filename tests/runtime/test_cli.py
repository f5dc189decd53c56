"""``chargetracker run`` / ``demo`` and the pipeline config file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from chargetracker.cli import main
from chargetracker.errors import ConfigError
from chargetracker.runtime import load_pipeline_config
from chargetracker.sources import DirectorySource, FileSource, SimulatorSource
from chargetracker.stores.duckdb import DuckDBStore

DATA = Path(__file__).resolve().parents[1] / "data"


def test_pipeline_config_file(tmp_path: Path) -> None:
    (tmp_path / "fleet.toml").write_text('seed = 3\nduration_h = 2\n')
    (tmp_path / "lab").mkdir()
    cfg_path = tmp_path / "pipeline.toml"
    cfg_path.write_text(f"""
store = "duckdb:///{tmp_path / 'x.duckdb'}"
raw_retention_days = 7
[runtime]
max_batch_rows = 1234
[engine]
lateness_s = 0.5
[alerts]
over_voltage_v = 4.25
[[sources]]
type = "simulator"
fleet = "fleet.toml"
cells = 8
acceleration = "max"
[[sources]]
type = "file"
path = "{DATA / 'arbin_example.csv'}"
[[sources]]
type = "directory"
path = "lab"
pattern = "*.csv"
""")
    pcfg = load_pipeline_config(cfg_path)
    s = pcfg.settings
    assert s.store_url.endswith("x.duckdb") and s.raw_retention_days == 7.0
    assert s.runtime.max_batch_rows == 1234 and s.engine.lateness_s == 0.5
    assert s.alerts.over_voltage_v == 4.25
    from chargetracker.cli.run import build_sources

    sim, file, folder = build_sources(pcfg)
    assert isinstance(sim, SimulatorSource) and sim.n_cells == 8 and math.isinf(sim.acceleration)
    assert sim.config.seed == 3 and sim.config.duration_s == 7200.0
    assert isinstance(file, FileSource) and isinstance(folder, DirectorySource)
    assert folder.path == tmp_path / "lab"
    assert len({sim.name, file.name, folder.name}) == 3


@pytest.mark.parametrize("text, match", [
    ("stor = 'x'", "unknown pipeline setting"),
    ("[runtime]\nmax_rows = 3", r"unknown \[runtime\] setting"),
    ("[engine]\nlateness = 3", "unknown engine setting"),
    ("[[sources]]\ntype = 'kafka'", "source type"),
    ("[[sources]]\ntype = 'file'\npath = 'a.csv'\nfollo = true", "unknown key"),
])
def test_pipeline_config_errors_name_the_problem(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "p.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        from chargetracker.cli.run import build_sources

        build_sources(load_pipeline_config(p))


def test_run_replays_a_file_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"duckdb:///{tmp_path / 'ct.duckdb'}"
    args = ["run", "--file", str(DATA / "arbin_example.csv"), "--store", url, "--no-summary",
            "--log-commits", "--max-batch-rows", "1000"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "finished" in err and len(out.splitlines()) == 3
    assert main(args) == 0                              # already done: nothing re-read
    out, _ = capsys.readouterr()
    assert out == ""
    with DuckDBStore(tmp_path / "ct.duckdb") as store:
        assert store.ingest_stats()["measurements_stored"] == 2142
        assert store.cycles(status="closed").height > 0


def test_run_without_sources_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--store", f"duckdb:///{tmp_path / 'a.duckdb'}"]) == 2
    assert "no sources" in capsys.readouterr().err


def test_demo_terminal_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "demo.duckdb"
    args = ["demo", "--no-server", "--cells", "8", "--hours", "3", "--accel", "max",
            "--store", str(store), "--summary-interval", "0.2"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "8 simulated cells in 4 groups" in err and "finished" in err and "samples" in err
    with DuckDBStore(store) as s:
        assert s.cells_count() == 8 and s.cycles().height > 0
        groups = set(s.cells().get_column("group").to_list())
        assert groups == {"nmc-standard", "nmc-accelerated", "lfp-standard", "lfp-accelerated"}
    # The same store with another fleet is refused with a hint; --fresh starts over.
    assert main([*args, "--seed", "1"]) == 2
    assert "different fleet" in capsys.readouterr().err
    assert main([*args, "--seed", "1", "--fresh"]) == 0
