"""Fleet configuration: groups of cells (chemistry x test type), seed, timing, realism.

Loaded from TOML (:func:`load_fleet_config`) or built in code
(:func:`default_fleet_config`). Example::

    seed = 7
    sample_period_s = 1.0
    duration_h = 48            # or duration_s
    time_acceleration = 3600   # simulated s per wall s, used by the runtime's pacing
    start = "2026-01-01T00:00:00Z"
    include_labels = false     # fill cycle/step/step_time_s (a real BMS does not)
    initial_soc = 0.3

    [noise]
    voltage_sigma_v = 0.001
    [faults]
    enabled = ["dropouts", "spikes"]
    spike_rate = 1e-4
    [ageing]                   # fleet default; a group may override keys
    fade_per_cycle = 0.0003

    [protocols.fast]           # a custom test type
    steps = [
      {kind = "charge", c_rate = 3.0, cutoff_c_rate = 0.1},
      {kind = "rest", duration_s = 300},
      {kind = "discharge", c_rate = 1.0, v_limit = 3.0},
      {kind = "rest", duration_s = 300},
    ]

    [[groups]]
    name = "nmc-standard"      # default "<chemistry>-<test_type>"
    chemistry = "NMC"
    test_type = "standard"     # a preset or a [protocols.*] name
    count = 26
    nominal_capacity_ah = 2.5  # optional: overrides the chemistry preset
    ambient_c = 25.0
    [groups.ageing]
    defective_fraction = 0.1
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..tomlfile import read_toml
from .ageing import AgeingConfig
from .chemistry import get_chemistry
from .measurement import FaultConfig, NoiseConfig
from .protocol import Protocol, get_protocol, protocol_from_mapping

__all__ = [
    "GroupConfig",
    "FleetConfig",
    "DEFAULT_START_EPOCH",
    "default_fleet_config",
    "fleet_config_from_mapping",
    "load_fleet_config",
    "parse_start",
]

#: 2026-01-01T00:00:00Z in s since the Unix epoch.
DEFAULT_START_EPOCH = 1767225600.0


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """One group of identical-spec cells run on one protocol."""

    name: str
    chemistry: str
    test_type: str
    count: int
    nominal_capacity_ah: float | None = None   # None: the chemistry preset's
    ambient_c: float = 25.0
    ageing: AgeingConfig | None = None          # None: the fleet's
    #: Cells of the group in packs of this many (metadata ``pack_id``
    #: ``<group>-pack-NN``, the live pack feed's vehicles); None: no packs.
    cells_per_pack: int | None = None

    def __post_init__(self) -> None:
        get_chemistry(self.chemistry)
        if self.cells_per_pack is not None and self.cells_per_pack < 1:
            raise ConfigError(f"group {self.name!r}: cells_per_pack must be >= 1")
        if self.count < 0:
            raise ConfigError(f"group {self.name!r}: count must be >= 0")
        if self.nominal_capacity_ah is not None and not self.nominal_capacity_ah > 0:
            raise ConfigError(f"group {self.name!r}: nominal_capacity_ah must be > 0")


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """Everything a :class:`~chargetracker.sim.fleet.Fleet` is built from (units in names)."""

    groups: tuple[GroupConfig, ...]
    seed: int = 0
    sample_period_s: float = 1.0
    duration_s: float | None = 48 * 3600.0     # None: unbounded (live runs)
    time_acceleration: float = 3600.0          # simulated s per wall s (runtime pacing only)
    start_epoch: float = DEFAULT_START_EPOCH    # ts of t = 0, s since the Unix epoch
    include_labels: bool = False
    initial_soc: float = 0.3
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    ageing: AgeingConfig = field(default_factory=AgeingConfig)
    protocols: tuple[Protocol, ...] = ()       # custom test types

    def __post_init__(self) -> None:
        if not self.groups or sum(g.count for g in self.groups) == 0:
            raise ConfigError("a fleet needs at least one group with count > 0")
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ConfigError(f"group names must be unique, got {names}")
        if not self.sample_period_s > 0:
            raise ConfigError("sample_period_s must be > 0")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ConfigError("duration_s must be > 0")
        if not self.time_acceleration > 0:
            raise ConfigError("time_acceleration must be > 0")
        if not 0.0 <= self.initial_soc <= 1.0:
            raise ConfigError("initial_soc must be in [0, 1]")
        custom = self.custom_protocols
        for g in self.groups:
            get_protocol(g.test_type, custom)

    @property
    def custom_protocols(self) -> dict[str, Protocol]:
        return {p.name: p for p in self.protocols}

    @property
    def n_cells(self) -> int:
        return sum(g.count for g in self.groups)

    def with_overrides(self, **kwargs: Any) -> FleetConfig:
        """A copy with fields replaced."""
        return replace(self, **kwargs)

    def with_cells(self, cells: int) -> FleetConfig:
        """A copy with ``cells`` spread over the groups in proportion to their counts
        (largest remainders first), every group keeping at least one cell when possible."""
        if cells < 1:
            raise ConfigError("cells must be >= 1")
        total = self.n_cells
        weights = [g.count / total for g in self.groups]
        base = [math.floor(w * cells) for w in weights]
        rest = cells - sum(base)
        order = sorted(range(len(base)), key=lambda j: (-(weights[j] * cells - base[j]), j))
        for j in order[:rest]:
            base[j] += 1
        return replace(self, groups=tuple(replace(g, count=c) for g, c in zip(self.groups, base, strict=True)))


def default_fleet_config(cells: int = 104, seed: int = 0, **kwargs: Any) -> FleetConfig:
    """Four groups, NMC and LFP x ``standard`` and ``accelerated`` (104 cells = 4 x 26)."""
    groups = tuple(
        GroupConfig(f"{chem.lower()}-{tt}", chem, tt, 1)
        for chem in ("NMC", "LFP") for tt in ("standard", "accelerated")
    )
    return FleetConfig(groups=groups, seed=seed, **kwargs).with_cells(cells)


def parse_start(value: Any) -> float:
    """Start time as s since the epoch from a number, an ISO-8601 string or a TOML datetime."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"start: cannot read {value!r} as an ISO-8601 time") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    raise ConfigError(f"start: expected a time, got {value!r}")


