"""Pipeline configuration files (``chargetracker run --config pipeline.toml``).

::

    store = "duckdb:///chargetracker.duckdb"   # the store URL (also: store_url)
    name = "embedded"                          # checkpoint name of this pipeline
    raw_retention_days = 30                    # false: keep raw measurements forever
    dead_letter_retention_days = 30            # false: keep dead letters forever

    [runtime]                                  # RuntimeConfig
    poll_interval_s = 0.2
    max_batch_rows = 200000
    max_queue_batches = 4
    future_horizon_s = 86400                   # samples further ahead: dead letters

    [engine]                                   # EngineConfig (see docs/metrics.md)
    lateness_s = 2.0

    [alerts]                                   # AlertConfig
    over_temperature_c = 60
    min_coulombic_efficiency = 0.95

    [stats]                                    # StatsConfig
    outlier_rule = "robust"

    [api]                                      # ApiConfig (the web server, when started)
    port = 8050

    [[sources]]                                # one table per source, see sources/factory.py
    type = "simulator"
    cells = 104
    hours = 48
    acceleration = 3600

Unknown keys are errors naming the key and the known ones. Relative paths in sources are
relative to the file's folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import (
    AlertConfig,
    ApiConfig,
    DashboardConfig,
    RuntimeConfig,
    Settings,
    StatsConfig,
    engine_config_from_mapping,
)
from ..errors import ConfigError
from ..tomlfile import read_toml

__all__ = ["PipelineConfig", "load_pipeline_config", "pipeline_config_from_mapping"]

_TOP = {"store", "store_url", "name", "raw_retention_days", "dead_letter_retention_days", "runtime", "engine", "alerts",
        "stats", "api", "dashboard", "sources"}


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """A parsed pipeline file: settings, source tables and where relative paths start."""

    settings: Settings
    sources: tuple[dict[str, Any], ...] = ()
    name: str = "embedded"
    base_dir: Path = field(default_factory=lambda: Path("."))


def _table(cls: Any, values: Any, what: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{what}] must be a table")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown [{what}] setting(s) {unknown}; known: {sorted(known)}")
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**kw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{what}]: {exc}") from None


def pipeline_config_from_mapping(data: Mapping[str, Any], *, base_dir: Path = Path(".")) -> PipelineConfig:
    """Build a :class:`PipelineConfig` from a parsed TOML document."""
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise ConfigError(f"unknown pipeline setting(s) {unknown}; known: {sorted(_TOP)}")
    if "store" in data and "store_url" in data:
        raise ConfigError("give store or store_url, not both")
    over: dict[str, Any] = {}
    store = data.get("store", data.get("store_url"))
    if store is not None:
        if not isinstance(store, str):
            raise ConfigError("store must be a URL string, e.g. duckdb:///chargetracker.duckdb")
        over["store_url"] = store
    for key in ("raw_retention_days", "dead_letter_retention_days"):
        if key not in data:
            continue
        days = data[key]
        if days is False or days in ("forever", "never"):
            over[key] = None
        elif isinstance(days, int | float) and not isinstance(days, bool) and days > 0:
            over[key] = float(days)
        else:
            raise ConfigError(f"{key} must be > 0 or false, got {days!r}")
    if "engine" in data:
        try:
            over["engine"] = engine_config_from_mapping(dict(data["engine"]))
        except TypeError as exc:
            raise ConfigError(f"[engine]: {exc}") from None
    for key, cls in (("runtime", RuntimeConfig), ("alerts", AlertConfig), ("stats", StatsConfig),
                     ("api", ApiConfig), ("dashboard", DashboardConfig)):
        if key in data:
            over[key] = _table(cls, data[key], key)
    sources = data.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, Mapping) for s in sources):
        raise ConfigError("sources must be an array of tables ([[sources]])")
    name = data.get("name", "embedded")
    if not isinstance(name, str) or not name:
        raise ConfigError("name must be a non-empty string")
    return PipelineConfig(Settings().with_overrides(**over),
                          tuple(dict(s) for s in sources), name, base_dir)


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    """Read a pipeline TOML file; errors name the file and the problem."""
    p = Path(path)
    data = read_toml(p, "pipeline config")
    try:
        return pipeline_config_from_mapping(data, base_dir=p.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
