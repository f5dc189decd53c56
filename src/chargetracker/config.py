"""Configuration: one frozen :class:`Settings` object, built by the CLI and passed down.

Nothing below the CLI reads the environment; everything it needs arrives here.
Units are in the field names (``_s`` seconds, ``_a`` amperes, ``_v`` volts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from .errors import ConfigError

__all__ = [
    "EngineConfig",
    "StatsConfig",
    "AlertConfig",
    "ApiConfig",
    "KafkaConfig",
    "RuntimeConfig",
    "DashboardConfig",
    "SparkConfig",
    "Settings",
]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How raw samples become steps and cycles (see docs/metrics.md)."""

    #: Current threshold separating rest from charge/discharge, A. ``None``: from the
    #: cell's nominal capacity (``epsilon_c_rate`` x C), else ``default_epsilon_a``.
    current_epsilon_a: float | None = None
    epsilon_c_rate: float = 0.002          # 1/h, i.e. C/500
    #: A, used when nominal capacity is unknown. ``None`` (default): learnt from the
    #: cell's own data, ``epsilon_current_fraction`` x its largest sustained |I| so far
    #: (never below ``epsilon_floor_a``), so coin cells at microamperes are not "rest".
    default_epsilon_a: float | None = None
    epsilon_current_fraction: float = 0.002
    epsilon_floor_a: float = 1e-6
    #: A sample leaves a charge/discharge state only when |I| drops below
    #: ``hysteresis`` x epsilon (Schmitt trigger against noise around the threshold).
    hysteresis: float = 0.5
    #: Runs of one kind shorter than this are merged into the preceding step, s.
    min_step_s: float = 3.0
    #: A charge/discharge run must also carry this fraction of the cell's capacity
    #: (nominal, else its largest complete discharge, else one hour at its largest
    #: current) to be a step; smaller ones are rest noise, merged, and never start a cycle.
    min_step_capacity_fraction: float = 0.001
    #: Interval longer than this is a data gap, not integrated, s. ``None`` (default):
    #: judged from evidence (docs/metrics.md): the cycler's step timer, and
    #: ``max(gap_min_s, gap_factor x the longest interval the cell's logger has made in
    #: this kind of step)``, waived for a steady current until ``dt_ref_intervals``
    #: intervals of that kind have been seen.
    gap_limit_s: float | None = None
    gap_factor: float = 10.0
    gap_min_s: float = 60.0
    dt_ref_intervals: int = 16
    #: A cell's first sample inside a charge/discharge whose step time is at most this
    #: is at the step's start (the first cycle is not partial for it), s.
    partial_start_step_s: float = 10.0
    #: A cell's first cycle that gives back more than this times the charge it took is
    #: partial: part of its charge happened before the data.
    max_first_cycle_ce: float = 1.02
    #: Out-of-order samples up to this far behind the newest are sorted in; older
    #: ones are rejected as late, s.
    lateness_s: float = 2.0
    #: Open-step/open-cycle snapshots of a cell are emitted when its step or cycle closed
    #: in the batch, else once its data has advanced this far since its last snapshot, s
    #: (data time). 0: whenever a batch moved the cell (lowest latency).
    snapshot_interval_s: float = 0.0
    #: A new cycle starts at the first ``charge`` after a discharge (or the first
    #: ``discharge`` after a charge). The cycler's labels win when present.
    cycle_start: Literal["charge", "discharge"] = "charge"
    use_cycle_labels: bool = True
    use_step_labels: bool = True
    #: Retention reference: the largest discharge capacity among the first N cycles.
    retention_ref_cycles: int = 3
    #: Internal resistance |dV/dI| from a current step at a step boundary needs
    #: |dI| >= this multiple of epsilon and the two samples at most
    #: ``resistance_max_dt_s`` apart (longer intervals include polarization). A step or
    #: cycle reports the estimate from its largest current step.
    resistance_min_delta_epsilons: float = 20.0
    resistance_max_dt_s: float = 2.0
    #: CC/CV classification: a step is CC when the time-weighted relative std of I is
    #: below ``cc_rel_std``; CV when the std of V is below ``cv_v_std_v``; else CC-CV.
    cc_rel_std: float = 0.05
    cv_v_std_v: float = 0.01

    def __post_init__(self) -> None:
        if self.min_step_s < 0 or self.lateness_s < 0 or self.snapshot_interval_s < 0:
            raise ConfigError("min_step_s, lateness_s and snapshot_interval_s must be >= 0")
        if not 0 < self.hysteresis <= 1:
            raise ConfigError("hysteresis must be in (0, 1]")
        if self.cycle_start not in ("charge", "discharge"):
            raise ConfigError("cycle_start must be 'charge' or 'discharge'")
        if self.gap_limit_s is not None and self.gap_limit_s <= 0:
            raise ConfigError("gap_limit_s must be > 0")
        if self.retention_ref_cycles < 1 or self.dt_ref_intervals < 1:
            raise ConfigError("retention_ref_cycles and dt_ref_intervals must be >= 1")
        if not 0 < self.epsilon_current_fraction < 1 or self.epsilon_floor_a <= 0:
            raise ConfigError("epsilon_current_fraction must be in (0, 1) and epsilon_floor_a > 0")
        if self.min_step_capacity_fraction < 0:
            raise ConfigError("min_step_capacity_fraction must be >= 0")


