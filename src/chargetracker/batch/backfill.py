"""Backfill: recompute steps and cycles from the Parquet archive, with Spark or locally.

For history, re-analysis after a configuration change, or a cell group that was added
later. Both engines run the *same* engine (:func:`chargetracker.engine.summarize`) on
each cell's archived samples sorted by ``ts``, with the cell's nominal capacity from the
store's cells table, so the results equal the streaming path's (the archive holds the
samples the live engine accepted; the live engine processes each cell in ``ts`` order).

* ``engine="spark"``: ``spark.read.parquet`` of the archive -> ``repartition(cell_id)`` ->
  ``groupBy("cell_id").applyInArrow`` (``applyInPandas`` on Spark 3.5) running the engine
  per cell in the Python workers -> one tagged-union frame (``record`` = cell | step |
  cycle | dead_letter) -> the store. Local mode (``local[2]``) by default; a cluster
  master (``spark://``, ``yarn``, ``k8s://``) scales it out.
* ``engine="local"``: Polars reads the archive and the engine runs in this process, in
  chunks of whole cells. Same output, no Spark.

Results reach the store through :meth:`Store.commit` (idempotent upserts by (cell_id,
step) and (cell_id, cycle)) in chunks: ``sink="driver"`` streams the Spark result to the
driver (Arrow IPC blobs via ``toLocalIterator``) and commits there (DuckDB: one writer);
``sink="executors"`` opens the store in each Spark task and commits from there (a
server store such as PostgreSQL, reachable from the workers).

Metadata. The archive carries the cell metadata and the engine settings the stream ran
with (:meth:`ParquetArchive.cells`, :meth:`ParquetArchive.engine_settings`): the store's
cells table wins for the cells it knows, the archive's rows fill in the others (a fresh
store), and without an explicit ``config`` the archived engine settings are used -- so a
backfill into a fresh store gives the stream's steps and cycles. Cells the store does not
know yet are added with their archived metadata (else just their archive group); known
cells' metadata is never touched.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import polars as pl
import pyarrow as pa

from ..config import EngineConfig, SparkConfig, engine_config_from_mapping
from ..errors import ChargeTrackerError, ConfigError
from ..kinds.cell import nominal_capacities
from ..runtime.step import put_tables
from ..schema import MEASUREMENT_SCHEMA
from ..stores.archive import ParquetArchive, collect
from ..stores.base import CommitBatch, Store, all_cells
from .results import (
    RESULT_ARROW_SCHEMA,
    RESULT_SCHEMA,
    BackfillError,
    BackfillOutput,
    _split,
    analyze_frame,
    split_results,
)
from .spark import Udf, as_result, iter_spark_results, short_error, spark_results

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession

__all__ = [
    "RESULT_ARROW_SCHEMA",
    "RESULT_SCHEMA",
    "BackfillError",
    "BackfillOutput",
    "BackfillResult",
    "analyze_frame",
    "archived_engine_config",
    "backfill",
    "collect_output",
    "iter_spark_results",
    "load_cells",
    "local_results",
    "run_backfill",
    "spark_results",
    "split_results",
]

log = logging.getLogger("chargetracker.batch.backfill")

Engine = Literal["local", "spark"]
Sink = Literal["driver", "executors"]
_MEASUREMENT_COLUMNS = list(MEASUREMENT_SCHEMA)

#: Output rows per store commit.
DEFAULT_CHUNK_ROWS = 100_000
#: Samples per engine call in the local engine (whole cells).
DEFAULT_ENGINE_ROWS = 2_000_000


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What a backfill did (counts over all cells)."""

    engine: str
    cells: int = 0
    samples: int = 0            # archived rows analysed (after dropping exact duplicates)
    duplicates: int = 0         # exact duplicate archive rows dropped (replayed batches)
    steps: int = 0
    cycles: int = 0
    closed_cycles: int = 0
    dead_letters: int = 0       # rows the engine rejected (not expected from a pipeline archive)
    new_cells: int = 0          # cells added to the store's cells table
    seconds: float = 0.0

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine, "cells": self.cells, "samples": self.samples,
            "duplicates": self.duplicates, "steps": self.steps, "cycles": self.cycles,
            "closed_cycles": self.closed_cycles, "dead_letters": self.dead_letters,
            "new_cells": self.new_cells, "seconds": round(self.seconds, 3),
            "samples_per_s": round(self.samples_per_s, 1) if self.seconds > 0 else None,
        }


