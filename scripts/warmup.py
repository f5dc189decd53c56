"""Compile and cache the Numba kernels once at install time, so the first
``chargetracker demo`` (or test run) starts in seconds instead of compiling first."""

from __future__ import annotations

import time

import numpy as np
import polars as pl


def main() -> None:
    t0 = time.perf_counter()
    from chargetracker.engine import flush, new_state, summarize, update
    from chargetracker.sim import Fleet, default_fleet_config

    t = np.arange(0.0, 600.0)
    frame = pl.DataFrame({
        "cell_id": ["warmup"] * t.size, "ts": 1.7e9 + t, "voltage_v": 3.7 + 0 * t,
        "current_a": np.where(t < 300, 1.0, -1.0), "temperature_c": 25.0 + 0 * t,
        "step": np.where(t < 300, 1, 2), "cycle": np.ones(t.size, dtype=np.int64),
        "step_time_s": np.where(t < 300, t, t - 300),
    })
    summarize(frame)
    # Two cells interleaved in time order: the sorted-block pass.
    two = pl.concat([frame, frame.with_columns(pl.lit("warmup-2").alias("cell_id"))]).sort("ts")
    summarize(two)
    state, _ = update(new_state(), frame)
    # A live second (one row, within the lateness window): the window's all-wait take.
    state, _ = update(state, frame.tail(1).with_columns(pl.col("ts") + 600.0))
    flush(state)
    _ids()
    _stores(frame)
    _readers(frame)
    from chargetracker.readers.durations import parse_durations

    pl.DataFrame({"t": ["0d 01:02:03.5"]}).select(parse_durations(pl.col("t")))
    _meters()
    fleet = Fleet(default_fleet_config(cells=4, seed=0, duration_s=3600.0))
    for _ in fleet.chunks(1800.0):
        pass
    print(f"warm-up: compiled kernels cached in {time.perf_counter() - t0:.1f} s")


def _ids() -> None:
    """Validation's id encoding: a table that grows (many short ids), and the hashed
    path of long ids stored once per row (a text reader's column)."""
    from chargetracker.checks import dedupe

    dedupe(pl.Series("cell_id", [f"warmup-{k}" for k in range(3000)] * 2))
    dedupe(pl.Series("cell_id", [f"a long warm-up cell id {k % 300}" for k in range(70_000)]))


def _stores(frame: pl.DataFrame) -> None:
    """The repeated-key check every store commit runs."""
    from chargetracker.dedupe import may_repeat

    may_repeat(frame, ("cell_id", "ts"))
    may_repeat(frame.with_columns(pl.col("step").cast(pl.Int64)), ("cell_id", "step"))


def _readers(frame: pl.DataFrame) -> None:
    """The readers' fused pass, on a small generic CSV."""
    import tempfile
    from pathlib import Path

    from chargetracker.readers import read_file

    with tempfile.TemporaryDirectory(prefix="ct-warmup-") as tmp:
        path = Path(tmp) / "warmup.csv"
        frame.write_csv(path)
        read_file(path)


def _meters() -> None:
    """The meter engine, thresholds and the Parquet batch layer's kernels."""
    import tempfile
    from pathlib import Path

    from chargetracker.meters import MeterConfig, compute_thresholds, summarize
    from chargetracker.meters.batch import recompute_parquet

    t = np.arange(0.0, 86_400.0 * 2, 60.0)
    readings = pl.DataFrame({"meter_id": ["warmup/mains"] * t.size, "ts": 1.7e9 + t,
                             "power_w": 200.0 + 100.0 * np.sin(t / 3600.0)})
    cfg = MeterConfig()
    summarize(readings, cfg, thresholds=compute_thresholds(readings, cfg))
    with tempfile.TemporaryDirectory(prefix="ct-warmup-") as tmp:
        path = Path(tmp) / "readings.parquet"
        readings.write_parquet(path)
        list(recompute_parquet(path, cfg))


if __name__ == "__main__":
    main()
