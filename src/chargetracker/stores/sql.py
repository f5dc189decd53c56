"""SQL shared by the relational stores (DuckDB and PostgreSQL).

What lives here is backend-neutral: the table layouts, DDL, the upsert statements and
every read query, each built as ``(sql, params)`` with the dialect's placeholder, plus
the Python-side conformance of commit frames (so both stores reject the same bad
frames with the same :class:`~chargetracker.errors.SchemaError`). A backend supplies
only the connection, the transaction and the way a Polars frame becomes a relation
(DuckDB: register the Arrow-backed frame; PostgreSQL: COPY into a temp table).

Safety rules, enforced here:

* values are **always** bound parameters, never formatted into SQL text;
* identifiers that come from callers (metric names, filter and group keys) are
  checked against allow-lists (:data:`~chargetracker.stores.base.TREND_METRICS`,
  the cells columns) or, for user attribute keys, a strict pattern, and even then the
  attribute key travels as a bound parameter (the JSON path / ``->>`` operand);
* every other identifier is a constant of this module, double-quoted.

Times stored by the store itself (``updated_at``, ``received_at``, ``wall``) are wall
clock seconds since the epoch (float), like the measurement ``ts``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ..errors import SchemaError, ValidationError
from ..schema import CELL_SCHEMA, CYCLE_SCHEMA, DEAD_LETTER_SCHEMA, MEASUREMENT_SCHEMA, STEP_SCHEMA
from .base import ALERT_SCHEMA, TREND_METRICS, CommitBatch

__all__ = [
    "Dialect",
    "DUCKDB",
    "POSTGRESQL",
    "Table",
    "TABLES",
    "SCHEMA_VERSION",
    "MAX_PAGE",
    "ALERT_ROW_SCHEMA",
    "DEAD_LETTER_ROW_SCHEMA",
    "METRIC_VALUES_SCHEMA",
    "INGEST_SERIES_SCHEMA",
    "CELL_FILTER_COLUMNS",
    "PreparedBatch",
    "prepare_batch",
    "conform_frame",
    "ddl",
    "quote",
]

#: Bumped when a table layout changes; stored in ``store_meta``.
SCHEMA_VERSION = 2
#: Upper bound on one page of cells / alerts / dead letters (limit is clamped to it).
MAX_PAGE = 10_000
#: How far back the ingest page's samples/s series is kept, s.
DEFAULT_SERIES_RETENTION_S = 24 * 3600.0
#: Window over which ``samples_per_s`` is averaged, s.
RATE_WINDOW_S = 60.0

_ATTRIBUTE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
_STATUSES = ("open", "closed", "partial")


# ---------------------------------------------------------------------------------
# Dialects
# ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between DuckDB and PostgreSQL SQL text."""

    name: str
    #: Bound-parameter placeholder (DuckDB ``?``, psycopg ``%s``).
    ph: str
    #: Logical type -> SQL type.
    types: Mapping[str, str]
    #: Fragment extracting a JSON object's member as text; one placeholder for the key
    #: (or the path built by :meth:`json_key_param`).
    json_text_template: str
    #: ``"path"``: the bound value is a JSON path ``$."key"``; ``"key"``: the bare key.
    json_key_style: str
    #: Fragment casting a JSON column to text (``{col}`` is replaced).
    json_to_text_template: str
    #: Column definition of an auto-increment id; ``{seq}`` is the sequence name.
    identity_template: str
    #: Statements to run before a table with an identity column (``{seq}``).
    identity_pre: tuple[str, ...] = ()
    #: Enforce the raw measurements' (cell_id, ts) key with a primary key index. DuckDB:
    #: no -- its index makes bulk inserts ~2x and retention deletes ~300x slower, and
    #: the store dedupes with an anti-join under its single-writer lock instead
    #: (:func:`insert_new_measurements_from`). PostgreSQL: yes, ON CONFLICT DO NOTHING.
    measurements_pk: bool = True
    #: Appended to text expressions the reads ORDER BY that are not plain columns (e.g.
    #: a JSON attribute as group): PostgreSQL's ``COLLATE "C"`` makes that order
    #: bytewise, like DuckDB's and like its own key columns, whatever the database locale.
    text_collate: str = ""

    def json_text(self, column: str) -> str:
        return self.json_text_template.format(col=column, ph=self.ph)

    def json_key_param(self, key: str) -> str:
        return f'$."{key}"' if self.json_key_style == "path" else key

    def json_to_text(self, column: str) -> str:
        return self.json_to_text_template.format(col=column)


