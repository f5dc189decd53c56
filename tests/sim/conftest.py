"""Shared helpers for the simulator tests: small, fast fleets and per-cycle Ah by current sign."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from chargetracker.sim import AgeingConfig, FleetConfig, GroupConfig, NoiseConfig

QUIET = NoiseConfig(voltage_sigma_v=0.0, current_sigma_a=0.0, current_rel_sigma=0.0,
                    temperature_sigma_c=0.0, jitter_sigma_s=0.0)


def small_fleet(**kwargs: Any) -> FleetConfig:
    """Two groups, 10 s sampling, accelerated (2C) and standard tests: fast to simulate."""
    defaults: dict[str, Any] = dict(
        groups=(GroupConfig("nmc-acc", "NMC", "accelerated", 6),
                GroupConfig("lfp-std", "LFP", "standard", 6)),
        seed=11, sample_period_s=10.0, duration_s=8 * 3600.0, include_labels=True,
    )
    defaults.update(kwargs)
    return FleetConfig(**defaults)


def ageing_fleet(cells: int = 60, cycles_h: float = 24.0, seed: int = 5) -> FleetConfig:
    """One accelerated NMC group with exaggerated ageing, defects and knees."""
    ageing = AgeingConfig(fade_per_cycle=0.002, fade_spread=0.1, knee_fraction=0.2,
                          knee_cycle=(5.0, 7.0), knee_factor=(6.0, 8.0),
                          defective_fraction=0.1, defective_factor=(6.0, 9.0))
    return FleetConfig(groups=(GroupConfig("nmc-acc", "NMC", "accelerated", cells),),
                       seed=seed, sample_period_s=1.0, duration_s=cycles_h * 3600.0,
                       ageing=ageing, noise=QUIET)


def discharge_ah_per_cycle(frame: pl.DataFrame, eps_a: float = 0.05) -> dict[str, np.ndarray]:
    """Per cell, Ah of each complete discharge run (current < -eps), trapezoid on ts."""
    out: dict[str, np.ndarray] = {}
    for cid, d in frame.sort("cell_id", "ts").group_by("cell_id", maintain_order=True):
        ts = d["ts"].to_numpy()
        i = d["current_a"].to_numpy()
        dis = i < -eps_a
        edges = np.flatnonzero(np.diff(dis.astype(np.int8)))
        starts = edges[~dis[edges]] + 1
        ends = edges[dis[edges]] + 1
        ahs = []
        for s in starts:
            e = ends[ends > s]
            if len(e) == 0:
                break  # unfinished discharge at the end of the run
            seg = slice(s, e[0])
            ahs.append(-np.trapezoid(i[seg], ts[seg]) / 3600.0)
        out[str(cid[0])] = np.array(ahs)
    return out
