"""Build a source from a configuration table (one ``[[sources]]`` entry of a pipeline TOML).

::

    [[sources]]
    type = "simulator"          # the paced fleet simulator
    name = "sim"                # optional; keys the committed position
    fleet = "fleet.toml"        # a fleet TOML file, or an inline [sources.fleet] table
    cells = 104                 # optional overrides of the fleet config
    hours = 48                  # simulated duration (0 or "forever": unbounded)
    seed = 0
    acceleration = 3600         # simulated s per wall s, or "max" (full speed)

    [[sources]]
    type = "file"               # replay one cycler file
    path = "data/run.csv"
    format = "auto"             # arbin, maccor, battery_archive, batterydata, generic
    cell_id = "cell-1"          # default: the file name stem
    follow = false              # true: keep reading rows appended to the file
    [sources.options]           # generic CSV/Parquet: GenericOptions fields
    columns = { ts = "Time", voltage_v = "U", current_a = "I" }

    [[sources]]
    type = "directory"          # watch a folder of cycler exports
    path = "/data/cycler"
    pattern = "*.csv"
    recursive = false
    settle_s = 10

Relative paths are taken from ``base_dir`` (the pipeline TOML's folder).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..readers import GenericOptions
from ..sim.fleet_config import (
    FleetConfig,
    default_fleet_config,
    fleet_config_from_mapping,
    load_fleet_config,
)
from .base import Source
from .directory import DirectorySource
from .file import FileSource
from .simulator import SimulatorSource

__all__ = ["SOURCE_TYPES", "build_source", "simulator_fleet_config", "parse_acceleration"]

SOURCE_TYPES: tuple[str, ...] = ("simulator", "file", "directory")

_KEYS: dict[str, set[str]] = {
    "simulator": {"type", "name", "fleet", "cells", "hours", "seed", "acceleration"},
    "file": {"type", "name", "path", "format", "cell_id", "follow", "options", "timezone"},
    "directory": {"type", "name", "path", "pattern", "format", "recursive", "settle_s",
                  "options", "timezone"},
}


def parse_acceleration(value: Any) -> float:
    """A time acceleration from a number or ``"max"``/``"inf"`` (full speed)."""
    if isinstance(value, str):
        if value.strip().lower() in ("max", "inf", "full"):
            return math.inf
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"acceleration {value!r}: a number or 'max'") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"acceleration {value!r}: a number or 'max'")
    if value == 0:
        return math.inf
    if not value > 0:
        raise ConfigError(f"acceleration must be > 0 (or 'max'), got {value}")
    return float(value)


def simulator_fleet_config(spec: Mapping[str, Any], base_dir: Path = Path(".")) -> FleetConfig:
    """The fleet a simulator entry describes: its ``fleet`` file/table with overrides."""
    fleet = spec.get("fleet")
    if fleet is None:
        cfg = default_fleet_config()
    elif isinstance(fleet, str):
        cfg = load_fleet_config(_path(fleet, base_dir))
    elif isinstance(fleet, Mapping):
        cfg = fleet_config_from_mapping(dict(fleet))
    else:
        raise ConfigError("simulator: 'fleet' must be a file name or a table")
    over: dict[str, Any] = {}
    if "seed" in spec:
        over["seed"] = int(spec["seed"])
    if "hours" in spec:
        hours = spec["hours"]
        if hours in (0, "forever", "inf", None):
            over["duration_s"] = None
        else:
            if not float(hours) > 0:
                raise ConfigError("simulator: hours must be > 0 (or 0/'forever' for unbounded)")
            over["duration_s"] = float(hours) * 3600.0
    if "acceleration" in spec:
        acc = parse_acceleration(spec["acceleration"])
        # FleetConfig wants a finite number; full speed is passed to the source directly.
        over["time_acceleration"] = acc if math.isfinite(acc) else cfg.time_acceleration
    if over:
        cfg = cfg.with_overrides(**over)
    if "cells" in spec:
        cfg = cfg.with_cells(int(spec["cells"]))
    return cfg


def _path(value: Any, base_dir: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"expected a path, got {value!r}")
    p = Path(value).expanduser()
    return p if p.is_absolute() else base_dir / p


def _options(spec: Mapping[str, Any]) -> GenericOptions | None:
    table = spec.get("options")
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise ConfigError("'options' must be a table of generic reader options")
    try:
        return GenericOptions(**dict(table))
    except TypeError as exc:
        raise ConfigError(f"options: {exc}") from None


def build_source(spec: Mapping[str, Any], *, base_dir: Path = Path("."),
                 default_name: str | None = None) -> Source:
    """A :class:`~chargetracker.sources.base.Source` from one configuration table."""
    kind = spec.get("type")
    if kind not in _KEYS:
        raise ConfigError(f"source type {kind!r}: one of {list(SOURCE_TYPES)}")
    unknown = sorted(set(spec) - _KEYS[kind])
    if unknown:
        raise ConfigError(f"{kind} source: unknown key(s) {unknown}; known: {sorted(_KEYS[kind])}")
    name = spec.get("name") or default_name
    if kind == "simulator":
        cfg = simulator_fleet_config(spec, base_dir)
        accel = parse_acceleration(spec["acceleration"]) if "acceleration" in spec else None
        return SimulatorSource(cfg, name=name or "simulator", acceleration=accel)
    path = _path(spec.get("path"), base_dir)
    if kind == "file":
        return FileSource(path, name=name, format=str(spec.get("format", "auto")),
                          cell_id=spec.get("cell_id"), options=_options(spec),
                          timezone=str(spec.get("timezone", "UTC")),
                          follow=bool(spec.get("follow", False)))
    return DirectorySource(path, name=name, pattern=str(spec.get("pattern", "*")),
                           format=str(spec.get("format", "auto")), options=_options(spec),
                           timezone=str(spec.get("timezone", "UTC")),
                           recursive=bool(spec.get("recursive", False)),
                           settle_s=float(spec.get("settle_s", 10.0)))