DUCKDB = Dialect(
    name="duckdb",
    ph="?",
    types={"text": "VARCHAR", "float": "DOUBLE", "int": "BIGINT", "bool": "BOOLEAN",
           "blob": "BLOB", "json": "JSON"},
    json_text_template="json_extract_string({col}, {ph})",
    json_key_style="path",
    json_to_text_template="CAST({col} AS VARCHAR)",
    identity_template="BIGINT PRIMARY KEY DEFAULT nextval('{seq}')",
    identity_pre=("CREATE SEQUENCE IF NOT EXISTS {seq} START 1",),
    measurements_pk=False,
)

#: The PostgreSQL store (:mod:`chargetracker.stores.postgresql`). Its tables come from
#: versioned migrations (:mod:`chargetracker.stores.migrations`), not from :func:`ddl`.
POSTGRESQL = Dialect(
    name="postgresql",
    ph="%s",
    types={"text": "TEXT", "float": "DOUBLE PRECISION", "int": "BIGINT", "bool": "BOOLEAN",
           "blob": "BYTEA", "json": "JSONB"},
    json_text_template="({col} ->> {ph})",
    json_key_style="key",
    json_to_text_template="CAST({col} AS TEXT)",
    identity_template="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    text_collate=' COLLATE "C"',
)


def quote(identifier: str) -> str:
    """Double-quote a constant identifier (``group`` is a reserved word)."""
    if '"' in identifier:
        raise ValueError(f"bad identifier {identifier!r}")
    return f'"{identifier}"'


# ---------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------
def _logical(dtype: pl.DataType) -> str:
    if dtype == pl.Utf8:
        return "text"
    if dtype == pl.Float64:
        return "float"
    if dtype == pl.Int64:
        return "int"
    if dtype == pl.Boolean:
        return "bool"
    if dtype == pl.Binary:
        return "blob"
    raise TypeError(f"no SQL type for {dtype}")  # pragma: no cover - constants only


