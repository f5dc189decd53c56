"""``chargetracker simulate`` writes measurements and cells metadata, streaming in chunks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import polars as pl
import pytest

from chargetracker.cli import simulate
from chargetracker.errors import ConfigError
from chargetracker.schema import CELL_SCHEMA, MEASUREMENT_SCHEMA


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="chargetracker")
    sub = parser.add_subparsers(dest="command", required=True)
    simulate.register(sub)
    args = parser.parse_args(["simulate", *argv])
    return int(args.func(args))


def test_parquet_and_cells_file(tmp_path: Path) -> None:
    out = tmp_path / "run.parquet"
    assert _run("--cells", "8", "--hours", "2", "--sample-period", "10", "--seed", "3",
                "--chunk-hours", "0.5", "--out", str(out)) == 0
    df = pl.read_parquet(out)
    assert df.schema == pl.Schema(MEASUREMENT_SCHEMA)
    assert df.height == 8 * 720
    cells = pl.read_parquet(tmp_path / "run.cells.parquet")
    assert cells.schema == pl.Schema(CELL_SCHEMA)
    assert cells.height == 8 and json.loads(cells["attributes"][0])["seed"] == 3


def test_csv_with_faults_and_labels(tmp_path: Path) -> None:
    out = tmp_path / "run.csv"
    assert _run("--cells", "4", "--hours", "1", "--sample-period", "5", "--labels",
                "--faults", "duplicates,out_of_order", "--out", str(out)) == 0
    df = pl.read_csv(out)
    assert df.columns == list(MEASUREMENT_SCHEMA)
    assert df.height >= 4 * 720
    assert df["cycle"].null_count() == 0
    assert (tmp_path / "run.cells.csv").exists()


def test_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert _run("--cells", "2", "--hours", "0.1", "--out", "-") == 0
    text = capsysbinary.readouterr().out.decode()
    assert text.splitlines()[0] == ",".join(MEASUREMENT_SCHEMA)
    assert len(text.splitlines()) == 1 + 2 * 360


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="format"):
        _run("--hours", "1", "--out", str(tmp_path / "x.txt"))
    with pytest.raises(ConfigError, match="unknown fault"):
        _run("--hours", "1", "--faults", "gremlins", "--out", str(tmp_path / "x.csv"))
