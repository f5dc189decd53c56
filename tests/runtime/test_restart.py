"""Restart safety: ``chargetracker run`` killed mid-run (SIGKILL), restarted, finishes; the
store then holds exactly the engine's batch result of the same samples, regenerated from
the seed: nothing lost, nothing counted twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from chargetracker.config import EngineConfig
from chargetracker.stores.duckdb import DuckDBStore

from .fleets import assert_store_equals_summary, expected_summary, tiny_fleet

CELLS, HOURS, SEED = 6, 8.0, 17

PIPELINE_TOML = """
store = "duckdb:///{store}"
raw_retention_days = false

[runtime]
poll_interval_s = 0.01
max_batch_rows = 3000
max_queue_batches = 3

[[sources]]
type = "simulator"
name = "sim"
cells = {cells}
hours = {hours}
seed = {seed}
acceleration = "max"

[sources.fleet]
sample_period_s = 1.0
[[sources.fleet.groups]]
name = "nmc-acc"
chemistry = "NMC"
test_type = "accelerated"
count = 3
[[sources.fleet.groups]]
name = "lfp-acc"
chemistry = "LFP"
test_type = "accelerated"
count = 3
[sources.fleet.faults]
enabled = ["dropouts", "duplicates", "out_of_order", "spikes"]
duplicate_rate = 2e-3
out_of_order_rate = 2e-3
"""


def _start(config: Path) -> subprocess.Popen[str]:
    code = "import sys; from chargetracker.cli import main; sys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, "run", "--config", str(config), "--log-commits",
         "--no-summary"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _commits(out: IO[str], n: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Read ``n`` commit lines from the child's stdout."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        line = out.readline()
        if not line:
            break
        got.append(json.loads(line))
    return got


def _stop(proc: subprocess.Popen[str], sig: int) -> None:
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)


def test_sigkill_and_restart_give_exactly_the_batch_result(tmp_path: Path) -> None:
    store_path = tmp_path / "fleet.duckdb"
    config = tmp_path / "pipeline.toml"
    config.write_text(PIPELINE_TOML.format(store=store_path, cells=CELLS, hours=HOURS, seed=SEED))
    total = int(HOURS * 3600)
    positions: list[int] = []
    resumed_from: list[int] = []

    # 1st run: killed hard in the middle of its stream (possibly mid-commit).
    proc = _start(config)
    try:
        seen = _commits(proc.stdout, 12)  # type: ignore[arg-type]
        assert len(seen) == 12, proc.stderr.read() if proc.stderr else ""
    finally:
        _stop(proc, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    positions += [c["position"]["sample"] for c in seen]

    # 2nd run: resumes, then gets a graceful SIGTERM (finishes its in-flight batch).
    proc = _start(config)
    try:
        seen = _commits(proc.stdout, 10)  # type: ignore[arg-type]
        assert len(seen) == 10, proc.stderr.read() if proc.stderr else ""
    finally:
        _stop(proc, signal.SIGTERM)
    assert proc.returncode == 0
    resumed_from.append(seen[0]["position"]["sample"])
    rest = [json.loads(x) for x in proc.stdout.read().splitlines() if x.strip()]  # type: ignore[union-attr]
    positions += [c["position"]["sample"] for c in seen + rest]

    # 3rd run: killed again, at once after its first commit.
    proc = _start(config)
    try:
        seen = _commits(proc.stdout, 1)  # type: ignore[arg-type]
    finally:
        _stop(proc, signal.SIGKILL)
    resumed_from.append(seen[0]["position"]["sample"])

    # 4th run: runs the finite simulation to its end.
    proc = _start(config)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "finished" in err
    final = [json.loads(x) for x in out.splitlines() if x.strip()]
    assert final and final[-1]["position"]["sample"] == total
    resumed_from.append(final[0]["position"]["sample"])

    # Each restart continued from a committed position (never from the start).
    assert all(0 < r < total for r in resumed_from), resumed_from
    assert positions == sorted(positions)

    summary, frame = expected_summary(
        tiny_fleet(cells=CELLS, hours=HOURS, seed=SEED), EngineConfig())
    with DuckDBStore(store_path) as store:
        cell_ids = sorted(frame.get_column("cell_id").unique().to_list())
        assert_store_equals_summary(store, summary, cell_ids)
        stats = store.ingest_stats()
        accepted = frame.height - summary.rejected.height
        assert stats["measurements_stored"] == accepted
        assert stats["samples_total"] == accepted
        assert stats["dead_letters_stored"] == summary.rejected.height == stats["rejected_total"]
        stored = store.measurements(cell_ids[0])
        assert stored.height == stored.unique(subset=["cell_id", "ts"]).height
