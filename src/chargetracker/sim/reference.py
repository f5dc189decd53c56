"""Reference OCV data the chemistry presets were fitted to (package data, read-only).

Used by the tests (fit error) and to refit coefficients; the simulator itself never
calls this module. See ``data/SOURCE.md`` for origin and licence (BSD-3, PyBaMM).
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import numpy.typing as npt

__all__ = [
    "NMC_LGM50_WINDOW",
    "LFP_WINDOW",
    "electrode_ocp",
    "lfp_ocp_safari2011",
    "nmc_lgm50_ocv",
    "lfp_graphite_ocv",
    "enertech_discharge",
]

#: Stoichiometry window (x at SOC 0, x at SOC 1, y at SOC 0, y at SOC 1) of the LG M50
#: cell, Chen et al. (2020): graphite x, NMC y.
NMC_LGM50_WINDOW = (0.0279, 0.9014, 0.9084, 0.2661)
#: Window chosen for the LFP/graphite preset (same order).
LFP_WINDOW = (0.03, 0.86, 0.97, 0.012)

Array = npt.NDArray[np.float64]


def _read_csv(name: str, skip_header: bool = False) -> tuple[Array, Array]:
    text = resources.files("chargetracker.sim").joinpath("data", name).read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if skip_header:
        lines = lines[1:]
    arr = np.array([[float(v) for v in ln.split(",")] for ln in lines])
    return arr[:, 0], arr[:, 1]


def electrode_ocp(name: str) -> tuple[Array, Array]:
    """Measured electrode OCP table ``(stoichiometry, V vs Li)``: ``"nmc"`` or ``"graphite"``."""
    files = {"nmc": "nmc_LGM50_ocp_Chen2020.csv", "graphite": "graphite_LGM50_ocp_Chen2020.csv"}
    return _read_csv(files[name])


def lfp_ocp_safari2011(y: npt.ArrayLike) -> Array:
    """Published LiFePO4 OCP (V vs Li) at lithium fraction ``y`` (Safari & Delacourt 2011)."""
    y = np.asarray(y, dtype=np.float64)
    u = 1.0 - y
    return (
        3.4323
        - 0.8428 * np.exp(-80.2493 * u**1.3198)
        - 3.2474e-6 * np.exp(20.2645 * u**3.8003)
        + 3.2482e-6 * np.exp(20.2646 * u**3.7995)
    )


def _window(soc: npt.ArrayLike, window: tuple[float, float, float, float]) -> tuple[Array, Array]:
    s = np.asarray(soc, dtype=np.float64)
    x0, x1, y0, y1 = window
    return x0 + s * (x1 - x0), y0 + s * (y1 - y0)


def nmc_lgm50_ocv(soc: npt.ArrayLike) -> Array:
    """Full-cell OCV (V) of the LG M50 NMC/graphite cell: U_NMC(y) - U_graphite(x)."""
    x, y = _window(soc, NMC_LGM50_WINDOW)
    gs, gu = electrode_ocp("graphite")
    ps, pu = electrode_ocp("nmc")
    return np.interp(y, ps, pu) - np.interp(x, gs, gu)


def lfp_graphite_ocv(soc: npt.ArrayLike) -> Array:
    """Full-cell OCV (V) of an LFP/graphite cell from the published LFP shape and LG M50 graphite."""
    x, y = _window(soc, LFP_WINDOW)
    gs, gu = electrode_ocp("graphite")
    return lfp_ocp_safari2011(y) - np.interp(x, gs, gu)


def enertech_discharge() -> tuple[Array, Array]:
    """Measured 0.1C discharge of the Enertech LCO pouch cell: ``(time s, terminal V)``."""
    return _read_csv("enertech_0.1C_discharge_U.csv", skip_header=True)