# ---------------------------------------------------------------------------------
# Local engine
# ---------------------------------------------------------------------------------
def local_results(
    archive: ParquetArchive | str | Path,
    *,
    config: EngineConfig | None = None,
    nominal: Mapping[str, float] | None = None,
    cells: Sequence[str] | None = None,
    groups: Sequence[str | None] | None = None,
    since: Any = None,
    until: Any = None,
    engine_rows: int = DEFAULT_ENGINE_ROWS,
) -> Iterator[pl.DataFrame]:
    """RESULT_SCHEMA frames of the archive (filtered), computed in this process.

    Runs the engine over chunks of whole cells of about ``engine_rows`` samples each,
    read one chunk at a time (memory is bounded by a chunk, not the archive).
    """
    arch = archive if isinstance(archive, ParquetArchive) else ParquetArchive(archive)
    cfg = config or EngineConfig()
    caps = dict(nominal or {})
    lf = arch.scan(ids=cells, groups=groups, since=since, until=until).select(
        *_MEASUREMENT_COLUMNS, "group")
    sizes = collect(lf.group_by("cell_id").len().sort("cell_id"), arch.root)
    if sizes.height == 0:
        return
    # Chunks of whole cells, contiguous in cell_id order: each is one range filter,
    # which the Parquet statistics prune (files are sorted by cell_id).
    ids = sizes.get_column("cell_id").to_list()
    ends = sizes.get_column("len").cum_sum().to_list()
    bounds: list[tuple[int, int]] = []
    first, start = 0, 0
    for k, end in enumerate(ends):
        if end - start >= engine_rows or k == len(ends) - 1:
            bounds.append((first, k))
            first, start = k + 1, end
    for lo, hi in bounds:
        part = lf if len(bounds) == 1 else lf.filter(
            pl.col("cell_id").is_between(pl.lit(ids[lo]), pl.lit(ids[hi])))
        yield analyze_frame(collect(part, arch.root), cfg, caps)


# ---------------------------------------------------------------------------------
# Writing to the store
# ---------------------------------------------------------------------------------
def load_cells(store: Store, *, page_size: int = 10_000) -> pl.DataFrame:
    """Every row of the store's cells table (CELL_SCHEMA)."""
    return all_cells(store, page_size=page_size)


def _nominal(cells: pl.DataFrame) -> dict[str, float]:
    return {c: v for c, v in nominal_capacities(cells).items() if v > 0}


