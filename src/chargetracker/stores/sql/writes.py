"""Write statements of the relational stores: upserts by key, insert-if-absent, appends,
checkpoints, counters. ``source`` arguments are relation names chosen by the store (a
registered view or a staging table), never user input; values are bound parameters."""

from __future__ import annotations

from ...schema import DEAD_LETTER_SCHEMA
from ...vocabulary import ALERT_KEY, ALERT_SCHEMA
from .ddl import ALERTS, CELLS, Dialect, Table, column_list, quote


def upsert_from(t: Table, source: str) -> str:
    """INSERT ... SELECT ... FROM ``source`` ON CONFLICT (key) DO UPDATE (last write wins).

    ``source`` is a relation name chosen by the store (never user input).
    """
    cols = column_list(t.insert_columns)
    rest = [c for c in t.insert_columns if c not in t.key]
    sets = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in rest)
    return (
        f"INSERT INTO {quote(t.name)} ({cols}) SELECT {cols} FROM {source} "  # noqa: S608 - constant identifiers
        f"ON CONFLICT ({column_list(t.key)}) DO UPDATE SET {sets}"
    )


def replace_from(t: Table, source: str) -> tuple[str, str]:
    """The two statements of an upsert by delete-then-insert (last write wins), for
    DuckDB: ``DELETE`` the stored rows whose key is in ``source``, then ``INSERT`` all of
    ``source``. Same rows as :func:`upsert_from` (every insert column is replaced), at a
    fraction of the cost of DuckDB's ``ON CONFLICT DO UPDATE`` (RESULTS.md 2026-12-08).
    ``source`` must be free of duplicate keys; run both in one transaction."""
    cols = column_list(t.insert_columns)
    same = " AND ".join(f"{quote(t.name)}.{quote(k)} = s.{quote(k)}" for k in t.key)
    return (f"DELETE FROM {quote(t.name)} USING {source} AS s WHERE {same}",  # noqa: S608 - constant identifiers
            f"INSERT INTO {quote(t.name)} ({cols}) SELECT {cols} FROM {source}")  # noqa: S608


def insert_ignore_from(t: Table, source: str) -> str:
    """INSERT ... SELECT ... ON CONFLICT DO NOTHING: raw measurements on a store whose
    dialect has ``measurements_pk`` (PostgreSQL); replays are no-ops."""
    cols = column_list(t.insert_columns)
    return (
        f"INSERT INTO {quote(t.name)} ({cols}) SELECT {cols} FROM {source} "  # noqa: S608 - constant identifiers
        f"ON CONFLICT DO NOTHING"
    )


def newest_stored(d: Dialect, t: Table, column: str) -> str:
    """The newest stored ``column`` value at or after the placeholder (NULL when none):
    only the row groups at the time front are read (zone maps skip the rest)."""
    c = quote(column)
    return f"SELECT max({c}) FROM {quote(t.name)} WHERE {c} >= {d.ph}"  # noqa: S608 - constant identifiers


def insert_new_anti_join_from(d: Dialect, t: Table, source: str,
                              bounded: tuple[str, ...], upto: str | None = None) -> str:
    """Insert the rows of ``source`` whose key is not stored yet, by an anti-join, for a
    table without a primary-key index (DuckDB raw records: the index makes bulk inserts
    ~5x costlier). The existing rows compared against are restricted to the batch's
    ``[min, max]`` of each ``bounded`` key column (two parameters each, in order; zone
    maps skip the rest). With ``upto`` (a bounded column), only rows with ``upto`` at or
    below a first parameter take part: the newest stored value, above which rows go
    through :func:`insert_after_from` instead, so on a stream the anti-join stays small
    however large the table grows. ``source`` must be free of duplicate keys and the
    caller must hold the store's only write lock."""
    names = t.insert_columns
    within = " AND ".join(f"{quote(c)} >= {d.ph} AND {quote(c)} <= {d.ph}" for c in bounded)
    existing = (f"(SELECT {column_list(t.key)} FROM {quote(t.name)}"  # noqa: S608 - constant identifiers
                + (f" WHERE {within}" if within else "") + ")")
    same = " AND ".join(f"e.{quote(k)} = s.{quote(k)}" for k in t.key)
    first = f"s.{quote(upto)} <= {d.ph} AND " if upto else ""
    return (f"INSERT INTO {quote(t.name)} ({column_list(names)}) SELECT {column_list(names, 's.')} "  # noqa: S608
            f"FROM {source} AS s WHERE {first}NOT EXISTS (SELECT 1 FROM {existing} AS e WHERE {same})")


