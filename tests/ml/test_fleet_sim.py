"""The pack-fleet simulator: valid, seeded, labelled data where weak cells widen the
spread and the model can learn it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from chargetracker.cli import main
from chargetracker.ml import build_panel, build_windows, feature_matrix, require_valid
from chargetracker.ml.fleet_sim import PackFleetConfig, simulate_pack_fleet
from chargetracker.ml.metrics import roc_auc


def test_valid_seeded_and_physical() -> None:
    cfg = PackFleetConfig(vehicles=200, days=120, seed=3)
    a = simulate_pack_fleet(cfg)
    assert a.equals(simulate_pack_fleet(cfg))
    recs = require_valid(a)                      # every row passes validation
    assert recs.height == 200 * 120
    spread = recs["cell_max_v"] - recs["cell_min_v"]
    alarm = recs.filter(pl.col("label") == 1)
    assert alarm.height > 0
    assert ((alarm["cell_max_v"] - alarm["cell_min_v"]) > cfg.alarm_spread_v).all()
    assert spread.drop_nulls().min() > 0
    empty = recs.filter(pl.col("total_voltage_v").is_null()).height / recs.height
    assert 0.25 < empty < 0.35


def test_spread_features_predict_simulated_alarms() -> None:
    recs = require_valid(simulate_pack_fleet(PackFleetConfig(vehicles=150, days=120, seed=1)))
    w = build_windows(build_panel(recs))
    x = feature_matrix(w, ["spread_max_v"])[:, 0]
    y = (w.label == 1).astype(int)
    assert roc_auc(y, np.nan_to_num(x, nan=0.0)) > 0.8


def test_cli_simulate(tmp_path: Path) -> None:
    out = tmp_path / "fleet.csv"
    assert main(["alarm", "simulate", "--vehicles", "5", "--days", "30", "--out", str(out)]) == 0
    assert pl.read_csv(out).height == 150