@dataclass(frozen=True, slots=True)
class StatsConfig:
    """Group statistics and outlier rule."""

    outlier_rule: Literal["robust", "sigma"] = "robust"
    sigma_k: float = 2.0        # |z| > k with the "sigma" rule (the original's 2 sigma)
    robust_k: float = 3.5       # |robust z| > k with the "robust" rule
    #: An outlier must also deviate at least this much from the group mean, % (0: off).
    #: Very uniform groups have a tiny spread; 0.3 % off is not a defect.
    min_deviation_pct: float = 1.0
    group_key: str = "group"
    #: A group's mean at a cycle is drawn as its trend only where at least this share of
    #: the group's cells has closed that cycle; before, it is shown as in progress.
    min_cell_share: float = 0.8

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_cell_share <= 1.0:
            raise ConfigError("stats.min_cell_share must be in [0, 1]")


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """Limit alerts (``None`` disables a rule) and alert episodes (docs/alerts.md)."""

    over_voltage_v: float | None = None
    under_voltage_v: float | None = None
    over_temperature_c: float | None = 60.0
    min_coulombic_efficiency: float | None = 0.95
    outliers: bool = True
    #: One notification per episode of a condition instead of one per cycle.
    episodes: bool = True
    #: Consecutive clean cycles that resolve an episode.
    resolve_after_cycles: int = 3
    #: New episodes notified per rule per hour of data time (None: no limit).
    max_new_episodes_per_hour: int | None = 20
    #: Also notify (an ``info`` alert) when an episode resolves.
    notify_resolved: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.resolve_after_cycles, bool) or int(self.resolve_after_cycles) < 1:
            raise ConfigError("alerts.resolve_after_cycles must be an integer >= 1")
        limit = self.max_new_episodes_per_hour
        if limit is not None and (isinstance(limit, bool) or int(limit) < 0):
            raise ConfigError("alerts.max_new_episodes_per_hour must be >= 0 (or None: no limit)")


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """Live pipeline: micro-batching, back-pressure, retention (owned by runtime/)."""

    poll_interval_s: float = 0.2
    max_batch_rows: int = 200_000
    #: Batches buffered between sources and the store; a full queue blocks the sources
    #: (back-pressure) instead of growing memory.
    max_queue_batches: int = 4
    time_acceleration: float = 3600.0
    #: Samples stamped more than this after the clock (the wall clock, or a simulated or
    #: replayed source's own clock) are dead letters, s. A logger with a wrong clock must
    #: judge neither lateness nor retention (docs/operations.md).
    future_horizon_s: float = 86400.0

    def __post_init__(self) -> None:
        if not (self.future_horizon_s > 0 and math.isfinite(self.future_horizon_s)):
            raise ConfigError(f"runtime.future_horizon_s must be a finite number > 0 s, "
                              f"got {self.future_horizon_s!r}")


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    refresh_ms: int = 2000
    raw_hours: float = 24.0


