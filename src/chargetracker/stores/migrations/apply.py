"""Applying the versioned migrations of the PostgreSQL store (see :mod:`.`)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import psycopg

from ...errors import StoreError
from . import MIGRATIONS, Migration

__all__ = ["MIGRATION_LOCK_KEY", "apply_migrations", "check_migrated"]

# Advisory lock key (64-bit, arbitrary but fixed): "ct-migr".
MIGRATION_LOCK_KEY = int.from_bytes(b"ct-migr", "big")

_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS "schema_migrations" (
    "version" INTEGER PRIMARY KEY,
    "name" TEXT NOT NULL,
    "applied_at" TIMESTAMPTZ NOT NULL DEFAULT now()
)"""


def _applied_versions(conn: psycopg.Connection[Any]) -> set[int]:
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:  # type: ignore[index]
        return set()
    return {int(v) for (v,) in conn.execute('SELECT "version" FROM "schema_migrations"')}


def _check_not_newer(applied: set[int], migrations: Sequence[Migration]) -> None:
    known = {m.version for m in migrations}
    unknown = sorted(applied - known)
    if unknown:
        raise StoreError(
            f"the database has schema migration(s) {unknown}, newer than this ChargeTracker "
            f"knows (latest {max(known)}); upgrade ChargeTracker"
        )


def apply_migrations(conn: psycopg.Connection[Any],
                     migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the migrations not yet recorded in ``schema_migrations``, in order.

    ``conn`` must be in autocommit mode. A session advisory lock serializes concurrent
    callers (the second waits, then finds nothing to do); each migration runs in its own
    transaction with the row recording it, so a failure leaves the previous version.
    Returns the versions applied by this call. Driver errors propagate (the caller
    translates them).
    """
    conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
    try:
        with conn.transaction():
            conn.execute(_MIGRATIONS_TABLE)
        applied = _applied_versions(conn)
        _check_not_newer(applied, migrations)
        done: list[int] = []
        for m in sorted(migrations, key=lambda m: m.version):
            if m.version in applied:
                continue
            try:
                with conn.transaction():
                    for stmt in m.statements:
                        conn.execute(stmt)
                    conn.execute('INSERT INTO "schema_migrations" ("version", "name") '
                                 "VALUES (%s, %s)", [m.version, m.name])
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                raise StoreError(
                    f"schema migration {m.version} ({m.name}) failed: {exc}") from exc
            done.append(m.version)
        return done
    finally:
        # A broken connection has lost the lock with its session anyway.
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])


def check_migrated(conn: psycopg.Connection[Any]) -> None:
    applied = _applied_versions(conn)
    _check_not_newer(applied, MIGRATIONS)
    missing = sorted({m.version for m in MIGRATIONS} - applied)
    if missing:
        raise StoreError(
            f"the database lacks schema migration(s) {missing}; open the store once with "
            "migrate=true (a role allowed to create tables) to apply them"
        )
