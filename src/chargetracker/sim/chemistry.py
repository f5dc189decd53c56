"""Chemistry presets: OCV curve, voltage window and equivalent-circuit/thermal defaults.

Each preset is a first-order Thevenin cell (series resistance ``R0`` plus one RC pair
``R1 || C1`` with time constant ``tau1``) with a lumped thermal mass. The OCV curves are
:class:`~chargetracker.sim.ocv.OcvCurve` fits (coefficients below; the fit error against
the reference data is asserted in ``tests/sim/test_chemistry.py``):

* ``NMC`` - LG M50 NMC811/graphite full-cell OCV derived from the measured electrode
  OCPs of Chen et al. (2020); 4.0 mV RMS over SOC 0..1.
* ``LFP`` - published LiFePO4 OCP shape (Safari & Delacourt 2011) against LG M50
  graphite; 4.2 mV RMS.
* ``LCO`` - measured 0.1C discharge of an Enertech LiCoO2/graphite pouch cell (Ai et al.
  2020), IR-corrected; 2.0 mV RMS.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError
from .ocv import OcvCurve

__all__ = ["Chemistry", "CHEMISTRIES", "get_chemistry"]


@dataclass(frozen=True, slots=True)
class Chemistry:
    """Cell model parameters of one chemistry (units in the names).

    ``ocv`` maps SOC (0..1 of the cell's present capacity) to V. Resistances are at
    25 degC and mid SOC; the model scales them with temperature (Arrhenius, ``r_activation_k``
    = Ea/R in K) and rises them towards empty (``r_low_soc_gain``).
    """

    name: str
    ocv: OcvCurve
    nominal_capacity_ah: float
    v_min: float
    v_max: float
    r0_ohm: float
    r1_ohm: float
    tau1_s: float
    r_activation_k: float = 2500.0
    r_low_soc_gain: float = 0.5
    heat_capacity_j_per_k: float = 45.0
    cooling_w_per_k: float = 0.05
    coulombic_efficiency: float = 0.9995

    def with_overrides(self, **kwargs: Any) -> Chemistry:
        """A copy with fields replaced (unknown names raise :class:`ConfigError`)."""
        try:
            return replace(self, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"chemistry {self.name}: {exc}") from exc


_NMC = OcvCurve((
    3.955177543371338, -0.972989798118882, 0.15745403595965052, -0.26376960960147083,
    -0.010430507230802816, -0.07396174420449135, -0.004835576249384491, 0.012634738400774254,
    -0.04467703684983723, 0.8147733723078593, -0.41908936477823616, 0.14831391590456955,
    -0.10352101843940031, -0.04433988234140482, 0.014247125342230809, -0.006220264146791413,
    -0.06467316667183748, -0.05568534623955401, -0.0025804607927065737, -0.08232792132497807,
))
_LFP = OcvCurve((
    3.578659506060734, -3.1436773629988304, -0.027867736325998788, -0.41889032142639854,
    0.02086767522151526, -0.12567855447821466, -0.011691696956946345, -0.007011509937001715,
    -0.025452717435888186, 1.3790775442627479, -1.0214142215526616, 0.05635327346768101,
    -0.11475936729760303, -0.038186181853023665, 0.014917016727423217, 0.019382526049314282,
    -0.0005186610843703356, 0.031621070733547696, 0.009778980028311901, -0.04152647470429338,
))
_LCO = OcvCurve((
    4.5905819075427905, -0.6692117139848821, 0.2575127282809301, -0.07636246660219473,
    0.011458113632352506, -0.036812718550426095, 0.0224837006229591, -0.01424367133680295,
    -0.0025550854259689592, 0.7254633443665923, -0.0715178152622789, -0.11373609160874835,
    -0.043635468438983034, 0.007995430340647598, 0.008671463806581464, -0.010032659461667301,
    -0.013891910150110588, -0.008328156689860665, -0.011178432392259796, -0.01302630217968305,
))

#: Presets by upper-case name. Capacities/resistances are typical of 18650-class cells;
#: LCO matches the 2.28 Ah Enertech pouch cell its curve was fitted to.
CHEMISTRIES: dict[str, Chemistry] = {
    "NMC": Chemistry("NMC", _NMC, nominal_capacity_ah=2.5, v_min=2.75, v_max=4.2,
                     r0_ohm=0.030, r1_ohm=0.015, tau1_s=30.0),
    "LFP": Chemistry("LFP", _LFP, nominal_capacity_ah=2.5, v_min=2.5, v_max=3.65,
                     r0_ohm=0.020, r1_ohm=0.010, tau1_s=40.0, heat_capacity_j_per_k=75.0,
                     cooling_w_per_k=0.07, coulombic_efficiency=0.9997),
    "LCO": Chemistry("LCO", _LCO, nominal_capacity_ah=2.28, v_min=3.0, v_max=4.2,
                     r0_ohm=0.025, r1_ohm=0.015, tau1_s=25.0, heat_capacity_j_per_k=40.0,
                     cooling_w_per_k=0.06, coulombic_efficiency=0.9993),
}


def get_chemistry(name: str) -> Chemistry:
    """The preset called ``name`` (case-insensitive); :class:`ConfigError` lists the known ones."""
    try:
        return CHEMISTRIES[name.upper()]
    except KeyError:
        raise ConfigError(
            f"unknown chemistry {name!r}; known: {sorted(CHEMISTRIES)}"
        ) from None
