"""The two ports every store backend implements (DuckDB, PostgreSQL).

* :class:`WritePort` -- what the drivers of the micro-batch step need: one atomic
  :meth:`~WritePort.commit` per batch, checkpoints, retention;
* :class:`ReadPort` -- what the query layer (:mod:`chargetracker.queries`: API,
  dashboard) and history-reading alert rules need.

:class:`Store` is both. A store persists cells, raw measurements, steps, cycles (open
and closed), alerts, dead letters, checkpoints and the tables of plug-in telemetry kinds.
All frames are Polars DataFrames in the column layouts of :mod:`chargetracker.schema`.

Exactly-once rests on :meth:`Store.commit`: the results of one micro-batch (raw rows,
step and cycle upserts, dead letters, alerts) are written in the same transaction as
the engine state and the input position they were computed from.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ..schema import CELL_SCHEMA
from ..vocabulary import ALERT_SCHEMA, TREND_METRICS

# ALERT_SCHEMA and TREND_METRICS live in :mod:`chargetracker.vocabulary`; re-exported here
# where the store layer always offered them.
__all__ = ["ALERT_SCHEMA", "Checkpoint", "CommitBatch", "ReadPort", "Store", "TREND_METRICS",
           "WritePort", "all_cells"]


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
    """Everything one micro-batch writes, atomically.

    ``measurements`` .. ``cells`` are the cell kind's tables (and the shared alerts and
    dead letters); ``tables`` holds the result rows of any other telemetry kind by table
    name (a :class:`~chargetracker.kinds.TableSpec` the store was opened with), upserted
    by that table's key.
    """

    measurements: pl.DataFrame | None = None
    steps: pl.DataFrame | None = None
    cycles: pl.DataFrame | None = None
    dead_letters: pl.DataFrame | None = None
    alerts: pl.DataFrame | None = None
    cells: pl.DataFrame | None = None
    #: Alert episodes opened, updated or resolved (ALERT_EPISODE_SCHEMA), upserted by
    #: (cell_id, rule, start_ts).
    alert_episodes: pl.DataFrame | None = None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    #: Ingest counters to add: {"source name": {"accepted": n, "rejected": m}}.
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Rows of plug-in kinds' tables: {"table name": frame}.
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)


class WritePort(abc.ABC):
    """What a driver of the micro-batch step needs: exactly-once commits and checkpoints.

    Implementations translate driver errors to StoreError/StoreUnavailable.
    """

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> WritePort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
    def prune_measurements(self, older_than_ts: float) -> int:
        """Delete raw measurements with ts < ``older_than_ts`` (s since epoch) that the
        results already cover; a sample of a cell's open step or open cycle, or one no
        step has reached yet, is kept whatever its age. Returns rows removed."""

    @abc.abstractmethod
    def prune_dead_letters(self, received_before: float) -> int:
        """Delete dead letters received (wall s since epoch) before ``received_before``;
        returns rows removed."""


class ReadPort(abc.ABC):
    """What the query layer (API, dashboard, alert rules reading history) needs.

    Reads only, plus :meth:`ack_alert`, the operator's acknowledgement of an alert.
    """

    @abc.abstractmethod
    def cells(self, *, filters: dict[str, str] | None = None, limit: int = 100,
              offset: int = 0) -> pl.DataFrame: ...

    @abc.abstractmethod
    def cell(self, cell_id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def cycles(self, cell_id: str | None = None, *, status: str | None = None,
               limit: int | None = None, offset: int = 0) -> pl.DataFrame: ...

    def cycle_starts(self, keys: pl.DataFrame) -> pl.DataFrame:
        """(cell_id, cycle, start_ts) of the closed cycles among ``keys`` (columns
        ``cell_id``, ``cycle``); keys with no closed cycle are left out. Stores answer it
        in one query; this default reads each cell's closed cycles."""
        if keys.height == 0:
            return pl.DataFrame(schema={"cell_id": pl.String, "cycle": pl.Int64,
                                        "start_ts": pl.Float64})
        got = pl.concat([self.cycles(cid, status="closed").select("cell_id", "cycle", "start_ts")
                         for cid in keys.get_column("cell_id").unique().sort().to_list()])
        return got.join(keys.select("cell_id", pl.col("cycle").cast(got.schema["cycle"])),
                        on=["cell_id", "cycle"], how="semi")

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
    def ack_alert(self, alert_id: int, *, by: str | None = None) -> bool: ...

    @abc.abstractmethod
    def alert_episodes(self, *, state: str | None = None, cell_id: str | None = None,
                       rule: str | None = None, notified: bool | None = None,
                       limit: int = 100, offset: int = 0) -> pl.DataFrame:
        """Alert episodes (``ALERT_EPISODE_ROW_SCHEMA``), newest start first; ``state``
        open | resolved | None; ``notified`` False: only those the rate limit suppressed."""

    @abc.abstractmethod
    def episode_counts(self) -> pl.DataFrame:
        """(rule, open, resolved, suppressed) episode counts per rule, by rule."""

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

    @abc.abstractmethod
    def rows(self, table: str, *, filters: dict[str, Any] | None = None,
             limit: int | None = None, offset: int = 0,
             ranges: dict[str, tuple[Any, Any]] | None = None,
             order: Sequence[str] | None = None, descending: bool = False,
             unbounded: bool = False) -> pl.DataFrame:
        """Rows of a plug-in kind's table (its TableSpec schema) ordered by its key (or
        ``order``, ``descending``); ``filters`` are equalities on the spec's columns
        (AND-ed; a list value: any of them), ``ranges`` inclusive ``(low, high)`` bounds
        (None: open). Without ``limit`` at most MAX_PAGE rows come back unless
        ``unbounded`` (internal reads that need every row, e.g. a threshold window)."""


class Store(WritePort, ReadPort):
    """A backend implementing both ports (DuckDB, PostgreSQL)."""

    def __enter__(self) -> Store:
        return self


def all_cells(reader: ReadPort, *, page_size: int = 10_000) -> pl.DataFrame:
    """Every row of the cells table (CELL_SCHEMA), read page by page."""
    pages = []
    offset = 0
    while True:
        page = reader.cells(limit=page_size, offset=offset)
        if page.height:
            pages.append(page)
        offset += page.height
        if page.height < page_size:
            break
    return pl.concat(pages) if pages else pl.DataFrame(schema=CELL_SCHEMA)
