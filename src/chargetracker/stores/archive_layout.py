"""What a Parquet archive holds: one telemetry kind's raw records (:class:`ArchiveLayout`),
and the naming rules of its files (partition segments, days, batch ids).

The archive (:mod:`.archive`) is kind-generic: cells, meters or any kind whose raw table
has an entity column and an epoch-seconds ``ts`` are archived the same way::

    root/group=<G>/date=<YYYY-MM-DD>/part-<uuid>.parquet     raw records
    root/_<entities>/<entities>-<uuid>.parquet               entity metadata
    root/_meta/layout.json                                   which kind the archive holds
    root/_meta/engine.json                                   the engine settings (cells)

``G`` is the entity's group (a cell's ``group``, a meter's ``house_id``: whatever the
layout's ``group_column`` of the metadata names), percent-encoded.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import polars as pl
import pyarrow as pa

from ..errors import ConfigError
from ..kinds.base import TelemetryKind
from ..kinds.meter import METERS
from ..meters.schema import METER_SCHEMA, READING_SCHEMA, REQUIRED_READING_COLUMNS
from ..schema import CELL_SCHEMA, MEASUREMENT_SCHEMA, REQUIRED_COLUMNS

__all__ = [
    "CELL_ARCHIVE",
    "METER_ARCHIVE",
    "NULL_PARTITION",
    "ArchiveLayout",
    "archive_layout",
    "arrow_type",
    "batch_id_for",
    "decode_group",
    "encode_group",
    "parse_day",
]

#: Hive's name for a null partition value (Spark, PyArrow and Polars read it as null).
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


@dataclass(frozen=True, slots=True)
class ArchiveLayout:
    """One kind's archive layout.

    ``schema``: the raw record columns stored in the files (needs ``entity_key`` and a
    Float64 ``ts``, epoch s UTC); ``required``: columns a batch must carry;
    ``meta_schema``: the kind's entity metadata (None: the kind has none), stored under
    ``_<meta_name>/``; ``group_column``: the metadata column whose value partitions an
    entity's rows (``group=`` directories; None: every row in the null group);
    ``meta_table``: the kind's table that carries new metadata in a commit (None: the
    commit's ``cells``, the cell kind's own field).
    """

    kind: str
    schema: Mapping[str, pl.DataType]
    entity_key: str
    required: tuple[str, ...] = ()
    meta_schema: Mapping[str, pl.DataType] | None = None
    meta_name: str = "entities"
    group_column: str | None = None
    meta_table: str | None = None

    def __post_init__(self) -> None:
        if self.entity_key not in self.schema:
            raise ConfigError(f"archive layout {self.kind}: no {self.entity_key!r} column")
        if self.schema.get("ts") != pl.Float64:
            raise ConfigError(f"archive layout {self.kind}: needs a Float64 ts column (epoch s)")
        if self.meta_schema is not None and self.entity_key not in self.meta_schema:
            raise ConfigError(f"archive layout {self.kind}: metadata has no {self.entity_key!r}")
        if self.group_column is not None and (self.meta_schema is None
                                              or self.group_column not in self.meta_schema):
            raise ConfigError(f"archive layout {self.kind}: metadata has no {self.group_column!r}")

    @property
    def sort_key(self) -> list[str]:
        """Row order inside a file (entity, then time): row-group statistics skip
        other entities on a filtered read."""
        return [self.entity_key, "ts"]

    def marker(self) -> str:
        """The ``_meta/layout.json`` text naming what the archive holds."""
        return json.dumps({"kind": self.kind, "entity_key": self.entity_key,
                           "columns": list(self.schema)}, sort_keys=True)


#: The cell kind's archive (the default): canonical measurements, cell metadata, by group.
CELL_ARCHIVE = ArchiveLayout("cell", dict(MEASUREMENT_SCHEMA), "cell_id", tuple(REQUIRED_COLUMNS),
                             dict(CELL_SCHEMA), "cells", "group")

#: Meter readings: partitioned by house (a house's meters together: the batch layer reads
#: one house at a time and every meter in it is whole), metadata = meter metadata.
METER_ARCHIVE = ArchiveLayout("meter", dict(READING_SCHEMA), "meter_id",
                              tuple(REQUIRED_READING_COLUMNS), dict(METER_SCHEMA), "meters",
                              "house_id", METERS.name)


def archive_layout(kind: TelemetryKind, *, meta_schema: Mapping[str, pl.DataType] | None = None,
                   meta_name: str | None = None, group_column: str | None = None) -> ArchiveLayout:
    """The archive layout of a kind's raw table (``kind.raw_table``), with optional
    entity metadata (``meta_schema``, partitioned by its ``group_column``)."""
    raw = kind.raw_table
    if raw is None:
        raise ConfigError(f"kind {kind.name!r} stores no raw records: nothing to archive")
    return ArchiveLayout(kind.name, dict(raw.schema), kind.entity_key, tuple(raw.key),
                         None if meta_schema is None else dict(meta_schema),
                         meta_name or f"{kind.name}s", group_column)


def batch_id_for(source: str, position: Any) -> str:
    """A stable batch id from a source name and the position the batch starts at.

    ``position`` is any JSON-serializable value (file offset, Kafka ``{partition:
    offset}``, simulator clock); keys are sorted so equal positions give equal ids.
    """
    try:
        pos = json.dumps(position, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"batch position of {source!r} is not JSON-serializable: {exc}") from exc
    return f"{source}@{pos}"


def parse_day(value: str | _dt.date | _dt.datetime | float | int | None) -> _dt.date | None:
    """A UTC calendar day from ``YYYY-MM-DD``, an ISO datetime, a date or epoch seconds."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_dt.UTC)
        return value.date()
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not np.isfinite(value):
            raise ConfigError(f"day {value!r} is not a finite epoch time")
        return _dt.datetime.fromtimestamp(float(value), tz=_dt.UTC).date()
    text = str(value).strip()
    try:
        if len(text) == 10:
            return _dt.date.fromisoformat(text)
        return parse_day(_dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise ConfigError(f"cannot read {value!r} as a date; expected YYYY-MM-DD") from None


def encode_group(group: str | None) -> str:
    """Directory segment value of a group (percent-encoded; null -> NULL_PARTITION)."""
    if group is None or group == "":
        return NULL_PARTITION
    return quote(group, safe="")


def decode_group(segment: str) -> str | None:
    return None if segment == NULL_PARTITION else unquote(segment)


def arrow_type(dtype: pl.DataType) -> pa.DataType:
    """The Arrow type of a layout column (text, 64-bit integers and floats)."""
    if dtype == pl.Utf8:
        return pa.string()
    if dtype == pl.Int64:
        return pa.int64()
    if dtype == pl.Float64:
        return pa.float64()
    raise ConfigError(f"archive columns are text, Int64 or Float64, not {dtype}")
