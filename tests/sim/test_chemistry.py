"""OCV curves match their reference data within the stated fit errors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from chargetracker.sim import CHEMISTRIES, Fleet, FleetConfig, GroupConfig, Protocol, Step
from chargetracker.sim.ageing import AgeingConfig
from chargetracker.sim.ocv import fit_ocv
from chargetracker.sim.reference import enertech_discharge, lfp_graphite_ocv, nmc_lgm50_ocv

from .conftest import QUIET

SOC = np.linspace(0.0, 1.0, 1001)


def _rms_mv(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)) * 1000.0)


def test_nmc_curve_matches_lgm50_derived_ocv() -> None:
    ref = nmc_lgm50_ocv(SOC)
    model = CHEMISTRIES["NMC"].ocv(SOC)
    assert _rms_mv(model, ref) < 4.5  # 4.0 mV RMS over SOC 0..1
    window = (ref > 2.75) & (ref < 4.2)  # the cell's voltage window
    assert _rms_mv(model[window], ref[window]) < 4.0


def test_lfp_curve_matches_published_shape() -> None:
    ref = lfp_graphite_ocv(SOC)
    model = CHEMISTRIES["LFP"].ocv(SOC)
    assert _rms_mv(model, ref) < 4.5  # 4.2 mV RMS
    plateau = (SOC > 0.2) & (SOC < 0.9)
    assert np.ptp(model[plateau]) < 0.15  # the flat LFP plateau


def _enertech_soc_ocv() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t, v = enertech_discharge()
    lco = CHEMISTRIES["LCO"]
    current = 0.1 * lco.nominal_capacity_ah
    ocv = v + current * (lco.r0_ohm + lco.r1_ohm)  # IR correction
    return t, v, 1.0 - t / t[-1], ocv


def test_lco_curve_matches_enertech_01c_after_ir_correction() -> None:
    t, _, soc, ocv = _enertech_soc_ocv()
    m = t >= 120.0  # after the RC transient
    assert _rms_mv(CHEMISTRIES["LCO"].ocv(soc[m]), ocv[m]) < 2.5  # 2.0 mV RMS


def test_shipped_coefficients_are_the_least_squares_fit() -> None:
    refit = fit_ocv(SOC, nmc_lgm50_ocv(SOC))
    assert _rms_mv(refit(SOC), CHEMISTRIES["NMC"].ocv(SOC)) < 0.01


@pytest.mark.parametrize("name", sorted(CHEMISTRIES))
def test_ocv_spans_the_voltage_window(name: str) -> None:
    chem = CHEMISTRIES[name]
    table = chem.ocv.table(2001)
    assert table[0] < chem.v_min + 0.05 and table[-1] > chem.v_max - 0.05
    # Increasing (up to the < 0.1 mV wiggle of the LFP plateau fit).
    assert np.diff(table).min() > -1e-4


def test_simulated_01c_discharge_tracks_enertech_measurement() -> None:
    """The whole cell model (OCV + R0 + RC) at 0.1C vs the measured terminal voltage."""
    t_meas, v_meas, _, _ = _enertech_soc_ocv()
    q_meas = 0.1 * 2.28 * t_meas[-1] / 3600.0
    proto = Protocol("ref", (
        Step("charge", 0.5, cutoff_c_rate=0.01), Step("rest", duration_s=3600.0),
        Step("discharge", 0.1), Step("rest", duration_s=600.0),
    ))
    cfg = FleetConfig(
        groups=(GroupConfig("lco", "LCO", "ref", 1),), seed=0, sample_period_s=10.0,
        duration_s=20 * 3600.0, include_labels=True, noise=QUIET, initial_soc=0.5,
        protocols=(proto,),
        ageing=AgeingConfig(capacity_factor=q_meas / 2.28, capacity_spread=0.0,
                            resistance_spread=0.0, knee_fraction=0.0, defective_fraction=0.0),
    )
    df = pl.concat(list(Fleet(cfg).chunks(seconds=20 * 3600.0)))
    d = df.filter((pl.col("cycle") == 1) & (pl.col("step") == 3))
    t_sim = d["step_time_s"].to_numpy()
    v_sim = d["voltage_v"].to_numpy()
    assert v_sim[-1] == pytest.approx(3.0, abs=0.01)
    assert t_sim[-1] == pytest.approx(t_meas[-1], rel=0.02)  # same 0.1C capacity
    common = t_meas[(t_meas >= 120.0) & (t_meas <= t_sim[-1]) & (t_meas <= 0.97 * t_meas[-1])]
    err = np.interp(common, t_sim, v_sim) - np.interp(common, t_meas, v_meas)
    rms = float(np.sqrt(np.mean(err**2)) * 1000.0)
    print(f"0.1C Enertech: {rms:.2f} mV RMS")
    assert rms < 6.0
