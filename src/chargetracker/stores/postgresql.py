"""The scale-out store: PostgreSQL (15 or newer) through psycopg 3 and a connection pool.

Every read query and every upsert comes from :mod:`chargetracker.stores.sql` (shared
with the DuckDB store, so both answer the same questions the same way); this module adds
the connection pool, transactions, schema migrations and the partitioned raw table;
the COPY write path is :mod:`chargetracker.stores.pgwrite`.

Writes. :meth:`PostgresStore.commit` writes one micro-batch in ONE transaction: every
frame is COPYed (CSV, vectorized by Polars) into a session-local staging table, then
moved with one ``INSERT ... SELECT`` per table -- raw measurements ``ON CONFLICT DO
NOTHING`` on (cell_id, ts), steps / cycles / cells ``ON CONFLICT DO UPDATE`` on their
keys, alerts insert-if-absent on (ts, cell_id, rule, cycle) -- and dead letters,
checkpoints (engine state ``bytea`` + position ``jsonb``), ingest counters and the
samples/s series in the same transaction. A Kafka worker's results, engine state and
partition offsets therefore become visible together or not at all. Shared hot rows
(counters, store metadata) are touched last, so concurrent writers hold their locks
for the shortest time, and keys are written in sorted order so two writers never
deadlock on each other's rows.

Raw measurements live in a table range-partitioned by UTC day of ``ts``. The day
partitions a batch needs are created just before its transaction, each in a short
transaction of its own under an advisory lock (creating a partition locks the parent
table exclusively: inside the long commit transaction it would block every reader and
could deadlock two writers). An empty partition left by a failed commit is harmless.
:meth:`~PostgresStore.prune_measurements` drops whole days and deletes the rest.

Schema. Tables come from versioned migrations (:mod:`chargetracker.stores.migrations`),
applied when a store opens, under ``pg_advisory_lock`` so processes starting together
apply each migration exactly once; their versions are recorded in
``schema_migrations``. A database migrated by a newer ChargeTracker is refused.

Concurrency. The store is thread-safe: each call borrows a connection from a
``psycopg_pool.ConnectionPool`` (checked before use, so a restarted server is
reconnected transparently). Many processes (workers, API, dashboard) may share one
database. Multi-statement reads (:meth:`cell`, :meth:`ingest_stats`) run in one
REPEATABLE READ snapshot.

Errors. Connection problems (refused, dropped, pool timeout, server shutting down,
serialization failure / deadlock: everything psycopg reports as ``OperationalError``)
become :class:`~chargetracker.errors.StoreUnavailable` -- try again later; other
database errors become :class:`~chargetracker.errors.StoreError`; both chained ``from``
the driver's exception.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ..errors import (
    ChargeTrackerError,
    ConfigError,
    StoreError,
    StoreUnavailable,
)
from ..kinds.base import TelemetryKind
from ..schema import CYCLE_SCHEMA
from . import sql as q
from .base import CommitBatch
from .migrations.apply import MIGRATION_LOCK_KEY, apply_migrations, check_migrated
from .pgurl import split_url
from .pgwrite import write_batch
from .sqlstore import SqlStore
from .url import redact

__all__ = ["MIGRATION_LOCK_KEY", "MIN_SERVER_VERSION", "PostgresStore", "apply_migrations",
           "partition_name"]

_D = q.POSTGRESQL

#: PostgreSQL 15: unique indexes with NULLS NOT DISTINCT (the alerts' identity).
MIN_SERVER_VERSION = 150000
#: Width of one raw-measurement partition, s (one UTC day).
PARTITION_S = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Days with a named partition: 1970-01-01 .. 9999-12-31; other ts go to the default one.
_MAX_DAY = (datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH).days
_PARTITION_RE = re.compile(r"^measurements_p(\d{8})$")
# Advisory lock key (64-bit, arbitrary but fixed): "ct-part".
PARTITION_LOCK_KEY = int.from_bytes(b"ct-part", "big")

_MISSING_RELATIONS = ("SELECT n FROM unnest(CAST(%s AS TEXT[])) AS n "
                      "WHERE to_regclass(quote_ident(n)) IS NULL ORDER BY n")
_PARTITIONS = ('SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid '
               'WHERE i.inhparent = CAST(\'"measurements"\' AS regclass) ORDER BY c.relname')
_STATS_READ = 'SELECT "n_rows", "max_ts" FROM "measurement_stats"'
_STATS_REMOVE = ('UPDATE "measurement_stats" SET "n_rows" = GREATEST("n_rows" - %s, 0), '
                 '"max_ts" = CASE WHEN "n_rows" - %s <= 0 THEN NULL ELSE "max_ts" END')
_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"


def partition_name(day: int) -> str:
    """Name of the raw partition holding UTC day ``day`` (days since 1970-01-01)."""
    return f"measurements_p{(_EPOCH + timedelta(days=day)):%Y%m%d}"


def _partition_day(name: str) -> int | None:
    m = _PARTITION_RE.match(name)
    if not m:
        return None
    day = datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=UTC)
    return (day - _EPOCH).days


def _partition_days(meas: pl.DataFrame | None) -> list[int]:
    """UTC days (with a named partition) the raw rows of a batch fall on."""
    if meas is None or meas.height == 0:
        return []
    ts = meas.get_column("ts")
    days = (ts.filter(ts.is_finite() & (ts >= 0.0)) // PARTITION_S).cast(pl.Int64)
    return sorted(d for d in days.unique().to_list() if d <= _MAX_DAY)


# ---------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------
class PostgresStore(SqlStore):
    """Store on a PostgreSQL database (15 or newer).

    Parameters
    ----------
    url:
        ``postgresql://user[:password]@host[:port]/dbname[?params]``. Query parameters
        naming an option below are taken by the store, any other (``sslmode``,
        ``connect_timeout``, ``application_name``, ``options``, ...) goes to libpq.
        Keyword arguments win over URL parameters.
    pool_min_size, pool_max_size:
        Connections kept open / at most open by this store's pool.
    pool_timeout:
        How long a call waits for a connection before
        :class:`~chargetracker.errors.StoreUnavailable`, s.
    connect_timeout:
        libpq connect timeout, s (unless the URL sets ``connect_timeout``).
    migrate:
        Apply pending schema migrations on open (default). With False the schema must
        already be current (for roles that may not create tables).
    series_retention_s:
        How long the per-commit ingest series is kept, s.
    clock:
        Wall clock in s since the epoch (injectable for tests).
    kinds:
        Plug-in telemetry kinds whose tables this store also holds. Their tables are
        created from the kinds' schemas when missing (``CREATE TABLE IF NOT EXISTS``,
        text ``COLLATE "C"``); the cell kind's tables come from the migrations.
    """

    dialect = q.POSTGRESQL

    def __init__(
        self,
        url: str,
        *,
        pool_min_size: int | None = None,
        pool_max_size: int | None = None,
        pool_timeout: float | None = None,
        connect_timeout: float = 5.0,
        migrate: bool | None = None,
        series_retention_s: float | None = None,
        clock: Callable[[], float] = time.time,
        kinds: Sequence[TelemetryKind] = (),
    ) -> None:
        self._extra_tables = self._register_kinds(kinds)
        conninfo, url_kw = split_url(url)
        opts: dict[str, Any] = {
            "pool_min_size": 1, "pool_max_size": 10, "pool_timeout": 10.0, "migrate": True,
            "series_retention_s": q.DEFAULT_SERIES_RETENTION_S, **url_kw,
        }
        given = {"pool_min_size": pool_min_size, "pool_max_size": pool_max_size,
                 "pool_timeout": pool_timeout, "migrate": migrate,
                 "series_retention_s": series_retention_s}
        opts.update({k: v for k, v in given.items() if v is not None})
        if not 0 <= int(opts["pool_min_size"]) <= int(opts["pool_max_size"]) or \
                int(opts["pool_max_size"]) < 1:
            raise ConfigError("need 0 <= pool_min_size <= pool_max_size and pool_max_size >= 1")
        self._url = url
        self._redacted = redact(url)
        self._series_retention_s = float(opts["series_retention_s"])
        self._pool_timeout = float(opts["pool_timeout"])
        self._clock = clock
        self._closed = False
        self._close_lock = threading.Lock()

        params = conninfo_to_dict(conninfo)
        connect_kw: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in params:
            connect_kw["connect_timeout"] = max(1, round(connect_timeout))
        if "application_name" not in params:
            connect_kw["application_name"] = "chargetracker"

        self._init_schema(conninfo, connect_kw, bool(opts["migrate"]))
        self._pool = ConnectionPool(
            conninfo, kwargs=connect_kw, min_size=int(opts["pool_min_size"]),
            max_size=int(opts["pool_max_size"]), timeout=self._pool_timeout,
            check=ConnectionPool.check_connection, open=False,
            # Reconnection backs off exponentially; giving up after a few pool timeouts
            # (a later call starts afresh) bounds how late the store notices a server
            # that is back after an outage.
            reconnect_timeout=min(300.0, max(5.0, 3 * self._pool_timeout)),
            name=f"chargetracker:{self._redacted}",
        )
        try:
            self._pool.open(wait=False)
        except psycopg.Error as exc:  # pragma: no cover - open(wait=False) only starts workers
            raise StoreUnavailable(f"cannot open pool for {self._redacted}: {exc}") from exc

    # -- lifecycle -------------------------------------------------------------------
    def _init_schema(self, conninfo: str, connect_kw: dict[str, Any], migrate: bool) -> None:
        try:
            conn = psycopg.connect(conninfo, **connect_kw)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL store {self._redacted}: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL store {self._redacted}: {exc}") from exc
        with conn, self._errors("initialising schema"):
            version = conn.info.server_version
            if version < MIN_SERVER_VERSION:
                raise StoreError(
                    f"PostgreSQL {version // 10000} at {self._redacted} is too old: ChargeTracker "
                    f"needs {MIN_SERVER_VERSION // 10000} or newer")
            if migrate:
                apply_migrations(conn)
                for table in self._extra_tables:
                    with conn.transaction():
                        for stmt in q.plugin_ddl(_D, table, collate=_D.text_collate):
                            conn.execute(stmt)
            else:
                check_migrated(conn)

    @property
    def url(self) -> str:
        """The URL this store was opened with (may hold a password: log :func:`redact` of it)."""
        return self._url

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self._redacted!r})"

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate psycopg exceptions at the edge."""
        try:
            yield
        except ChargeTrackerError:
            raise
        except PoolClosed as exc:
            raise StoreError(f"store {self._redacted} is closed") from exc
        except PoolTimeout as exc:
            raise StoreUnavailable(
                f"{what}: no connection to {self._redacted} within {self._pool_timeout:g} s "
                "(server unreachable, or every pooled connection busy)") from exc
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"{what} on {self._redacted}: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"{what} on {self._redacted}: {exc}") from exc

    @contextmanager
    def _connection(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection (autocommit; use ``conn.transaction()`` for more than one
        statement), with errors translated."""
        if self._closed:
            raise StoreError(f"store {self._redacted} is closed")
        with self._errors(what), self._pool.connection() as conn:
            yield conn

    def _create_tables(self, tables: Sequence[q.Table]) -> None:
        with self._connection("creating kind tables") as conn:
            for table in tables:
                with conn.transaction():
                    for stmt in q.plugin_ddl(_D, table, collate=_D.text_collate):
                        conn.execute(stmt)

    # -- helpers ---------------------------------------------------------------------
    def _rows(self, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._connection("query") as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def _frame(self, query: str, params: Sequence[Any] | None,
               schema: dict[str, pl.DataType]) -> pl.DataFrame:
        return _to_frame(self._rows(query, params), schema)

    def _ensure_partitions(self, conn: psycopg.Connection[Any], days: list[int]) -> None:
        """Create the day partitions that do not exist yet, each in a short transaction
        of its own (serialized between processes by an advisory lock)."""
        names = {partition_name(d): d for d in days}
        missing = [n for (n,) in conn.execute(_MISSING_RELATIONS, [list(names)])]
        for name in missing:
            lo = names[name] * PARTITION_S
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [PARTITION_LOCK_KEY])
                conn.execute(sql.SQL(
                    'CREATE TABLE IF NOT EXISTS {} PARTITION OF "measurements" '
                    "FOR VALUES FROM ({}) TO ({})").format(
                        sql.Identifier(name), sql.Literal(lo), sql.Literal(lo + PARTITION_S)))

    # -- writes ----------------------------------------------------------------------
    def commit(self, batch: CommitBatch) -> None:
        """Write one micro-batch in one transaction; on any error nothing is written.

        Same semantics as the DuckDB store (see :meth:`DuckDBStore.commit
        <chargetracker.stores.duckdb.DuckDBStore.commit>`): frames are checked first
        (:class:`~chargetracker.errors.SchemaError` before any write), steps / cycles /
        cells upserted by key, raw rows inserted unless (cell_id, ts) exists, alerts
        unless (ts, cell_id, rule, cycle) exists, dead letters appended, counters added,
        every checkpoint of the batch replaced -- all in one transaction.
        """
        now = float(self._clock())
        b = self._prepare(batch, now)
        days = _partition_days(b.measurements)
        with self._connection("commit") as conn:
            if days:
                self._ensure_partitions(conn, days)
            with conn.transaction():
                write_batch(conn, b, self._plugins, self._series_retention_s)

    def ack_alert(self, alert_id: int, *, by: str | None = None) -> bool:
        """Acknowledge an alert; False when no alert has that id. Acknowledging twice
        keeps the first acknowledgement."""
        with self._connection("acknowledging alert") as conn, conn.transaction():
            conn.execute(q.ack_alert(_D), [by, float(self._clock()), int(alert_id)])
            return bool(conn.execute(q.alert_exists(_D), [int(alert_id)]).fetchall())

    def prune_measurements(self, older_than_ts: float) -> int:
        """Delete raw measurements with ts < ``older_than_ts`` (s since epoch): day
        partitions entirely before it are dropped, the rest deleted. Returns rows removed."""
        horizon = float(older_than_ts)
        removed = 0
        with self._connection("pruning measurements") as conn, conn.transaction():
            floor = conn.execute(q.uncovered_floor()).fetchone()[0]  # type: ignore[index]
            whole = horizon if floor is None else min(horizon, float(floor))
            for (name,) in conn.execute(_PARTITIONS).fetchall():
                day = _partition_day(name)
                if day is None or (day + 1) * PARTITION_S > whole:
                    continue
                ident = sql.Identifier(name)
                removed += int(conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()[0])  # type: ignore[index]
                conn.execute(sql.SQL("DROP TABLE {}").format(ident))
            cur = conn.execute(q.prune_measurements(_D), [horizon])
            removed += max(cur.rowcount, 0)
            if removed:
                conn.execute(_STATS_REMOVE, [removed, removed])
        return removed

    def prune_dead_letters(self, received_before: float) -> int:
        """Delete dead letters received (wall s) before ``received_before``."""
        with self._connection("pruning dead letters") as conn:
            return max(conn.execute(q.prune_dead_letters(_D), [float(received_before)]).rowcount, 0)

    # -- reads -----------------------------------------------------------------------
    def cell(self, cell_id: str) -> dict[str, Any] | None:
        """Metadata, counts and latest cycle of one cell (one snapshot); None when unknown.
        Keys as :meth:`DuckDBStore.cell <chargetracker.stores.duckdb.DuckDBStore.cell>`."""
        with self._connection("reading cell") as conn, conn.transaction():
            conn.execute(_SNAPSHOT)
            meta = conn.execute(q.cell_row_query(_D), [cell_id]).fetchall()
            n_meas, first_ts, last_ts = conn.execute(
                q.cell_measurement_stats_query(_D), [cell_id]).fetchone()  # type: ignore[misc]
            n_steps = conn.execute(q.cell_step_count_query(_D), [cell_id]).fetchone()[0]  # type: ignore[index]
            n_cycles, n_closed = conn.execute(
                q.cell_cycle_stats_query(_D), [cell_id]).fetchone()  # type: ignore[misc]
            latest = conn.execute(q.latest_cycle_query(_D), [cell_id]).fetchall()
        return q.cell_dict(cell_id, meta[0] if meta else None, n_measurements=n_meas,
                           first_ts=first_ts, last_ts=last_ts, n_steps=n_steps,
                           n_cycles=n_cycles, n_closed=n_closed, latest=_to_frame(latest, CYCLE_SCHEMA).to_dicts()[0] if latest else None)

    def ingest_stats(self) -> dict[str, Any]:
        """Ingest counters and health (one snapshot); keys as
        :meth:`DuckDBStore.ingest_stats <chargetracker.stores.duckdb.DuckDBStore.ingest_stats>`.
        ``measurements_stored`` and ``newest_ts`` come from the exact running totals the
        commits keep (no scan of the raw table)."""
        now = float(self._clock())
        with self._connection("reading ingest stats") as conn, conn.transaction():
            conn.execute(_SNAPSHOT)
            counters = conn.execute(q.COUNTERS_QUERY).fetchall()
            n_meas, newest_ts = conn.execute(_STATS_READ).fetchone()  # type: ignore[misc]
            n_dead = conn.execute(q.DEAD_LETTER_COUNT_QUERY).fetchone()[0]  # type: ignore[index]
            n_cells = conn.execute(*q.cells_count_query(_D)).fetchone()[0]  # type: ignore[index]
            acc_window, _ = conn.execute(
                q.series_window_query(_D), [now - q.RATE_WINDOW_S]).fetchone()  # type: ignore[misc]
            first_wall = conn.execute(q.first_series_wall_query()).fetchone()[0]  # type: ignore[index]
            last = conn.execute(q.get_meta(_D), ["last_commit_wall"]).fetchall()
        return q.ingest_stats_dict(
            counters, newest_ts=newest_ts, n_measurements=n_meas, n_dead=n_dead,
            n_cells=n_cells, accepted_in_window=acc_window, first_wall=first_wall,
            last_commit=last[0][0] if last else None, now=now)

    # -- PostgreSQL specifics --------------------------------------------------------
    def partitions(self) -> list[str]:
        """Names of the raw measurement partitions (``measurements_pYYYYMMDD`` and
        ``measurements_default``), sorted."""
        return [n for (n,) in self._rows(_PARTITIONS)]

    def schema_version(self) -> int:
        """Highest schema migration applied to the database."""
        return int(self._rows('SELECT coalesce(max("version"), 0) FROM "schema_migrations"')[0][0])


def _to_frame(rows: list[tuple[Any, ...]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(rows, schema=schema, orient="row")
