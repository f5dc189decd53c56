"""The write path of the PostgreSQL store: one micro-batch in one transaction.

Every frame of a :class:`~chargetracker.stores.sql.ConformedBatch` is COPYed (CSV,
vectorized by Polars) into a session-local staging table, then moved with one
``INSERT ... SELECT`` per table (see :mod:`chargetracker.stores.postgresql`). Keys are
written in sorted order and the rows every writer shares last, so concurrent writers
neither deadlock nor hold the hot rows for long.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from . import sql as q

__all__ = ["COPY_CHUNK_ROWS", "write_batch"]

_D = q.POSTGRESQL
#: Rows per CSV chunk sent through COPY (bounds the memory of the text form).
COPY_CHUNK_ROWS = 100_000

_PG_TYPES = {"text": "TEXT", "float": "DOUBLE PRECISION", "int": "BIGINT", "bool": "BOOLEAN",
             "blob": "BYTEA", "json": "JSON",
             "date": "DATE"}

#: Staging (session-local temp) table per written table: (target, columns COPYed). The
#: columns are those of the frames :func:`~chargetracker.stores.sql.prepare_batch` returns.
_STAGES: dict[str, tuple[q.Table, tuple[str, ...]]] = {
    "cells": (q.CELLS, q.CELLS.insert_columns),
    "measurements": (q.MEASUREMENTS, q.MEASUREMENTS.insert_columns),
    "steps": (q.STEPS, q.STEPS.insert_columns),
    "cycles": (q.CYCLES, q.CYCLES.insert_columns),
    "alerts": (q.ALERTS, tuple(q.ALERT_SCHEMA)),
    "alert_episodes": (q.ALERT_EPISODES, q.ALERT_EPISODES.insert_columns),
    "dead_letters": (q.DEAD_LETTERS, q.DEAD_LETTERS.insert_columns),
}

_ENSURE_CELLS = ('INSERT INTO "cells" ("cell_id") SELECT unnest(CAST(%s AS TEXT[])) '
                 'ON CONFLICT DO NOTHING')
_STATS_ADD = ('UPDATE "measurement_stats" SET "n_rows" = "n_rows" + %s, '
              '"max_ts" = GREATEST("max_ts", (SELECT max("ts") FROM pg_temp."_ct_stage_measurements"))')

#: Plug-in tables: name -> (layout, the kind's TableSpec).
Plugins = Mapping[str, tuple[q.Table, Any]]


def _stage(name: str) -> str:
    """The staging relation for ``name`` (a key of :data:`_STAGES`, never user input)."""
    return f'pg_temp."_ct_stage_{name}"'


def _copy(conn: psycopg.Connection[Any], name: str, frame: pl.DataFrame) -> None:
    """COPY ``frame`` into the staging table ``name`` as CSV (Polars writes the text
    vectorized; floats in shortest round-trip form, so values arrive bit-exact)."""
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.SQL(_stage(name)), sql.SQL(", ").join(map(sql.Identifier, frame.columns)))
    with conn.cursor() as cur, cur.copy(stmt) as cp:
        for chunk in frame.iter_slices(COPY_CHUNK_ROWS):
            cp.write(chunk.write_csv(include_header=False).encode())


def _stage_layout(plugins: Plugins, name: str) -> tuple[q.Table, tuple[str, ...]]:
    if name in _STAGES:
        return _STAGES[name]
    table = plugins[name][0]
    return table, table.insert_columns


def _create_stages(conn: psycopg.Connection[Any], names: Sequence[str], plugins: Plugins) -> None:
    # Temp tables live as long as the pooled session: created once per connection
    # (IF NOT EXISTS), emptied at every commit, so no catalog churn per batch.
    stmts = []
    for name in names:
        table, columns = _stage_layout(plugins, name)
        types = dict(table.columns)
        cols = ", ".join(f"{q.quote(c)} {_PG_TYPES[types[c]]}" for c in columns)
        stmts.append(f"CREATE TEMP TABLE IF NOT EXISTS {_stage(name)} ({cols}) "
                     "ON COMMIT DELETE ROWS")
    conn.execute("; ".join(stmts))


def write_batch(conn: psycopg.Connection[Any], b: q.ConformedBatch, plugins: Plugins,
                series_retention_s: float) -> None:
    """Write ``b`` on ``conn`` (inside the caller's transaction)."""
    # Sorted by key: concurrent writers touch shared rows in the same order.
    frames = {
        "cells": _sorted(b.cells, ["cell_id"]),
        "measurements": _sorted(b.measurements, ["cell_id", "ts"]),
        "steps": _sorted(b.steps, ["cell_id", "step"]),
        "cycles": _sorted(b.cycles, ["cell_id", "cycle"]),
        "alerts": b.alerts,
        "alert_episodes": _sorted(b.alert_episodes, list(q.ALERT_EPISODES.key)),
        "dead_letters": b.dead_letters,
    }
    for name, frame in b.tables.items():
        frames[name] = _sorted(frame, list(plugins[name][1].key))
    present = {k: _without_nul(f) for k, f in frames.items() if f is not None}
    if present:
        _create_stages(conn, list(present), plugins)
        for name, frame in present.items():
            _copy(conn, name, frame)
    if b.cells is not None:
        conn.execute(q.upsert_from(q.CELLS, _stage("cells")))
    ids = _cell_ids(*(present.get(k) for k in ("measurements", "steps", "cycles")))
    if ids:
        conn.execute(_ENSURE_CELLS, [ids])
    inserted = 0
    if b.measurements is not None:
        cur = conn.execute(q.insert_ignore_from(q.MEASUREMENTS, _stage("measurements")))
        inserted = max(cur.rowcount, 0)
    if b.steps is not None:
        conn.execute(q.upsert_from(q.STEPS, _stage("steps")))
    if b.cycles is not None:
        conn.execute(q.upsert_from(q.CYCLES, _stage("cycles")))
    if b.alerts is not None:
        conn.execute(q.insert_alerts_ignore_from(_stage("alerts")))
    if b.alert_episodes is not None:
        conn.execute(q.upsert_from(q.ALERT_EPISODES, _stage("alert_episodes")))
    if b.dead_letters is not None:
        conn.execute(q.insert_dead_letters_from(_stage("dead_letters")))
    for name in b.tables:
        layout, spec = plugins[name]
        conn.execute(q.plugin_write_from(layout, spec.mode, _stage(name)))
    if b.checkpoints:
        with conn.cursor() as cur:
            cur.executemany(q.upsert_checkpoint(_D), [
                (name, state, position, b.now)
                for name, state, position in sorted(b.checkpoints, key=lambda c: c[0])])
    # Rows every writer shares come last (held locked until COMMIT: keep it short).
    if inserted:
        conn.execute(_STATS_ADD, [inserted])
    if b.counters:
        with conn.cursor() as cur:
            counters = sorted(b.counters)
            cur.executemany(q.add_counters(_D), [(s, a, r, b.now) for s, a, r in counters])
            cur.executemany(q.add_series_row(_D), [(b.now, s, a, r) for s, a, r in counters])
        conn.execute(q.prune_series(_D), [b.now - series_retention_s])
    conn.execute(q.set_meta(_D), ["last_commit_wall", repr(b.now)])


def _sorted(frame: pl.DataFrame | None, key: list[str]) -> pl.DataFrame | None:
    return frame.sort(key, nulls_last=True) if frame is not None and frame.height > 1 and key else frame


def _without_nul(frame: pl.DataFrame) -> pl.DataFrame:
    """PostgreSQL text cannot hold NUL: store it as U+FFFD instead of failing the whole
    batch (a dead letter's payload may be binary garbage; bad input must not stop ingest)."""
    text = [c for c, t in frame.schema.items() if t == pl.Utf8]
    if not text:
        return frame
    hit = frame.select(pl.any_horizontal(
        [pl.col(c).str.contains("\x00", literal=True).any() for c in text])).item()
    if not hit:
        return frame
    return frame.with_columns(pl.col(c).str.replace_all("\x00", "\ufffd", literal=True)
                              for c in text)


def _cell_ids(*frames: pl.DataFrame | None) -> list[str]:
    ids: set[str] = set()
    for f in frames:
        if f is not None:
            ids.update(f.get_column("cell_id").drop_nulls().unique().to_list())
    return sorted(ids)
