"""SQL shared by the relational stores (DuckDB and PostgreSQL), in four parts:

* :mod:`.ddl` -- dialects, table layouts derived from the column schemas, DDL;
* :mod:`.writes` -- upserts by key, insert-if-absent, appends, checkpoints, counters;
* :mod:`.queries` -- every read, built as ``(sql, params)``;
* :mod:`.batch` -- conforming a :class:`~chargetracker.stores.base.CommitBatch` before the
  transaction starts.

A backend supplies only the connection, the transaction and the way a Polars frame
becomes a relation (DuckDB: register the Arrow-backed frame; PostgreSQL: COPY into a temp
table). Values are always bound parameters, never formatted into SQL text.
"""

from __future__ import annotations

from ...vocabulary import check_metric
from .batch import ConformedBatch, conform_frame, prepare_batch
from .ddl import *  # noqa: F403 - the package's face
from .ddl import (
    ALERT_EPISODE_ROW_SCHEMA,
    ALERT_ROW_SCHEMA,
    DEAD_LETTER_ROW_SCHEMA,
    DEFAULT_SERIES_RETENTION_S,
    EPISODE_COUNTS_SCHEMA,
    INGEST_SERIES_SCHEMA,
    METRIC_VALUES_SCHEMA,
    RATE_WINDOW_S,
    column_list,
    table_from_spec,
)
from .queries import *  # noqa: F403
from .queries import Query, page
from .writes import *  # noqa: F403

__all__ = [
    "ALERT_EPISODE_ROW_SCHEMA", "ALERT_ROW_SCHEMA", "ConformedBatch", "EPISODE_COUNTS_SCHEMA", "DEAD_LETTER_ROW_SCHEMA", "DEFAULT_SERIES_RETENTION_S",
    "INGEST_SERIES_SCHEMA", "METRIC_VALUES_SCHEMA", "Query", "RATE_WINDOW_S", "check_metric",
    "column_list", "conform_frame", "page", "prepare_batch", "table_from_spec",
]
