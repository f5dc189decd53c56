"""Migration 3: alert episodes (one row per episode of a (cell, rule) condition, keyed by
(cell_id, rule, start_ts); see :mod:`chargetracker.episodes` and docs/alerts.md). The
layout is frozen here as it was released; the text is derived like migration 2's."""

from ..sql import Table
from .derive import create_table

_LAYOUT = Table(
    "alert_episodes",
    (("cell_id", "text"), ("rule", "text"), ("start_ts", "float"), ("start_cycle", "int"),
     ("group", "text"), ("severity", "text"), ("state", "text"), ("last_ts", "float"),
     ("last_cycle", "int"), ("resolved_ts", "float"), ("resolved_cycle", "int"),
     ("occurrences", "int"), ("worst_value", "float"), ("threshold", "float"),
     ("message", "text"), ("notified", "bool"), ("updated_at", "float")),
    key=("cell_id", "rule", "start_ts"),
)

STATEMENTS: tuple[str, ...] = (
    *create_table(_LAYOUT),
    'CREATE INDEX IF NOT EXISTS "alert_episodes_start_idx" ON "alert_episodes" ("start_ts")',
    """UPDATE "store_meta" SET "value" = '3' WHERE "key" = 'schema_version'""",
)
