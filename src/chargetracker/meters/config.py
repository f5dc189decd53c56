"""Settings of the meter engine (units in the names: ``_s`` seconds, ``_w`` watts)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..errors import ConfigError

__all__ = ["MeterConfig", "meter_config_from_mapping"]

#: Longest gap limit the day splitter supports: an interval can then cross at most two
#: local midnights (a 23 h DST day), which bounds the output buffers.
MAX_GAP_LIMIT_S = 86_400.0


@dataclass(frozen=True, slots=True)
class MeterConfig:
    """How power readings become daily energy, thresholds and spike episodes."""

    #: An interval between two readings of a meter longer than this is a data gap: it
    #: is not integrated and is counted (``gap_count``), s.
    gap_limit_s: float = 600.0
    #: A mains meter reading exactly 0 W for longer than this (first to last zero
    #: reading) is a gap, not zero use: loggers and resamplers fill missing minutes with
    #: 0 W. The run and the intervals on both sides of it are excluded and counted, s.
    zero_run_limit_s: float = 300.0
    #: Out-of-order readings up to this far behind the meter's newest one are sorted in;
    #: older ones are dead letters (``late``), s. Readings inside the window wait.
    lateness_s: float = 0.0
    #: Time zone of meters without metadata (IANA name); days split at its midnight.
    default_timezone: str = "UTC"
    #: Readings above this level count for the percentile threshold, W. An intermittent
    #: appliance reads 0 W most of the time; its plain 97th percentile is 0 W.
    on_w: float = 10.0
    #: Percentile of the "on" readings used as the spike threshold (linear interpolation).
    percentile: float = 97.0
    #: Trailing window of the threshold, days.
    window_days: float = 30.0
    #: A reading opens (or continues) a spike episode when it exceeds
    #: ``threshold x (1 + spike_margin)`` and ``spike_floor_w``.
    spike_margin: float = 0.2
    spike_floor_w: float = 100.0

    def __post_init__(self) -> None:
        if not 0 < self.gap_limit_s <= MAX_GAP_LIMIT_S:
            raise ConfigError(f"gap_limit_s must be in (0, {MAX_GAP_LIMIT_S:g}] s")
        if self.zero_run_limit_s < 0 or self.lateness_s < 0:
            raise ConfigError("zero_run_limit_s and lateness_s must be >= 0")
        if not 0 <= self.percentile <= 100:
            raise ConfigError("percentile must be in [0, 100]")
        if self.window_days <= 0:
            raise ConfigError("window_days must be > 0")
        if self.spike_margin < 0:
            raise ConfigError("spike_margin must be >= 0")
        from .calendar import check_timezone

        check_timezone(self.default_timezone, field="default_timezone")


def meter_config_from_mapping(values: dict[str, Any]) -> MeterConfig:
    """Build a :class:`MeterConfig` from a mapping (e.g. a TOML table), naming unknown keys."""
    known = {f.name for f in fields(MeterConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown meter setting(s) {unknown}; known: {sorted(known)}")
    return MeterConfig(**values)
