"""Migration 2: per-step and per-cycle gap accounting (time excluded as data gaps, s,
and the charge estimated in them, Ah). Cycle ``status`` may now also be ``partial``
(a text column: no change needed)."""

STATEMENTS: tuple[str, ...] = (
    'ALTER TABLE "steps" ADD COLUMN "gap_excluded_s" DOUBLE PRECISION',
    'ALTER TABLE "steps" ADD COLUMN "gap_missing_ah" DOUBLE PRECISION',
    'ALTER TABLE "cycles" ADD COLUMN "gap_excluded_s" DOUBLE PRECISION',
    'ALTER TABLE "cycles" ADD COLUMN "gap_missing_ah" DOUBLE PRECISION',
    """UPDATE "store_meta" SET "value" = '2' WHERE "key" = 'schema_version'""",
)
