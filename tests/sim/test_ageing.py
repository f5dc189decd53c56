"""Ageing: capacity falls per cycle; defective cells fade faster; knee cells bend."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from chargetracker.sim import AgeingConfig, Fleet, capacity_fraction, default_fleet_config

from .conftest import ageing_fleet, discharge_ah_per_cycle


@pytest.fixture(scope="module")
def aged() -> tuple[Fleet, dict[str, np.ndarray]]:
    fleet = Fleet(ageing_fleet(cells=60, cycles_h=24.0))
    df = pl.concat(list(fleet.chunks(seconds=4 * 3600.0)))
    return fleet, discharge_ah_per_cycle(df)


def _slope(ah: np.ndarray) -> float:
    return float(np.polyfit(np.arange(len(ah)), ah, 1)[0])


def test_capacity_decreases_every_cycle(aged) -> None:  # type: ignore[no-untyped-def]
    fleet, per_cycle = aged
    assert len(per_cycle) == fleet.n_cells
    for cid, ah in per_cycle.items():
        assert len(ah) >= 15, cid
        # From cycle 2 on (cycle 1 starts from a partial charge) each full cycle loses Ah.
        assert (np.diff(ah[1:]) < 0).all(), cid


def test_defective_cells_fade_faster_and_are_listed(aged) -> None:  # type: ignore[no-untyped-def]
    fleet, per_cycle = aged
    meta = fleet.metadata
    assert len(meta["defective"]) == 6
    fade = {cid: -_slope(ah[1:6]) / ah[1] for cid, ah in per_cycle.items()}
    normal = [f for c, f in fade.items() if c not in meta["defective"] and c not in meta["knee"]]
    worst_normal = max(normal)
    for cid in meta["defective"]:
        assert fade[cid] > 3.0 * np.median(normal), cid
        assert fade[cid] > worst_normal, cid
    attrs = {r["cell_id"]: json.loads(r["attributes"]) for r in fleet.cells.iter_rows(named=True)}
    assert {c for c, a in attrs.items() if a["defective"]} == set(meta["defective"])
    assert {c for c, a in attrs.items() if a["knee"]} == set(meta["knee"])
    assert all(a["seed"] == 5 for a in attrs.values())


def test_knee_cells_show_a_slope_change(aged) -> None:  # type: ignore[no-untyped-def]
    fleet, per_cycle = aged
    knees = fleet.metadata["knee"]
    assert len(knees) == 12
    attrs = {r["cell_id"]: json.loads(r["attributes"]) for r in fleet.cells.iter_rows(named=True)}
    for cid in knees:
        ah = per_cycle[cid]
        kc = attrs[cid]["knee_cycle"]  # completed cycles at the knee; cycle index kc+1 is past it
        before = -_slope(ah[1:kc])
        after = -_slope(ah[kc + 1:])
        assert after > 3.0 * before, (cid, before, after)
    for cid in set(per_cycle) - set(knees) - set(fleet.metadata["defective"]):
        ah = per_cycle[cid]
        assert -_slope(ah[9:]) < 2.0 * -_slope(ah[1:8]), cid


def test_capacity_fraction_formula() -> None:
    frac = capacity_fraction(np.arange(6), 0.01, 2.0, 5.0)
    assert np.allclose(frac, [1.0, 0.99, 0.98, 0.93, 0.88, 0.83])
    assert np.allclose(capacity_fraction([10], 0.01, np.inf, 1.0), [0.9])


def test_default_fleet_has_outliers_to_catch() -> None:
    fleet = Fleet(default_fleet_config(cells=104, seed=3))
    meta = fleet.metadata
    assert fleet.n_cells == 104
    assert len(meta["defective"]) == 4  # one per group of 26
    assert len(meta["knee"]) == 12
    assert not set(meta["defective"]) & set(meta["knee"])
    fade = np.array([json.loads(a)["fade_per_cycle"] for a in fleet.cells["attributes"]])
    assert 0.0002 < np.median(fade) < 0.0005  # 0.02-0.05 %/cycle
    assert AgeingConfig().defective_factor == (5.0, 10.0)
