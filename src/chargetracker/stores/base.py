"""The one store interface every backend implements (DuckDB, PostgreSQL).

A store persists cells, raw measurements, steps, cycles (open and closed), alerts,
dead letters and checkpoints, and answers the queries the dashboard and API need.
All frames are Polars DataFrames in the column layouts of :mod:`chargetracker.schema`.

Exactly-once rests on :meth:`Store.commit`: the results of one micro-batch (raw rows,
step and cycle upserts, dead letters, alerts) are written in the same transaction as
the engine state and the input position they were computed from.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import polars as pl

__all__ = ["ALERT_SCHEMA", "Checkpoint", "CommitBatch", "Store", "TREND_METRICS"]

#: Cycle metrics the group trend / deep dive accept (columns of CYCLE_SCHEMA).
TREND_METRICS: tuple[str, ...] = (
    "discharge_ah", "charge_ah", "discharge_wh", "charge_wh", "coulombic_efficiency",
    "energy_efficiency", "retention", "mean_charge_v", "mean_discharge_v",
    "internal_resistance_ohm", "duration_s", "max_temperature_c", "mean_temperature_c",
)

#: Columns of an alert frame in :attr:`CommitBatch.alerts` (the store adds ``id`` and the
#: acknowledgement columns). ``ts`` (s since epoch, of the data that raised it) and
#: ``rule`` are required; a missing ``severity`` is stored as ``"warning"``. An alert is
#: identified by (ts, cell_id, rule, cycle): committing it again does not duplicate it.
ALERT_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Float64(),
    "cell_id": pl.Utf8(),          # null for group-level alerts
    "group": pl.Utf8(),
    "rule": pl.Utf8(),             # e.g. over_temperature, min_coulombic_efficiency, outlier
    "severity": pl.Utf8(),         # info | warning | critical
    "value": pl.Float64(),         # the offending value, in the metric's unit
    "threshold": pl.Float64(),
    "cycle": pl.Int64(),
    "message": pl.Utf8(),
}


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Engine state plus the input position it corresponds to.

    ``position`` is source-specific and JSON-serializable (file offsets, Kafka
    partition offsets, simulator clock).
    """

    name: str
    state: bytes
    position: dict[str, Any]


@dataclass(slots=True)
class CommitBatch:
    """Everything one micro-batch writes, atomically."""

    measurements: pl.DataFrame | None = None
    steps: pl.DataFrame | None = None
    cycles: pl.DataFrame | None = None
    dead_letters: pl.DataFrame | None = None
    alerts: pl.DataFrame | None = None
    cells: pl.DataFrame | None = None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    #: Ingest counters to add: {"source name": {"accepted": n, "rejected": m}}.
    counters: dict[str, dict[str, int]] = field(default_factory=dict)


class Store(abc.ABC):
    """Abstract store. Implementations translate driver errors to StoreError/StoreUnavailable."""

    # -- lifecycle -------------------------------------------------------------------
    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ----------------------------------------------------------------------
    @abc.abstractmethod
    def commit(self, batch: CommitBatch) -> None:
        """Write one micro-batch in a single transaction (idempotent upserts)."""

    @abc.abstractmethod
    def upsert_cells(self, cells: pl.DataFrame) -> None: ...

    @abc.abstractmethod
    def load_checkpoint(self, name: str) -> Checkpoint | None: ...

    @abc.abstractmethod
    def load_checkpoints(self, prefix: str) -> list[Checkpoint]:
        """Every checkpoint whose name starts with ``prefix``, ordered by name.

        For writers that keep one checkpoint per input partition (e.g. Kafka workers:
        ``"worker:measurements:3"``) and load those of their assigned partitions. The
        prefix is literal (no wildcards); ``""`` returns all checkpoints.
        """

    @abc.abstractmethod
    def ack_alert(self, alert_id: int, *, by: str | None = None) -> bool: ...

    @abc.abstractmethod
    def prune_measurements(self, older_than_ts: float) -> int:
        """Delete raw measurements older than the retention horizon; returns rows removed."""

    # -- reads -----------------------------------------------------------------------
    @abc.abstractmethod
    def cells(self, *, filters: dict[str, str] | None = None, limit: int = 100,
              offset: int = 0) -> pl.DataFrame: ...

    @abc.abstractmethod
    def cell(self, cell_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def cycles(self, cell_id: str | None = None, *, status: str | None = None,
               limit: int | None = None, offset: int = 0) -> pl.DataFrame: ...

    @abc.abstractmethod
    def steps(self, cell_id: str, *, cycle: int | None = None, limit: int | None = None,
              offset: int = 0) -> pl.DataFrame: ...

    @abc.abstractmethod
    def measurements(self, cell_id: str, *, start_ts: float | None = None,
                     end_ts: float | None = None, max_points: int | None = None) -> pl.DataFrame: ...

    @abc.abstractmethod
    def metric_values(self, metric: str, *, group_key: str = "group",
                      filters: dict[str, str] | None = None, status: str = "closed",
                      since_cycle: int | None = None) -> pl.DataFrame:
        """(group, cell_id, cycle, value) for one cycle metric, for group statistics."""

    @abc.abstractmethod
    def alerts(self, *, since_id: int | None = None, acknowledged: bool | None = None,
               limit: int = 100) -> pl.DataFrame: ...

    @abc.abstractmethod
    def dead_letters(self, *, limit: int = 100) -> pl.DataFrame: ...

    @abc.abstractmethod
    def ingest_stats(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def cells_count(self, *, filters: dict[str, str] | None = None) -> int:
        """Number of cells (matching ``filters``, as in :meth:`cells`)."""

    @abc.abstractmethod
    def ingest_rate_series(self, since_wall: float) -> pl.DataFrame:
        """Per-commit ingest counts since a wall-clock time (s since epoch), oldest first.

        Columns ``wall`` (float64, s), ``samples`` and ``rejected`` (int64, summed over
        sources for that commit). Kept for the store's series retention (24 h default).
        """
