"""Reads of daily pack records and alarm predictions, writes outside the pack pipeline
(HTTP predictions, the batch inbox) and the inbox's ledger.

The tables are the pack kind's (:mod:`chargetracker.kinds.pack`): their DDL and upserts
are derived from its TableSpecs by the generic store machinery (:mod:`.sql.ddl`), the
same layout a store opened with the kind creates and its pipeline commits to. One class,
:class:`PackStore`, over two backends with the same SQL:

* DuckDB (embedded): a file path or ``duckdb:///...`` URL. In one process DuckDB shares
  one database instance per file, so this store and the cell store of the same file
  coexist; writes here are serialized by this store's own lock.
* PostgreSQL (scale-out): ``postgresql://...``, through a small psycopg pool.

Tables (every value bound as a parameter, never formatted into SQL):

``pack_records``        (vin, date) primary key; the six signals, label, source, updated_at
``alarm_predictions``   (vin, date, model_version) primary key; probability, alarm,
                        threshold, source (batch | http | stream), request_id, updated_at
``alarm_inbox_files``   file name + SHA-256 of each scored inbox file (restart-safe)

``updated_at`` (read as ``ingested_at`` / ``created_at``) is s since the epoch (UTC,
float), like ``ts`` everywhere in ChargeTracker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import polars as pl

from ..errors import ConfigError, StoreError, StoreUnavailable
from ..kinds.pack import ALARM_PREDICTIONS, PACK_RECORDS, SOURCES
from ..ml.records import SIGNALS
from .sql.ddl import (
    DUCKDB,
    POSTGRESQL,
    Dialect,
    Table,
    column_list,
    quote,
    table_ddl,
    table_from_spec,
)

__all__ = ["PREDICTION_COLUMNS", "PackStore", "open_pack_store"]

PREDICTION_COLUMNS = ("vin", "date", "probability", "alarm", "threshold", "model_version",
                      "source", "request_id", "created_at")
RECORD_COLUMNS = ("vin", "date", *SIGNALS, "label", "source", "ingested_at")

#: The pack kind's tables, laid out by the generic DDL (``updated_at``, the wall s of the
#: latest write, is what the reads call ``created_at`` / ``ingested_at``).
_RECORDS = table_from_spec(PACK_RECORDS)
_PREDICTIONS = table_from_spec(ALARM_PREDICTIONS)
_INBOX_DDL = (
    "CREATE TABLE IF NOT EXISTS alarm_inbox_files (name VARCHAR(1000) NOT NULL, "
    "sha256 VARCHAR(64) NOT NULL, status VARCHAR(16) NOT NULL, predictions BIGINT NOT NULL, "
    "reason VARCHAR(2000), processed_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (name, sha256))")
_INDEX_DDL = "CREATE INDEX IF NOT EXISTS alarm_predictions_date ON alarm_predictions (date)"


def _ddl(dialect: Dialect) -> list[str]:
    collate = dialect.text_collate
    return [*table_ddl(dialect, _RECORDS, collate=collate),
            *table_ddl(dialect, _PREDICTIONS, collate=collate), _INDEX_DDL, _INBOX_DDL]


def _upsert_values(t: Table) -> str:
    """INSERT ... VALUES (?, ...) ON CONFLICT (key) DO UPDATE of a layout (derived, so
    it follows the kind's schema)."""
    cols = t.insert_columns
    rest = [c for c in cols if c not in t.key]
    sets = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in rest)
    return (f"INSERT INTO {quote(t.name)} ({column_list(cols)}) VALUES "  # noqa: S608 - constant identifiers
            f"({', '.join('?' for _ in cols)}) ON CONFLICT ({column_list(t.key)}) DO UPDATE SET {sets}")


_UPSERT_RECORDS = _upsert_values(_RECORDS)
_UPSERT_PREDICTIONS = _upsert_values(_PREDICTIONS)
_SELECT_PREDICTIONS = ", ".join(
    "updated_at AS created_at" if c == "created_at" else c for c in PREDICTION_COLUMNS)
