"""Reads and small writes shared by the SQL stores (DuckDB, PostgreSQL).

Every query comes from :mod:`chargetracker.stores.sql`, built for the store's
``dialect``; a store only provides how to run it (``_frame``, ``_rows``) and its own
transactions (``commit``).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

from ..errors import NotFound, ValidationError
from ..kinds.base import TableSpec, TelemetryKind
from ..schema import CELL_SCHEMA, CYCLE_SCHEMA, MEASUREMENT_SCHEMA, STEP_SCHEMA
from . import sql as q
from .base import Checkpoint, CommitBatch, Store

__all__ = ["SqlStore"]


class SqlStore(Store):
    """A :class:`Store` whose reads are the shared parameterized queries of ``stores.sql``."""

    #: Placeholder style, types and SQL details of the backend.
    dialect: q.Dialect
    #: Plug-in kinds' tables this store writes and reads: name -> (layout, spec).
    _plugins: dict[str, tuple[q.Table, TableSpec]] = {}

    def _register_kinds(self, kinds: Iterable[TelemetryKind]) -> list[q.Table]:
        """Remember the plug-in kinds' tables (the cell kind's are the core tables);
        returns their layouts for the backend's DDL."""
        specs: list[TableSpec] = []
        for kind in kinds:
            if kind.name == "cell":
                continue
            if kind.raw_table is not None:
                specs.append(kind.raw_table)
            specs.extend(kind.tables)
        self._plugins = q.plugin_tables(specs)
        return [t for t, _ in self._plugins.values()]

    def add_kinds(self, kinds: Iterable[TelemetryKind]) -> None:
        """Hold the tables of more plug-in kinds (idempotent): their tables are created
        when missing, as at open. For a part of the product that meets the store after
        it was opened (the meter endpoints of an API process, say)."""
        specs = [spec for _, spec in self._plugins.values()]
        known = set(self._plugins)
        new: list[TableSpec] = []
        for kind in kinds:
            if kind.name == "cell":
                continue
            for spec in ((kind.raw_table,) if kind.raw_table is not None else ()) + tuple(kind.tables):
                if spec.name in known:
                    if self._plugins[spec.name][1] != spec:
                        raise ValueError(f"kind table {spec.name!r} is already held with "
                                         "another layout")
                    continue
                known.add(spec.name)
                new.append(spec)
        if not new:
            return
        plugins = q.plugin_tables([*specs, *new])
        self._create_tables([plugins[spec.name][0] for spec in new])
        self._plugins = plugins

    @abc.abstractmethod
    def _create_tables(self, tables: Sequence[q.Table]) -> None:
        """Create plug-in tables when missing (``CREATE TABLE IF NOT EXISTS``)."""

    @property
    def plugin_specs(self) -> dict[str, TableSpec]:
        return {name: spec for name, (_, spec) in self._plugins.items()}

    def _prepare(self, batch: CommitBatch, now: float) -> q.ConformedBatch:
        return q.prepare_batch(batch, now, self.plugin_specs)

    @abc.abstractmethod
    def _frame(self, sql: str, params: Sequence[Any] | None,
               schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """Run a read query; the rows as a frame of ``schema``."""

    @abc.abstractmethod
    def _rows(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a read query; the rows as tuples."""

    def upsert_cells(self, cells: pl.DataFrame) -> None:
        """Insert or replace cell metadata (CELL_SCHEMA; ``attributes`` a JSON object)."""
        self.commit(CommitBatch(cells=cells))

    def load_checkpoint(self, name: str) -> Checkpoint | None:
        rows = self._rows(q.load_checkpoint(self.dialect), [name])
        if not rows:
            return None
        state, position = rows[0]
        return Checkpoint(name=name, state=bytes(state), position=json.loads(position))

    def load_checkpoints(self, prefix: str) -> list[Checkpoint]:
        """Checkpoints whose name starts with ``prefix`` (literal), ordered by name."""
        if not isinstance(prefix, str):
            raise ValidationError("checkpoint prefix must be a string", field="prefix")
        return [Checkpoint(name=n, state=bytes(s), position=json.loads(p))
                for n, s, p in self._rows(q.load_checkpoints(self.dialect), [prefix])]

    def cells(self, *, filters: dict[str, str] | None = None, limit: int = 100,
              offset: int = 0) -> pl.DataFrame:
        """Cells (CELL_SCHEMA, ``attributes`` as JSON text) ordered by cell_id.

        ``filters`` maps a cells column (group, chemistry, test_type, ...) or any
        attributes key to a value or a list of values; conditions are AND-ed.
        ``limit`` is clamped to :data:`~chargetracker.stores.sql.MAX_PAGE`.
        """
        limit_, offset = q.page(limit, offset)
        sql, params = q.cells_query(self.dialect, filters, limit_ if limit_ is not None else q.MAX_PAGE,
                                    offset)
        return self._frame(sql, params, CELL_SCHEMA)

    def cells_count(self, *, filters: dict[str, str] | None = None) -> int:
        sql, params = q.cells_count_query(self.dialect, filters)
        return int(self._rows(sql, params)[0][0])

    def cycles(self, cell_id: str | None = None, *, status: str | None = None,
               limit: int | None = None, offset: int = 0) -> pl.DataFrame:
        """Cycles (CYCLE_SCHEMA) ordered by cell_id, cycle; ``status`` open|closed|None."""
        limit, offset = q.page(limit, offset, default_cap=None)
        sql, params = q.cycles_query(self.dialect, cell_id, status, limit, offset)
        return self._frame(sql, params, CYCLE_SCHEMA)

    #: Keys per cycle-start query (two parameters each; PostgreSQL allows 65,535).
    _KEYS_PER_QUERY = 2_000

    def cycle_starts(self, keys: pl.DataFrame) -> pl.DataFrame:
        """(cell_id, cycle, start_ts) of the closed cycles among ``keys``, in one query per
        2,000 keys (see :meth:`ReadPort.cycle_starts`)."""
        pairs = list(keys.select("cell_id", "cycle").unique().sort("cell_id", "cycle").iter_rows())
        schema = {"cell_id": pl.String, "cycle": CYCLE_SCHEMA["cycle"], "start_ts": pl.Float64}
        parts = [self._frame(*q.cycle_starts_query(self.dialect, pairs[i:i + self._KEYS_PER_QUERY]),
                             schema)
                 for i in range(0, len(pairs), self._KEYS_PER_QUERY)]
        return pl.concat(parts) if parts else pl.DataFrame(schema=schema)

    def steps(self, cell_id: str, *, cycle: int | None = None, limit: int | None = None,
              offset: int = 0) -> pl.DataFrame:
        """Steps (STEP_SCHEMA) of one cell, optionally one cycle, ordered by step."""
        limit, offset = q.page(limit, offset, default_cap=None)
        sql, params = q.steps_query(self.dialect, cell_id, cycle, limit, offset)
        return self._frame(sql, params, STEP_SCHEMA)

    def measurements(self, cell_id: str, *, start_ts: float | None = None,
                     end_ts: float | None = None, max_points: int | None = None) -> pl.DataFrame:
        """Raw rows (MEASUREMENT_SCHEMA) of one cell with start_ts <= ts <= end_ts.

        With more than ``max_points`` rows, every k-th row is returned (k = ceil(n /
        max_points)), so at most ``max_points`` real samples.
        """
        sql, params = q.measurements_query(self.dialect, cell_id, start_ts, end_ts, max_points)
        return self._frame(sql, params, MEASUREMENT_SCHEMA)

    def metric_values(self, metric: str, *, group_key: str = "group",
                      filters: dict[str, str] | None = None, status: str = "closed",
                      since_cycle: int | None = None) -> pl.DataFrame:
        """(group, cell_id, cycle, value) of one TREND_METRICS column.

        ``group`` is the cells column named ``group_key`` (group, chemistry, test_type,
        ...) or that attributes key, as text. Only ``status`` cycles ("closed" by
        default; None for all) with a non-null value and cycle >= ``since_cycle``.
        Unknown metric or key -> :class:`~chargetracker.errors.ValidationError`.
        """
        sql, params = q.metric_values_query(self.dialect, metric, group_key, filters, status, since_cycle)
        return self._frame(sql, params, q.METRIC_VALUES_SCHEMA)

    def alerts(self, *, since_id: int | None = None, acknowledged: bool | None = None,
               limit: int = 100) -> pl.DataFrame:
        """Alerts with id > ``since_id``, newest first (ALERT_ROW_SCHEMA)."""
        limit_, _ = q.page(limit, 0)
        sql, params = q.alerts_query(self.dialect, since_id, acknowledged,
                                     limit_ if limit_ is not None else q.MAX_PAGE)
        return self._frame(sql, params, q.ALERT_ROW_SCHEMA)

    def alert_episodes(self, *, state: str | None = None, cell_id: str | None = None,
                       rule: str | None = None, notified: bool | None = None,
                       limit: int = 100, offset: int = 0) -> pl.DataFrame:
        """Alert episodes newest start first (ALERT_EPISODE_ROW_SCHEMA), each with the id
        and acknowledgement of its notification (null when suppressed)."""
        limit_, offset = q.page(limit, offset)
        sql, params = q.alert_episodes_query(self.dialect, state, cell_id, rule, notified,
                                             limit_ if limit_ is not None else q.MAX_PAGE, offset)
        return self._frame(sql, params, q.ALERT_EPISODE_ROW_SCHEMA)

    def episode_counts(self) -> pl.DataFrame:
        """Per rule: episodes open, resolved and suppressed by the rate limit."""
        return self._frame(q.EPISODE_COUNTS_QUERY, None, q.EPISODE_COUNTS_SCHEMA)

    def dead_letters(self, *, limit: int = 100) -> pl.DataFrame:
        """Dead letters newest first: id, received_at (wall s) + DEAD_LETTER_SCHEMA."""
        limit_, _ = q.page(limit, 0)
        sql, params = q.dead_letters_query(self.dialect, limit_ if limit_ is not None else q.MAX_PAGE)
        return self._frame(sql, params, q.DEAD_LETTER_ROW_SCHEMA)

    def ingest_rate_series(self, since_wall: float) -> pl.DataFrame:
        """(wall, samples, rejected) per commit with wall >= ``since_wall``, oldest first."""
        if since_wall is None:
            raise ValidationError("since_wall is required", field="since_wall")
        return self._frame(q.series_query(self.dialect), [float(since_wall)], q.INGEST_SERIES_SCHEMA)

    def rows(self, table: str, *, filters: dict[str, Any] | None = None,
             limit: int | None = None, offset: int = 0,
             ranges: dict[str, tuple[Any, Any]] | None = None,
             order: Sequence[str] | None = None, descending: bool = False,
             unbounded: bool = False) -> pl.DataFrame:
        """Rows of a plug-in kind's table (its layout) ordered by its key (or ``order``,
        ``descending``); ``filters`` are equalities on its columns (a list or tuple value:
        one of them), ``ranges`` inclusive bounds ``(low, high)``, None = open. Without
        ``limit`` at most MAX_PAGE rows, unless ``unbounded``. Unknown table -> NotFound."""
        entry = self._plugins.get(table)
        if entry is None:
            raise NotFound(f"no table {table!r} (known: {sorted(self._plugins)})")
        layout, _ = entry
        limit_, offset = q.page(limit, offset, default_cap=None if unbounded else q.MAX_PAGE)
        sql, params = q.rows_query(self.dialect, layout, filters, limit_, offset,
                                   ranges=ranges, order=order, descending=descending)
        schema = {c: _POLARS[t] for c, t in layout.columns}
        return self._frame(sql, params, schema)


_POLARS: dict[str, pl.DataType] = {"text": pl.Utf8(), "float": pl.Float64(), "int": pl.Int64(),
                                   "bool": pl.Boolean(), "blob": pl.Binary(), "json": pl.Utf8(),
                                   "date": pl.Date()}