@dataclass
class _Counts:
    cells: int = 0
    samples: int = 0
    duplicates: int = 0
    steps: int = 0
    cycles: int = 0
    closed_cycles: int = 0
    dead_letters: int = 0
    new_cells: int = 0

    def add(self, other: _Counts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_row(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _commit(store: Store, union: pl.DataFrame, known: set[str]) -> _Counts:
    out = _split(union)
    info = out.cells
    fresh = info.filter(~pl.col("cell_id").is_in(list(known))) if known else info
    new_cells = None
    if fresh.height:
        new_cells = fresh.select("cell_id", "group")
        known.update(fresh.get_column("cell_id").to_list())
    store.commit(put_tables(
        CommitBatch(dead_letters=out.dead_letters if out.dead_letters.height else None,
                    cells=new_cells),
        {name: frame for name, frame in (("steps", out.steps), ("cycles", out.cycles))
         if frame.height}))
    return _Counts(
        cells=info.height,
        samples=int(info.get_column("n_samples").sum() or 0),
        duplicates=int(info.get_column("duplicates").sum() or 0),
        steps=out.steps.height,
        cycles=out.cycles.height,
        closed_cycles=int((out.cycles.get_column("status") == "closed").sum()),
        dead_letters=out.dead_letters.height,
        new_cells=0 if new_cells is None else new_cells.height,
    )


def _write_chunks(store: Store, frames: Iterable[pl.DataFrame], known: set[str],
                  chunk_rows: int) -> _Counts:
    total = _Counts()
    pending: list[pl.DataFrame] = []
    rows = 0
    for frame in frames:
        if frame.height == 0:
            continue
        pending.append(frame)
        rows += frame.height
        if rows >= chunk_rows:
            total.add(_commit(store, pl.concat(pending), known))
            pending, rows = [], 0
    if pending:
        total.add(_commit(store, pl.concat(pending), known))
    return total


def _server_url(url: str | None) -> bool:
    """True for a store URL that several processes can write at once (not DuckDB)."""
    if not url or "://" not in url:
        return False
    return not url.split(":", 1)[0].lower().startswith("duckdb")


_COUNTS_DDL = ", ".join(f"`{name}` bigint" for name in _Counts.__dataclass_fields__)


def _executor_sink(store_url: str, known: set[str], chunk_rows: int
                   ) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def commit_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from ..stores.url import open_store

        frames = (as_result(cast(pl.DataFrame, pl.from_arrow(b))) for b in batches)
        store = open_store(store_url)
        try:
            counts = _write_chunks(store, frames, set(known), chunk_rows)
        finally:
            store.close()
        yield pa.RecordBatch.from_pylist([counts.as_row()])

    return commit_partition


def collect_output(results: SparkFrame | Iterable[pl.DataFrame]) -> BackfillOutput:
    """All results of a Spark job or a local run, split by record type (tests, tools)."""
    frames = results if not hasattr(results, "mapInArrow") else iter_spark_results(
        cast("SparkFrame", results))
    return split_results(cast(Iterable[pl.DataFrame], frames))


def backfill(archive: str | Path, store: Store | str, **options: Any) -> BackfillResult:
    """:func:`run_backfill` for a Store or a store URL (opened and closed here: a
    convenience for scripts and tests; ``chargetracker backfill`` opens the store itself)."""
    if not isinstance(store, str):
        return run_backfill(archive, store, **options)
    from ..stores.url import open_store

    _check_options(archive, **options)
    st = open_store(store)
    try:
        return run_backfill(archive, st, store_url=store, **options)
    finally:
        st.close()


def _check_options(archive: str | Path, *, engine: Engine = "local", sink: Sink = "driver",
                   chunk_rows: int = DEFAULT_CHUNK_ROWS, engine_rows: int = DEFAULT_ENGINE_ROWS,
                   **_: Any) -> None:
    if engine not in ("local", "spark"):
        raise ConfigError(f"engine must be 'local' or 'spark', got {engine!r}")
    if sink not in ("driver", "executors"):
        raise ConfigError(f"sink must be 'driver' or 'executors', got {sink!r}")
    if chunk_rows < 1 or engine_rows < 1:
        raise ConfigError("chunk_rows and engine_rows must be >= 1")
    if engine == "local" and not Path(str(archive)).is_dir():
        raise ConfigError(f"archive {str(archive)!r} is not a directory")


def run_backfill(
    archive: str | Path,
    store: Store,
    *,
    store_url: str | None = None,
    engine: Engine = "local",
    config: EngineConfig | None = None,
    cells: Sequence[str] | None = None,
    groups: Sequence[str | None] | None = None,
    since: Any = None,
    until: Any = None,
    spark: SparkSession | None = None,
    spark_config: SparkConfig | None = None,
    spark_conf: Mapping[str, str] | None = None,
    partitions: int | None = None,
    sink: Sink = "driver",
    udf: Udf = "auto",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    engine_rows: int = DEFAULT_ENGINE_ROWS,
) -> BackfillResult:
    """Recompute steps and cycles of the archived cells and upsert them into ``store``.

    ``store`` is owned by the caller. ``store_url`` (default ``store.url``) is what each
    Spark task opens with ``sink="executors"``. ``config`` is the engine configuration
    to analyse with (re-analysis after a change). ``cells``/``groups``/``since``/``until``
    select what to recompute; note that a date window is analysed as if the history
    started at ``since`` (cycle numbers restart), so use it for data whose history
    starts there (a new group) or with a fresh store. ``spark`` is an existing session;
    otherwise one is started from ``spark_config`` (and stopped afterwards).
    """
    _check_options(archive, engine=engine, sink=sink, chunk_rows=chunk_rows,
                   engine_rows=engine_rows)
    root = str(archive)
    t0 = time.perf_counter()
    arch = ParquetArchive(root)
    cfg = config or archived_engine_config(arch) or EngineConfig()
    url = store_url if store_url is not None else getattr(store, "url", None)
    known_cells = load_cells(store)
    known = set(known_cells.get_column("cell_id").to_list())
    archived = arch.cells()
    added = 0
    if archived.height:
        fresh = archived.filter(~pl.col("cell_id").is_in(list(known))) if known else archived
        if fresh.height:
            # Cells the store does not know: their archived metadata, in the store too.
            store.commit(CommitBatch(cells=fresh))
            known.update(fresh.get_column("cell_id").to_list())
            added = fresh.height
        known_cells = pl.concat([known_cells, fresh.select(known_cells.columns)])
    nominal = _nominal(known_cells)
    if engine == "local":
        frames = local_results(root, config=cfg, nominal=nominal, cells=cells, groups=groups,
                               since=since, until=until, engine_rows=engine_rows)
        counts = _write_chunks(store, frames, known, chunk_rows)
    else:
        counts = _spark_backfill(root, store, url, cfg, nominal, known, cells, groups,
                                 since, until, spark, spark_config, spark_conf, partitions,
                                 sink, udf, chunk_rows)
    counts.new_cells += added
    return BackfillResult(engine=engine, seconds=time.perf_counter() - t0, **counts.as_row())


def archived_engine_config(archive: ParquetArchive) -> EngineConfig | None:
    """The engine settings recorded in the archive (settings this version does not know
    are left out, with a warning), or None."""
    data = archive.engine_settings()
    if data is None:
        return None
    known = {f.name for f in fields(EngineConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        log.warning("archive %s: engine settings %s are unknown to this version; ignored",
                    archive.root, unknown)
    return engine_config_from_mapping({k: v for k, v in data.items() if k in known})


def _spark_backfill(root: str, st: Store, store_url: str | None, cfg: EngineConfig,
                    nominal: dict[str, float], known: set[str], cells: Sequence[str] | None,
                    groups: Sequence[str | None] | None, since: Any, until: Any,
                    spark: SparkSession | None, spark_config: SparkConfig | None,
                    spark_conf: Mapping[str, str] | None, partitions: int | None, sink: Sink,
                    udf: Udf, chunk_rows: int) -> _Counts:
    from .session import session_scope

    with ExitStack() as stack:
        session = spark if spark is not None else stack.enter_context(
            session_scope(spark_config, conf=spark_conf))
        results = spark_results(session, root, config=cfg, nominal=nominal, cells=cells,
                                groups=groups, since=since, until=until,
                                partitions=partitions, udf=udf)
        if sink == "driver":
            return _write_chunks(st, iter_spark_results(results), known, chunk_rows)
        if store_url is None or not _server_url(store_url):
            raise ConfigError(
                "sink 'executors' needs a server store URL every Spark worker can open "
                "(postgresql://...); a DuckDB file has one writer: use sink 'driver'"
            )
        try:
            rows = results.mapInArrow(_executor_sink(store_url, known, chunk_rows),
                                      _COUNTS_DDL).collect()
        except ChargeTrackerError:
            raise
        except Exception as exc:  # Py4J / Spark job errors
            raise BackfillError(f"Spark backfill failed: {short_error(exc)}") from exc
        total = _Counts()
        for row in rows:
            total.add(_Counts(**row.asDict()))
        return total