def insert_after_from(d: Dialect, t: Table, column: str, source: str) -> str:
    """Insert the rows of ``source`` whose ``column`` is above the placeholder (the newest
    stored value, so none of them can be stored already); beside
    :func:`insert_new_anti_join_from` with ``upto``."""
    names = t.insert_columns
    return (f"INSERT INTO {quote(t.name)} ({column_list(names)}) SELECT {column_list(names, 's.')} "  # noqa: S608
            f"FROM {source} AS s WHERE s.{quote(column)} > {d.ph}")


def plugin_write_from(t: Table, mode: str, source: str) -> str:
    """The write of a plug-in table by its spec's mode (the table has its key as primary
    key in every backend)."""
    if mode == "upsert":
        return upsert_from(t, source)
    if mode == "insert_new":
        return insert_ignore_from(t, source)
    return insert_from(t, source)


def insert_from(t: Table, source: str) -> str:
    """Plain INSERT ... SELECT (append-only tables)."""
    names = column_list(t.insert_columns)
    return f"INSERT INTO {quote(t.name)} ({names}) SELECT {names} FROM {source}"  # noqa: S608


def insert_dead_letters_from(source: str) -> str:
    cols = column_list(("received_at", *DEAD_LETTER_SCHEMA))
    return f'INSERT INTO "dead_letters" ({cols}) SELECT {cols} FROM {source}'  # noqa: S608


def insert_alerts_from(source: str) -> str:
    """Append alerts not already stored: an alert is identified by (ts, cell_id, rule,
    cycle), so re-committing a batch does not raise the same alarm twice."""
    cols = column_list(ALERT_SCHEMA)
    same = " AND ".join(
        f"a.{quote(c)} IS NOT DISTINCT FROM s.{quote(c)}" for c in ALERT_KEY
    )
    return (
        f"INSERT INTO {quote(ALERTS.name)} ({cols}) SELECT {column_list(ALERT_SCHEMA, 's.')} "  # noqa: S608
        f"FROM {source} AS s WHERE NOT EXISTS (SELECT 1 FROM {quote(ALERTS.name)} AS a WHERE {same})"
    )


def insert_alerts_ignore_from(source: str) -> str:
    """Append alerts, skipping those already stored, for a store with a unique index on
    (ts, cell_id, rule, cycle) NULLS NOT DISTINCT (PostgreSQL): the same rule as
    :func:`insert_alerts_from`, enforced by the index, so also between concurrent writers."""
    cols = column_list(ALERT_SCHEMA)
    return (f"INSERT INTO {quote(ALERTS.name)} ({cols}) SELECT {cols} FROM {source} "  # noqa: S608
            "ON CONFLICT DO NOTHING")


def ensure_cells_from(source: str) -> str:
    """Register every cell id seen in data, so ``cells()`` lists cells without metadata."""
    return (
        f"INSERT INTO {quote(CELLS.name)} ({quote('cell_id')}) "  # noqa: S608 - constant identifiers
        f"SELECT DISTINCT {quote('cell_id')} FROM {source} WHERE {quote('cell_id')} IS NOT NULL "
        f"ON CONFLICT DO NOTHING"
    )


def upsert_checkpoint(d: Dialect) -> str:
    p = d.ph
    return (
        f'INSERT INTO "checkpoints" ("name", "state", "position", "updated_at") '  # noqa: S608 - placeholder only
        f"VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (\"name\") DO UPDATE SET "
        '"state" = EXCLUDED."state", "position" = EXCLUDED."position", '
        '"updated_at" = EXCLUDED."updated_at"'
    )


def replace_checkpoint(d: Dialect) -> tuple[str, str]:
    """:func:`upsert_checkpoint` as delete-then-insert (DuckDB; one transaction): the
    delete takes the name, the insert the four values. Replacing a state blob of a
    megabyte this way costs a fifth of ``ON CONFLICT DO UPDATE`` in DuckDB."""
    p = d.ph
    return ('DELETE FROM "checkpoints" WHERE "name" = ' + p,  # noqa: S608 - placeholder only
            f'INSERT INTO "checkpoints" ("name", "state", "position", "updated_at") '  # noqa: S608
            f"VALUES ({p}, {p}, {p}, {p})")


def add_counters(d: Dialect) -> str:
    p = d.ph
    return (
        f'INSERT INTO "ingest_counters" ("source", "accepted", "rejected", "updated_at") '  # noqa: S608 - placeholder only
        f"VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (\"source\") DO UPDATE SET "
        '"accepted" = "ingest_counters"."accepted" + EXCLUDED."accepted", '
        '"rejected" = "ingest_counters"."rejected" + EXCLUDED."rejected", '
        '"updated_at" = EXCLUDED."updated_at"'
    )


