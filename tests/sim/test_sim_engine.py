"""The simulator's ageing shows up in the engine's per-cycle output."""

from __future__ import annotations

import numpy as np
import polars as pl

from chargetracker.engine import summarize
from chargetracker.engine.stats import deviations
from chargetracker.engine.trend import fit_trend
from chargetracker.sim import AgeingConfig, Fleet, FleetConfig, GroupConfig


def run_fleet() -> tuple[Fleet, pl.DataFrame]:
    # Strong ageing so fade, knees and defects show within ~40 cycles.
    ageing = AgeingConfig(fade_per_cycle=0.002, fade_spread=0.05, knee_fraction=0.2,
                          knee_cycle=(15.0, 20.0), knee_factor=(6.0, 8.0),
                          defective_fraction=0.1, defective_factor=(6.0, 8.0))
    cfg = FleetConfig(
        groups=(GroupConfig("NMC-acc", "NMC", "accelerated", 10, ageing=ageing),),
        seed=7, sample_period_s=10.0, duration_s=40 * 3600.0,
    )
    fleet = Fleet(cfg)
    frame = pl.concat(list(fleet.chunks(seconds=6 * 3600.0)))
    return fleet, frame


def test_fade_knee_and_defects_visible_in_engine_cycles() -> None:
    fleet, frame = run_fleet()
    s = summarize(frame, cells=fleet.cells)
    closed = s.cycles.filter(pl.col("status") == "closed").sort(["cell_id", "cycle"])
    assert closed.height >= 10 * 15
    assert s.rejected.height == 0
    meta = fleet.metadata
    defective, knee = set(meta["defective"]), set(meta["knee"])
    assert len(defective) == 1 and len(knee) == 2

    fades = {}
    for (cid,), part in closed.group_by(["cell_id"], maintain_order=True):
        part = part.filter(pl.col("cycle") >= 2)  # cycle 1 starts from the initial SOC
        tr = fit_trend(part.get_column("cycle").to_numpy().astype(float),
                       part.get_column("discharge_ah").to_numpy() / part.get_column("discharge_ah")[0],
                       min_segment=4)
        fades[cid] = tr
        assert tr.fade_rate_per_cycle < 0, cid  # every cell fades
    normal = [t.fade_rate_per_cycle for c, t in fades.items() if c not in defective | knee]
    for c in defective:
        assert fades[c].fade_rate_per_cycle < 3 * np.median(normal)
    for c in knee:
        assert 10 <= fades[c].knee_cycle <= 26, (c, fades[c])

    # The defective cell is the group's outlier at the latest complete cycle.
    last = int(closed.group_by("cell_id").agg(pl.col("cycle").max()).get_column("cycle").min())
    values = closed.filter(pl.col("cycle") == last).select(
        pl.lit("g").alias("group"), "cell_id", "cycle", pl.col("discharge_ah").alias("value"))
    flagged = deviations(values).filter(pl.col("outlier")).get_column("cell_id").to_list()
    assert set(flagged) >= defective