_SELECT_RECORDS = ", ".join(
    "updated_at AS ingested_at" if c == "ingested_at" else c for c in RECORD_COLUMNS)

_PRED_SCHEMA: dict[str, pl.DataType] = {
    "vin": pl.Utf8(), "date": pl.Date(), "probability": pl.Float64(), "alarm": pl.Boolean(),
    "threshold": pl.Float64(), "model_version": pl.Utf8(), "source": pl.Utf8(),
    "request_id": pl.Utf8(), "created_at": pl.Float64(),
}
_REC_SCHEMA: dict[str, pl.DataType] = {
    "vin": pl.Utf8(), "date": pl.Date(), **{s: pl.Float64() for s in SIGNALS},
    "label": pl.Int8(), "source": pl.Utf8(), "ingested_at": pl.Float64(),
}


class _Duck:
    dialect = "duckdb"
    sql_dialect = DUCKDB

    def __init__(self, path: str, read_only: bool) -> None:
        import duckdb

        self._duckdb = duckdb
        try:
            self.con = duckdb.connect(path, read_only=read_only)
        except duckdb.Error as exc:
            raise StoreUnavailable(f"cannot open DuckDB file {path!r}: {exc}") from exc
        self.lock = threading.RLock()

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        with self.lock:
            cur = self.con.cursor()
            try:
                yield cur
            except self._duckdb.Error as exc:
                raise StoreError(f"pack store: {exc}") from exc
            finally:
                cur.close()

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.cursor() as cur:
            cur.execute(sql, list(params))
            return cur.fetchall() if cur.description else []

    def many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        with self.cursor() as cur:
            cur.execute("BEGIN")
            try:
                cur.executemany(sql, rows)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def frame(self, sql: str, frame: pl.DataFrame) -> None:
        """Run ``sql`` (an INSERT whose ``VALUES (?, ...)`` becomes ``SELECT * FROM`` the
        frame): one set-based statement over the frame's Arrow buffers, not row by row."""
        if frame.height == 0:
            return
        if frame.height <= 64:
            # A few rows (one HTTP prediction): a prepared INSERT is cheaper than
            # registering an Arrow view.
            self.many(sql, frame.rows())
            return
        head, _, tail = sql.partition(" VALUES (")
        tail = tail.partition(")")[2]
        stmt = head + " SELECT * FROM _pack_src" + tail  # noqa: S608 - from the constant statements
        with self.cursor() as cur:
            cur.register("_pack_src", frame.to_arrow())
            try:
                cur.execute(stmt)
            finally:
                cur.unregister("_pack_src")

    def close(self) -> None:
        self.con.close()


class _Pg:
    dialect = "postgresql"
    sql_dialect = POSTGRESQL

    def __init__(self, url: str) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise ConfigError("the PostgreSQL pack store needs the 'scale' extra "
                              "(psycopg, psycopg-pool)") from exc
        self._psycopg = psycopg
        conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.pool = ConnectionPool(conninfo, min_size=1, max_size=4, timeout=10.0, open=False,
                                   kwargs={"autocommit": True})
        try:
            self.pool.open(wait=True, timeout=10.0)
        except Exception as exc:
            self.pool.close()
            raise StoreUnavailable(f"cannot reach PostgreSQL for the pack store: {exc}") from exc

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            with self.pool.connection() as conn, conn.cursor() as cur:
                cur.execute(self._sql(sql), list(params))
                return cur.fetchall() if cur.description else []
        except self._psycopg.OperationalError as exc:
            raise StoreUnavailable(f"pack store: {exc}") from exc
        except self._psycopg.Error as exc:
            raise StoreError(f"pack store: {exc}") from exc

    def many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        try:
            with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                cur.executemany(self._sql(sql), rows)
        except self._psycopg.OperationalError as exc:
            raise StoreUnavailable(f"pack store: {exc}") from exc
        except self._psycopg.Error as exc:
            raise StoreError(f"pack store: {exc}") from exc

    def frame(self, sql: str, frame: pl.DataFrame) -> None:
        self.many(sql, frame.rows())

    def close(self) -> None:
        self.pool.close()


