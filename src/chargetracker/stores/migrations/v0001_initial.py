"""Migration 1: every table of schema version 1, the daily-partitioned raw table and the
indexes behind the dashboard's and API's queries.

Choices (see docs/deployment.md, "PostgreSQL"):

* text columns use ``COLLATE "C"`` so ORDER BY is bytewise -- the same order as DuckDB,
  whatever locale the database was created with;
* ``cells.attributes`` is ``json`` (kept verbatim, as DuckDB keeps it), checkpoint
  positions are ``jsonb``, engine state ``bytea``;
* ``measurements`` is range-partitioned on ``ts`` by UTC day; the store creates a day's
  partition when a commit first needs it and drops whole days on retention. Rows whose
  ts is outside years 1970..9999 (or NaN / infinite) land in ``measurements_default``;
* ``alerts`` are unique on (ts, cell_id, rule, cycle) with NULLS NOT DISTINCT
  (PostgreSQL 15+), so a replayed alert is a no-op even from concurrent workers;
* ``measurement_stats`` keeps the exact row count and newest ts of the raw table,
  maintained by the commits and retention, so the ingest page does not count(*) it.
"""

STATEMENTS: tuple[str, ...] = (
    """CREATE TABLE "store_meta" (
        "key" TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        "value" TEXT
    )""",
    """CREATE TABLE "cells" (
        "cell_id" TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        "group" TEXT COLLATE "C",
        "chemistry" TEXT COLLATE "C",
        "test_type" TEXT COLLATE "C",
        "nominal_capacity_ah" DOUBLE PRECISION,
        "v_min" DOUBLE PRECISION,
        "v_max" DOUBLE PRECISION,
        "attributes" JSON,
        "updated_at" DOUBLE PRECISION
    )""",
    'CREATE INDEX "cells_group_idx" ON "cells" ("group", "cell_id")',
    'CREATE INDEX "cells_chemistry_idx" ON "cells" ("chemistry", "cell_id")',
    'CREATE INDEX "cells_test_type_idx" ON "cells" ("test_type", "cell_id")',
    """CREATE TABLE "measurements" (
        "cell_id" TEXT COLLATE "C" NOT NULL,
        "ts" DOUBLE PRECISION NOT NULL,
        "voltage_v" DOUBLE PRECISION,
        "current_a" DOUBLE PRECISION,
        "temperature_c" DOUBLE PRECISION,
        "cycle" BIGINT,
        "step" BIGINT,
        "step_time_s" DOUBLE PRECISION,
        PRIMARY KEY ("cell_id", "ts")
    ) PARTITION BY RANGE ("ts")""",
    'CREATE TABLE "measurements_default" PARTITION OF "measurements" DEFAULT',
    """CREATE TABLE "measurement_stats" (
        "id" BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK ("id"),
        "n_rows" BIGINT NOT NULL DEFAULT 0,
        "max_ts" DOUBLE PRECISION
    )""",
    'INSERT INTO "measurement_stats" ("id", "n_rows") VALUES (TRUE, 0)',
    """CREATE TABLE "steps" (
        "cell_id" TEXT COLLATE "C" NOT NULL,
        "step" BIGINT NOT NULL,
        "cycle" BIGINT,
        "step_label" BIGINT,
        "kind" TEXT COLLATE "C",
        "mode" TEXT COLLATE "C",
        "status" TEXT COLLATE "C",
        "start_ts" DOUBLE PRECISION,
        "end_ts" DOUBLE PRECISION,
        "duration_s" DOUBLE PRECISION,
        "n_samples" BIGINT,
        "charge_ah" DOUBLE PRECISION,
        "discharge_ah" DOUBLE PRECISION,
        "charge_wh" DOUBLE PRECISION,
        "discharge_wh" DOUBLE PRECISION,
        "start_v" DOUBLE PRECISION,
        "end_v" DOUBLE PRECISION,
        "min_v" DOUBLE PRECISION,
        "max_v" DOUBLE PRECISION,
        "mean_v" DOUBLE PRECISION,
        "mean_current_a" DOUBLE PRECISION,
        "min_current_a" DOUBLE PRECISION,
        "max_current_a" DOUBLE PRECISION,
        "mean_temperature_c" DOUBLE PRECISION,
        "max_temperature_c" DOUBLE PRECISION,
        "internal_resistance_ohm" DOUBLE PRECISION,
        "gap_count" BIGINT,
        "updated_at" DOUBLE PRECISION,
        PRIMARY KEY ("cell_id", "step")
    )""",
    'CREATE INDEX "steps_cycle_idx" ON "steps" ("cell_id", "cycle", "step")',
    """CREATE TABLE "cycles" (
        "cell_id" TEXT COLLATE "C" NOT NULL,
        "cycle" BIGINT NOT NULL,
        "status" TEXT COLLATE "C",
        "start_ts" DOUBLE PRECISION,
        "end_ts" DOUBLE PRECISION,
        "duration_s" DOUBLE PRECISION,
        "n_samples" BIGINT,
        "n_steps" BIGINT,
        "charge_ah" DOUBLE PRECISION,
        "discharge_ah" DOUBLE PRECISION,
        "charge_wh" DOUBLE PRECISION,
        "discharge_wh" DOUBLE PRECISION,
        "coulombic_efficiency" DOUBLE PRECISION,
        "energy_efficiency" DOUBLE PRECISION,
        "mean_charge_v" DOUBLE PRECISION,
        "mean_discharge_v" DOUBLE PRECISION,
        "min_v" DOUBLE PRECISION,
        "max_v" DOUBLE PRECISION,
        "mean_v" DOUBLE PRECISION,
        "min_current_a" DOUBLE PRECISION,
        "max_current_a" DOUBLE PRECISION,
        "mean_current_a" DOUBLE PRECISION,
        "min_temperature_c" DOUBLE PRECISION,
        "max_temperature_c" DOUBLE PRECISION,
        "mean_temperature_c" DOUBLE PRECISION,
        "retention" DOUBLE PRECISION,
        "internal_resistance_ohm" DOUBLE PRECISION,
        "throughput_ah" DOUBLE PRECISION,
        "equivalent_full_cycles" DOUBLE PRECISION,
        "gap_count" BIGINT,
        "updated_at" DOUBLE PRECISION,
        PRIMARY KEY ("cell_id", "cycle")
    )""",
    'CREATE INDEX "cycles_status_idx" ON "cycles" ("status", "cell_id", "cycle")',
    """CREATE TABLE "alerts" (
        "id" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        "ts" DOUBLE PRECISION,
        "cell_id" TEXT COLLATE "C",
        "group" TEXT COLLATE "C",
        "rule" TEXT COLLATE "C" NOT NULL,
        "severity" TEXT COLLATE "C",
        "value" DOUBLE PRECISION,
        "threshold" DOUBLE PRECISION,
        "cycle" BIGINT,
        "message" TEXT,
        "acknowledged" BOOLEAN NOT NULL DEFAULT FALSE,
        "acknowledged_by" TEXT,
        "acknowledged_at" DOUBLE PRECISION
    )""",
    """CREATE UNIQUE INDEX "alerts_identity_idx" ON "alerts" ("ts", "cell_id", "rule", "cycle")
        NULLS NOT DISTINCT""",
    'CREATE INDEX "alerts_unacknowledged_idx" ON "alerts" ("id") WHERE NOT "acknowledged"',
    """CREATE TABLE "dead_letters" (
        "id" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        "received_at" DOUBLE PRECISION,
        "source" TEXT COLLATE "C",
        "row" BIGINT,
        "cell_id" TEXT COLLATE "C",
        "ts" DOUBLE PRECISION,
        "field" TEXT COLLATE "C",
        "reason" TEXT,
        "payload" TEXT
    )""",
    """CREATE TABLE "checkpoints" (
        "name" TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        "state" BYTEA,
        "position" JSONB,
        "updated_at" DOUBLE PRECISION
    )""",
    """CREATE TABLE "ingest_counters" (
        "source" TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        "accepted" BIGINT,
        "rejected" BIGINT,
        "updated_at" DOUBLE PRECISION
    )""",
    """CREATE TABLE "ingest_series" (
        "wall" DOUBLE PRECISION,
        "source" TEXT COLLATE "C",
        "accepted" BIGINT,
        "rejected" BIGINT
    )""",
    'CREATE INDEX "ingest_series_wall_idx" ON "ingest_series" ("wall")',
    """INSERT INTO "store_meta" ("key", "value") VALUES ('schema_version', '1')""",
)
