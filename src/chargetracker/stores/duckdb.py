"""The embedded store: one DuckDB file (default ``./chargetracker.duckdb``).

Layout and every SQL statement come from :mod:`chargetracker.stores.sql` (shared with the
PostgreSQL store); this module adds the connection, transactions, and the way frames
reach DuckDB: a Polars frame is *registered* as a view over its Arrow buffers and
inserted with one ``INSERT ... SELECT`` (never row by row), so a million raw rows take
well under a second.

Thread safety: a DuckDB connection object must not be used from two threads at once.
The store keeps one cursor (a duplicate connection onto the same database) per
thread, created on first use, so the API server can read from many threads while the
pipeline commits. Reads see the last committed state (DuckDB MVCC snapshot per
statement). Writes (:meth:`commit`, :meth:`upsert_cells`, :meth:`ack_alert`,
:meth:`prune_measurements`) are serialized by one lock, which also prevents DuckDB's
write-write conflicts between this process's threads. Another *process* cannot open
the same file for writing while this one holds it: that surfaces as
:class:`~chargetracker.errors.StoreUnavailable`.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from ..errors import ChargeTrackerError, ConfigError, StoreError, StoreUnavailable
from ..kinds.base import TelemetryKind
from ..schema import CYCLE_SCHEMA
from . import sql as q
from .base import CommitBatch
from .sqlstore import SqlStore

__all__ = ["DuckDBStore"]

_D = q.DUCKDB


class DuckDBStore(SqlStore):
    """Store on a DuckDB file (or ``":memory:"``).

    Parameters
    ----------
    path:
        Database file; parent directories are created. ``":memory:"`` for a throwaway
        store.
    read_only:
        Open without write access (several read-only processes may share a file, but
        not with a writer).
    series_retention_s:
        How long the per-commit ingest series (:meth:`ingest_rate_series`) is kept, s.
    clock:
        Wall clock in s since the epoch (injectable for tests).
    kinds:
        Plug-in telemetry kinds whose tables this store also holds (DDL derived from
        their schemas; the cell kind's tables are always there).
    memory_limit:
        Cap on DuckDB's memory, e.g. ``"1GB"`` (URL: ``?memory_limit=1GB``). DuckDB keeps
        written blocks in its buffer pool up to 80 % of RAM by default, so the resident
        memory of a long run follows the file size; capped, it stays flat (larger
        queries spill to a temporary folder beside the file).
    """

    dialect = q.DUCKDB

    def __init__(
        self,
        path: str | Path = "chargetracker.duckdb",
        *,
        read_only: bool = False,
        series_retention_s: float = q.DEFAULT_SERIES_RETENTION_S,
        clock: Callable[[], float] = time.time,
        kinds: Sequence[TelemetryKind] = (),
        memory_limit: str | None = None,
    ) -> None:
        self._extra_tables = self._register_kinds(kinds)
        self._path = str(path) if str(path) == ":memory:" else str(Path(path).expanduser())
        self._read_only = read_only
        self._series_retention_s = float(series_retention_s)
        self._clock = clock
        try:
            if self._path != ":memory:" and not read_only:
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            config = {"memory_limit": _memory_limit(memory_limit)} if memory_limit else {}
            self._con = duckdb.connect(self._path, read_only=read_only, config=config)
        except duckdb.Error as exc:
            raise StoreUnavailable(f"cannot open DuckDB store {self._path!r}: {exc}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"cannot create directory for {self._path!r}: {exc}") from exc
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursors_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._closed = False
        self._n_registered = 0
        # Cell ids known to have a cells row (rows are never deleted): most batches then
        # skip the registration statement entirely.
        self._known_cells: set[str] = set()
        try:
            self._init_schema()
        except BaseException:
            self._con.close()
            raise

    # -- lifecycle -------------------------------------------------------------------
    @property
    def url(self) -> str:
        """A URL :func:`~chargetracker.stores.url.open_store` reopens this store with."""
        if self._path == ":memory:":
            return "duckdb:///:memory:"
        return f"duckdb:///{Path(self._path).resolve()}"   # duckdb:////abs/path: absolute

    @property
    def path(self) -> str:
        return self._path

    def close(self) -> None:
        with self._cursors_lock:
            if self._closed:
                return
            self._closed = True
            for cur in self._cursors:
                try:
                    cur.close()
                except duckdb.Error:  # pragma: no cover - closing is best effort
                    pass
            self._cursors.clear()
            try:
                self._con.close()
            except duckdb.Error as exc:  # pragma: no cover
                raise StoreError(f"closing {self._path!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"DuckDBStore({self._path!r}{', read_only=True' if self._read_only else ''})"

    def _cur(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cur", None)
        if cur is not None and not self._closed:
            return cur
        with self._cursors_lock:
            if self._closed:
                raise StoreError(f"store {self._path!r} is closed")
            cur = self._con.cursor()
            self._cursors.append(cur)
        self._local.cur = cur
        return cur

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate DuckDB exceptions at the edge."""
        try:
            yield
        except ChargeTrackerError:
            raise
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            raise StoreUnavailable(f"{what} on {self._path!r}: {exc}") from exc
        except duckdb.Error as exc:
            raise StoreError(f"{what} on {self._path!r}: {exc}") from exc

    def _unindexed(self) -> list[str]:
        """Plug-in ``insert_new`` tables (raw records): no primary-key index, written by
        an anti-join under the write lock (:func:`q.insert_new_anti_join_from`)."""
        return [n for n, (_, spec) in self._plugins.items() if spec.mode == "insert_new"]

    def _create_tables(self, tables: Sequence[q.Table]) -> None:
        unindexed = set(self._unindexed())
        with self._write_lock, self._errors("creating kind tables"):
            cur = self._cur()
            for table in tables:
                for stmt in q.plugin_ddl(_D, table, primary_key=table.name not in unindexed):
                    cur.execute(stmt)

    def _init_schema(self) -> None:
        with self._errors("initialising schema"):
            cur = self._cur()
            if self._read_only:
                self._check_version(cur)
                return
            cur.execute("BEGIN TRANSACTION")
            try:
                for stmt in q.ddl(_D, self._extra_tables, unindexed=self._unindexed()):
                    cur.execute(stmt)
                self._check_version(cur)
                cur.execute(q.set_meta(_D), ["schema_version", str(q.SCHEMA_VERSION)])
                cur.execute("COMMIT")
            except BaseException:
                _rollback(cur)
                raise

    def _check_version(self, cur: duckdb.DuckDBPyConnection) -> None:
        try:
            rows = cur.execute(q.get_meta(_D), ["schema_version"]).fetchall()
        except duckdb.CatalogException as exc:
            raise StoreError(f"{self._path!r} is not a ChargeTracker store") from exc
        if rows and int(rows[0][0]) > q.SCHEMA_VERSION:
            raise StoreError(
                f"{self._path!r} has store schema version {rows[0][0]}, newer than this "
                f"ChargeTracker understands ({q.SCHEMA_VERSION}); upgrade ChargeTracker"
            )

    # -- helpers ---------------------------------------------------------------------
    def _frame(self, sql: str, params: Sequence[Any] | None,
               schema: dict[str, pl.DataType]) -> pl.DataFrame:
        with self._errors("query"):
            df = self._cur().sql(sql, params=list(params) if params else None).pl()
        return df.cast(schema) if df.height else pl.DataFrame(schema=schema)

    def _rows(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._errors("query"):
            return self._cur().execute(sql, list(params) if params else None).fetchall()

    def _insert(self, cur: duckdb.DuckDBPyConnection, frame: pl.DataFrame,
                build: Callable[[str], str | tuple[str, ...]], params: list[Any] | None = None) -> None:
        # Register the frame as a connection-local view (zero-copy over Arrow) and insert
        # from it in one statement (or the statements ``build`` gives, in order). The
        # view name is ours, never user input.
        self._n_registered += 1
        name = f"_ct_src_{self._n_registered}"
        built = build(name)
        cur.register(name, frame)
        try:
            for sql in (built,) if isinstance(built, str) else built:
                cur.execute(sql, params).fetchall()
        finally:
            cur.unregister(name)

    def _upsert(self, cur: duckdb.DuckDBPyConnection, frame: pl.DataFrame, table: q.Table) -> None:
        """Last write wins by key: delete the stored rows of the frame's keys, insert the
        frame (DuckDB's ``ON CONFLICT DO UPDATE`` costs several times as much; the frame's
        keys are distinct, :func:`~chargetracker.stores.sql.prepare_batch`)."""
        self._insert(cur, frame, functools.partial(q.replace_from, table))

    # -- writes ----------------------------------------------------------------------
    def commit(self, batch: CommitBatch) -> None:
        """Write one micro-batch in one transaction; on any error nothing is written.

        Frames are checked against the schema first (a malformed one raises
        :class:`~chargetracker.errors.SchemaError` naming table and column before the
        transaction starts). Steps, cycles and cells are upserted by key (last write
        wins, also within one batch); raw measurements keyed by (cell_id, ts) are
        inserted unless present; alerts unless one with the same (ts, cell_id, rule,
        cycle) exists; dead letters are appended; counters added; checkpoints replaced.
        Every cell id seen in data gets a cells row (metadata null until upserted).
        """
        now = float(self._clock())
        prepared = self._prepare(batch, now)
        with self._write_lock, self._errors("commit"):
            cur = self._cur()
            cur.execute("BEGIN TRANSACTION")
            try:
                registered = self._write(cur, prepared)
                cur.execute("COMMIT")
            except BaseException:
                _rollback(cur)
                raise
            self._known_cells.update(registered)

    def _write(self, cur: duckdb.DuckDBPyConnection, b: q.ConformedBatch) -> list[str]:
        """Write ``b``; returns the cell ids it registered (known once committed)."""
        for name, state, position in b.checkpoints:
            # Delete-then-insert: replacing a state blob of ~1 MB by ON CONFLICT DO UPDATE
            # costs DuckDB ~5x as much.
            drop, put = q.replace_checkpoint(_D)
            cur.execute(drop, [name])
            cur.execute(put, [name, state, position, b.now])
        for source, acc, rej in b.counters:
            cur.execute(q.add_counters(_D), [source, acc, rej, b.now])
            cur.execute(q.add_series_row(_D), [b.now, source, acc, rej])
        if b.counters:
            cur.execute(q.prune_series(_D), [b.now - self._series_retention_s])
        if b.cells is not None:
            self._upsert(cur, b.cells, q.CELLS)
        if b.measurements is not None:
            self._insert_new(cur, b.measurements, q.MEASUREMENTS, ("ts",))
        if b.steps is not None:
            self._upsert(cur, b.steps, q.STEPS)
        if b.cycles is not None:
            self._upsert(cur, b.cycles, q.CYCLES)
        seen = [f.get_column("cell_id").unique() for f in (b.measurements, b.steps, b.cycles)
                if f is not None]
        new = (pl.concat(seen).unique().drop_nulls().to_list() if seen else [])
        new = [c for c in new if c not in self._known_cells]
        if new:
            self._insert(cur, pl.DataFrame({"cell_id": new}, schema={"cell_id": pl.Utf8}),
                         q.ensure_cells_from)
        if b.alerts is not None:
            self._insert(cur, b.alerts, q.insert_alerts_from)
        if b.alert_episodes is not None:
            self._upsert(cur, b.alert_episodes, q.ALERT_EPISODES)
        if b.dead_letters is not None:
            self._insert(cur, b.dead_letters, q.insert_dead_letters_from)
        for name, frame in b.tables.items():
            layout, spec = self._plugins[name]
            if spec.mode == "insert_new":
                # Restricted to the batch's range of each numeric key column (zone maps).
                bounded = tuple(k for k in spec.key if spec.schema[k].is_numeric())
                self._insert_new(cur, frame, layout, bounded)
                continue
            self._insert(cur, frame, functools.partial(q.plugin_write_from, layout, spec.mode))
        cur.execute(q.set_meta(_D), ["last_commit_wall", repr(b.now)])
        return new

    def _insert_new(self, cur: duckdb.DuckDBPyConnection, frame: pl.DataFrame, table: q.Table,
                    bounded: tuple[str, ...]) -> None:
        """Insert the rows of ``frame`` whose key is not stored (raw records, no key
        index). The last ``bounded`` key column is taken as the time front: rows above
        its newest stored value cannot be stored yet and are appended; only the others
        go through the anti-join, so a stream's insert cost stays flat as the table grows."""
        params = [v for k in bounded for v in (frame[k].min(), frame[k].max())]
        if not bounded:
            self._insert(cur, frame, functools.partial(
                q.insert_new_anti_join_from, _D, table, bounded=bounded), params)
            return
        front = bounded[-1]
        newest = cur.execute(q.newest_stored(_D, table, front), [params[-2]]).fetchall()[0][0]
        if newest is not None:
            params[-1] = newest
            self._insert(cur, frame, functools.partial(
                q.insert_new_anti_join_from, _D, table, bounded=bounded, upto=front),
                [newest, *params])
        # Nothing stored from the batch's start on (newest None): no row can be a repeat.
        self._insert(cur, frame, functools.partial(q.insert_after_from, _D, table, front),
                     [-math.inf if newest is None else newest])

    def ack_alert(self, alert_id: int, *, by: str | None = None) -> bool:
        """Acknowledge an alert; False when no alert has that id. Acknowledging twice
        keeps the first acknowledgement."""
        with self._write_lock, self._errors("acknowledging alert"):
            cur = self._cur()
            cur.execute(q.ack_alert(_D), [by, float(self._clock()), int(alert_id)]).fetchall()
            return bool(cur.execute(q.alert_exists(_D), [int(alert_id)]).fetchall())

    def prune_measurements(self, older_than_ts: float) -> int:
        """Delete raw measurements with ts < ``older_than_ts`` (s since epoch) that the
        results cover (never the open step's or open cycle's samples)."""
        with self._write_lock, self._errors("pruning measurements"):
            rows = self._cur().execute(q.prune_measurements(_D), [float(older_than_ts)]).fetchall()
        return int(rows[0][0]) if rows else 0

    def prune_dead_letters(self, received_before: float) -> int:
        """Delete dead letters received (wall s) before ``received_before``."""
        with self._write_lock, self._errors("pruning dead letters"):
            rows = self._cur().execute(q.prune_dead_letters(_D), [float(received_before)]).fetchall()
        return int(rows[0][0]) if rows else 0

    # -- reads -----------------------------------------------------------------------
    def cell(self, cell_id: str) -> dict[str, Any] | None:
        """Metadata, counts and latest cycle of one cell; None when it is unknown.

        Keys: the CELL_SCHEMA columns (``attributes`` parsed to a dict), ``n_measurements``,
        ``first_ts``, ``last_ts``, ``n_steps``, ``n_cycles``, ``n_closed_cycles`` and
        ``latest_cycle`` (a CYCLE_SCHEMA dict, open or closed, or None).
        """
        with self._errors("reading cell"):
            cur = self._cur()
            # One read transaction so counts and the latest cycle agree.
            cur.execute("BEGIN TRANSACTION")
            try:
                meta = cur.execute(q.cell_row_query(_D), [cell_id]).fetchall()
                n_meas, first_ts, last_ts = cur.execute(
                    q.cell_measurement_stats_query(_D), [cell_id]).fetchall()[0]
                n_steps = cur.execute(q.cell_step_count_query(_D), [cell_id]).fetchall()[0][0]
                n_cycles, n_closed = cur.execute(
                    q.cell_cycle_stats_query(_D), [cell_id]).fetchall()[0]
                latest = cur.sql(q.latest_cycle_query(_D), params=[cell_id]).pl()
            finally:
                _rollback(cur)
        return q.cell_dict(cell_id, meta[0] if meta else None, n_measurements=n_meas,
                           first_ts=first_ts, last_ts=last_ts, n_steps=n_steps,
                           n_cycles=n_cycles, n_closed=n_closed, latest=latest.cast(CYCLE_SCHEMA).to_dicts()[0] if latest.height else None)

    def ingest_stats(self) -> dict[str, Any]:
        """Ingest counters and health.

        ``samples_total`` / ``rejected_total`` (summed counters), ``by_source``
        {source: {accepted, rejected, updated_at}}, ``samples_per_s`` (accepted over the
        last 60 s of commits), ``last_commit_wall`` (wall s or None), ``newest_ts`` (ts
        of the newest stored measurement), ``lag_s`` (wall now - newest_ts: the data
        lag), ``measurements_stored``, ``dead_letters_stored``, ``cells``.
        """
        now = float(self._clock())
        with self._errors("reading ingest stats"):
            cur = self._cur()
            cur.execute("BEGIN TRANSACTION")
            try:
                counters = cur.execute(q.COUNTERS_QUERY).fetchall()
                newest_ts, n_meas = cur.execute(q.NEWEST_TS_QUERY).fetchall()[0]
                n_dead = cur.execute(q.DEAD_LETTER_COUNT_QUERY).fetchall()[0][0]
                n_cells = cur.execute(*q.cells_count_query(_D)).fetchall()[0][0]
                acc_window, _ = cur.execute(
                    q.series_window_query(_D), [now - q.RATE_WINDOW_S]).fetchall()[0]
                first_wall = cur.execute(q.first_series_wall_query()).fetchall()[0][0]
                last = cur.execute(q.get_meta(_D), ["last_commit_wall"]).fetchall()
            finally:
                _rollback(cur)
        return q.ingest_stats_dict(
            counters, newest_ts=newest_ts, n_measurements=n_meas, n_dead=n_dead,
            n_cells=n_cells, accepted_in_window=acc_window, first_wall=first_wall,
            last_commit=last[0][0] if last else None, now=now)


_SIZE = re.compile(r"\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", re.IGNORECASE)


def _memory_limit(value: str) -> str:
    # Checked here so a typo is a clear ConfigError, not DuckDB's parser message.
    if not _SIZE.fullmatch(value):
        raise ConfigError(f"DuckDB memory_limit {value!r} is not a size such as 512MB or 2GB")
    return value.strip()


def _rollback(cur: duckdb.DuckDBPyConnection) -> None:
    # After a failed statement DuckDB may already have aborted the transaction.
    try:
        cur.execute("ROLLBACK")
    except duckdb.Error:
        pass
