"""Each fault switch does what it says (and nothing happens with faults off)."""

from __future__ import annotations

import numpy as np
import polars as pl

from chargetracker.sim import FaultConfig, Fleet

from .conftest import QUIET, small_fleet

DT = 10.0


def _frame(faults: FaultConfig, **kw) -> tuple[Fleet, pl.DataFrame]:  # type: ignore[no-untyped-def]
    fleet = Fleet(small_fleet(faults=faults, **kw))
    return fleet, pl.concat(list(fleet.chunks(seconds=3600.0)))


def _clean() -> pl.DataFrame:
    return _frame(FaultConfig())[1]


def test_no_faults_regular_complete_and_ordered() -> None:
    df = _clean()
    per_cell = df.group_by("cell_id").agg(pl.len(), pl.col("ts").diff().max().alias("max_dt"))
    assert per_cell["len"].n_unique() == 1
    assert per_cell["max_dt"].max() < 1.5 * DT
    for _, d in df.group_by("cell_id"):
        assert d["ts"].is_sorted()
        assert d["ts"].n_unique() == d.height


def test_dropouts_create_gaps() -> None:
    _, df = _frame(FaultConfig.from_names(["dropouts"], dropout_rate=2e-3))
    assert df.height < _clean().height
    gaps = df.group_by("cell_id").agg(pl.col("ts").diff().max().alias("max_dt"))
    assert (gaps["max_dt"] > 2.5 * DT).sum() >= 1
    for _, d in df.group_by("cell_id"):
        assert d["ts"].is_sorted()  # gaps only, no reordering


def test_spikes_create_voltage_outliers() -> None:
    _, df = _frame(FaultConfig.from_names(["spikes"], spike_rate=2e-3))
    clean = _clean()
    diff = np.abs(df["voltage_v"].to_numpy() - clean["voltage_v"].to_numpy())
    assert df.height == clean.height
    n_spikes = int((diff > 0.25).sum())
    assert n_spikes >= 5
    assert int((diff > 0).sum()) == n_spikes  # nothing else changed
    assert df["current_a"].equals(clean["current_a"])


def test_stuck_sensor_repeats_a_value() -> None:
    fleet, df = _frame(FaultConfig.from_names(["stuck"], stuck_fraction=0.2,
                                              stuck_duration_s=(1800.0, 3600.0)))
    stuck_ids = fleet.metadata["stuck_sensor"]
    assert len(stuck_ids) == 2
    for cid in stuck_ids:
        v = df.filter(pl.col("cell_id") == cid)["voltage_v"].to_numpy()
        same = np.diff(v) == 0.0
        # longest run of exactly repeated values: >= 1800 s / 10 s samples
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, same.astype(np.int8), 0])))[::2]
        assert runs.max() >= 179
    other = df.filter(~pl.col("cell_id").is_in(stuck_ids))["voltage_v"].to_numpy()
    assert (np.diff(other) == 0.0).sum() < 5


def test_duplicates_duplicate_timestamps() -> None:
    _, df = _frame(FaultConfig.from_names(["duplicates"], duplicate_rate=5e-3))
    clean = _clean()
    extra = df.height - clean.height
    assert extra >= 5
    dup = df.filter(pl.struct("cell_id", "ts").is_duplicated())
    assert dup.height == 2 * extra
    assert df.unique(maintain_order=True).sort("cell_id", "ts").equals(clean.sort("cell_id", "ts"))


def test_out_of_order_produces_non_monotonic_ts() -> None:
    _, df = _frame(FaultConfig.from_names(["out_of_order"], out_of_order_rate=5e-3))
    clean = _clean()
    assert df.height == clean.height
    backwards = 0
    for _, d in df.group_by("cell_id", maintain_order=True):
        backwards += int((d["ts"].diff().drop_nulls() < 0).sum())
    assert backwards >= 5
    assert df.sort("cell_id", "ts").equals(clean.sort("cell_id", "ts"))


def test_noise_off_gives_exact_sampling_grid() -> None:
    _, df = _frame(FaultConfig(), noise=QUIET)
    dts = df.sort("cell_id", "ts").group_by("cell_id").agg(pl.col("ts").diff().drop_nulls())
    assert np.allclose(np.concatenate(dts["ts"].to_list()), DT)
