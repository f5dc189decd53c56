"""Start-up messages name the resolved store (issue 10 #7): run, demo, serve, dashboard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chargetracker.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"


def test_run_prints_the_absolute_store_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--file", str(DATA / "arbin_example.csv"), "--store",
                 "duckdb://sub/rel.duckdb", "--no-summary"]) == 0
    err = capsys.readouterr().err
    assert f"DuckDB file {tmp_path / 'sub' / 'rel.duckdb'}" in err
    assert (tmp_path / "sub" / "rel.duckdb").exists()


def test_demo_prints_the_store_and_takes_an_absolute_url(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "deep" / "demo.duckdb"
    assert main(["demo", "--no-server", "--cells", "2", "--hours", "0.2", "--accel", "max",
                 "--store", f"duckdb://{target}", "--future-horizon", "3600",
                 "--summary-interval", "60"]) == 0
    assert f"DuckDB file {target}" in capsys.readouterr().err
    assert target.exists()


@pytest.mark.parametrize("command", ["serve", "dashboard"])
def test_servers_print_the_store_before_serving(tmp_path: Path, command: str) -> None:
    exe = Path(sys.executable).with_name("chargetracker")
    store = tmp_path / "s.duckdb"
    args = [str(exe), command, "--store", f"duckdb://{store}", "--port", "0" if command == "serve" else "0"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline:
            line = proc.stderr.readline() if proc.stderr else ""
            if "store" in line or not line:
                break
        assert f"DuckDB file {store}" in line, line
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_nan_nominal_capacity_is_refused_with_its_reason(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """On main ``--nominal-capacity nan`` was taken silently."""
    assert main(["analyze", str(DATA / "arbin_example.csv"), "--nominal-capacity", "nan"]) != 0
    err = capsys.readouterr().err
    assert "nominal capacity must be a finite number > 0" in err and "nan" in err