def add_series_row(d: Dialect) -> str:
    p = d.ph
    return (f'INSERT INTO "ingest_series" ("wall", "source", "accepted", "rejected") '  # noqa: S608 - placeholder only
            f"VALUES ({p}, {p}, {p}, {p})")


def prune_series(d: Dialect) -> str:
    return f'DELETE FROM "ingest_series" WHERE "wall" < {d.ph}'  # noqa: S608 - placeholder only


def set_meta(d: Dialect) -> str:
    p = d.ph
    return (f'INSERT INTO "store_meta" ("key", "value") VALUES ({p}, {p}) '  # noqa: S608 - placeholder only
            'ON CONFLICT ("key") DO UPDATE SET "value" = EXCLUDED."value"')


def get_meta(d: Dialect) -> str:
    return f'SELECT "value" FROM "store_meta" WHERE "key" = {d.ph}'  # noqa: S608 - placeholder only


#: The ts up to which a cell's raw samples are covered by its results: the start of its
#: open step, else the end of its last step (NULL when it has no step yet: keep all).
_COVERED = ('(SELECT COALESCE(MIN(s."start_ts") FILTER (WHERE s."status" = \'open\'), '
            'MAX(s."end_ts")) FROM "steps" AS s WHERE s."cell_id" = "measurements"."cell_id")')
_IN_OPEN_CYCLE = ('EXISTS (SELECT 1 FROM "cycles" AS c WHERE c."cell_id" = "measurements"."cell_id" '
                  'AND c."status" = \'open\' AND c."start_ts" <= "measurements"."ts")')


def prune_measurements(d: Dialect) -> str:
    """Delete raw samples older than the bound horizon that the results already cover:
    never a sample of a cell's open step or open cycle, nor one no step has reached yet
    (still pending in the engine)."""
    return (f'DELETE FROM "measurements" WHERE "ts" < {d.ph} AND "ts" < {_COVERED} '  # noqa: S608 - placeholder only
            f'AND NOT {_IN_OPEN_CYCLE}')


def uncovered_floor() -> str:
    """The earliest ts from which some cell has raw samples its results do not cover: the
    start of an open step or cycle, the end of a cell's last step, or, for a cell without
    steps, its first sample. A store that drops whole partitions of raw samples drops
    none that reaches it (every sample before it is covered); NULL when nothing is kept."""
    return ('SELECT MIN(x) FROM ('
            'SELECT COALESCE(MIN("start_ts") FILTER (WHERE "status" = \'open\'), MAX("end_ts")) AS x '
            'FROM "steps" GROUP BY "cell_id" '
            'UNION ALL SELECT "start_ts" FROM "cycles" WHERE "status" = \'open\' '
            'UNION ALL SELECT (SELECT MIN(m."ts") FROM "measurements" AS m WHERE m."cell_id" = c."cell_id") '
            'FROM "cells" AS c WHERE NOT EXISTS '
            '(SELECT 1 FROM "steps" AS s WHERE s."cell_id" = c."cell_id")) AS u')


def prune_dead_letters(d: Dialect) -> str:
    """Delete dead letters received (wall s) before the bound time."""
    return f'DELETE FROM "dead_letters" WHERE "received_at" < {d.ph}'  # noqa: S608 - placeholder only


def ack_alert(d: Dialect) -> str:
    p = d.ph
    return (f'UPDATE "alerts" SET "acknowledged" = TRUE, "acknowledged_by" = {p}, '  # noqa: S608 - placeholder only
            f'"acknowledged_at" = {p} WHERE "id" = {p} AND NOT "acknowledged"')


def alert_exists(d: Dialect) -> str:
    return f'SELECT 1 FROM "alerts" WHERE "id" = {d.ph}'  # noqa: S608 - placeholder only


def load_checkpoint(d: Dialect) -> str:
    return (f'SELECT "state", {d.json_to_text(quote("position"))} FROM "checkpoints" '  # noqa: S608 - placeholder only
            f'WHERE "name" = {d.ph}')


def load_checkpoints(d: Dialect) -> str:
    """Checkpoints whose name starts with the bound prefix (no LIKE: ``%`` and ``_`` in
    a prefix are literal), ordered by name."""
    return (f'SELECT "name", "state", {d.json_to_text(quote("position"))} FROM "checkpoints" '  # noqa: S608 - placeholder only
            f'WHERE starts_with("name", {d.ph}) ORDER BY "name"')
