"""Commit frames conformed in Python before the transaction starts, so both stores reject
the same malformed frame with the same :class:`~chargetracker.errors.SchemaError`
(naming table and column) before writing anything."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl

from ...dedupe import drop_repeated_keys
from ...episodes import ALERT_EPISODE_KEY, ALERT_EPISODE_SCHEMA
from ...errors import SchemaError, ValidationError
from ...frames import conform_frame
from ...kinds.base import TableSpec
from ...schema import CELL_SCHEMA, CYCLE_SCHEMA, DEAD_LETTER_SCHEMA, MEASUREMENT_SCHEMA, STEP_SCHEMA
from ...vocabulary import ALERT_KEY, ALERT_SCHEMA
from ..base import CommitBatch
from .ddl import CELLS, CYCLES, STATUSES, STEPS

__all__ = ["ConformedBatch", "conform_frame", "prepare_batch"]


@dataclass(slots=True)
class ConformedBatch:
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
    #: Plug-in kinds' tables: name -> frame in the table's layout.
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    #: Alert episodes (ALERT_EPISODE_SCHEMA + updated_at), one row per key.
    alert_episodes: pl.DataFrame | None = None


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
    return drop_repeated_keys(frame, key, keep="last")


def _plugin_frame(frame: pl.DataFrame, spec: TableSpec, now: float) -> pl.DataFrame:
    out = conform_frame(frame, spec.schema, table=spec.name, required=spec.key,
                        fill_nan=spec.mode == "upsert")
    if spec.mode == "upsert":
        return _dedupe(out, spec.key).with_columns(pl.lit(now, pl.Float64).alias("updated_at"))
    if spec.mode == "insert_new" and out.height > 1:
        # As for raw measurements: the first row of a key wins, as a replay of it does.
        return drop_repeated_keys(out, spec.key, keep="first")
    return out


def prepare_batch(batch: CommitBatch, now: float,
                  plugins: Mapping[str, TableSpec] | None = None) -> ConformedBatch:
    """Conform every frame of ``batch``; raises before any write when one is malformed.

    ``plugins`` are the plug-in tables the store was opened with (by name); a frame for
    any other table name is refused.
    """
    specs = plugins or {}
    tables: dict[str, pl.DataFrame] = {}
    for name, frame in batch.tables.items():
        if name not in specs:
            raise SchemaError(f"unknown table {name!r}: open the store with the kind that "
                              f"writes it (known: {sorted(specs)})", source=name)
        if frame is not None and frame.height:
            tables[name] = _plugin_frame(frame, specs[name], now)

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
            meas = drop_repeated_keys(meas, ("cell_id", "ts"), keep="first")
    steps = nonempty(batch.steps)
    if steps is not None:
        steps = conform_frame(steps, STEP_SCHEMA, table="steps", required=STEPS.key,
                              fill_nan=True)
        steps = _dedupe(steps, STEPS.key).with_columns(pl.lit(now, pl.Float64).alias("updated_at"))
    cycles = nonempty(batch.cycles)
    if cycles is not None:
        cycles = conform_frame(cycles, CYCLE_SCHEMA, table="cycles", required=CYCLES.key,
                               fill_nan=True)
        bad = cycles.filter(~pl.col("status").is_in(list(STATUSES)) & pl.col("status").is_not_null())
        if bad.height:
            raise SchemaError(f"status must be one of {STATUSES}, got {bad['status'][0]!r}",
                              field="status", source="cycles")
        cycles = _dedupe(cycles, CYCLES.key).with_columns(
            pl.lit(now, pl.Float64).alias("updated_at"))
    alerts = nonempty(batch.alerts)
    if alerts is not None:
        alerts = conform_frame(alerts, ALERT_SCHEMA, table="alerts", required=("ts", "rule"))
        alerts = alerts.with_columns(pl.col("severity").fill_null("warning")).unique(
            subset=list(ALERT_KEY), keep="first", maintain_order=True)
    episodes = nonempty(batch.alert_episodes)
    if episodes is not None:
        episodes = conform_frame(episodes, ALERT_EPISODE_SCHEMA, table="alert_episodes",
                                 required=ALERT_EPISODE_KEY, fill_nan=True)
        bad = episodes.filter(~pl.col("state").is_in(["open", "resolved"]))
        if bad.height:
            raise SchemaError(f"episode state must be open or resolved, got {bad['state'][0]!r}",
                              field="state", source="alert_episodes")
        episodes = _dedupe(episodes, ALERT_EPISODE_KEY).with_columns(
            pl.lit(now, pl.Float64).alias("updated_at"))
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
    return ConformedBatch(meas, steps, cycles, dead, alerts, cells, checkpoints, counters, now,
                          tables, episodes)
