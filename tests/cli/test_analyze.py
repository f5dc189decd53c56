"""``chargetracker analyze`` says loudly when data gaps were excluded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from chargetracker.cli import main


def test_gaps_are_reported_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 1 Hz at 1 A with a 300 s hole: excluded, about 300 A s = 0.0833 Ah missing.
    t = np.concatenate([[0.0], 1.0 + np.arange(100.0), 400.0 + np.arange(100.0)])
    i = np.concatenate([[0.0], np.ones(200)])
    path = tmp_path / "cell.csv"
    pl.DataFrame({"cell_id": "c1", "ts": 1.7e9 + t, "voltage_v": 3.7, "current_a": i}).write_csv(path)
    assert main(["analyze", str(path), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning: data gaps excluded in 1 cycle(s)" in err
    assert "c1 cycle 1: 1 gap(s), 300 s, ~0.08333 Ah missing" in err
