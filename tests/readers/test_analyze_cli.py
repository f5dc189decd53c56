"""``chargetracker analyze``: reader flags, cells files, exit codes."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import polars as pl
import pytest

from chargetracker.analysis import analyze_files, companion_cells, read_cells
from chargetracker.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["analyze", "--no-progress", *argv])
    return rc, out.getvalue(), err.getvalue()


def test_header_only_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "head.csv"
    path.write_text((DATA / "arbin_example.csv").read_text().splitlines()[0] + "\n")
    rc, _, err = _run(str(path))
    assert rc == 1
    assert "head.csv: no data rows" in err


def test_one_empty_file_among_good_ones_fails_but_reports_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "head.csv"
    path.write_text((DATA / "arbin_example.csv").read_text().splitlines()[0] + "\n")
    rc, out, err = _run(str(DATA / "arbin_example.csv"), str(path))
    assert rc == 1 and "arbin_example" in out and "head.csv: no data rows" in err


def test_binary_file_error_is_short(tmp_path: Path) -> None:
    path = tmp_path / "cells.csv"
    path.write_bytes(bytes(range(256)) * 1000)
    rc, out, err = _run(str(path))
    assert rc == 2
    assert len(err) < 400 and "cells.csv" in err and "\\x" not in err


def test_generic_flags_preamble_separator_decimal_comma_timezone(tmp_path: Path) -> None:
    path = tmp_path / "logger.txt"
    path.write_text(
        "Logger export\nChannel 3\n"
        "Zeit;Spannung;Strom\n"
        "2024-07-01 12:00:00;3,700;1,5\n"
        "2024-07-01 12:00:10;3,710;1,5\n"
        "2024-07-01 12:00:20;3,720;-1,5\n"
        "2024-07-01 12:00:30;3,700;-1,5\n"
    )
    out = tmp_path / "steps.parquet"
    rc, _, err = _run(str(path), "--skip-lines", "2", "--separator", ";", "--decimal-comma",
                      "--timezone", "Europe/Berlin", "--map", "ts=Zeit", "--map",
                      "voltage_v=Spannung", "--map", "current_a=Strom", "--min-step", "1",
                      "--steps", str(out))
    assert rc == 0, err
    steps = pl.read_parquet(out)
    # 12:00 in Berlin (CEST) is 10:00 UTC.
    assert steps.get_column("start_ts").min() == pytest.approx(1719828000.0)
    assert steps.get_column("max_v").max() == pytest.approx(3.72)  # "3,720"
    assert steps.get_column("charge_ah").sum() > 0 and steps.get_column("discharge_ah").sum() > 0


def test_generic_flags_need_generic_format(tmp_path: Path) -> None:
    rc, _, err = _run(str(DATA / "arbin_example.csv"), "--format", "arbin", "--skip-lines", "1")
    assert rc == 2 and "--format generic" in err


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fleet") / "fleet.parquet"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["simulate", "--out", str(out), "--cells", "3", "--hours", "3", "--seed", "1",
                   "--sample-period", "10"])
    assert rc == 0
    return out


def test_companion_cells_file_is_used(fleet: Path) -> None:
    comp = companion_cells(fleet)
    assert comp is not None and comp.name == "fleet.cells.parquet"
    cells = read_cells(comp)
    result = analyze_files([fleet])
    assert sorted(result.cells.get_column("cell_id").to_list()) == sorted(
        cells.get_column("cell_id").to_list())
    assert "fleet" not in result.cells.get_column("cell_id").to_list()
    got = dict(result.cells.select("cell_id", "nominal_capacity_ah").iter_rows())
    want = dict(cells.select("cell_id", "nominal_capacity_ah").iter_rows())
    assert got == want
    assert set(result.cycles.get_column("cell_id").unique()) <= set(want)


def test_nominal_capacity_applies_to_every_cell(fleet: Path, tmp_path: Path) -> None:
    result = analyze_files([fleet], nominal_capacity_ah=9.0)
    assert result.cells.height == 3
    assert result.cells.get_column("nominal_capacity_ah").to_list() == [9.0, 9.0, 9.0]
    # --cells FILE wins over the companion.
    other = tmp_path / "meta.csv"
    ids = read_cells(companion_cells(fleet)).get_column("cell_id").to_list()  # type: ignore[arg-type]
    pl.DataFrame({"cell_id": ids, "group": ["g1"] * 3, "nominal_capacity_ah": [2.5] * 3,
                  "rack": ["R1"] * 3}).write_csv(other)
    result = analyze_files([fleet], cells=other)
    assert result.cells.get_column("group").to_list() == ["g1"] * 3
    assert result.cells.get_column("nominal_capacity_ah").to_list() == [2.5] * 3
    assert '"rack": "R1"' in result.cells.get_column("attributes")[0]
    rc, out, err = _run(str(fleet), "--cells", str(other), "--group-by", "group")
    assert rc == 0, err
    assert "by group" in out