@dataclass(frozen=True, slots=True)
class Table:
    """A table: ordered (column, logical type) pairs, primary key, optional identity id."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...] = ()
    not_null: tuple[str, ...] = ()
    identity: str | None = None          # name of the auto-increment id column
    defaults: Mapping[str, str] = field(default_factory=dict)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    @property
    def insert_columns(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns if c != self.identity)

    @property
    def seq(self) -> str:
        return f"{self.name}_id_seq"


def _from_schema(schema: Mapping[str, pl.DataType], **overrides: str) -> tuple[tuple[str, str], ...]:
    return tuple((c, overrides.get(c, _logical(t))) for c, t in schema.items())


CELLS = Table(
    "cells",
    _from_schema(CELL_SCHEMA, attributes="json") + (("updated_at", "float"),),
    key=("cell_id",),
)
MEASUREMENTS = Table("measurements", _from_schema(MEASUREMENT_SCHEMA), key=("cell_id", "ts"))
#: Columns added by schema version 2 (gap accounting); they follow ``updated_at``, where
#: ALTER TABLE ... ADD COLUMN puts them in stores made by version 1.
V2_COLUMNS = ("gap_excluded_s", "gap_missing_ah")


def _with_updated_at(schema: Mapping[str, pl.DataType]) -> tuple[tuple[str, str], ...]:
    cols = _from_schema(schema)
    return (tuple(c for c in cols if c[0] not in V2_COLUMNS) + (("updated_at", "float"),)
            + tuple(c for c in cols if c[0] in V2_COLUMNS))


STEPS = Table("steps", _with_updated_at(STEP_SCHEMA), key=("cell_id", "step"))
CYCLES = Table("cycles", _with_updated_at(CYCLE_SCHEMA), key=("cell_id", "cycle"))
ALERTS = Table(
    "alerts",
    (("id", "int"),) + _from_schema(ALERT_SCHEMA)
    + (("acknowledged", "bool"), ("acknowledged_by", "text"), ("acknowledged_at", "float")),
    identity="id",
    not_null=("rule", "acknowledged"),
    defaults={"acknowledged": "FALSE"},
)
DEAD_LETTERS = Table(
    "dead_letters",
    (("id", "int"), ("received_at", "float")) + _from_schema(DEAD_LETTER_SCHEMA),
    identity="id",
)
CHECKPOINTS = Table(
    "checkpoints",
    (("name", "text"), ("state", "blob"), ("position", "json"), ("updated_at", "float")),
    key=("name",),
)
INGEST_COUNTERS = Table(
    "ingest_counters",
    (("source", "text"), ("accepted", "int"), ("rejected", "int"), ("updated_at", "float")),
    key=("source",),
)
#: One row per (commit, source): the samples/s series of the ingest page.
INGEST_SERIES = Table(
    "ingest_series",
    (("wall", "float"), ("source", "text"), ("accepted", "int"), ("rejected", "int")),
)
STORE_META = Table("store_meta", (("key", "text"), ("value", "text")), key=("key",))

TABLES: tuple[Table, ...] = (
    STORE_META, CELLS, MEASUREMENTS, STEPS, CYCLES, ALERTS, DEAD_LETTERS, CHECKPOINTS,
    INGEST_COUNTERS, INGEST_SERIES,
)

# Result layouts of the reads, identical for every backend.
ALERT_ROW_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(), **ALERT_SCHEMA, "acknowledged": pl.Boolean(),
    "acknowledged_by": pl.Utf8(), "acknowledged_at": pl.Float64(),
}
DEAD_LETTER_ROW_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(), "received_at": pl.Float64(), **DEAD_LETTER_SCHEMA,
}
METRIC_VALUES_SCHEMA: dict[str, pl.DataType] = {
    "group": pl.Utf8(), "cell_id": pl.Utf8(), "cycle": pl.Int64(), "value": pl.Float64(),
}
INGEST_SERIES_SCHEMA: dict[str, pl.DataType] = {
    "wall": pl.Float64(), "samples": pl.Int64(), "rejected": pl.Int64(),
}

#: Cells columns a filter or group key may name directly; any other key is looked up
#: in the ``attributes`` JSON.
CELL_FILTER_COLUMNS: tuple[str, ...] = tuple(c for c in CELL_SCHEMA if c != "attributes")


def ddl(d: Dialect) -> list[str]:
    """CREATE statements for every table (idempotent)."""
    out: list[str] = []
    for t in TABLES:
        cols = []
        for name, logical in t.columns:
            if name == t.identity:
                out.extend(s.format(seq=t.seq) for s in d.identity_pre)
                cols.append(f"{quote(name)} {d.identity_template.format(seq=t.seq)}")
                continue
            col = f"{quote(name)} {d.types[logical]}"
            if name in t.not_null or name in t.key:
                col += " NOT NULL"
            if name in t.defaults:
                col += f" DEFAULT {t.defaults[name]}"
            cols.append(col)
        if t.key and (t is not MEASUREMENTS or d.measurements_pk):
            cols.append(f"PRIMARY KEY ({', '.join(quote(k) for k in t.key)})")
        out.append(f"CREATE TABLE IF NOT EXISTS {quote(t.name)} ({', '.join(cols)})")
    for t in (STEPS, CYCLES):  # a store made by schema version 1 gains the v2 columns
        out.extend(f"ALTER TABLE {quote(t.name)} ADD COLUMN IF NOT EXISTS {quote(c)} {d.types['float']}"
                   for c in V2_COLUMNS)
    return out


def _cols(names: Iterable[str], prefix: str = "") -> str:
    return ", ".join(prefix + quote(c) for c in names)


# ---------------------------------------------------------------------------------
# Writes
# ---------------------------------------------------------------------------------
def upsert_from(t: Table, source: str) -> str:
    """INSERT ... SELECT ... FROM ``source`` ON CONFLICT (key) DO UPDATE (last write wins).

    ``source`` is a relation name chosen by the store (never user input).
    """
    cols = _cols(t.insert_columns)
    rest = [c for c in t.insert_columns if c not in t.key]
    sets = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in rest)
    return (
        f"INSERT INTO {quote(t.name)} ({cols}) SELECT {cols} FROM {source} "  # noqa: S608 - constant identifiers
        f"ON CONFLICT ({_cols(t.key)}) DO UPDATE SET {sets}"
    )


def insert_ignore_from(t: Table, source: str) -> str:
    """INSERT ... SELECT ... ON CONFLICT DO NOTHING: raw measurements on a store whose
    dialect has ``measurements_pk`` (PostgreSQL); replays are no-ops."""
    cols = _cols(t.insert_columns)
    return (
        f"INSERT INTO {quote(t.name)} ({cols}) SELECT {cols} FROM {source} "  # noqa: S608 - constant identifiers
        f"ON CONFLICT DO NOTHING"
    )


def insert_new_measurements_from(d: Dialect, source: str) -> str:
    """Insert the raw rows of ``source`` whose (cell_id, ts) is not stored yet.

    For stores without a key index (DuckDB). Two placeholders: the batch's min and
    max ts, which restrict the existing rows compared against (zone maps skip the
    rest). ``source`` must be free of duplicate keys and the caller must hold the
    store's only write lock, so no concurrent insert can slip between check and write.
    """
    cols = _cols(MEASUREMENTS.insert_columns)
    return (
        f'INSERT INTO "measurements" ({cols}) SELECT {_cols(MEASUREMENTS.insert_columns, "s.")} '  # noqa: S608
        f"FROM {source} AS s WHERE NOT EXISTS (SELECT 1 FROM "
        f'(SELECT "cell_id", "ts" FROM "measurements" WHERE "ts" >= {d.ph} AND "ts" <= {d.ph}) AS e '
        'WHERE e."cell_id" = s."cell_id" AND e."ts" = s."ts")'
    )


def insert_dead_letters_from(source: str) -> str:
    cols = _cols(("received_at", *DEAD_LETTER_SCHEMA))
    return f'INSERT INTO "dead_letters" ({cols}) SELECT {cols} FROM {source}'  # noqa: S608


def insert_alerts_from(source: str) -> str:
    """Append alerts not already stored: an alert is identified by (ts, cell_id, rule,
    cycle), so re-committing a batch does not raise the same alarm twice."""
    cols = _cols(ALERT_SCHEMA)
    same = " AND ".join(
        f"a.{quote(c)} IS NOT DISTINCT FROM s.{quote(c)}" for c in ("ts", "cell_id", "rule", "cycle")
    )
    return (
        f"INSERT INTO {quote(ALERTS.name)} ({cols}) SELECT {_cols(ALERT_SCHEMA, 's.')} "  # noqa: S608
        f"FROM {source} AS s WHERE NOT EXISTS (SELECT 1 FROM {quote(ALERTS.name)} AS a WHERE {same})"
    )


def insert_alerts_ignore_from(source: str) -> str:
    """Append alerts, skipping those already stored, for a store with a unique index on
    (ts, cell_id, rule, cycle) NULLS NOT DISTINCT (PostgreSQL): the same rule as
    :func:`insert_alerts_from`, enforced by the index, so also between concurrent writers."""
    cols = _cols(ALERT_SCHEMA)
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


def prune_measurements(d: Dialect) -> str:
    return f'DELETE FROM "measurements" WHERE "ts" < {d.ph}'  # noqa: S608 - placeholder only


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


# ---------------------------------------------------------------------------------
# Commit frames: conformed in Python before the transaction starts
# ---------------------------------------------------------------------------------
@dataclass(slots=True)
class PreparedBatch:
    """A :class:`CommitBatch` whose frames match the table layouts exactly."""

    measurements: pl.DataFrame | None
    steps: pl.DataFrame | None
    cycles: pl.DataFrame | None
    dead_letters: pl.DataFrame | None
    alerts: pl.DataFrame | None
    cells: pl.DataFrame | None
    #: (name, state, position JSON text)
    checkpoints: list[tuple[str, bytes, str]]
    #: (source, accepted, rejected)
    counters: list[tuple[str, int, int]]
    now: float


def conform_frame(
    frame: pl.DataFrame,
    schema: Mapping[str, pl.DataType],
    *,
    table: str,
    required: Sequence[str] = (),
    fill_nan: bool = False,
) -> pl.DataFrame:
    """Select ``schema``'s columns in order, cast strictly, add absent optional ones as null.

    Extra columns are ignored. Raises :class:`SchemaError` naming the table (as source)
    and the column when a required column is missing or a column cannot be cast (e.g.
    text in ``cycle``). ``fill_nan`` turns NaN into null (a metric that is undefined,
    like the efficiency of a cycle without charge, is missing, not a number).
    """
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SchemaError(f"missing required column(s) {missing}", field=missing[0], source=table)
    cols: list[pl.Series] = []
    for name, dtype in schema.items():
        if name not in frame.columns:
            cols.append(pl.Series(name, [None] * frame.height, dtype=dtype))
            continue
        s = frame.get_column(name)
        if s.dtype != dtype:
            if s.dtype == pl.Null:
                s = s.cast(dtype)
            else:
                try:
                    s = s.cast(dtype, strict=True)
                except pl.exceptions.PolarsError as exc:
                    bad = _first_bad(s, dtype)
                    raise SchemaError(
                        f"cannot store {s.dtype} as {dtype}"
                        + (f" (value {s[bad]!r})" if bad is not None else ""),
                        field=name, row=bad, source=table,
                    ) from exc
        if fill_nan and dtype == pl.Float64:
            s = s.fill_nan(None)
        cols.append(s)
    return pl.DataFrame(cols)


def _first_bad(s: pl.Series, dtype: pl.DataType) -> int | None:
    try:
        casted = s.cast(dtype, strict=False)
    except pl.exceptions.PolarsError:
        return None
    idx = (casted.is_null() & s.is_not_null()).arg_true()
    return int(idx[0]) if len(idx) else None


def _check_attributes(cells: pl.DataFrame) -> pl.DataFrame:
    if "attributes" in cells.columns and isinstance(cells.schema["attributes"], pl.Struct):
        cells = cells.with_columns(pl.col("attributes").struct.json_encode())
    if "attributes" not in cells.columns:
        return cells
    for i, text in enumerate(cells.get_column("attributes").cast(pl.Utf8).to_list()):
        if text is None:
            continue
        try:
            ok = isinstance(json.loads(text), dict)
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise SchemaError("attributes must be a JSON object", field="attributes", row=i,
                              source="cells")
    return cells


def _dedupe(frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
    # Within one batch the last row of a key wins, like a later commit would.
    if frame.height < 2:
        return frame
    return frame.unique(subset=list(key), keep="last", maintain_order=True)


def prepare_batch(batch: CommitBatch, now: float) -> PreparedBatch:
    """Conform every frame of ``batch``; raises before any write when one is malformed."""

    def nonempty(f: pl.DataFrame | None) -> pl.DataFrame | None:
        return f if f is not None and f.height > 0 else None

    cells = nonempty(batch.cells)
    if cells is not None:
        cells = _check_attributes(cells)
        cells = conform_frame(cells, CELL_SCHEMA, table="cells", required=("cell_id",),
                              fill_nan=True)
        cells = _dedupe(cells, CELLS.key).with_columns(pl.lit(now, pl.Float64).alias("updated_at"))
    meas = nonempty(batch.measurements)
    if meas is not None:
        meas = conform_frame(meas, MEASUREMENT_SCHEMA, table="measurements",
                             required=("cell_id", "ts", "voltage_v", "current_a"))
        # (cell_id, ts) is the key: within a batch the first row of a key wins, as a
        # later replay of it does (raw rows are insert-if-absent).
        if meas.height > 1:
            meas = meas.unique(subset=["cell_id", "ts"], keep="first", maintain_order=True)
    steps = nonempty(batch.steps)
    if steps is not None:
        steps = conform_frame(steps, STEP_SCHEMA, table="steps", required=STEPS.key,
                              fill_nan=True)
        steps = _dedupe(steps, STEPS.key).with_columns(pl.lit(now, pl.Float64).alias("updated_at"))
    cycles = nonempty(batch.cycles)
    if cycles is not None:
        cycles = conform_frame(cycles, CYCLE_SCHEMA, table="cycles", required=CYCLES.key,
                               fill_nan=True)
        bad = cycles.filter(~pl.col("status").is_in(list(_STATUSES)) & pl.col("status").is_not_null())
        if bad.height:
            raise SchemaError(f"status must be one of {_STATUSES}, got {bad['status'][0]!r}",
                              field="status", source="cycles")
        cycles = _dedupe(cycles, CYCLES.key).with_columns(
            pl.lit(now, pl.Float64).alias("updated_at"))
    alerts = nonempty(batch.alerts)
    if alerts is not None:
        alerts = conform_frame(alerts, ALERT_SCHEMA, table="alerts", required=("ts", "rule"))
        alerts = alerts.with_columns(pl.col("severity").fill_null("warning")).unique(
            subset=["ts", "cell_id", "rule", "cycle"], keep="first", maintain_order=True)
    dead = nonempty(batch.dead_letters)
    if dead is not None:
        dead = conform_frame(dead, DEAD_LETTER_SCHEMA, table="dead_letters", required=("reason",))
        dead = dead.select(pl.lit(now, pl.Float64).alias("received_at"), pl.all())
    checkpoints: list[tuple[str, bytes, str]] = []
    for cp in batch.checkpoints:
        if not isinstance(cp.state, bytes | bytearray | memoryview):
            raise ValidationError("checkpoint state must be bytes", field="state", source=cp.name)
        try:
            position = json.dumps(cp.position, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"checkpoint position is not JSON-serializable: {exc}",
                                  field="position", source=cp.name) from exc
        checkpoints.append((str(cp.name), bytes(cp.state), position))
    counters: list[tuple[str, int, int]] = []
    for source, counts in batch.counters.items():
        unknown = set(counts) - {"accepted", "rejected"}
        if unknown:
            raise ValidationError(f"unknown counter(s) {sorted(unknown)}", field="counters",
                                  source=source)
        acc, rej = int(counts.get("accepted", 0)), int(counts.get("rejected", 0))
        if acc < 0 or rej < 0:
            raise ValidationError("counters must be >= 0", field="counters", source=source)
        counters.append((str(source), acc, rej))
    return PreparedBatch(meas, steps, cycles, dead, alerts, cells, checkpoints, counters, now)


# ---------------------------------------------------------------------------------
# Reads
# ---------------------------------------------------------------------------------
Query = tuple[str, list[Any]]


def _check_attribute_key(key: str, what: str) -> str:
    if not isinstance(key, str) or not _ATTRIBUTE_KEY.match(key):
        raise ValidationError(
            f"unknown {what} {key!r}: use one of {list(CELL_FILTER_COLUMNS)} or an attributes "
            "key of letters, digits, '_' or '-'", field=what,
        )
    return key


def _cell_column(d: Dialect, key: str, alias: str, what: str) -> tuple[str, list[Any]]:
    """SQL for a cells column or attributes key (with its bound key parameter)."""
    if key in CELL_FILTER_COLUMNS:
        return f"{alias}.{quote(key)}", []
    _check_attribute_key(key, what)
    return d.json_text(f"{alias}.{quote('attributes')}"), [d.json_key_param(key)]


def cell_filters(d: Dialect, filters: Mapping[str, Any] | None, alias: str = "c") -> Query:
    """``AND``-ed conditions on cells; a value may be a string or a list of strings (IN)."""
    if not filters:
        return "TRUE", []
    parts: list[str] = []
    params: list[Any] = []
    for key, value in filters.items():
        col, kparams = _cell_column(d, key, alias, "filter")
        values = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
        if not values:
            parts.append("FALSE")
            continue
        if CELL_SCHEMA.get(key) == pl.Float64:
            try:
                values = [float(v) for v in values]
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"filter value {value!r} is not a number", field=key) from exc
        elif any(v is None for v in values):
            raise ValidationError("filter value must not be null", field=key)
        else:
            values = [str(v) for v in values]
        ors = " OR ".join(f"{col} = {d.ph}" for _ in values)
        for v in values:
            params.extend(kparams)
            params.append(v)
        parts.append(f"({ors})")
    return " AND ".join(parts), params


def page(limit: int | None, offset: int, *, default_cap: int | None = MAX_PAGE) -> tuple[int | None, int]:
    """Validate limit/offset; a limit above ``default_cap`` is clamped to it."""
    if offset is None:
        offset = 0
    if not isinstance(offset, int) or offset < 0:
        raise ValidationError("offset must be an integer >= 0", field="offset")
    if limit is None:
        return default_cap, offset
    if not isinstance(limit, int) or limit < 0:
        raise ValidationError("limit must be an integer >= 0", field="limit")
    if default_cap is not None:
        limit = min(limit, default_cap)
    return limit, offset


def _limit_clause(d: Dialect, limit: int | None, offset: int, params: list[Any]) -> str:
    out = ""
    if limit is not None:
        out += f" LIMIT {d.ph}"
        params.append(limit)
    if offset:
        out += f" OFFSET {d.ph}"
        params.append(offset)
    return out


def _cell_select(d: Dialect, alias: str = "c") -> str:
    return ", ".join(
        d.json_to_text(f"{alias}.{quote(c)}") + f" AS {quote(c)}" if c == "attributes"
        else f"{alias}.{quote(c)}"
        for c in CELL_SCHEMA
    )


def cells_query(d: Dialect, filters: Mapping[str, Any] | None, limit: int, offset: int) -> Query:
    where, params = cell_filters(d, filters)
    sql = (f"SELECT {_cell_select(d)} FROM {quote('cells')} AS c WHERE {where} "  # noqa: S608
           f"ORDER BY c.{quote('cell_id')}")
    return sql + _limit_clause(d, limit, offset, params), params


def cells_count_query(d: Dialect, filters: Mapping[str, Any] | None = None) -> Query:
    where, params = cell_filters(d, filters)
    return f'SELECT count(*) FROM "cells" AS c WHERE {where}', params  # noqa: S608


def cell_row_query(d: Dialect) -> str:
    return f'SELECT {_cell_select(d)} FROM "cells" AS c WHERE c."cell_id" = {d.ph}'  # noqa: S608


def cell_measurement_stats_query(d: Dialect) -> str:
    return (f'SELECT count(*), min("ts"), max("ts") FROM "measurements" '  # noqa: S608 - placeholder only
            f'WHERE "cell_id" = {d.ph}')


def cell_step_count_query(d: Dialect) -> str:
    return f'SELECT count(*) FROM "steps" WHERE "cell_id" = {d.ph}'  # noqa: S608 - placeholder only


def cell_cycle_stats_query(d: Dialect) -> str:
    return ("SELECT count(*), coalesce(sum(CASE WHEN \"status\" = 'closed' THEN 1 ELSE 0 END), 0) "  # noqa: S608 - placeholder only
            f'FROM "cycles" WHERE "cell_id" = {d.ph}')


def latest_cycle_query(d: Dialect) -> str:
    return (f'SELECT {_cols(CYCLE_SCHEMA)} FROM "cycles" WHERE "cell_id" = {d.ph} '  # noqa: S608
            'ORDER BY "cycle" DESC LIMIT 1')


def _check_status(status: str | None) -> str | None:
    if status is None or status == "all":
        return None
    if status not in _STATUSES:
        raise ValidationError(f"status must be one of {(*_STATUSES, 'all')}, got {status!r}",
                              field="status")
    return status


def cycles_query(d: Dialect, cell_id: str | None, status: str | None, limit: int | None,
                 offset: int) -> Query:
    status = _check_status(status)
    conds, params = ["TRUE"], []
    if cell_id is not None:
        conds.append(f'"cell_id" = {d.ph}')
        params.append(cell_id)
    if status is not None:
        conds.append(f'"status" = {d.ph}')
        params.append(status)
    sql = (f'SELECT {_cols(CYCLE_SCHEMA)} FROM "cycles" WHERE {" AND ".join(conds)} '  # noqa: S608
           'ORDER BY "cell_id", "cycle"')
    return sql + _limit_clause(d, limit, offset, params), params


def steps_query(d: Dialect, cell_id: str, cycle: int | None, limit: int | None,
                offset: int) -> Query:
    conds: list[str] = [f'"cell_id" = {d.ph}']
    params: list[Any] = [cell_id]
    if cycle is not None:
        conds.append(f'"cycle" = {d.ph}')
        params.append(int(cycle))
    sql = (f'SELECT {_cols(STEP_SCHEMA)} FROM "steps" WHERE {" AND ".join(conds)} '  # noqa: S608
           'ORDER BY "step"')
    return sql + _limit_clause(d, limit, offset, params), params


def measurements_query(d: Dialect, cell_id: str, start_ts: float | None, end_ts: float | None,
                       max_points: int | None) -> Query:
    """Raw rows of one cell in [start_ts, end_ts], ordered by ts.

    With ``max_points`` and more rows than that, every k-th row is kept with
    k = ceil(n / max_points), computed in the same statement (one snapshot), so the
    result has at most ``max_points`` real samples (no averaging across step edges).
    """
    conds: list[str] = [f'"cell_id" = {d.ph}']
    params: list[Any] = [cell_id]
    if start_ts is not None:
        conds.append(f'"ts" >= {d.ph}')
        params.append(float(start_ts))
    if end_ts is not None:
        conds.append(f'"ts" <= {d.ph}')
        params.append(float(end_ts))
    where = " AND ".join(conds)
    cols = _cols(MEASUREMENT_SCHEMA)
    if max_points is None:
        return f'SELECT {cols} FROM "measurements" WHERE {where} ORDER BY "ts"', params  # noqa: S608
    if not isinstance(max_points, int) or max_points < 1:
        raise ValidationError("max_points must be an integer >= 1", field="max_points")
    params.append(max_points)
    sql = (
        f"SELECT {cols} FROM (SELECT {cols}, "  # noqa: S608 - constant identifiers
        'row_number() OVER (ORDER BY "ts") AS rn, count(*) OVER () AS n '
        f'FROM "measurements" WHERE {where}) AS sub '
        f"WHERE mod(rn - 1, CAST(ceil(n / CAST({d.ph} AS DOUBLE PRECISION)) AS BIGINT)) = 0 "
        'ORDER BY "ts"'
    )
    return sql, params


def check_metric(metric: str) -> str:
    if metric not in TREND_METRICS:
        raise ValidationError(f"unknown metric {metric!r}; one of {list(TREND_METRICS)}",
                              field="metric")
    return metric


def metric_values_query(d: Dialect, metric: str, group_key: str,
                        filters: Mapping[str, Any] | None, status: str | None,
                        since_cycle: int | None) -> Query:
    """(group, cell_id, cycle, value) of one cycle metric; cycles of cells without
    metadata come with a null group. Rows whose value is null are left out."""
    check_metric(metric)
    status = _check_status(status)
    gcol, params = _cell_column(d, group_key, "c", "group_key")
    where, fparams = cell_filters(d, filters)
    params = params + fparams
    conds = [where, f"y.{quote(metric)} IS NOT NULL"]
    if status is not None:
        conds.append(f'y."status" = {d.ph}')
        params.append(status)
    if since_cycle is not None:
        conds.append(f'y."cycle" >= {d.ph}')
        params.append(int(since_cycle))
    sql = (
        f'SELECT CAST({gcol} AS {d.types["text"]}){d.text_collate} AS "group", y."cell_id", y."cycle", '  # noqa: S608
        f'CAST(y.{quote(metric)} AS {d.types["float"]}) AS "value" '
        'FROM "cycles" AS y LEFT JOIN "cells" AS c ON c."cell_id" = y."cell_id" '
        f'WHERE {" AND ".join(conds)} ORDER BY "group", y."cell_id", y."cycle"'
    )
    return sql, params


def alerts_query(d: Dialect, since_id: int | None, acknowledged: bool | None,
                 limit: int) -> Query:
    conds, params = ["TRUE"], []
    if since_id is not None:
        conds.append(f'"id" > {d.ph}')
        params.append(int(since_id))
    if acknowledged is not None:
        conds.append(f'"acknowledged" = {d.ph}')
        params.append(bool(acknowledged))
    sql = (f'SELECT {_cols(ALERT_ROW_SCHEMA)} FROM "alerts" WHERE {" AND ".join(conds)} '  # noqa: S608
           'ORDER BY "id" DESC')
    return sql + _limit_clause(d, limit, 0, params), params


def dead_letters_query(d: Dialect, limit: int) -> Query:
    params: list[Any] = []
    sql = f'SELECT {_cols(DEAD_LETTER_ROW_SCHEMA)} FROM "dead_letters" ORDER BY "id" DESC'  # noqa: S608
    return sql + _limit_clause(d, limit, 0, params), params


COUNTERS_QUERY = 'SELECT "source", "accepted", "rejected", "updated_at" FROM "ingest_counters" ORDER BY "source"'
NEWEST_TS_QUERY = 'SELECT max("ts"), count(*) FROM "measurements"'
DEAD_LETTER_COUNT_QUERY = 'SELECT count(*) FROM "dead_letters"'


def series_query(d: Dialect) -> str:
    return ('SELECT "wall", CAST(sum("accepted") AS BIGINT) AS "samples", '  # noqa: S608 - placeholder only
            'CAST(sum("rejected") AS BIGINT) AS "rejected" FROM "ingest_series" '
            f'WHERE "wall" >= {d.ph} GROUP BY "wall" ORDER BY "wall"')


def series_window_query(d: Dialect) -> str:
    return (f'SELECT coalesce(sum("accepted"), 0), min("wall") FROM "ingest_series" '  # noqa: S608 - placeholder only
            f'WHERE "wall" > {d.ph}')


def first_series_wall_query() -> str:
    return 'SELECT min("wall") FROM "ingest_series"'


def rate(accepted_in_window: int, first_wall: float | None, now: float,
         window_s: float = RATE_WINDOW_S) -> float:
    """Samples/s over the last ``window_s`` (shorter when the series is younger)."""
    if first_wall is None or accepted_in_window <= 0:
        return 0.0
    span = min(window_s, max(now - first_wall, 1.0))
    return float(accepted_in_window) / span


def finite_or_none(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def ingest_stats_dict(counters: list[tuple[Any, ...]], *, newest_ts: Any, n_measurements: Any,
                      n_dead: Any, n_cells: Any, accepted_in_window: Any, first_wall: Any,
                      last_commit: Any, now: float) -> dict[str, Any]:
    """The ``Store.ingest_stats`` result from the raw query results (shared by stores)."""
    by_source = {
        src: {"accepted": int(a), "rejected": int(r), "updated_at": u}
        for src, a, r, u in counters
    }
    newest = finite_or_none(newest_ts)
    return {
        "samples_total": sum(v["accepted"] for v in by_source.values()),
        "rejected_total": sum(v["rejected"] for v in by_source.values()),
        "by_source": by_source,
        "samples_per_s": rate(int(accepted_in_window), first_wall, now),
        "last_commit_wall": float(last_commit) if last_commit is not None else None,
        "newest_ts": newest,
        "lag_s": (now - newest) if newest is not None else None,
        "measurements_stored": int(n_measurements),
        "dead_letters_stored": int(n_dead),
        "cells": int(n_cells),
    }


def cell_dict(cell_id: str, meta: tuple[Any, ...] | None, *, n_measurements: Any, first_ts: Any,
              last_ts: Any, n_steps: Any, n_cycles: Any, n_closed: Any,
              latest: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``Store.cell`` result from the raw query results (shared by stores); None for
    a cell the store knows nothing about."""
    if not meta and not n_measurements and not n_steps and not n_cycles:
        return None
    out: dict[str, Any] = dict.fromkeys(CELL_SCHEMA)
    out["cell_id"] = cell_id
    if meta:
        out.update(zip(CELL_SCHEMA, meta, strict=True))
    out["attributes"] = json.loads(out["attributes"]) if out["attributes"] else {}
    out.update(
        n_measurements=int(n_measurements), first_ts=first_ts, last_ts=last_ts,
        n_steps=int(n_steps), n_cycles=int(n_cycles), n_closed_cycles=int(n_closed),
        latest_cycle=latest,
    )
    return out
