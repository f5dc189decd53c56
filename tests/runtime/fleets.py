"""Shared helpers: small simulated fleets and the exact comparison of a store with the engine."""

from __future__ import annotations

from typing import Any

import polars as pl
from polars.testing import assert_frame_equal

from chargetracker.config import EngineConfig
from chargetracker.engine import Summary, summarize
from chargetracker.sim import Fleet, FleetConfig, GroupConfig
from chargetracker.sim.measurement import FaultConfig
from chargetracker.stores.base import Store

#: Sensor faults that make the stream hard (engine-level dead letters, reordering, gaps).
STREAM_FAULTS = ("dropouts", "duplicates", "out_of_order", "spikes")


def tiny_fleet(cells: int = 6, hours: float = 6.0, seed: int = 5,
               faults: tuple[str, ...] = STREAM_FAULTS, **kw: Any) -> FleetConfig:
    """Two accelerated groups (short cycles), 1 s sampling, some faults on."""
    half = max(1, cells // 2)
    groups = (GroupConfig("nmc-acc", "NMC", "accelerated", half),
              GroupConfig("lfp-acc", "LFP", "accelerated", max(1, cells - half)))
    fc = FaultConfig.from_names(faults, duplicate_rate=2e-3, out_of_order_rate=2e-3)
    return FleetConfig(groups=groups, seed=seed, duration_s=hours * 3600.0, faults=fc, **kw)


def fleet_samples(cfg: FleetConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every sample a bounded fleet produces (regenerated from the seed) and its cells."""
    fleet = Fleet(cfg)
    frame = pl.concat(list(fleet.chunks(seconds=3 * 3600.0)))
    return frame, fleet.cells


def expected_summary(cfg: FleetConfig, engine: EngineConfig | None = None) -> tuple[Summary, pl.DataFrame]:
    frame, cells = fleet_samples(cfg)
    return summarize(frame, engine or EngineConfig(), cells=cells), frame


def _nan_to_null(df: pl.DataFrame) -> pl.DataFrame:
    # The stores keep SQL NULL where the engine has NaN (e.g. no discharge in a cycle).
    return df.with_columns(pl.col(c).fill_nan(None) for c, t in df.schema.items() if t == pl.Float64)


def store_steps(store: Store, cell_ids: list[str]) -> pl.DataFrame:
    return pl.concat([store.steps(c) for c in cell_ids]).sort(["cell_id", "step"])


def assert_store_equals_summary(store: Store, summary: Summary, cell_ids: list[str]) -> None:
    """Every cycle and step in the store equals the batch summary, bit for bit."""
    got_cycles = store.cycles().sort(["cell_id", "cycle"])
    exp_cycles = _nan_to_null(summary.cycles.sort(["cell_id", "cycle"]))
    assert got_cycles.height == exp_cycles.height
    assert_frame_equal(got_cycles, exp_cycles, check_exact=True)
    got_steps = store_steps(store, cell_ids)
    exp_steps = _nan_to_null(summary.steps.sort(["cell_id", "step"]))
    assert got_steps.height == exp_steps.height
    assert_frame_equal(got_steps, exp_steps, check_exact=True)