_TOP_KEYS = {
    "seed", "sample_period_s", "duration_s", "duration_h", "time_acceleration", "start",
    "include_labels", "initial_soc", "noise", "faults", "ageing", "protocols", "groups",
}
_GROUP_KEYS = {"name", "chemistry", "test_type", "count", "nominal_capacity_ah", "ambient_c", "ageing",
               "cells_per_pack"}


def fleet_config_from_mapping(data: dict[str, Any]) -> FleetConfig:
    """Build a :class:`FleetConfig` from a parsed TOML document, naming bad keys."""
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown fleet setting(s) {unknown}; known: {sorted(_TOP_KEYS)}")
    ageing = AgeingConfig.from_mapping(data.get("ageing", {}))
    protocols = tuple(
        protocol_from_mapping(name, table) for name, table in data.get("protocols", {}).items()
    )
    raw_groups = data.get("groups")
    if raw_groups is None:
        base = default_fleet_config()
        groups = base.groups
    else:
        if not isinstance(raw_groups, list):
            raise ConfigError("groups must be an array of tables ([[groups]])")
        glist = []
        for i, g in enumerate(raw_groups):
            bad = sorted(set(g) - _GROUP_KEYS)
            if bad:
                raise ConfigError(f"group {i}: unknown key(s) {bad}; known: {sorted(_GROUP_KEYS)}")
            for key in ("chemistry", "test_type", "count"):
                if key not in g:
                    raise ConfigError(f"group {i}: missing {key!r}")
            g_ageing = AgeingConfig.from_mapping(g["ageing"], base=ageing) if "ageing" in g else None
            glist.append(GroupConfig(
                name=str(g.get("name", f"{str(g['chemistry']).lower()}-{g['test_type']}")),
                chemistry=str(g["chemistry"]).upper(), test_type=str(g["test_type"]),
                count=int(g["count"]), nominal_capacity_ah=g.get("nominal_capacity_ah"),
                ambient_c=float(g.get("ambient_c", 25.0)), ageing=g_ageing,
                cells_per_pack=(int(g["cells_per_pack"]) if g.get("cells_per_pack") is not None
                                else None),
            ))
        groups = tuple(glist)
    if "duration_s" in data and "duration_h" in data:
        raise ConfigError("give duration_s or duration_h, not both")
    duration: float | None = 48 * 3600.0
    if "duration_s" in data:
        duration = float(data["duration_s"])
    elif "duration_h" in data:
        duration = float(data["duration_h"]) * 3600.0
    if duration is not None and not math.isfinite(duration):
        duration = None  # duration_s = inf: unbounded (live runs)
    return FleetConfig(
        groups=groups,
        seed=int(data.get("seed", 0)),
        sample_period_s=float(data.get("sample_period_s", 1.0)),
        duration_s=duration,
        time_acceleration=float(data.get("time_acceleration", 3600.0)),
        start_epoch=parse_start(data.get("start", DEFAULT_START_EPOCH)),
        include_labels=bool(data.get("include_labels", False)),
        initial_soc=float(data.get("initial_soc", 0.3)),
        noise=NoiseConfig.from_mapping(data.get("noise", {})),
        faults=FaultConfig.from_mapping(data.get("faults", {})),
        ageing=ageing,
        protocols=protocols,
    )


def load_fleet_config(path: str | Path) -> FleetConfig:
    """Read a fleet TOML file; :class:`ConfigError` names the file and the problem."""
    p = Path(path)
    data = read_toml(p, "fleet config")
    try:
        return fleet_config_from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
