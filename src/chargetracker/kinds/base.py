"""The telemetry-kind protocol: what a kind of telemetry (cells, packs, meters, ...) tells
the core so that sources, the micro-batch step, the stores, the API and the query layer
work for it without knowing it.

A kind declares

* its **canonical record** (``measurement_schema``, ``entity_key``) and how a raw batch is
  validated into good rows and dead letters (:meth:`TelemetryKind.validate`);
* its **engine**: ``new_state`` / ``update`` / ``flush`` / ``summarize`` and a byte form of
  the state for checkpoints (the engine stays pure: these are plain functions);
* the **tables** it writes (:class:`TableSpec`: schema, key, write mode); stores derive
  the DDL from the schemas and upsert by the keys;
* its **alert rules** (:class:`AlertRule`, each switched on or off by name in an
  :class:`~chargetracker.runtime.step.AlertPolicy`);
* its **read queries** (:class:`ReadQuery`: a table, the columns a caller may filter on),
  answered by the store's read port and exposed by the API.

This module is pure (Polars and NumPy only): kinds are defined below the stores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import polars as pl

from ..schema import DEAD_LETTER_SCHEMA, Validated

__all__ = [
    "AlertContext",
    "AlertRule",
    "KindOutput",
    "ReadQuery",
    "TableSpec",
    "TelemetryKind",
    "WriteMode",
]

#: How a table is written: ``upsert`` (insert or replace by key; results), ``insert_new``
#: (insert unless the key exists; raw records, replays are no-ops), ``append`` (no key).
WriteMode = Literal["upsert", "insert_new", "append"]


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One table a kind writes: column layout, key and write mode.

    ``json_columns`` are text columns holding a JSON object (stored as JSON). Stores add
    an ``updated_at`` column (wall s) to ``upsert`` tables.
    """

    name: str
    schema: Mapping[str, pl.DataType]
    key: tuple[str, ...] = ()
    mode: WriteMode = "upsert"
    json_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        missing = [k for k in self.key if k not in self.schema]
        if missing:
            raise ValueError(f"table {self.name}: key column(s) {missing} not in its schema")
        if self.mode != "append" and not self.key:
            raise ValueError(f"table {self.name}: mode {self.mode!r} needs a key")

    @property
    def stamped(self) -> bool:
        """True when the store adds ``updated_at`` (results that are rewritten)."""
        return self.mode == "upsert"


@dataclass(frozen=True, slots=True)
class ReadQuery:
    """A read a kind offers: rows of ``table`` filtered by equality on ``filters``
    columns (parameterized by the store), ordered by the table's key."""

    name: str
    table: str
    filters: tuple[str, ...] = ()
    description: str = ""


@dataclass(slots=True)
class KindOutput:
    """What one engine call produced.

    ``tables`` maps a table name to the rows to write (closed records and snapshots of
    open ones); ``accepted_rows`` are the rows of the validated good frame the engine
    took in (for raw storage), sorted.
    """

    tables: dict[str, pl.DataFrame]
    rejected: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=DEAD_LETTER_SCHEMA))
    accepted: int = 0
    accepted_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def closed(self, table: str) -> int:
        """Rows of ``table`` whose ``status`` is closed (0 without such a column)."""
        frame = self.tables.get(table)
        if frame is None or frame.height == 0 or "status" not in frame.columns:
            return 0
        return int((frame.get_column("status") == "closed").sum())


@dataclass(frozen=True, slots=True)
class AlertContext:
    """What an alert rule may look at besides the batch's results.

    ``groups`` maps entity id -> group; ``history`` is the store's read port (earlier
    batches are committed when the rule runs) or None where history is not available.
    """

    settings: Any
    groups: Mapping[str, str | None] = field(default_factory=dict)
    history: Any = None


@dataclass(frozen=True, slots=True)
class AlertRule:
    """A named alert rule: ``evaluate(tables, context)`` -> ALERT_SCHEMA frame.

    ``needs_history``: the rule reads earlier results through ``context.history``.
    ``judge`` (optional, for alert episodes, :mod:`chargetracker.episodes`): every
    position the rule evaluated on ``tables`` -- (cell_id, rule, cycle, ts) rows, hit
    or clean -- and the hits as ALERT_SCHEMA rows, one per (cell_id, rule, cycle) that
    holds (no "only when it becomes true" filtering: the episodes do that).
    """

    name: str
    evaluate: Callable[[Mapping[str, pl.DataFrame], AlertContext], pl.DataFrame]
    needs_history: bool = False
    description: str = ""
    judge: Callable[[Mapping[str, pl.DataFrame], AlertContext],
                    tuple[pl.DataFrame, pl.DataFrame]] | None = None


@runtime_checkable
class TelemetryKind(Protocol):
    """A kind of telemetry (see the module docstring). Implementations are plain
    objects; the cell kind is :data:`chargetracker.kinds.cell.CELLS`."""

    @property
    def name(self) -> str:
        """Short name: API path segment (``/telemetry/<name>``), pipeline default."""
        ...

    @property
    def entity_key(self) -> str:
        """Column naming the entity (cell, vehicle, meter): Kafka key and partitioning."""
        ...

    @property
    def measurement_schema(self) -> Mapping[str, pl.DataType]:
        """Canonical record layout."""
        ...

    @property
    def raw_table(self) -> TableSpec | None:
        """Table for accepted raw records (None: raw records are not stored)."""
        ...

    @property
    def tables(self) -> Sequence[TableSpec]:
        """Result tables, written by key."""
        ...

    @property
    def alert_rules(self) -> Sequence[AlertRule]:
        """Alert rules, each switched by name in an AlertPolicy."""
        ...

    @property
    def queries(self) -> Sequence[ReadQuery]:
        """Reads offered through the query layer and the API."""
        ...

    def validate(self, frame: pl.DataFrame, *, source: str) -> Validated:
        """Split a raw batch into canonical good rows and dead letters (once per batch)."""
        ...

    def new_state(self) -> Any: ...

    def update(self, state: Any, checked: Validated, *, source: str,
               entities: pl.DataFrame | None = None) -> tuple[Any, KindOutput]:
        """Advance the state by a validated batch. May mutate ``state`` in place (the
        returned state is what the caller keeps; undo is a checkpoint reload)."""
        ...

    def flush(self, state: Any) -> tuple[Any, KindOutput]:
        """End of a finite stream: settle everything pending."""
        ...

    def summarize(self, frame: pl.DataFrame) -> KindOutput:
        """The batch form: one frame in, every result out (equals update + flush)."""
        ...

    def state_to_bytes(self, state: Any) -> bytes: ...

    def state_from_bytes(self, data: bytes) -> Any: ...
