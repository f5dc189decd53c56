"""Migrations derived from the layouts (stores/migrations/derive.py) on a real server."""

from __future__ import annotations

import psycopg

from chargetracker.stores import sql as q
from chargetracker.stores.migrations.derive import add_columns, create_table


def test_add_columns_sql() -> None:
    assert add_columns("cycles", {"gap_s": "float", "note": "text"}) == (
        'ALTER TABLE "cycles" ADD COLUMN IF NOT EXISTS "gap_s" DOUBLE PRECISION',
        'ALTER TABLE "cycles" ADD COLUMN IF NOT EXISTS "note" TEXT COLLATE "C"',
    )


def test_derived_migration_applies_and_matches_layout(postgres_url: str) -> None:
    """A derived ADD COLUMN migration on the migrated schema, and a derived table, give
    exactly the columns and types of the layouts they come from (and rerun as no-ops)."""
    extra = q.Table("plugin_daily", (("meter_id", "text"), ("day", "int"), ("wh", "float")),
                    key=("meter_id", "day"))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for _ in range(2):
            for stmt in add_columns("cycles", {"gap_s": "float"}) + create_table(extra):
                conn.execute(stmt)
        cols = conn.execute(
            "SELECT column_name, data_type, collation_name FROM information_schema.columns "
            "WHERE table_name = %s ORDER BY ordinal_position", ["plugin_daily"]).fetchall()
        assert cols == [("meter_id", "text", "C"), ("day", "bigint", None),
                        ("wh", "double precision", None)]
        last = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = "
            "'cycles' ORDER BY ordinal_position DESC LIMIT 1").fetchone()
        assert last == ("gap_s", "double precision")
