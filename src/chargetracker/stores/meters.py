"""Meter tables on DuckDB or PostgreSQL: meters, days, thresholds, alerts, readings.

One small class over both databases (the SQL is the common subset; placeholders are
written ``?`` and translated for psycopg). Every value travels as a parameter or as a
registered Arrow relation (DuckDB) / ``COPY`` stream (PostgreSQL); no value is ever
formatted into SQL. Tables are created on open (``CREATE TABLE IF NOT EXISTS``), so the
store works beside the cell tables in the same database file or server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import polars as pl

from ..errors import ConfigError, NotFound, StoreError, StoreUnavailable
from ..meters.schema import (
    ALERT_SCHEMA,
    DAY_SCHEMA,
    DEAD_LETTER_SCHEMA,
    METER_SCHEMA,
    THRESHOLD_SCHEMA,
)
from .url import parse_duckdb_url, redact

__all__ = ["MeterStore", "open_meter_store"]

READING_COLUMNS: dict[str, pl.DataType] = {"meter_id": pl.Utf8(), "ts": pl.Float64(),
                                           "power_w": pl.Float64(), "energy_wh": pl.Float64()}
ALERT_STORED = {**ALERT_SCHEMA, "acked_ts": pl.Float64()}
DEAD_STORED = {**DEAD_LETTER_SCHEMA, "received_ts": pl.Float64()}

_SQL_TYPES = {pl.Utf8: "TEXT", pl.Float64: "DOUBLE PRECISION", pl.Int64: "BIGINT", pl.Date: "DATE"}

#: table -> (columns, primary key)
TABLES: dict[str, tuple[dict[str, pl.DataType], tuple[str, ...]]] = {
    "meter_meters": (METER_SCHEMA, ("meter_id",)),
    "meter_days": (DAY_SCHEMA, ("meter_id", "date")),
    "meter_thresholds": (THRESHOLD_SCHEMA, ("meter_id",)),
    "meter_alerts": (ALERT_STORED, ("meter_id", "start_ts")),
    "meter_readings": (READING_COLUMNS, ("meter_id", "ts")),
    "meter_dead_letters": (DEAD_STORED, ()),
}


def _ddl(table: str) -> str:
    cols, pk = TABLES[table]
    parts = [f"{c} {_SQL_TYPES[type(t)]}" for c, t in cols.items()]
    if pk:
        parts.append(f"PRIMARY KEY ({', '.join(pk)})")
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(parts)})"


class MeterStore:
    """Meter tables in one database; thread-safe (one connection behind a lock)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._redacted = redact(url)
        if url.startswith(("postgresql", "postgres")):
            self.kind = "postgresql"
            try:
                import psycopg
            except ImportError as exc:  # pragma: no cover - needs the scale extra
                raise ConfigError("PostgreSQL needs the 'scale' extra (psycopg)") from exc
            conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
            try:
                self._conn: Any = psycopg.connect(conninfo, autocommit=True)
            except psycopg.Error as exc:
                raise StoreUnavailable(f"cannot connect to {self._redacted}: {exc}") from exc
            self._db_error: type[Exception] = psycopg.Error
        else:
            import duckdb

            self.kind = "duckdb"
            path, _ = parse_duckdb_url(url)
            try:
                self._conn = duckdb.connect(path)
            except duckdb.Error as exc:
                raise StoreUnavailable(f"cannot open {self._redacted}: {exc}") from exc
            self._db_error = duckdb.Error
        for t in TABLES:
            self._exec(_ddl(t))
        blob = "BYTEA" if self.kind == "postgresql" else "BLOB"
        self._exec(f"CREATE TABLE IF NOT EXISTS meter_checkpoints (name TEXT PRIMARY KEY, state {blob}, "
                   "updated_ts DOUBLE PRECISION)")
        self._exec("CREATE INDEX IF NOT EXISTS meter_alerts_start ON meter_alerts (start_ts)")

    # -- plumbing ------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> MeterStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.kind == "postgresql" else sql

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except self._db_error as exc:
            raise StoreError(f"{what} failed on {self._redacted}: {exc}") from exc

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._lock, self._errors(sql.split("(")[0][:60]):
            self._conn.execute(self._sql(sql), list(params))

    def _query(self, sql: str, params: Sequence[Any], schema: dict[str, pl.DataType]) -> pl.DataFrame:
        with self._lock, self._errors("query"):
            cur = self._conn.execute(self._sql(sql), list(params))
            rows = cur.fetchall()
        return pl.DataFrame(rows, schema=schema, orient="row")

    def _upsert(self, table: str, frame: pl.DataFrame, *, update: bool = True) -> int:
        cols, pk = TABLES[table]
        if frame.height == 0:
            return 0
        df = frame.select([pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c)
                           for c, t in cols.items()])
        if pk:
            df = df.unique(subset=list(pk), keep="last", maintain_order=True)
        names = ", ".join(cols)
        keep = [c for c in cols if c not in pk and c != "acked_ts"]
        if not pk:
            conflict = ""
        elif update and keep:
            conflict = (f" ON CONFLICT ({', '.join(pk)}) DO UPDATE SET "
                        + ", ".join(f"{c} = excluded.{c}" for c in keep))
        else:
            conflict = f" ON CONFLICT ({', '.join(pk)}) DO NOTHING"
        with self._lock, self._errors(f"write {table}"):
            if self.kind == "duckdb":
                self._conn.register("__incoming", df.to_arrow())
                try:
                    self._conn.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM __incoming{conflict}")  # noqa: S608 - constant identifiers, values are parameters
                finally:
                    self._conn.unregister("__incoming")
            else:
                with self._conn.transaction():
                    self._conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS __in_{table} "
                                       f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
                    with self._conn.cursor() as cur, cur.copy(
                            f"COPY __in_{table} ({names}) FROM STDIN") as cp:
                        for row in df.iter_rows():
                            cp.write_row(row)
                    self._conn.execute(f"INSERT INTO {table} ({names}) SELECT {names} "  # noqa: S608 - constant identifiers, values are parameters
                                       f"FROM __in_{table}{conflict}")
        return df.height

    # -- writes --------------------------------------------------------------------------------
    def put_meters(self, meters: pl.DataFrame) -> int:
        return self._upsert("meter_meters", meters)

    def put_days(self, days: pl.DataFrame) -> int:
        """Upsert meter days; a closed day is never replaced by an open snapshot."""
        if days.height == 0:
            return 0
        opened = days.filter(pl.col("status") == "open")
        if opened.height:
            # Replays re-send open snapshots of days a later batch already closed.
            closed = self._closed_keys(opened.select("meter_id", "date").unique())
            if closed.height:
                days = pl.concat([days.filter(pl.col("status") != "open"),
                                  opened.join(closed, on=["meter_id", "date"], how="anti")])
        return self._upsert("meter_days", days)

    def _closed_keys(self, keys: pl.DataFrame) -> pl.DataFrame:
        lo, hi = keys["date"].min(), keys["date"].max()
        got = self._query("SELECT meter_id, date FROM meter_days WHERE status = ? AND date >= ? AND date <= ?",  # noqa: S608 - constant identifiers, values are parameters
                          ["closed", lo, hi], {"meter_id": pl.Utf8(), "date": pl.Date()})
        return got.join(keys, on=["meter_id", "date"], how="semi")

    def put_thresholds(self, thresholds: pl.DataFrame) -> int:
        return self._upsert("meter_thresholds", thresholds)

    def put_alerts(self, alerts: pl.DataFrame) -> int:
        return self._upsert("meter_alerts", alerts)

    def put_readings(self, readings: pl.DataFrame) -> int:
        return self._upsert("meter_readings", readings, update=False)

    def put_dead_letters(self, rejected: pl.DataFrame) -> int:
        return self._upsert("meter_dead_letters", rejected.with_columns(
            pl.lit(time.time()).alias("received_ts")))

    def ack_alert(self, meter_id: str, start_ts: float, *, at: float | None = None) -> pl.DataFrame:
        found = self.alerts(meter_id=meter_id, start_ts=start_ts)
        if found.height == 0:
            raise NotFound(f"no alert of meter {meter_id!r} starting at {start_ts}")
        self._exec("UPDATE meter_alerts SET acked_ts = ? WHERE meter_id = ? AND start_ts = ?",
                   [time.time() if at is None else at, meter_id, start_ts])
        return self.alerts(meter_id=meter_id, start_ts=start_ts)

    def save_checkpoint(self, name: str, state: bytes) -> None:
        """The meter engine's state (``MeterState.to_bytes()``) under ``name``."""
        self._exec("INSERT INTO meter_checkpoints (name, state, updated_ts) VALUES (?, ?, ?) "
                   "ON CONFLICT (name) DO UPDATE SET state = excluded.state, "
                   "updated_ts = excluded.updated_ts", [name, state, time.time()])

    def load_checkpoint(self, name: str) -> bytes | None:
        with self._lock, self._errors("load checkpoint"):
            row = self._conn.execute(self._sql("SELECT state FROM meter_checkpoints WHERE name = ?"),
                                     [name]).fetchone()
        return None if row is None else bytes(row[0])

    def prune_readings(self, before_ts: float) -> None:
        self._exec("DELETE FROM meter_readings WHERE ts < ?", [before_ts])

    # -- reads ---------------------------------------------------------------------------------
    @staticmethod
    def _where(filters: list[tuple[str, Any]]) -> tuple[str, list[Any]]:
        conds = [c for c, v in filters if v is not None]
        params = [v for _, v in filters if v is not None]
        return (" WHERE " + " AND ".join(conds)) if conds else "", params

    def meters(self, *, house_id: str | None = None, zip_code: str | None = None,
               appliance: str | None = None, meter_id: str | None = None) -> pl.DataFrame:
        w, p = self._where([("house_id = ?", house_id), ("zip = ?", zip_code),
                            ("appliance = ?", appliance), ("meter_id = ?", meter_id)])
        return self._query(f"SELECT {', '.join(METER_SCHEMA)} FROM meter_meters{w} ORDER BY meter_id",  # noqa: S608 - constant identifiers, values are parameters
                           p, METER_SCHEMA)

    def houses(self, *, zip_code: str | None = None) -> pl.DataFrame:
        w, p = self._where([("zip = ?", zip_code)])
        schema = {"house_id": pl.Utf8(), "zip": pl.Utf8(), "timezone": pl.Utf8(), "n_meters": pl.Int64()}
        return self._query("SELECT house_id, MIN(zip), MIN(timezone), COUNT(*) FROM meter_meters"  # noqa: S608 - constant identifiers, values are parameters
                           f"{w} GROUP BY house_id ORDER BY house_id", p, schema)

    def days(self, *, meter_ids: Sequence[str] | None = None, house_id: str | None = None,
             zip_code: str | None = None, start: Any = None, end: Any = None) -> pl.DataFrame:
        """Meter days in ``[start, end]`` (dates), optionally of some meters, a house or a zip."""
        cols = ", ".join(f"d.{c}" for c in DAY_SCHEMA)
        filters: list[tuple[str, Any]] = [("d.date >= ?", start), ("d.date <= ?", end),
                                          ("m.house_id = ?", house_id), ("m.zip = ?", zip_code)]
        w, p = self._where(filters)
        sql = f"SELECT {cols} FROM meter_days d LEFT JOIN meter_meters m ON m.meter_id = d.meter_id{w}"  # noqa: S608 - constant identifiers, values are parameters
        out = self._query(sql + " ORDER BY d.meter_id, d.date", p, DAY_SCHEMA)
        if meter_ids is not None:
            out = out.filter(pl.col("meter_id").is_in(list(meter_ids)))
        return out

    def thresholds(self, *, meter_id: str | None = None) -> pl.DataFrame:
        w, p = self._where([("meter_id = ?", meter_id)])
        return self._query(f"SELECT {', '.join(THRESHOLD_SCHEMA)} FROM meter_thresholds{w} "  # noqa: S608 - constant identifiers, values are parameters
                           "ORDER BY meter_id", p, THRESHOLD_SCHEMA)

    def alerts(self, *, meter_id: str | None = None, house_id: str | None = None,
               zip_code: str | None = None, status: str | None = None, acked: bool | None = None,
               since_ts: float | None = None, start_ts: float | None = None,
               limit: int = 1000) -> pl.DataFrame:
        filters: list[tuple[str, Any]] = [
            ("meter_id = ?", meter_id), ("house_id = ?", house_id), ("zip = ?", zip_code),
            ("status = ?", status), ("start_ts >= ?", since_ts), ("start_ts = ?", start_ts)]
        w, p = self._where(filters)
        if acked is not None:
            w += (" AND " if w else " WHERE ") + ("acked_ts IS NOT NULL" if acked else "acked_ts IS NULL")
        return self._query(f"SELECT {', '.join(ALERT_STORED)} FROM meter_alerts{w} "  # noqa: S608 - constant identifiers, values are parameters
                           "ORDER BY start_ts DESC, meter_id LIMIT ?", [*p, int(limit)], ALERT_STORED)

    def readings(self, meter_id: str, *, start_ts: float | None = None, end_ts: float | None = None,
                 limit: int = 100_000) -> pl.DataFrame:
        w, p = self._where([("meter_id = ?", meter_id), ("ts >= ?", start_ts), ("ts <= ?", end_ts)])
        out = self._query(f"SELECT meter_id, ts, power_w, energy_wh FROM meter_readings{w} "  # noqa: S608 - constant identifiers, values are parameters
                          "ORDER BY ts DESC LIMIT ?", [*p, int(limit)], READING_COLUMNS)
        return out.reverse()

    def readings_between(self, start_ts: float, end_ts: float) -> pl.DataFrame:
        """Every meter's readings in ``(start_ts, end_ts]`` (the threshold window)."""
        return self._query("SELECT meter_id, ts, power_w, energy_wh FROM meter_readings "
                           "WHERE ts > ? AND ts <= ? ORDER BY meter_id, ts", [start_ts, end_ts],
                           READING_COLUMNS)

    def dead_letters(self, *, limit: int = 1000) -> pl.DataFrame:
        return self._query(f"SELECT {', '.join(DEAD_STORED)} FROM meter_dead_letters "  # noqa: S608 - constant identifiers, values are parameters
                           "ORDER BY received_ts DESC LIMIT ?", [int(limit)], DEAD_STORED)


def open_meter_store(url: str) -> MeterStore:
    return MeterStore(url)
