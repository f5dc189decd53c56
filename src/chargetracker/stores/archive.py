"""The Parquet archive of raw records: the input of the batch layer (backfill).

Kind-generic: an archive holds one telemetry kind's accepted raw records, described by an
:class:`~.archive_layout.ArchiveLayout` (the cell kind's, :data:`CELL_ARCHIVE`, by default;
:func:`~.archive_layout.archive_layout` gives any kind's). Layout (hive style, readable by
Spark, PyArrow, Polars and DuckDB)::

    root/group=<G>/date=<YYYY-MM-DD>/part-<uuid>.parquet

``G`` is the entity's group (a cell's group; for another kind the metadata column its
layout names), percent-encoded (``a/b`` -> ``a%2Fb``); entities without one go to
``group=__HIVE_DEFAULT_PARTITION__``, which every hive reader reads back as null.
``date`` is the UTC calendar day of ``ts``. Files hold the layout's record columns sorted
by (entity, ts); the partition columns live only in the path.

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
* **one kind per archive**: the first write records the layout in ``_meta/layout.json``;
  opening the folder with another kind's layout is refused (a meter archive is never read
  as cell measurements).

The archive keeps the *accepted* records of the live pipeline (what the engine consumed),
so recomputing them gives the streaming results again -- with the metadata the numbers
depend on, kept beside the data (directories starting with ``_`` are skipped by every
hive reader)::

    root/_cells/cells-<uuid>.parquet     entity metadata (cells: CELL_SCHEMA + archived_at)
    root/_meta/engine.json               the engine settings the stream ran with

A cell's nominal capacity sets its rest threshold (epsilon) and capacity-relative step
filter, so a backfill into a fresh store needs it to reproduce the stream's steps and
cycles: :meth:`ParquetArchive.entities` (latest row per entity) and
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
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads

from ..errors import ConfigError, StoreError, StoreUnavailable
from ..frames import conform_frame
from .archive_files import entity_rank, fsync_all
from .archive_layout import (
    CELL_ARCHIVE,
    METER_ARCHIVE,
    NULL_PARTITION,
    ArchiveLayout,
    archive_layout,
    arrow_type,
    batch_id_for,
    decode_group,
    encode_group,
    parse_day,
)

__all__ = [
    "ARCHIVE_SCHEMA",
    "CELL_ARCHIVE",
    "NULL_PARTITION",
    "PARTITION_SCHEMA",
    "ArchiveLayout",
    "METER_ARCHIVE",
    "ParquetArchive",
    "archive_layout",
    "batch_id_for",
    "collect",
    "parse_day",
]

#: Columns stored in the files of a cell archive.
ARCHIVE_SCHEMA: dict[str, pl.DataType] = dict(CELL_ARCHIVE.schema)
#: Columns encoded in the directory names.
PARTITION_SCHEMA: dict[str, pl.DataType] = {"group": pl.Utf8(), "date": pl.Utf8()}
#: uuid5 namespace of archive file names (fixed: names must not change between releases).
_NAMESPACE = uuid.UUID("6f1c5a52-2d7e-4c35-9b1e-0c5d1b3a7e10")
_SECONDS_PER_DAY = 86_400
#: Metadata directory (leading underscore: hive readers skip it).
META_DIR = "_meta"
Compression = Literal["zstd", "lz4", "snappy", "gzip", "brotli", "uncompressed"]


def _groups_frame(groups: Mapping[str, str | None] | pl.DataFrame | None,
                  layout: ArchiveLayout) -> pl.DataFrame | None:
    if groups is None:
        return None
    key = layout.entity_key
    if isinstance(groups, pl.DataFrame):
        # A metadata frame partitions by its layout's group column (meters: house_id).
        col = "group" if "group" in groups.columns else layout.group_column
        if key not in groups.columns or col is None or col not in groups.columns:
            raise ConfigError(f"groups frame needs columns {key} and {col or 'group'}")
        frame = groups.select(pl.col(key).cast(pl.Utf8), pl.col(col).cast(pl.Utf8).alias("group"))
    else:
        frame = pl.DataFrame({key: list(groups), "group": list(groups.values())},
                             schema={key: pl.Utf8, "group": pl.Utf8})
    # One group per entity: the last mapping given wins, as in a dict.
    return frame.unique(subset=[key], keep="last")


def _day_string(day: int) -> str:
    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=int(day))).isoformat()


class ParquetArchive:
    """Append-only, hive-partitioned Parquet archive of one kind's raw records.

    Parameters
    ----------
    root:
        Directory of the archive (created on the first append). Local file system
        (atomic rename); Spark may read the same layout from any file system.
    layout:
        What the archive holds (default: cell measurements, :data:`CELL_ARCHIVE`). An
        archive written with another kind's layout is refused (:class:`ConfigError`).
    compression:
        Parquet codec (``zstd`` default).
    compression_level:
        Codec level (None: the codec's default). zstd level 1 (the default) costs half
        the CPU of zstd's default level 3 for files about 9 % larger (1.8 M samples:
        0.2 CPU-s instead of 0.37; RESULTS.md "scale-out worker ... h5-worker").
    fsync:
        Flush each file and its directory to disk before returning from
        :meth:`append` (durability across power loss; on by default).
    """

    def __init__(self, root: str | os.PathLike[str], *, layout: ArchiveLayout = CELL_ARCHIVE,
                 compression: Compression = "zstd", compression_level: int | None = 1,
                 fsync: bool = True) -> None:
        self.root = Path(root).expanduser()
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"archive root {str(self.root)!r} exists and is not a directory")
        self.layout = layout
        self.compression = compression
        self.compression_level = compression_level if compression in ("zstd", "gzip", "brotli") else None
        self.fsync = fsync
        held = self.kind_held()
        # Archives written before the marker existed hold cell measurements.
        if (held or ("cell" if self.partitions() else layout.kind)) != layout.kind:
            raise ConfigError(f"archive {str(self.root)!r} holds {held or 'cell'} records, "
                              f"not {layout.kind} records")

    def __repr__(self) -> str:
        return f"ParquetArchive({str(self.root)!r}, kind={self.layout.kind!r})"

    def kind_held(self) -> str | None:
        """The kind named by ``_meta/layout.json`` (None: not written yet)."""
        path = self.root / META_DIR / "layout.json"
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return str(data["kind"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"cannot read {str(path)!r}: {exc}") from exc

    # -- writes ----------------------------------------------------------------------
    def append(self, frame: pl.DataFrame,
               groups: Mapping[str, str | None] | pl.DataFrame | None = None,
               batch_id: str | None = None) -> list[Path]:
        """Archive one batch of raw records; returns the files written.

        ``groups`` maps entity id -> group (a dict, or a frame with the entity column and
        ``group`` or the layout's ``group_column``, e.g. a meter metadata frame);
        unmapped entities go to the null group. ``batch_id`` identifies the
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
        gframe = _groups_frame(groups, self.layout)
        staged: list[tuple[Path, Path]] = []
        try:
            for frame, batch_id in batches:
                staged.extend(self._stage_batch(frame, batch_id, gframe))
            if staged and self.kind_held() is None:
                self._write_text(self.root / META_DIR, "layout.json", self.layout.marker())
            if self.fsync and staged:
                fsync_all([tmp for tmp, _ in staged])
            for tmp, final in staged:
                os.replace(tmp, final)
            if self.fsync and staged:
                fsync_all(sorted({final.parent for _, final in staged}))
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
        key = self.layout.entity_key
        data = conform_frame(frame, self.layout.schema, table=f"archive batch {batch_id}",
                             required=self.layout.required)
        if data.height == 0:
            return []
        ranked = entity_rank(data.get_column(key))
        if ranked is not None:
            distinct, rank = ranked
            data = data.with_columns(pl.Series("__rank", rank))
        if gframe is None:
            data = data.with_columns(pl.lit(None, dtype=pl.Utf8).alias("__group"))
        elif ranked is not None:
            # The group of each distinct id, then gathered by rank: a join of a few
            # thousand ids instead of one per row.
            per_id = (pl.DataFrame({key: distinct})
                      .join(gframe, on=key, how="left", maintain_order="left").get_column("group"))
            data = data.with_columns(per_id.gather(pl.Series(rank)).alias("__group"))
        else:
            data = data.join(gframe.rename({"group": "__group"}), on=key, how="left",
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
            if ranked is None:
                rows = part.drop("__group", "__day").sort(self.layout.sort_key, maintain_order=True)
            else:
                # (entity, ts) order from integer keys: a third of the CPU of a string sort.
                order = np.lexsort((part.get_column("ts").to_numpy(),
                                    part.get_column("__rank").to_numpy()))
                rows = part.drop("__group", "__day", "__rank")[order]
            directory.mkdir(parents=True, exist_ok=True)
            tmp = directory / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
            out.append((tmp, directory / name))
            rows.write_parquet(tmp, compression=self.compression,
                               compression_level=self.compression_level, statistics=True)
        return out

    # -- metadata --------------------------------------------------------------------
    def put_entities(self, entities: pl.DataFrame, *, batch_id: str | None = None,
                     archived_at: float | None = None) -> Path | None:
        """Archive entity metadata rows (the layout's ``meta_schema`` columns; missing
        ones null): cell metadata for a cell archive.

        The latest row per entity (by ``archived_at``, wall s) wins on read. ``batch_id``
        names the file (a replay replaces it); default: a hash of the rows, so the same
        metadata written twice is one file.
        """
        meta, key, name = self._meta()
        if entities.height == 0:
            return None
        rows = entities.select([
            (pl.col(c).cast(t) if c in entities.columns else pl.lit(None, dtype=t)).alias(c)
            for c, t in meta.items()]).unique(subset=[key], keep="last", maintain_order=True)
        if batch_id is None:
            digest = hashlib.sha256(rows.sort(key).write_csv().encode()).hexdigest()
            batch_id = f"{name}@{digest}"
        rows = rows.with_columns(pl.lit(float(archived_at if archived_at is not None
                                              else time.time())).alias("archived_at"))
        file = f"{name}-{uuid.uuid5(_NAMESPACE, batch_id)}.parquet"
        return self._write_atomic(self.root / f"_{name}", file, rows)

    def entities(self) -> pl.DataFrame:
        """The archived entity metadata, latest row per entity, sorted by id."""
        meta, key, name = self._meta()
        files = sorted((self.root / f"_{name}").glob(f"{name}-*.parquet"))
        if not files:
            return pl.DataFrame(schema=meta)
        lf = pl.scan_parquet(files, schema={**meta, "archived_at": pl.Float64()},
                             hive_partitioning=False)
        frame = collect(lf.sort("archived_at", maintain_order=True), self.root)
        return (frame.unique(subset=[key], keep="last", maintain_order=True)
                .drop("archived_at").sort(key))

    # The cell kind's names for its entity metadata.
    put_cells = put_entities
    cells = entities

    def _meta(self) -> tuple[Any, str, str]:
        if self.layout.meta_schema is None:
            raise ConfigError(f"{self.layout.kind} archives keep no entity metadata")
        return self.layout.meta_schema, self.layout.entity_key, self.layout.meta_name

    def put_engine_settings(self, settings: Mapping[str, Any]) -> bool:
        """Record the engine settings the stream runs with (JSON object); returns True
        when they changed (the archive then mixes data analysed two ways live)."""
        text = json.dumps(dict(settings), sort_keys=True, indent=1, allow_nan=False)
        path = self.root / META_DIR / "engine.json"
        old = path.read_text() if path.is_file() else None
        if old == text:
            return False
        self._write_text(path.parent, path.name, text)
        return old is not None

    def _write_text(self, directory: Path, name: str, text: str) -> None:
        path = directory / name
        tmp = directory / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreUnavailable(f"cannot write {str(path)!r}: {exc}") from exc

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
            rows.write_parquet(tmp, compression=self.compression,
                               compression_level=self.compression_level, statistics=True)
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
            [(c, arrow_type(t)) for c, t in self.layout.schema.items()]
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

    def scan(self, *, ids: Sequence[str] | None = None,
             groups: Iterable[str | None] | None = None, since: Any = None,
             until: Any = None) -> pl.LazyFrame:
        """Lazy frame of archived rows: the layout's columns plus ``group`` and ``date``.

        Filters: ``ids`` (entity ids: cell ids in a cell archive), ``groups`` (None
        matches the null group), ``since``/``until`` (UTC days, inclusive). Group and
        date filters select directories; id filters are pushed into the Parquet scan
        (files are sorted by entity, so row groups of other entities are skipped by
        their statistics). Row order is unspecified (sort by entity, ts when it matters).
        """
        schema = dict(self.layout.schema)
        scans = []
        for group, date, directory in self.partitions(groups=groups, since=since, until=until):
            files = sorted(directory.glob("part-*.parquet"))
            if not files:
                continue
            # One scan per partition with the partition values as literals: Polars'
            # own hive parsing would also read "k=v" segments of the root's path.
            scans.append(pl.scan_parquet(files, schema=schema, hive_partitioning=False)
                         .with_columns(pl.lit(group, dtype=pl.Utf8).alias("group"),
                                       pl.lit(date, dtype=pl.Utf8).alias("date")))
        if not scans:
            return pl.LazyFrame(schema={**schema, **PARTITION_SCHEMA})
        lf = pl.concat(scans, how="vertical")
        if ids is not None:
            lf = lf.filter(pl.col(self.layout.entity_key).is_in(list(ids)))
        return lf

    def read(self, *, ids: Sequence[str] | None = None,
             groups: Iterable[str | None] | None = None, since: Any = None,
             until: Any = None, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """Eager form of :meth:`scan`; ``columns`` selects columns (default all)."""
        lf = self.scan(ids=ids, groups=groups, since=since, until=until)
        if columns:
            lf = lf.select(list(columns))
        return collect(lf, self.root)


def collect(lf: pl.LazyFrame, root: Path | str = "archive") -> pl.DataFrame:
    """Collect an archive scan, translating read errors (a corrupt or vanished file)."""
    try:
        return lf.collect()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise StoreError(f"cannot read archive {str(root)!r}: {exc}") from exc
