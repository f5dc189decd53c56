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

Cells in the archive that the store does not know yet are added with their archive
group (other metadata stays empty); known cells' metadata is never touched.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import polars as pl
import pyarrow as pa

from ..config import EngineConfig, SparkConfig
from ..engine import Summary, summarize
from ..errors import ChargeTrackerError, ConfigError
from ..schema import (
    CELL_SCHEMA,
    CYCLE_SCHEMA,
    DEAD_LETTER_SCHEMA,
    MEASUREMENT_SCHEMA,
    STEP_SCHEMA,
    conform,
)
from ..stores.archive import (
    ARCHIVE_SCHEMA,
    PARTITION_SCHEMA,
    ParquetArchive,
    collect,
    parse_day,
)
from ..stores.base import CommitBatch, Store

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession

__all__ = [
    "RESULT_SCHEMA",
    "BackfillError",
    "BackfillOutput",
    "BackfillResult",
    "analyze_frame",
    "backfill",
    "collect_output",
    "iter_spark_results",
    "load_cells",
    "local_results",
    "spark_results",
    "split_results",
]

Engine = Literal["local", "spark"]
Sink = Literal["driver", "executors"]
Udf = Literal["auto", "arrow", "pandas"]


class BackfillError(ChargeTrackerError):
    """The backfill job failed (Spark job error, unreadable archive)."""


def _union_schema() -> dict[str, pl.DataType]:
    out: dict[str, pl.DataType] = {
        "record": pl.Utf8(),       # cell | step | cycle | dead_letter
        "group": pl.Utf8(),        # cell records: the cell's archive group (latest)
        "duplicates": pl.Int64(),  # cell records: exact duplicate rows dropped
    }
    for schema in (STEP_SCHEMA, CYCLE_SCHEMA, DEAD_LETTER_SCHEMA):
        for name, dtype in schema.items():
            if name in out and out[name] != dtype:  # pragma: no cover - schema invariant
                raise AssertionError(f"column {name} differs between result schemas")
            out.setdefault(name, dtype)
    return out


#: One frame for every result of a backfill (tagged union; unused columns null).
#: ``cell`` records carry ``cell_id``, ``group``, ``n_samples`` (rows analysed) and
#: ``duplicates``; the others the columns of STEP_SCHEMA / CYCLE_SCHEMA / DEAD_LETTER_SCHEMA.
RESULT_SCHEMA: dict[str, pl.DataType] = _union_schema()
_MEASUREMENT_COLUMNS = list(MEASUREMENT_SCHEMA)
_ARROW_TYPES = {pl.Utf8(): pa.string(), pl.Int64(): pa.int64(), pl.Float64(): pa.float64()}
RESULT_ARROW_SCHEMA = pa.schema([(c, _ARROW_TYPES[t]) for c, t in RESULT_SCHEMA.items()])
#: Output rows per store commit.
DEFAULT_CHUNK_ROWS = 100_000
#: Samples per engine call in the local engine (whole cells).
DEFAULT_ENGINE_ROWS = 2_000_000
_BACKFILL_SOURCE = "backfill"


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


@dataclass(frozen=True, slots=True)
class BackfillOutput:
    """Results split by record type (for inspection and tests)."""

    steps: pl.DataFrame
    cycles: pl.DataFrame
    dead_letters: pl.DataFrame
    cells: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(
        schema={"cell_id": pl.Utf8, "group": pl.Utf8, "n_samples": pl.Int64,
                "duplicates": pl.Int64}))


