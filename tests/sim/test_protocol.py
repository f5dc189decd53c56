"""Protocol behaviour: CC-CV charge, rest, CC discharge to cutoff, pulses, per-cell timing."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from chargetracker.errors import ConfigError
from chargetracker.sim import (
    Fleet,
    FleetConfig,
    GroupConfig,
    Protocol,
    Step,
    protocol_from_mapping,
)

from .conftest import QUIET, small_fleet


@pytest.fixture(scope="module")
def labelled() -> tuple[Fleet, pl.DataFrame]:
    fleet = Fleet(small_fleet(noise=QUIET, sample_period_s=1.0, duration_s=6 * 3600.0))
    return fleet, pl.concat(list(fleet.chunks(seconds=3600.0)))


def _cell(df: pl.DataFrame, cid: str) -> pl.DataFrame:
    return df.filter(pl.col("cell_id") == cid).sort("ts")


@pytest.mark.parametrize("cid, v_max, v_min, c_rate, cut_rate", [
    ("nmc-acc-001", 4.2, 2.75, 2.0, 0.1),
    ("lfp-std-001", 3.65, 2.5, 1.0, 0.05),
])
def test_cccv_charge_rest_and_discharge(labelled, cid, v_max, v_min, c_rate, cut_rate) -> None:  # type: ignore[no-untyped-def]
    _, df = labelled
    d = _cell(df, cid).filter(pl.col("cycle") == 2)
    q = 2.5
    charge = d.filter(pl.col("step") == 1)
    i = charge["current_a"].to_numpy()
    v = charge["voltage_v"].to_numpy()
    assert (i > 0).all()
    assert i[0] == pytest.approx(c_rate * q)
    cv = i < 0.99 * c_rate * q                # CV phase: current below the CC setpoint
    assert cv.sum() > 60
    assert np.abs(v[cv] - v_max).max() < 0.003   # voltage held within 3 mV of the limit
    assert (np.diff(i[cv]) <= 1e-12).all()       # current decays monotonically
    assert i[-1] <= cut_rate * q and i[-2] > cut_rate * q  # ends at the cutoff current
    assert v.max() < v_max + 0.003
    rest = d.filter(pl.col("step") == 2)
    assert (rest["current_a"] == 0).all()
    assert rest.height == (300 if "acc" in cid else 600)
    dis = d.filter(pl.col("step") == 3)
    idis = dis["current_a"].to_numpy()
    vdis = dis["voltage_v"].to_numpy()
    assert np.allclose(idis, -c_rate * q)
    assert vdis[-1] <= v_min and vdis[-1] > v_min - 0.02   # ends near the cutoff voltage
    assert (vdis[:-1] > v_min).all()
    # rest after discharge: voltage relaxes upwards
    post = d.filter(pl.col("step") == 4)["voltage_v"].to_numpy()
    assert post[-1] > post[0] > vdis[-1]


def test_transition_times_differ_per_cell(labelled) -> None:  # type: ignore[no-untyped-def]
    _, df = labelled
    ends = (df.filter((pl.col("cycle") == 2) & (pl.col("step") == 3))
            .group_by("cell_id").agg(pl.col("step_time_s").max()))
    assert ends["step_time_s"].n_unique() > 3


def test_temperature_rises_under_load_and_relaxes(labelled) -> None:  # type: ignore[no-untyped-def]
    _, df = labelled
    d = _cell(df, "nmc-acc-001")
    t = d["temperature_c"].to_numpy()
    assert t.max() > 28.0  # I^2 R heating at 2C
    assert t.min() > 24.0
    rest = d.filter((pl.col("cycle") == 2) & (pl.col("step") == 4))["temperature_c"].to_numpy()
    assert rest[-1] < rest[0]  # cools towards ambient during rest


def test_coulombic_efficiency_below_one(labelled) -> None:  # type: ignore[no-untyped-def]
    _, df = labelled
    d = _cell(df, "nmc-acc-001").filter(pl.col("cycle") == 2)
    i = d["current_a"].to_numpy()
    ch = np.clip(i, 0, None).sum() / 3600
    dis = np.clip(-i, 0, None).sum() / 3600
    assert 0.995 < dis / ch < 1.0


def test_pulse_steps_hppc() -> None:
    cfg = FleetConfig(groups=(GroupConfig("h", "NMC", "hppc", 2),), seed=1, noise=QUIET,
                      duration_s=6 * 3600.0, include_labels=True)
    df = pl.concat(list(Fleet(cfg).chunks(seconds=6 * 3600.0)))
    d = df.filter(pl.col("cell_id") == "h-001")
    pulse = d.filter((pl.col("cycle") == 1) & (pl.col("step") == 3))
    assert pulse.height == 10
    assert np.allclose(pulse["current_a"].to_numpy(), -5.0)


def test_protocol_from_mapping_and_errors() -> None:
    p = protocol_from_mapping("x", {"steps": [
        {"kind": "charge", "c_rate": 1.0, "cutoff_c_rate": 0.05},
        {"kind": "rest", "duration_s": 60},
        {"kind": "discharge", "c_rate": 0.5, "v_limit": 3.0},
    ]})
    assert p == Protocol("x", (Step("charge", 1.0, cutoff_c_rate=0.05),
                               Step("rest", duration_s=60), Step("discharge", 0.5, v_limit=3.0)))
    with pytest.raises(ConfigError, match="step 1"):
        protocol_from_mapping("x", {"steps": [{"kind": "charge", "c_rate": 1.0},
                                              {"kind": "rest"}]})
    with pytest.raises(ConfigError, match="unknown key"):
        protocol_from_mapping("x", {"steps": [{"kind": "charge", "c_rate": 1.0, "crate": 2}]})
    with pytest.raises(ConfigError, match="kind"):
        Step("float", 1.0)  # type: ignore[arg-type]
