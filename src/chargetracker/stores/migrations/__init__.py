"""Versioned schema migrations of the PostgreSQL store.

Each migration is a module ``vNNNN_<name>.py`` with a ``STATEMENTS`` tuple of SQL
statements (constant text: no parameters, no user input). They are listed in
:data:`MIGRATIONS` in order and applied by
:func:`chargetracker.stores.postgresql.apply_migrations`: on store start, under a
PostgreSQL advisory lock (so two processes starting at once apply each migration once),
every migration whose version is not yet in ``schema_migrations`` runs in its own
transaction together with the row recording it.

A released migration is never edited: a layout change is a new module appended to
:data:`MIGRATIONS` (and the matching change in :mod:`chargetracker.stores.sql`;
``tests/stores/test_postgresql.py`` checks the migrated tables match the layouts the
shared SQL layer expects).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import v0001_initial, v0002_gap_accounting, v0003_alert_episodes

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration"]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial", v0001_initial.STATEMENTS),
    Migration(2, "gap_accounting", v0002_gap_accounting.STATEMENTS),
    Migration(3, "alert_episodes", v0003_alert_episodes.STATEMENTS),
)

LATEST_VERSION: int = MIGRATIONS[-1].version

if [m.version for m in MIGRATIONS] != list(range(1, len(MIGRATIONS) + 1)):  # pragma: no cover
    raise RuntimeError("migration versions must be 1, 2, 3, ... in order")