# ---------------------------------------------------------------------------------
# The per-cell analysis (shared by both engines)
# ---------------------------------------------------------------------------------
def _prepare(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Canonical rows sorted by (cell_id, ts) without exact duplicates, and per-cell info.

    Exact duplicate rows only arise when a batch was archived twice under different
    ids; they are the same sample, so dropping them is what the live engine saw.
    Rows with the same ts but different values are left for the engine, which keeps
    the first (in a deterministic order here) and dead-letters the others.
    """
    group = (frame.get_column("group").cast(pl.Utf8) if "group" in frame.columns
             else pl.Series("group", [None] * frame.height, dtype=pl.Utf8))
    data = conform(frame, source="archive").with_columns(group.alias("group"))
    data = data.sort(["cell_id", "ts"], maintain_order=True)
    same = (pl.col("ts").diff() == 0) & (pl.col("cell_id") == pl.col("cell_id").shift())
    counts = data.group_by("cell_id", maintain_order=True).agg(
        pl.len().cast(pl.Int64).alias("__rows"), pl.col("group").last())
    if data.height > 1 and bool(data.select(same.fill_null(False).any()).item()):
        data = data.sort([*_MEASUREMENT_COLUMNS, "group"], nulls_last=True, maintain_order=True)
        data = data.unique(subset=_MEASUREMENT_COLUMNS, keep="first", maintain_order=True)
    kept = data.group_by("cell_id", maintain_order=True).agg(pl.len().cast(pl.Int64).alias("n_samples"))
    info = counts.join(kept, on="cell_id", how="left").select(
        "cell_id", "group", "n_samples",
        (pl.col("__rows") - pl.col("n_samples")).alias("duplicates"))
    return data.select(_MEASUREMENT_COLUMNS), info


def analyze_frame(frame: pl.DataFrame, config: EngineConfig,
                  nominal: Mapping[str, float]) -> pl.DataFrame:
    """Run the engine over the archived samples of some cells; a RESULT_SCHEMA frame.

    ``frame`` has the canonical columns (plus optionally ``group``), any order.
    ``nominal`` maps cell_id -> nominal capacity, Ah (sets the rest threshold).
    """
    data, info = _prepare(frame)
    ids = info.get_column("cell_id").to_list()
    caps = {c: nominal[c] for c in ids if c in nominal}
    cells = pl.DataFrame({"cell_id": list(caps), "nominal_capacity_ah": list(caps.values())},
                         schema={"cell_id": pl.Utf8, "nominal_capacity_ah": pl.Float64})
    summary = summarize(data, config, cells=cells if caps else None, source=_BACKFILL_SOURCE)
    return to_union(summary, info)


def to_union(summary: Summary, info: pl.DataFrame) -> pl.DataFrame:
    """A Summary (+ per-cell info) as one RESULT_SCHEMA frame."""
    parts = [
        info.with_columns(pl.lit("cell").alias("record")),
        summary.steps.with_columns(pl.lit("step").alias("record")),
        summary.cycles.with_columns(pl.lit("cycle").alias("record")),
        summary.rejected.with_columns(pl.lit("dead_letter").alias("record")),
    ]
    cols = []
    for part in parts:
        cols.append(part.select(
            pl.col(c).cast(t) if c in part.columns else pl.lit(None, dtype=t).alias(c)
            for c, t in RESULT_SCHEMA.items()))
    return pl.concat(cols)


def split_results(frames: Iterable[pl.DataFrame]) -> BackfillOutput:
    """Gather RESULT_SCHEMA frames into steps, cycles, dead letters and cell info."""
    parts = [f for f in frames if f.height]
    union = pl.concat(parts) if parts else pl.DataFrame(schema=RESULT_SCHEMA)
    return _split(union)


def _split(union: pl.DataFrame) -> BackfillOutput:
    def take(kind: str, schema: Mapping[str, pl.DataType], keys: list[str]) -> pl.DataFrame:
        sub = union.filter(pl.col("record") == kind).select(list(schema))
        return sub.sort(keys) if keys else sub

    return BackfillOutput(
        steps=take("step", STEP_SCHEMA, ["cell_id", "step"]),
        cycles=take("cycle", CYCLE_SCHEMA, ["cell_id", "cycle"]),
        dead_letters=take("dead_letter", DEAD_LETTER_SCHEMA, []),
        cells=union.filter(pl.col("record") == "cell").select(
            "cell_id", "group", "n_samples", "duplicates").sort("cell_id"),
    )


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
    lf = arch.scan(cells=cells, groups=groups, since=since, until=until).select(
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
# Spark engine
# ---------------------------------------------------------------------------------
def _spark_type(dtype: pl.DataType) -> str:
    return {pl.Utf8(): "string", pl.Int64(): "bigint", pl.Float64(): "double"}[dtype]


def _ddl(schema: Mapping[str, pl.DataType]) -> str:
    return ", ".join(f"`{c}` {_spark_type(t)}" for c, t in schema.items())


#: Spark schema of the archive (file columns + partition columns, all typed).
ARCHIVE_DDL = _ddl({**ARCHIVE_SCHEMA, **PARTITION_SCHEMA})
RESULT_DDL = _ddl(RESULT_SCHEMA)


def _arrow_udf(config: EngineConfig, nominal: Mapping[str, float]) -> Callable[[pa.Table], pa.Table]:
    def analyze_cell(table: pa.Table) -> pa.Table:
        frame = cast(pl.DataFrame, pl.from_arrow(table))
        return analyze_frame(frame, config, nominal).to_arrow().cast(RESULT_ARROW_SCHEMA)

    return analyze_cell


def _pandas_udf(config: EngineConfig, nominal: Mapping[str, float]) -> Callable[[Any], Any]:
    def analyze_cell(pdf: Any) -> Any:
        # NaN in float columns of a pandas frame is null in Spark; the engine treats a
        # missing temperature or step time like NaN, so nothing changes.
        frame = pl.from_pandas(pdf, nan_to_null=True)
        return analyze_frame(frame, config, nominal).to_pandas()

    return analyze_cell


def spark_results(
    spark: SparkSession,
    source: str | Path,
    *,
    config: EngineConfig | None = None,
    nominal: Mapping[str, float] | None = None,
    cells: Sequence[str] | None = None,
    groups: Sequence[str | None] | None = None,
    since: Any = None,
    until: Any = None,
    partitions: int | None = None,
    udf: Udf = "auto",
) -> SparkFrame:
    """The Spark job (lazy): a DataFrame of RESULT_SCHEMA rows for the archive at ``source``.

    ``source`` is the archive root (a local path, or any URI Spark reads: hdfs://,
    s3a://). Filters select partitions (group, date) and cells before the shuffle.
    """
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    cfg = config or EngineConfig()
    caps = dict(nominal or {})
    root = str(source)
    try:
        df = spark.read.schema(ARCHIVE_DDL).option("basePath", root).parquet(root)
    except AnalysisException as exc:
        raise ConfigError(f"cannot read archive {root!r}: {exc}") from exc
    if cells is not None:
        df = df.where(F.col("cell_id").isin(list(cells)))
    if groups is not None:
        named = [g for g in groups if g is not None]
        cond = F.col("group").isin(named) if named else F.lit(False)
        if any(g is None for g in groups):
            cond = cond | F.col("group").isNull()
        df = df.where(cond)
    lo, hi = parse_day(since), parse_day(until)
    if lo is not None:
        df = df.where(F.col("date") >= lo.isoformat())
    if hi is not None:
        df = df.where(F.col("date") <= hi.isoformat())
    df = df.select(*_MEASUREMENT_COLUMNS, "group")
    n = partitions or int(spark.conf.get("spark.sql.shuffle.partitions") or 4)
    grouped = df.repartition(n, "cell_id").groupBy("cell_id")
    use = udf
    if use == "auto":
        use = "arrow" if hasattr(grouped, "applyInArrow") else "pandas"
    if use == "arrow":
        return grouped.applyInArrow(_arrow_udf(cfg, caps), RESULT_DDL)
    if use == "pandas":
        return grouped.applyInPandas(_pandas_udf(cfg, caps), RESULT_DDL)
    raise ConfigError(f"udf must be auto, arrow or pandas, got {udf!r}")


#: Result rows per Arrow IPC blob sent from a Spark task to the driver.
_BLOB_ROWS = 65_536


def _to_ipc(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow: pack result batches into Arrow IPC blobs (one binary cell each)."""
    pending: list[pa.RecordBatch] = []
    rows = 0

    def blob() -> pa.RecordBatch:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, pending[0].schema) as writer:
            for b in pending:
                writer.write_batch(b)
        return pa.RecordBatch.from_arrays([pa.array([sink.getvalue().to_pybytes()], pa.binary())],
                                          names=["ipc"])

    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        rows += batch.num_rows
        if rows >= _BLOB_ROWS:
            yield blob()
            pending, rows = [], 0
    if pending:
        yield blob()


def iter_spark_results(results: SparkFrame) -> Iterator[pl.DataFrame]:
    """Stream a :func:`spark_results` frame to the driver as RESULT_SCHEMA Polars frames.

    One Spark partition at a time (``toLocalIterator``), as Arrow IPC blobs: the
    driver holds one partition's results, never the whole backfill.
    """
    blobs = results.mapInArrow(_to_ipc, "ipc binary")
    try:
        for row in blobs.toLocalIterator(prefetchPartitions=True):
            table = pa.ipc.open_stream(io.BytesIO(row["ipc"])).read_all()
            yield _as_result(cast(pl.DataFrame, pl.from_arrow(table)))
    except ChargeTrackerError:
        raise
    except Exception as exc:  # Py4J / Spark job errors
        raise BackfillError(f"Spark backfill failed: {_short(exc)}") from exc


def _as_result(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(pl.col(c).cast(t) for c, t in RESULT_SCHEMA.items())


def _short(exc: BaseException, limit: int = 2000) -> str:
    text = str(exc).strip()
    return text if len(text) <= limit else text[:limit] + " ..."


# ---------------------------------------------------------------------------------
# Writing to the store
# ---------------------------------------------------------------------------------
def load_cells(store: Store, *, page_size: int = 10_000) -> pl.DataFrame:
    """Every row of the store's cells table (CELL_SCHEMA)."""
    pages = []
    offset = 0
    while True:
        page = store.cells(limit=page_size, offset=offset)
        if page.height:
            pages.append(page)
        offset += page.height
        if page.height < page_size:
            break
    return pl.concat(pages) if pages else pl.DataFrame(schema=CELL_SCHEMA)


def _nominal(cells: pl.DataFrame) -> dict[str, float]:
    sub = cells.select("cell_id", pl.col("nominal_capacity_ah").cast(pl.Float64)).drop_nulls()
    return {c: float(v) for c, v in sub.iter_rows() if math.isfinite(v) and v > 0}


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
    store.commit(CommitBatch(
        steps=out.steps if out.steps.height else None,
        cycles=out.cycles if out.cycles.height else None,
        dead_letters=out.dead_letters if out.dead_letters.height else None,
        cells=new_cells,
    ))
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

        frames = (_as_result(cast(pl.DataFrame, pl.from_arrow(b))) for b in batches)
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


def backfill(
    archive: str | Path,
    store: Store | str,
    *,
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

    ``store`` is a Store or a store URL. ``config`` is the engine configuration to
    analyse with (re-analysis after a change). ``cells``/``groups``/``since``/``until``
    select what to recompute; note that a date window is analysed as if the history
    started at ``since`` (cycle numbers restart), so use it for data whose history
    starts there (a new group) or with a fresh store. ``spark`` is an existing session;
    otherwise one is started from ``spark_config`` (and stopped afterwards).
    """
    if engine not in ("local", "spark"):
        raise ConfigError(f"engine must be 'local' or 'spark', got {engine!r}")
    if sink not in ("driver", "executors"):
        raise ConfigError(f"sink must be 'driver' or 'executors', got {sink!r}")
    if chunk_rows < 1 or engine_rows < 1:
        raise ConfigError("chunk_rows and engine_rows must be >= 1")
    root = str(archive)
    if engine == "local" and not Path(root).is_dir():
        raise ConfigError(f"archive {root!r} is not a directory")
    cfg = config or EngineConfig()
    t0 = time.perf_counter()
    own_store = isinstance(store, str)
    if isinstance(store, str):
        from ..stores.url import open_store

        store_url: str | None = store
        st = open_store(store)
    else:
        st = store
        store_url = getattr(store, "url", None)
    try:
        known_cells = load_cells(st)
        nominal = _nominal(known_cells)
        known = set(known_cells.get_column("cell_id").to_list())
        if engine == "local":
            frames = local_results(root, config=cfg, nominal=nominal, cells=cells, groups=groups,
                                   since=since, until=until, engine_rows=engine_rows)
            counts = _write_chunks(st, frames, known, chunk_rows)
        else:
            counts = _spark_backfill(root, st, store_url, cfg, nominal, known, cells, groups,
                                     since, until, spark, spark_config, spark_conf, partitions,
                                     sink, udf, chunk_rows)
    finally:
        if own_store:
            st.close()
    return BackfillResult(engine=engine, seconds=time.perf_counter() - t0, **counts.as_row())


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
            raise BackfillError(f"Spark backfill failed: {_short(exc)}") from exc
        total = _Counts()
        for row in rows:
            total.add(_Counts(**row.asDict()))
        return total