class PackStore:
    """Pack records, predictions and inbox ledger on DuckDB or PostgreSQL."""

    def __init__(self, backend: _Duck | _Pg, *, clock: Callable[[], float] = time.time) -> None:
        self._b = backend
        self._clock = clock
        _upgrade_legacy(self._b)
        for ddl in _ddl(backend.sql_dialect):
            self._b.run(ddl)

    @property
    def dialect(self) -> str:
        return self._b.dialect

    def close(self) -> None:
        self._b.close()

    def __enter__(self) -> PackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ------------------------------------------------------------------------
    def upsert_records(self, records: pl.DataFrame, *, source: str = "http") -> int:
        """Validated daily records (:data:`~chargetracker.ml.records.PACK_SCHEMA`); a
        (vin, date) already stored is replaced. Returns rows written."""
        _check_source(source)
        now = self._clock()
        frame = records.select("vin", "date", *SIGNALS, pl.col("label").cast(pl.Int64)).with_columns(
            pl.lit(source).alias("source"), pl.lit(now).alias("updated_at"))
        self._b.frame(_UPSERT_RECORDS, frame)
        return frame.height

    def upsert_predictions(self, predictions: pl.DataFrame, *, source: str,
                           request_id: str | None = None) -> int:
        """Predictions (vin, date, probability, alarm, threshold, model_version); one row
        per (vin, date, model_version), the latest scoring wins. Returns rows written."""
        _check_source(source)
        now = self._clock()
        frame = predictions.select("vin", "date", "probability", "alarm", "threshold",
                                   "model_version").with_columns(
            pl.lit(source).alias("source"), pl.lit(request_id, pl.Utf8).alias("request_id"),
            pl.lit(now).alias("updated_at"))
        self._b.frame(_UPSERT_PREDICTIONS, frame)
        return frame.height

    def inbox_seen(self, name: str, sha256: str) -> bool:
        rows = self._b.run("SELECT 1 FROM alarm_inbox_files WHERE name = ? AND sha256 = ?",
                           (name, sha256))
        return bool(rows)

    def inbox_record(self, name: str, sha256: str, *, status: str, predictions: int,
                     reason: str | None = None) -> None:
        self._b.run("INSERT INTO alarm_inbox_files (name, sha256, status, predictions, reason, "
                    "processed_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, sha256) DO "
                    "UPDATE SET status = EXCLUDED.status, predictions = EXCLUDED.predictions, "
                    "reason = EXCLUDED.reason, processed_at = EXCLUDED.processed_at",
                    (name, sha256, status, int(predictions), reason, self._clock()))

    # -- reads -------------------------------------------------------------------------
    def predictions(self, *, vin: str | None = None, start: Any = None, end: Any = None,
                    alarm_only: bool = False, model_version: str | None = None,
                    limit: int = 100, offset: int = 0) -> pl.DataFrame:
        """Stored predictions, newest day first (then VIN); dates inclusive."""
        where, params = _filters(vin=vin, start=start, end=end, model_version=model_version)
        if alarm_only:
            where.append("alarm")
        sql = (f"SELECT {_SELECT_PREDICTIONS} FROM alarm_predictions"  # noqa: S608
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY date DESC, vin, model_version LIMIT ? OFFSET ?")
        rows = self._b.run(sql, (*params, int(limit), int(offset)))
        return pl.DataFrame(rows, schema=_PRED_SCHEMA, orient="row")

    def count_predictions(self, *, vin: str | None = None, start: Any = None, end: Any = None,
                          alarm_only: bool = False) -> int:
        where, params = _filters(vin=vin, start=start, end=end, model_version=None)
        if alarm_only:
            where.append("alarm")
        sql = "SELECT count(*) FROM alarm_predictions" + (  # noqa: S608
            " WHERE " + " AND ".join(where) if where else "")
        return int(self._b.run(sql, params)[0][0])

    def latest_predictions(self, *, limit: int = 100) -> pl.DataFrame:
        """Each VIN's most recent prediction day (newest scoring), highest probability
        first: the fleet ranking."""
        sql = (f"SELECT {_SELECT_PREDICTIONS} FROM (SELECT *, ROW_NUMBER() OVER "  # noqa: S608
               "(PARTITION BY vin ORDER BY date DESC, updated_at DESC) AS rn FROM "
               "alarm_predictions) AS ranked WHERE rn = 1 "
               "ORDER BY probability DESC, vin LIMIT ?")
        return pl.DataFrame(self._b.run(sql, (int(limit),)), schema=_PRED_SCHEMA, orient="row")

    def records(self, *, vin: str | None = None, start: Any = None, end: Any = None,
                limit: int = 10_000) -> pl.DataFrame:
        """Stored daily records, oldest first."""
        where, params = _filters(vin=vin, start=start, end=end, model_version=None)
        sql = (f"SELECT {_SELECT_RECORDS} FROM pack_records"  # noqa: S608
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY vin, date LIMIT ?")
        return pl.DataFrame(self._b.run(sql, (*params, int(limit))), schema=_REC_SCHEMA,
                            orient="row")

    def inbox_files(self) -> pl.DataFrame:
        rows = self._b.run("SELECT name, sha256, status, predictions, reason, processed_at "
                           "FROM alarm_inbox_files ORDER BY processed_at")
        return pl.DataFrame(rows, schema=["name", "sha256", "status", "predictions", "reason",
                                          "processed_at"], orient="row")


#: Tables of the first layout (before the pack kind): their write-time column.
_LEGACY = (("pack_records", "ingested_at"), ("alarm_predictions", "created_at"))


def _upgrade_legacy(b: _Duck | _Pg) -> None:
    """Bring tables of the first layout (``ingested_at`` / ``created_at`` NOT NULL, no
    ``updated_at``) to the kind's: add ``updated_at`` (copied from the old column, which
    becomes nullable and is no longer written). DuckDB alters no table an index depends
    on, so the date index is dropped first (the DDL recreates it)."""
    for table, old in _LEGACY:
        cols = {r[0] for r in b.run(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", (table,))}
        if old not in cols or "updated_at" in cols:
            continue
        if table == "alarm_predictions":
            b.run("DROP INDEX IF EXISTS alarm_predictions_date")
        # Identifiers from the constant _LEGACY pairs above.
        b.run(f"ALTER TABLE {table} ADD COLUMN updated_at DOUBLE PRECISION")  # noqa: S608
        b.run(f"UPDATE {table} SET updated_at = {old}")  # noqa: S608
        b.run(f"ALTER TABLE {table} ALTER COLUMN {old} DROP NOT NULL")  # noqa: S608


def _filters(*, vin: str | None, start: Any, end: Any,
             model_version: str | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if vin is not None:
        where.append("vin = ?")
        params.append(vin)
    if start is not None:
        where.append("date >= ?")
        params.append(start)
    if end is not None:
        where.append("date <= ?")
        params.append(end)
    if model_version is not None:
        where.append("model_version = ?")
        params.append(model_version)
    return where, params


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise ConfigError(f"prediction source must be one of {', '.join(SOURCES)}, not {source!r}")


def open_pack_store(url: str, *, read_only: bool = False,
                    clock: Callable[[], float] = time.time) -> PackStore:
    """The pack store of a store URL (the same URLs as ``--store``)."""
    from .url import parse_duckdb_url

    u = url.strip()
    if u.startswith(("postgresql:", "postgres:", "postgresql+psycopg:")):
        return PackStore(_Pg(u), clock=clock)
    if u.startswith("duckdb:") or u == ":memory:" or u.endswith((".duckdb", ".db")):
        path, kw = parse_duckdb_url(u)
        return PackStore(_Duck(path, bool(kw.get("read_only", read_only))), clock=clock)
    raise ConfigError(f"unsupported store URL for pack records: {u[:80]!r}")
