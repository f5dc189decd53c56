"""The Parquet archive of raw measurements: the input of the batch layer (backfill).

Layout (hive style, readable by Spark, PyArrow, Polars and DuckDB)::

    root/group=<G>/date=<YYYY-MM-DD>/part-<uuid>.parquet

``G`` is the cell's group, percent-encoded (``a/b`` -> ``a%2Fb``); cells without a group
go to ``group=__HIVE_DEFAULT_PARTITION__``, which every hive reader reads back as null.
``date`` is the UTC calendar day of ``ts``. Files hold the canonical measurement columns
(:data:`~chargetracker.schema.MEASUREMENT_SCHEMA`) sorted by (cell_id, ts); the partition
columns live only in the path.

Guarantees:

* **append-only**: :meth:`ParquetArchive.append` only adds files; nothing rewrites or
  deletes old data.
* **atomic files**: each file is written under a hidden temporary name
  (``.part-....parquet.tmp``, ignored by every reader) and renamed into place, so a reader
  never sees half a file, and a crash leaves at worst a stray temporary file.
* **idempotent per batch**: the file name is derived from the batch id (a UUID5 of it),
  so replaying a batch after a crash *replaces* its own files instead of adding copies.
  Use :func:`batch_id_for` (source + the position the batch was read from) as the id.
  Should a replay ever be cut differently (a different id), the rows it repeats are exact
  duplicates, which :mod:`chargetracker.batch.backfill` drops before analysis.

The archive keeps the *accepted* samples of the live pipeline (what the engine consumed),
so recomputing them gives the streaming results again -- with the metadata the numbers
depend on, kept beside the data (directories starting with ``_`` are skipped by every
hive reader)::

    root/_cells/cells-<uuid>.parquet     cell metadata (CELL_SCHEMA + archived_at, wall s)
    root/_meta/engine.json               the engine settings the stream ran with

A cell's nominal capacity sets its rest threshold (epsilon) and capacity-relative step
filter, so a backfill into a fresh store needs it to reproduce the stream's steps and
cycles: :meth:`ParquetArchive.cells` (latest row per cell) and
:meth:`ParquetArchive.engine_settings` give them back.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import quote, unquote

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads

from ..errors import ConfigError, StoreError, StoreUnavailable
from ..schema import CELL_SCHEMA, MEASUREMENT_SCHEMA, conform

__all__ = [
    "ARCHIVE_SCHEMA",
    "NULL_PARTITION",
    "PARTITION_SCHEMA",
    "ParquetArchive",
    "batch_id_for",
    "collect",
    "parse_day",
]

#: Hive's name for a null partition value (Spark, PyArrow and Polars read it as null).
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
#: Columns stored in the files.
ARCHIVE_SCHEMA: dict[str, pl.DataType] = dict(MEASUREMENT_SCHEMA)
#: Columns encoded in the directory names.
PARTITION_SCHEMA: dict[str, pl.DataType] = {"group": pl.Utf8(), "date": pl.Utf8()}
#: uuid5 namespace of archive file names (fixed: names must not change between releases).
_NAMESPACE = uuid.UUID("6f1c5a52-2d7e-4c35-9b1e-0c5d1b3a7e10")
_SECONDS_PER_DAY = 86_400
#: Metadata directories (leading underscore: hive readers skip them).
CELLS_DIR = "_cells"
META_DIR = "_meta"
ARCHIVED_CELL_SCHEMA: dict[str, pl.DataType] = {**CELL_SCHEMA, "archived_at": pl.Float64()}
Compression = Literal["zstd", "lz4", "snappy", "gzip", "brotli", "uncompressed"]


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


def _groups_frame(groups: Mapping[str, str | None] | pl.DataFrame | None) -> pl.DataFrame | None:
    if groups is None:
        return None
    if isinstance(groups, pl.DataFrame):
        if "cell_id" not in groups.columns or "group" not in groups.columns:
            raise ConfigError("groups frame needs columns cell_id and group")
        frame = groups.select(pl.col("cell_id").cast(pl.Utf8), pl.col("group").cast(pl.Utf8))
    else:
        frame = pl.DataFrame({"cell_id": list(groups), "group": list(groups.values())},
                             schema={"cell_id": pl.Utf8, "group": pl.Utf8})
    # One group per cell: the last mapping given wins, as in a dict.
    return frame.unique(subset=["cell_id"], keep="last")


def _day_string(day: int) -> str:
    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=int(day))).isoformat()


class ParquetArchive:
    """Append-only, hive-partitioned Parquet archive of canonical measurements.

    Parameters
    ----------
    root:
        Directory of the archive (created on the first append). Local file system
        (atomic rename); Spark may read the same layout from any file system.
    compression:
        Parquet codec (``zstd`` default).
    fsync:
        Flush each file and its directory to disk before returning from
        :meth:`append` (durability across power loss; on by default).
    """

    def __init__(self, root: str | os.PathLike[str], *, compression: Compression = "zstd",
                 fsync: bool = True) -> None:
        self.root = Path(root).expanduser()
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"archive root {str(self.root)!r} exists and is not a directory")
        self.compression = compression
        self.fsync = fsync

    def __repr__(self) -> str:
        return f"ParquetArchive({str(self.root)!r})"

    # -- writes ----------------------------------------------------------------------
    def append(self, frame: pl.DataFrame,
               groups: Mapping[str, str | None] | pl.DataFrame | None = None,
               batch_id: str | None = None) -> list[Path]:
        """Archive one batch of canonical measurements; returns the files written.

        ``groups`` maps cell_id -> group (a dict or a frame with ``cell_id`` and
        ``group``); unmapped cells go to the null group. ``batch_id`` identifies the
        batch (see :func:`batch_id_for`): appending the same id again replaces the files
        it wrote rather than adding rows. Raises :class:`~chargetracker.errors.SchemaError`
        when a required column is missing or of the wrong type, and
        :class:`~chargetracker.errors.StoreUnavailable` when the disk write fails.
        """
        return self.append_many([(frame, batch_id or "")], groups=groups)

    def append_many(self, batches: Sequence[tuple[pl.DataFrame, str]],
                    groups: Mapping[str, str | None] | pl.DataFrame | None = None) -> list[Path]:
        """:meth:`append` of several batches (frame, batch id) at once: every file is
        written first, then all are flushed to disk together (concurrent ``fsync`` of
        the files, then once per directory) before any is renamed into place -- one
        round of disk flushes per call instead of two per file (a Kafka worker archives
        one batch per partition and commit)."""
        gframe = _groups_frame(groups)
        staged: list[tuple[Path, Path]] = []
        try:
            for frame, batch_id in batches:
                staged.extend(self._stage_batch(frame, batch_id, gframe))
            if self.fsync and staged:
                _fsync_all([tmp for tmp, _ in staged])
            for tmp, final in staged:
                os.replace(tmp, final)
            if self.fsync and staged:
                _fsync_all(sorted({final.parent for _, final in staged}))
        except OSError as exc:
            for tmp, _ in staged:
                try:
                    tmp.unlink(missing_ok=True)
                except OSError:  # pragma: no cover - best effort cleanup
                    pass
            raise StoreUnavailable(f"cannot write archive files under {str(self.root)!r}: {exc}") from exc
        return [final for _, final in staged]

    def _stage_batch(self, frame: pl.DataFrame, batch_id: str,
                     gframe: pl.DataFrame | None) -> list[tuple[Path, Path]]:
        """Write one batch's files under temporary names: (temporary, final) paths."""
        if not batch_id:
            raise ConfigError("append needs a batch_id (e.g. batch_id_for(source, position))")
        data = conform(frame, source=f"archive batch {batch_id}")
        if data.height == 0:
            return []
        if gframe is None:
            data = data.with_columns(pl.lit(None, dtype=pl.Utf8).alias("__group"))
        else:
            data = data.join(gframe.rename({"group": "__group"}), on="cell_id", how="left",
                             maintain_order="left")
        ts = data.get_column("ts")
        if ts.null_count() or not ts.is_finite().all():
            raise StoreError("archive rows need a finite ts (archive only validated, accepted rows)")
        data = data.with_columns(
            (pl.col("ts") // _SECONDS_PER_DAY).cast(pl.Int64).alias("__day"),
            pl.when(pl.col("__group") == "").then(None).otherwise(pl.col("__group")).alias("__group"),
        )
        name = f"part-{uuid.uuid5(_NAMESPACE, batch_id)}.parquet"
        out: list[tuple[Path, Path]] = []
        parts = data.partition_by(["__group", "__day"], as_dict=True, maintain_order=True)
        for (group, day), part in parts.items():
            directory = (self.root / f"group={encode_group(group)}"
                         / f"date={_day_string(cast(int, day))}")
            rows = part.drop("__group", "__day").sort(["cell_id", "ts"], maintain_order=True)
            directory.mkdir(parents=True, exist_ok=True)
            tmp = directory / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
            out.append((tmp, directory / name))
            rows.write_parquet(tmp, compression=self.compression, statistics=True)
        return out

    # -- metadata --------------------------------------------------------------------
    def put_cells(self, cells: pl.DataFrame, *, batch_id: str | None = None,
                  archived_at: float | None = None) -> Path | None:
        """Archive cell metadata rows (CELL_SCHEMA columns; missing ones null).

        The latest row per cell (by ``archived_at``, wall s) wins on read. ``batch_id``
        names the file (a replay replaces it); default: a hash of the rows, so the same
        metadata written twice is one file.
        """
        if cells.height == 0:
            return None
        rows = cells.select([
            (pl.col(c).cast(t) if c in cells.columns else pl.lit(None, dtype=t)).alias(c)
            for c, t in CELL_SCHEMA.items()]).unique(subset=["cell_id"], keep="last",
                                                     maintain_order=True)
        if batch_id is None:
            digest = hashlib.sha256(rows.sort("cell_id").write_csv().encode()).hexdigest()
            batch_id = f"cells@{digest}"
        rows = rows.with_columns(pl.lit(float(archived_at if archived_at is not None
                                              else time.time())).alias("archived_at"))
        name = f"cells-{uuid.uuid5(_NAMESPACE, batch_id)}.parquet"
        return self._write_atomic(self.root / CELLS_DIR, name, rows)

    def cells(self) -> pl.DataFrame:
        """The archived cell metadata, latest row per cell (CELL_SCHEMA), sorted by id."""
        files = sorted((self.root / CELLS_DIR).glob("cells-*.parquet"))
        if not files:
            return pl.DataFrame(schema=CELL_SCHEMA)
        lf = pl.scan_parquet(files, schema=ARCHIVED_CELL_SCHEMA, hive_partitioning=False)
        frame = collect(lf.sort("archived_at", maintain_order=True), self.root)
        return (frame.unique(subset=["cell_id"], keep="last", maintain_order=True)
                .drop("archived_at").sort("cell_id"))

    def put_engine_settings(self, settings: Mapping[str, Any]) -> bool:
        """Record the engine settings the stream runs with (JSON object); returns True
        when they changed (the archive then mixes data analysed two ways live)."""
        text = json.dumps(dict(settings), sort_keys=True, indent=1, allow_nan=False)
        path = self.root / META_DIR / "engine.json"
        old = path.read_text() if path.is_file() else None
        if old == text:
            return False
        directory = path.parent
        tmp = directory / f".engine.json.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreUnavailable(f"cannot write {str(path)!r}: {exc}") from exc
        return old is not None

    def engine_settings(self) -> dict[str, Any] | None:
        """The engine settings recorded by :meth:`put_engine_settings`, or None."""
        path = self.root / META_DIR / "engine.json"
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {str(path)!r}: {exc}") from exc
        if not isinstance(data, dict):
            raise StoreError(f"{str(path)!r} is not a JSON object")
        return data

    def _write_atomic(self, directory: Path, name: str, rows: pl.DataFrame) -> Path:
        final = directory / name
        tmp = directory / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            rows.write_parquet(tmp, compression=self.compression, statistics=True)
            if self.fsync:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.replace(tmp, final)
            if self.fsync:
                dfd = os.open(directory, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:  # pragma: no cover - best effort cleanup
                pass
            raise StoreUnavailable(f"cannot write archive file {str(final)!r}: {exc}") from exc
        return final

    # -- listing ---------------------------------------------------------------------
    def partitions(self, *, groups: Iterable[str | None] | None = None,
                   since: Any = None, until: Any = None) -> list[tuple[str | None, str, Path]]:
        """(group, date, directory) of the partitions matching the filters, sorted.

        ``since``/``until`` are UTC days (inclusive), see :func:`parse_day`.
        """
        if not self.root.is_dir():
            return []
        want = None if groups is None else {encode_group(g) for g in groups}
        lo, hi = parse_day(since), parse_day(until)
        out: list[tuple[str | None, str, Path]] = []
        for gdir in sorted(self.root.iterdir()):
            if not gdir.is_dir() or not gdir.name.startswith("group="):
                continue
            seg = gdir.name[len("group="):]
            if want is not None and seg not in want:
                continue
            for ddir in sorted(gdir.iterdir()):
                if not ddir.is_dir() or not ddir.name.startswith("date="):
                    continue
                date = ddir.name[len("date="):]
                try:
                    day = _dt.date.fromisoformat(date)
                except ValueError:
                    continue  # not ours
                if (lo is not None and day < lo) or (hi is not None and day > hi):
                    continue
                out.append((decode_group(seg), date, ddir))
        return out

    def files(self, *, groups: Iterable[str | None] | None = None, since: Any = None,
              until: Any = None) -> list[Path]:
        """Data files of the matching partitions (temporary files excluded)."""
        return [f for _, _, d in self.partitions(groups=groups, since=since, until=until)
                for f in sorted(d.glob("part-*.parquet"))]

    def groups(self) -> list[str | None]:
        """Groups present in the archive."""
        return sorted({g for g, _, _ in self.partitions()}, key=lambda g: (g is None, g or ""))

    # -- reads -----------------------------------------------------------------------
    def dataset(self, *, groups: Iterable[str | None] | None = None, since: Any = None,
                until: Any = None) -> pads.Dataset:
        """A PyArrow dataset over the matching files, with ``group`` and ``date`` columns."""
        schema = pa.schema(
            [(c, _arrow_type(t)) for c, t in ARCHIVE_SCHEMA.items()]
            + [(c, pa.string()) for c in PARTITION_SCHEMA]
        )
        part = pads.HivePartitioning(pa.schema([(c, pa.string()) for c in PARTITION_SCHEMA]),
                                     null_fallback=NULL_PARTITION, segment_encoding="uri")
        files = [str(f) for f in self.files(groups=groups, since=since, until=until)]
        try:
            return pads.dataset(files, schema=schema, format="parquet", partitioning=part,
                                partition_base_dir=str(self.root))
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"cannot read archive {str(self.root)!r}: {exc}") from exc

    def scan(self, *, cells: Sequence[str] | None = None,
             groups: Iterable[str | None] | None = None, since: Any = None,
             until: Any = None) -> pl.LazyFrame:
        """Lazy frame of archived rows: the canonical columns plus ``group`` and ``date``.

        Filters: ``cells`` (cell ids), ``groups`` (None matches the null group),
        ``since``/``until`` (UTC days, inclusive). Group and date filters select
        directories; cell filters are pushed into the Parquet scan (files are sorted by
        cell_id, so row groups of other cells are skipped by their statistics). Row
        order is unspecified (sort by cell_id, ts when it matters).
        """
        scans = []
        for group, date, directory in self.partitions(groups=groups, since=since, until=until):
            files = sorted(directory.glob("part-*.parquet"))
            if not files:
                continue
            # One scan per partition with the partition values as literals: Polars'
            # own hive parsing would also read "k=v" segments of the root's path.
            scans.append(pl.scan_parquet(files, schema=ARCHIVE_SCHEMA, hive_partitioning=False)
                         .with_columns(pl.lit(group, dtype=pl.Utf8).alias("group"),
                                       pl.lit(date, dtype=pl.Utf8).alias("date")))
        if not scans:
            return pl.LazyFrame(schema={**ARCHIVE_SCHEMA, **PARTITION_SCHEMA})
        lf = pl.concat(scans, how="vertical")
        if cells is not None:
            lf = lf.filter(pl.col("cell_id").is_in(list(cells)))
        return lf

    def read(self, *, cells: Sequence[str] | None = None,
             groups: Iterable[str | None] | None = None, since: Any = None,
             until: Any = None, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """Eager form of :meth:`scan`; ``columns`` selects columns (default all)."""
        lf = self.scan(cells=cells, groups=groups, since=since, until=until)
        if columns:
            lf = lf.select(list(columns))
        return collect(lf, self.root)


def collect(lf: pl.LazyFrame, root: Path | str = "archive") -> pl.DataFrame:
    """Collect an archive scan, translating read errors (a corrupt or vanished file)."""
    try:
        return lf.collect()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise StoreError(f"cannot read archive {str(root)!r}: {exc}") from exc


def _fsync_one(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_all(paths: Sequence[Path]) -> None:
    """fsync files or directories concurrently (the file system commits them in one
    journal round instead of one per call)."""
    if len(paths) == 1:
        _fsync_one(paths[0])
        return
    with ThreadPoolExecutor(max_workers=min(16, len(paths))) as pool:
        for fut in [pool.submit(_fsync_one, p) for p in paths]:
            fut.result()


def _arrow_type(dtype: pl.DataType) -> pa.DataType:
    if dtype == pl.Utf8:
        return pa.string()
    if dtype == pl.Int64:
        return pa.int64()
    if dtype == pl.Float64:
        return pa.float64()
    raise AssertionError(f"no Arrow type for {dtype}")  # pragma: no cover - schema is fixed
