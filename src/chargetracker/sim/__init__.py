"""PURE cell and fleet simulator (seeded, deterministic, no I/O except loading a fleet TOML).

Public API::

    from chargetracker.sim import Fleet, FleetConfig, GroupConfig, default_fleet_config
    fleet = Fleet(default_fleet_config(cells=104, seed=1))
    for frame in fleet.chunks(seconds=3600):   # canonical measurement frames
        ...
    fleet.cells                                 # CELL_SCHEMA metadata frame
"""

from __future__ import annotations

from .ageing import AgeingConfig, CellAgeing, capacity_fraction
from .chemistry import CHEMISTRIES, Chemistry, get_chemistry
from .fleet import CellTruth, Fleet
from .fleet_config import (
    DEFAULT_START_EPOCH,
    FleetConfig,
    GroupConfig,
    default_fleet_config,
    fleet_config_from_mapping,
    load_fleet_config,
)
from .measurement import FAULT_NAMES, FaultConfig, NoiseConfig
from .ocv import OcvCurve, fit_ocv
from .protocol import PROTOCOLS, Protocol, Step, get_protocol, protocol_from_mapping

__all__ = [
    "AgeingConfig", "CellAgeing", "capacity_fraction",
    "CHEMISTRIES", "Chemistry", "get_chemistry",
    "CellTruth", "Fleet",
    "DEFAULT_START_EPOCH", "FleetConfig", "GroupConfig", "default_fleet_config",
    "fleet_config_from_mapping", "load_fleet_config",
    "FAULT_NAMES", "FaultConfig", "NoiseConfig",
    "OcvCurve", "fit_ocv",
    "PROTOCOLS", "Protocol", "Step", "get_protocol", "protocol_from_mapping",
]
