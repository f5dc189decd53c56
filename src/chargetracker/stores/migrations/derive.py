"""Build migration statements from the shared layouts instead of writing DDL by hand.

A released migration is frozen, so it names what it changes explicitly (a later schema
change must not rewrite an old migration); the SQL text is then derived with the same
column rules the layouts use (:func:`chargetracker.stores.sql.column_ddl`), text columns
``COLLATE "C"`` like migration 1. Example ``v0002_cycle_gaps.py``::

    from .derive import add_columns

    STATEMENTS = add_columns("cycles", {"gap_s": "float", "missing_ah": "float"})

``tests/stores/test_postgresql.py::test_migrated_schema_matches_shared_layout`` then
checks that the migrated database equals the layouts derived from the schemas (a schema
change without its migration, or the reverse, fails).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..sql import POSTGRESQL, Table, column_ddl, quote, table_ddl

__all__ = ["add_columns", "create_table"]

_COLLATE = POSTGRESQL.text_collate


def add_columns(table: str, columns: Mapping[str, str]) -> tuple[str, ...]:
    """``ALTER TABLE ... ADD COLUMN IF NOT EXISTS`` for each (name, logical type) in
    order (``text``, ``float``, ``int``, ``bool``, ``blob``, ``json``); nullable, so
    existing rows read null (a metric not computed for them)."""
    layout = Table(table, tuple(columns.items()))
    return tuple(
        f"ALTER TABLE {quote(table)} ADD COLUMN IF NOT EXISTS "
        f"{column_ddl(POSTGRESQL, layout, name, logical, collate=_COLLATE)}"
        for name, logical in columns.items())


def create_table(layout: Table) -> tuple[str, ...]:
    """``CREATE TABLE IF NOT EXISTS`` for a whole layout (primary key from its key)."""
    return tuple(table_ddl(POSTGRESQL, layout, collate=_COLLATE))