@dataclass(frozen=True, slots=True)
class SparkConfig:
    master: str = "local[2]"
    app_name: str = "chargetracker-backfill"


@dataclass(frozen=True, slots=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8050
    api_keys: tuple[str, ...] = ()
    protect_reads: bool = False
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 64 * 1024 * 1024
    refresh_ms: int = 2000
    #: Rejected rows listed per ingest response (all of them go to dead letters).
    max_error_rows: int = 1000
    #: Rows per chunk when an uploaded file is streamed through the pipeline.
    upload_chunk_rows: int = 250_000
    #: Mount the Dash dashboard at "/" next to the API (``serve --no-dashboard`` turns it off).
    dashboard: bool = True
    #: Publish ingested measurements to Kafka (``Settings.kafka``) for the scale-out
    #: workers instead of running them through this process's pipeline.
    publish_kafka: bool = False
    #: How ``POST /alarms/predict`` stores its prediction: ``"grouped"`` (queued, reply
    #: at once, committed by one writer in groups; a crash loses at most the unflushed
    #: group, docs/alarms.md) or ``"sync"`` (the reply waits for its own commit).
    alarm_write: str = "grouped"
    #: Grouped writes: rows queued at most (back-pressure beyond), rows per commit at
    #: most, age of the oldest queued row that triggers a commit (s), and how long a
    #: request waits for room in a full queue before it fails with 503 (s).
    alarm_write_queue_rows: int = 4096
    alarm_write_group_rows: int = 256
    alarm_write_max_age_s: float = 0.02
    alarm_write_wait_s: float = 5.0

    def __post_init__(self) -> None:
        if self.alarm_write not in ("grouped", "sync"):
            raise ConfigError(f"api.alarm_write must be 'grouped' or 'sync', not "
                              f"{self.alarm_write!r}")
        if self.alarm_write_queue_rows < 1 or self.alarm_write_group_rows < 1:
            raise ConfigError("api.alarm_write_queue_rows and alarm_write_group_rows must be >= 1")
        if not (0 <= self.alarm_write_max_age_s < math.inf and 0 <= self.alarm_write_wait_s
                < math.inf):
            raise ConfigError("api.alarm_write_max_age_s and alarm_write_wait_s must be finite "
                              "and >= 0 s")
        if self.max_body_bytes < 1024:
            raise ConfigError("api.max_body_bytes must be >= 1024")
        if not 0 <= self.port <= 65535:
            raise ConfigError("api.port must be in 0..65535")
        if self.max_error_rows < 1 or self.upload_chunk_rows < 1:
            raise ConfigError("api.max_error_rows and api.upload_chunk_rows must be >= 1")
        if any(not k or k != k.strip() for k in self.api_keys):
            raise ConfigError("API keys must be non-empty and have no surrounding whitespace")


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    brokers: str = "127.0.0.1:9092"
    topic: str = "measurements"
    group_id: str = "chargetracker-workers"
    dead_letter_topic: str | None = None
    #: Passed through verbatim to librdkafka (security.protocol, sasl.*, ssl.*).
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a ChargeTracker process is configured with."""

    store_url: str = "duckdb:///chargetracker.duckdb"
    engine: EngineConfig = field(default_factory=EngineConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    alerts: AlertConfig = field(default_factory=AlertConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    raw_retention_days: float | None = 30.0
    #: Dead letters older than this (by the wall time they were received) are pruned,
    #: days; None keeps them forever.
    dead_letter_retention_days: float | None = 30.0
    archive_dir: str | None = None      # Parquet archive of accepted raw rows (batch layer)

    def with_overrides(self, **kwargs: Any) -> Settings:
        """A copy with top-level fields replaced (``engine=EngineConfig(...)`` etc.)."""
        return replace(self, **kwargs)


def engine_config_from_mapping(values: dict[str, Any]) -> EngineConfig:
    """Build an :class:`EngineConfig` from a mapping (e.g. a TOML table), naming unknown keys."""
    known = {f.name for f in fields(EngineConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown engine setting(s) {unknown}; known: {sorted(known)}")
    return EngineConfig(**values)
