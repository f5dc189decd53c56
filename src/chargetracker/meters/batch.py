"""The batch layer: recompute daily energy and thresholds from archived readings.

Meters are independent, so a large archive is processed in chunks that each hold whole
meters (e.g. the row groups of a Parquet file sorted by meter): every chunk gives its
meters' days, thresholds and alerts exactly as one pass over everything would. Two chunks
run at once (the compiled passes and the Parquet decoder release the GIL).

:func:`recompute_parquet` is the fast path: it reads each row group's columns straight
into arrays (meter ids as the file's dictionary codes, never one string per reading),
computes the thresholds in one compiled pass and feeds the engine's compiled pass
directly. A row group that fails the cheap whole-column checks (nulls, NaN, implausible
values) takes the validating path, so its bad rows become dead letters as anywhere else.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import SchemaError
from .batch_kernels import census, compact, cuts
from .config import MeterConfig
from .engine import as_summary, new_state, process_arrays, register_meters, summarize
from .layout import F_THR
from .schema import THRESHOLD_SCHEMA, ReadingLimits
from .thresholds import compute_thresholds, slot_thresholds

__all__ = ["ChunkResult", "archive_as_of", "recompute", "recompute_parquet"]


@dataclass(frozen=True, slots=True)
class ChunkResult:
    days: pl.DataFrame
    thresholds: pl.DataFrame
    alerts: pl.DataFrame
    rejected: pl.DataFrame
    n_readings: int


def _one(chunk: pl.DataFrame, cfg: MeterConfig, meters: pl.DataFrame | None,
         as_of: float | None, alerts: bool) -> ChunkResult:
    thr = compute_thresholds(chunk, cfg, as_of=as_of)
    meta = None
    if meters is not None:
        meta = meters.join(chunk.select(pl.col("meter_id").unique()), on="meter_id", how="semi")
    s = summarize(chunk, cfg, meters=meta, thresholds=thr if alerts else None)
    return ChunkResult(s.days, thr, s.alerts, s.rejected, chunk.height)


def recompute(chunks: Iterable[pl.DataFrame], config: MeterConfig | None = None, *,
              meters: pl.DataFrame | None = None, as_of: float | None = None,
              alerts: bool = True, workers: int = 2) -> Iterator[ChunkResult]:
    """Days, thresholds (as of ``as_of``, default each chunk's newest reading) and alerts
    per chunk of whole meters, in input order. ``as_of`` should be given for a consistent
    window across chunks."""
    cfg = config or MeterConfig()
    yield from _pooled(((lambda c=c: _one(c, cfg, meters, as_of, alerts)) for c in chunks), workers)


def _pooled(jobs: Iterable[object], workers: int = 2) -> Iterator[ChunkResult]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: list[Any] = []
        for job in jobs:
            pending.append(pool.submit(job))  # type: ignore[arg-type]
            if len(pending) > workers:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


# -- the Parquet fast path ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Chunk:
    """Readings of whole meters: ``codes`` index ``ids`` (unique meter ids)."""

    ids: list[str]
    codes: np.ndarray
    ts: np.ndarray
    power_w: np.ndarray
    energy_wh: np.ndarray | None
    row0: int  # row of the first reading in the archive (for dead letters)
    counts: np.ndarray | None = None  # readings per code (set by _checked)
    numbers_ok: bool = False  # codes, ts and power_w pass the cheap checks

    def take(self, lo: int, hi: int) -> _Chunk:
        e = None if self.energy_wh is None else self.energy_wh[lo:hi]
        return _Chunk(self.ids, self.codes[lo:hi], self.ts[lo:hi], self.power_w[lo:hi], e,
                      self.row0 + lo)

    def frame(self) -> pl.DataFrame:
        idx = pl.Series("i", self.codes.astype(np.int64))
        idx = idx.to_frame().select(pl.when(pl.col("i") >= 0).then(pl.col("i"))).to_series()
        ids = pl.Series("meter_id", self.ids, dtype=pl.Utf8).gather(idx)  # null for code -1
        e = (pl.Series("energy_wh", self.energy_wh) if self.energy_wh is not None
             else pl.Series("energy_wh", [None] * len(self.ts), dtype=pl.Float64))
        return pl.DataFrame([ids, pl.Series("ts", self.ts), pl.Series("power_w", self.power_w), e])


def _concat(a: _Chunk, b: _Chunk) -> _Chunk:
    ids = list(a.ids)
    pos = {m: k for k, m in enumerate(ids)}
    lut_b = np.empty(len(b.ids), dtype=np.int64)
    for k, m in enumerate(b.ids):  # per meter id, not per reading
        if m not in pos:
            pos[m] = len(ids)
            ids.append(m)
        lut_b[k] = pos[m]
    lut_a = np.arange(len(a.ids), dtype=np.int64)
    e = None
    if a.energy_wh is not None or b.energy_wh is not None:
        e = np.concatenate([x.energy_wh if x.energy_wh is not None else np.full(len(x.ts), np.nan)
                            for x in (a, b)])
    codes = [np.where(x.codes >= 0, lut[np.maximum(x.codes, 0)], -1)
             for x, lut in ((a, lut_a), (b, lut_b))]
    return _Chunk(ids, np.concatenate(codes),
                  np.concatenate([a.ts, b.ts]), np.concatenate([a.power_w, b.power_w]), e, a.row0)


def _numbers(table: pa.Table, name: str, path: Path) -> np.ndarray:
    col = table.column(name)
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
        raise SchemaError(f"{path}: column {name!r} must be numeric, found {col.type}")
    if col.type != pa.float64():
        col = col.cast(pa.float64())
    if col.null_count:
        col = col.fill_null(np.nan)
    return _flat(col)


def _flat(col: pa.ChunkedArray) -> np.ndarray:
    """Zero-copy for one chunk without nulls (the usual row group)."""
    if col.num_chunks == 1:
        return col.chunk(0).to_numpy(zero_copy_only=False)
    return col.to_numpy()


def _all_null(pf: pq.ParquetFile, k: int, name: str) -> bool:
    """Whether column ``name`` of row group ``k`` holds only nulls (by its statistics)."""
    rg = pf.metadata.row_group(k)
    for j in range(rg.num_columns):
        col = rg.column(j)
        if col.path_in_schema == name:
            st = col.statistics
            return st is not None and st.has_null_count and st.null_count == rg.num_rows
    return False


def _read_group(pf: pq.ParquetFile, k: int, path: Path, has_e: bool, row0: int) -> _Chunk:
    # An energy column of nulls only (archives without a counter) reads as no column: the
    # engine then uses one shared NaN array instead of a decoded, null-filled copy.
    has_e = has_e and not _all_null(pf, k, "energy_wh")
    cols = ["meter_id", "ts", "power_w"] + (["energy_wh"] if has_e else [])
    t = pf.read_row_group(k, columns=cols, use_threads=False)
    mid = t.column("meter_id")
    if not pa.types.is_dictionary(mid.type):
        mid = pc.dictionary_encode(mid)
    mid = mid.unify_dictionaries() if mid.num_chunks > 1 else mid
    if mid.num_chunks == 0:
        return _Chunk([], np.zeros(0, np.int64), np.zeros(0), np.zeros(0), None, row0)
    dictionary = mid.chunk(0).dictionary.cast(pa.string())
    codes = pa.chunked_array([c.indices for c in mid.chunks])
    # A null meter_id becomes code -1: the chunk then takes the validating path.
    if codes.null_count:
        codes = codes.fill_null(-1)
    codes_np = _flat(codes)  # int32 codes: widened per chunk, not per row group
    e = _numbers(t, "energy_wh", path) if has_e else None
    return _Chunk(dictionary.to_pylist(), codes_np, _numbers(t, "ts", path),
                  _numbers(t, "power_w", path), e, row0)


#: Readings per processing chunk (whole meters): big enough that the fixed cost per chunk
#: (state, output frames) is small, small enough that its arrays are reused by the
#: allocator instead of being page-faulted in afresh (which costs as much as the pass).
CHUNK_READINGS = 1_000_000


def _groups(paths: Sequence[Path], ahead: int) -> Iterator[tuple[Path, _Chunk]]:
    """Every row group of every file, in order, decoded up to ``ahead`` row groups ahead
    in reader threads (the Parquet decoder releases the GIL): decoding is about half of
    the batch layer's CPU, so it must not run serially beside the compute workers."""
    local = threading.local()

    def read(path: Path, md: pq.FileMetaData, k: int, has_e: bool) -> _Chunk:
        # One ParquetFile per reader thread and file (sharing one is not documented as
        # thread-safe); the footer is parsed once and shared.
        files = local.__dict__.setdefault("files", {})
        pf = files.get(path)
        if pf is None:
            pf = files[path] = pq.ParquetFile(path, metadata=md, read_dictionary=["meter_id"])
        return _read_group(pf, k, path, has_e, 0)

    with ThreadPoolExecutor(max_workers=max(1, ahead), thread_name_prefix="parquet") as pool:
        pending: list[tuple[Path, Any]] = []
        for path in paths:
            pf = pq.ParquetFile(path, read_dictionary=["meter_id"])
            names = set(pf.schema_arrow.names)
            missing = {"meter_id", "ts", "power_w"} - names
            if missing:
                raise SchemaError(f"{path}: missing column(s) {sorted(missing)}")
            for k in range(pf.num_row_groups):
                pending.append((path, pool.submit(read, path, pf.metadata, k, "energy_wh" in names)))
                if len(pending) > ahead:
                    p, fut = pending.pop(0)
                    yield p, fut.result()
        for p, fut in pending:
            yield p, fut.result()


def _whole_meters(paths: Sequence[Path], target: int | None = None,
                  ahead: int = 2) -> Iterator[_Chunk]:
    """Chunks of about ``target`` readings (default :data:`CHUNK_READINGS`, read at call
    time) of whole meters, cut from the row groups (views, no copies); a meter at a row
    group's end that continues into the next one is completed first. An archive not
    grouped by meter is refused."""
    target = CHUNK_READINGS if target is None else target
    done: set[str] = set()
    pending: _Chunk | None = None
    row0 = 0
    path = paths[0]
    for path, c in _groups(paths, ahead):
        object.__setattr__(c, "row0", row0)
        row0 += len(c.ts)
        if not len(c.ts):
            continue
        if pending is not None and c.codes[0] >= 0 and pending.codes[-1] >= 0 \
                and c.ids[c.codes[0]] == pending.ids[pending.codes[-1]]:
            head = int(cuts(c.codes, 1)[0])  # the continuing meter's run
            pending = _concat(pending, c.take(0, head))
            if head == len(c.ts):
                continue
            c = c.take(head, len(c.ts))
        if pending is not None:
            yield _checked(pending, done, path)
        lo = 0
        for hi in cuts(c.codes, target).tolist():
            if hi == len(c.ts):
                break
            yield _checked(c.take(lo, hi), done, path)
            lo = hi
        pending = c.take(lo, len(c.ts))
    if pending is not None:
        yield _checked(pending, done, path)


def _checked(c: _Chunk, done: set[str], path: Path) -> _Chunk:
    lim = ReadingLimits()
    counts, ok = census(c.codes, c.ts, c.power_w, len(c.ids), lim.ts[0], lim.ts[1],
                         lim.power_w[0], lim.power_w[1])
    object.__setattr__(c, "counts", counts)
    object.__setattr__(c, "numbers_ok", ok)
    used = np.flatnonzero(counts)
    present = [c.ids[k] for k in used.tolist()]
    again = done.intersection(present)
    if again:
        raise SchemaError(
            f"{path}: the archive is not grouped by meter (meter {sorted(again)[0]!r} reappears "
            "after other meters); sort it by meter_id, ts or use the embedded pipeline")
    done.update(present)
    return c


def _all_good(c: _Chunk, lim: ReadingLimits) -> bool:
    if not c.numbers_ok:
        return False
    if any(not m.strip() or len(m.encode()) > lim.max_meter_id_length for m in c.ids):
        return False
    if c.energy_wh is not None:
        e = c.energy_wh
        ok = np.isnan(e) | ((e >= 0) & np.isfinite(e))
        if not ok.all():
            return False
    return True


_SHARED: dict[str, np.ndarray] = {}
_SHARED_LOCK = threading.Lock()


def _constant(kind: str, n: int) -> np.ndarray:
    """A read-only view of ``n`` NaNs or of ``0..n-1``, shared by every chunk: fresh
    arrays of chunk size cost page faults on every row group."""
    with _SHARED_LOCK:
        buf = _SHARED.get(kind)
        if buf is None or len(buf) < n:
            size = max(n, 2 * len(buf) if buf is not None else 0)
            buf = np.full(size, np.nan) if kind == "nan" else np.arange(size, dtype=np.int64)
            buf.flags.writeable = False
            _SHARED[kind] = buf
    return buf[:n]


_LOCAL = threading.local()


def _scratch_slots(n: int) -> np.ndarray:
    """This thread's reused int64 buffer of ``n`` slots. Safe to reuse: the engine copies
    what it keeps (pending rows) and no result refers to the slot array."""
    buf = getattr(_LOCAL, "slots", None)
    if buf is None or len(buf) < n:
        buf = _LOCAL.slots = np.empty(max(n, 2 * len(buf) if buf is not None else 0), dtype=np.int64)
    return buf[:n]


def _one_arrays(c: _Chunk, cfg: MeterConfig, meters: pl.DataFrame | None, as_of: float,
                alerts: bool, source: str) -> ChunkResult:
    if not _all_good(c, ReadingLimits()):
        r = _one(c.frame(), cfg, meters, as_of, alerts)
        return ChunkResult(r.days, r.thresholds, r.alerts,
                           r.rejected.with_columns(pl.col("row") + c.row0), r.n_readings)
    assert c.counts is not None
    used = np.flatnonzero(c.counts)
    ids = [c.ids[k] for k in used.tolist()]
    slot = _scratch_slots(len(c.codes))
    compact(c.codes, c.counts, slot)
    n = len(ids)
    state = new_state(cfg)
    state.add_meters(ids)  # fresh state, unique ids: slot k is ids[k]
    if meters is not None:
        meta = meters.filter(pl.col("meter_id").is_in(ids))
        if meta.height:
            register_meters(state, meta)
    thr, counts = slot_thresholds(slot, c.ts, c.power_w, n, cfg, as_of)
    if alerts:
        state.f[:n, F_THR] = thr
    m = len(c.ts)
    e = c.energy_wh if c.energy_wh is not None else _constant("nan", m)
    state, out = process_arrays(state, {"slot": slot, "ts": c.ts, "p": c.power_w, "e": e,
                                        "row": _constant("row", m)}, [], source=source,
                                final=True, track_rows=False)
    s = as_summary(out)
    rejected = s.rejected.with_columns(pl.col("row") + c.row0) if s.rejected.height else s.rejected
    start = float(as_of) - cfg.window_days * 86_400.0
    table = pl.DataFrame({
        "meter_id": pl.Series(ids, dtype=pl.Utf8), "p97_w": thr, "n_readings": counts,
        "window_start_ts": np.full(n, start), "window_end_ts": np.full(n, float(as_of)),
    }, nan_to_null=True).select(list(THRESHOLD_SCHEMA)).cast(THRESHOLD_SCHEMA).sort("meter_id")  # type: ignore[arg-type]
    return ChunkResult(s.days, table, s.alerts, rejected, m)


def archive_as_of(paths: Sequence[str | Path]) -> float | None:
    """Newest reading of a Parquet archive, s (from row-group statistics when present)."""
    best: float | None = None
    for path in paths:
        md = pq.ParquetFile(path).metadata
        names = [md.schema.column(i).name for i in range(md.num_columns)]
        if "ts" not in names:
            raise SchemaError(f"{path}: missing column 'ts'")
        j = names.index("ts")
        for k in range(md.num_row_groups):
            st = md.row_group(k).column(j).statistics
            if st is None or not st.has_min_max or not isinstance(st.max, (int, float)):
                hi = pl.scan_parquet(path).select(pl.col("ts").cast(pl.Float64).max()).collect().item()
                best = hi if best is None or (hi is not None and hi > best) else best
                break
            best = float(st.max) if best is None else max(best, float(st.max))
    return best


def recompute_parquet(paths: str | Path | Sequence[str | Path], config: MeterConfig | None = None,
                      *, meters: pl.DataFrame | None = None, as_of: float | None = None,
                      alerts: bool = True, workers: int = 2) -> Iterator[ChunkResult]:
    """The batch layer over a Parquet archive grouped by meter (one or more files).

    Thresholds use one window for every meter, ending at ``as_of`` (default: the newest
    reading of the archive). Yields per chunk of whole meters, in archive order; the
    results equal :func:`~chargetracker.meters.engine.summarize` and
    :func:`~chargetracker.meters.thresholds.compute_thresholds` on the same readings.
    """
    cfg = config or MeterConfig()
    ps = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not ps:
        return
    end = archive_as_of(ps) if as_of is None else as_of
    if end is None:
        return
    source = str(ps[0]) if len(ps) == 1 else "archive"
    yield from _pooled(((lambda c=c: _one_arrays(c, cfg, meters, end, alerts, source))
                        for c in _whole_meters(ps, ahead=workers)), workers)
