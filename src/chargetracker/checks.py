"""Fast path of :func:`chargetracker.schema.validate`: prove that every row of a
conformed batch is good in one compiled pass over each numeric column (zero-copy NumPy
views), and the cell ids on their distinct values only.

It is exact or it gives up: :func:`all_good` returns ``None`` whenever it cannot prove
every row good (a bad value, a null where the full rules would need to look at it, a
multi-chunk column it would have to copy), and the caller then applies the full
per-rule checks, which name the field and the reason of each bad row. The rules are
the same as the full path's (units: ts s since epoch, V, A, degC, s):

- ``ts``, ``voltage_v``, ``current_a``: not null, within the closed range of
  :class:`~chargetracker.schema.Limits` (false for NaN and inf);
- ``temperature_c``: null, NaN (treated as missing) or within its range;
- ``step_time_s``: null, or finite and >= 0;
- ``cell_id``: not null, not empty or whitespace only, at most ``max_cell_id_length``
  bytes -- checked on the distinct ids. The distinct ids come from the rows' Arrow
  string views (:mod:`chargetracker.strviews`): one compiled pass groups the rows by
  their 16-byte view, which is the id itself for ids of <= 12 bytes and the id's place
  in memory for longer ones, so the grouping is exact without reading or hashing the
  strings (:func:`_view_codes`). Where the views are not available, a 64-bit hash of
  each row's id is grouped instead and confirmed exactly (the distinct ids gathered
  back per row equal the column), so a hash clash can never hide a bad id. The per-row
  codes are handed on (:class:`IdCodes`): the engine maps cells to state slots from
  them instead of looking every row up again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np
import polars as pl

from .strviews import string_views

__all__ = ["IdCodes", "Quick", "all_good", "dedupe"]

#: Seed of the id hash (any fixed value; codes never leave the process).
_SEED = 0x1D5


@dataclass(frozen=True, slots=True)
class IdCodes:
    """A batch's cell ids dictionary-encoded: ``distinct`` in order of first appearance,
    ``codes[row]`` the index of the row's id in it (int64)."""

    distinct: pl.Series
    codes: np.ndarray


@dataclass(frozen=True, slots=True)
class Quick:
    """What the fast path proved: every row of ``good`` passes the rules."""

    good: pl.DataFrame
    ids: IdCodes | None  # None when the ids were checked row by row (mostly distinct)


@nb.njit(cache=True, nogil=True)
def _in_range(x: np.ndarray, lo: float, hi: float) -> bool:
    """Every value in [lo, hi] (NaN fails the comparisons, as in ``is_between``)."""
    for k in range(x.shape[0]):
        if not (x[k] >= lo and x[k] <= hi):
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _nan_or_in_range(x: np.ndarray, lo: float, hi: float) -> tuple[bool, bool]:
    """(every value NaN or in [lo, hi], some value NaN)."""
    nan = False
    for k in range(x.shape[0]):
        v = x[k]
        if math.isnan(v):
            nan = True
        elif not (v >= lo and v <= hi):
            return False, nan
    return True, nan


@nb.njit(cache=True, nogil=True)
def _finite_nonneg(x: np.ndarray) -> bool:
    for k in range(x.shape[0]):
        v = x[k]
        if not (v >= 0.0 and math.isfinite(v)):
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _group_hashes(h: np.ndarray, start: int, m: int, n_runs: int, table: np.ndarray,
                  first: np.ndarray, runs: np.ndarray, codes: np.ndarray) -> tuple[int, int, int]:
    """Give each row from ``start`` on a code (``codes``, per row): rows with equal
    hashes share one, numbered in order of first appearance (``first``: each code's
    first row; ``m`` codes so far). ``runs`` collects the first row of each run of equal
    hashes while it has room (``n_runs`` so far, counted on). Returns (row reached, m,
    n_runs): it stops before a new code when ``table`` or ``first`` is full, so the
    caller can grow them and resume.

    ``table`` (size, 2) = (hash, code), code -1 empty: open addressing kept under 1/4
    full (short probes); a row equal to the previous one (grouped input) takes its code
    without a probe. Every array is allocated by the caller (NumPy): its large
    allocations use huge pages, Numba's take a page fault per 4 KiB (60 vs 9 ms for
    40 MB here), and an array reassigned inside this loop would be reference-counted
    on every row."""
    n = h.shape[0]
    mask = table.shape[0] - 1
    cap = min(first.shape[0], table.shape[0] // 4)
    max_runs = runs.shape[0]
    cur_q = h[start - 1] if start > 0 else 0
    cur_c = codes[start - 1] if start > 0 else -1
    for k in range(start, n):
        q = h[k]
        if q == cur_q and cur_c >= 0:
            codes[k] = cur_c
            continue
        j = q & mask
        while table[j, 1] >= 0 and table[j, 0] != q:
            j = (j + 1) & mask
        c = table[j, 1]
        if c < 0:
            if m >= cap:
                return k, m, n_runs
            table[j, 0] = q
            table[j, 1] = m
            first[m] = k
            c = m
            m += 1
        if n_runs < max_runs:
            runs[n_runs] = k
        n_runs += 1
        codes[k] = c
        cur_q = q
        cur_c = c
    return n, m, n_runs


@nb.njit(cache=True, nogil=True)
def _rehash(table: np.ndarray, out: np.ndarray) -> np.ndarray:
    # ``out`` (all -1) comes from NumPy: see _group_hashes on Numba's large allocations.
    mask = out.shape[0] - 1
    for i in range(table.shape[0]):
        if table[i, 1] >= 0:
            j = table[i, 0] & mask
            while out[j, 1] >= 0:
                j = (j + 1) & mask
            out[j, 0] = table[i, 0]
            out[j, 1] = table[i, 1]
    return out


def _codes(h: np.ndarray, max_runs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(code per row, first row per code, run starts -- empty when more than
    ``max_runs``) of the hashes ``h`` (see :func:`_group_hashes`)."""
    n = h.shape[0]
    codes = np.empty(n, dtype=np.int64)
    # Sized from the first rows: when most of them are distinct (a large fleet, one
    # sample per cell) the table is made for every row at once instead of doubling a
    # dozen times.
    head = h[:2048]
    size = 256
    if np.unique(head).size * 2 > head.size:
        while size < 4 * n:
            size *= 2
    table = np.full((size, 2), -1, dtype=np.int64)
    first = np.empty(max(32, size // 4), dtype=np.int64)
    runs = np.empty(max_runs + 1, dtype=np.int64)
    k, m, n_runs = _group_hashes(h, 0, 0, 0, table, first, runs, codes)
    while k < n:
        table = _rehash(table, np.full((2 * table.shape[0], 2), -1, dtype=np.int64))
        first = np.concatenate([first, np.empty_like(first)])
        k, m, n_runs = _group_hashes(h, k, m, n_runs, table, first, runs, codes)
    return codes, first[:m], runs[:n_runs] if n_runs <= max_runs else runs[:0]


#: Multipliers of the view hash (odd 64-bit constants; any fixed values do).
_M0 = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xC2B2AE3D27D4EB4F)


#: Per length 0..12 of a short string: the bits of view words 0 and 1 that hold it
#: (word 0: the length and bytes 0..3; word 1: bytes 4..11).
_MASK0 = np.array([(1 << (32 + 8 * min(b, 4))) - 1 for b in range(13)], dtype=np.uint64)
_MASK1 = np.array([(1 << (8 * max(b - 4, 0))) - 1 for b in range(13)], dtype=np.uint64)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _shift(size: int) -> np.uint64:
    """64 - log2(size) for a power-of-two table size."""
    bits = 0
    while (1 << bits) < size:
        bits += 1
    return np.uint64(64 - bits)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _slot(w0: np.uint64, w1: np.uint64, shift: np.uint64) -> np.uint64:
    """Table slot of a view: the high bits of a multiplicative hash. (Ids differ in
    their last bytes, which a product carries only into its high bits.)"""
    return ((w0 ^ (w1 * _M1)) * _M0) >> shift


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _group_views(views: np.ndarray, start: int, m: int, table: np.ndarray, first: np.ndarray,
                 codes: np.ndarray, cap: int, limit: int, long_seen: bool) -> tuple[int, int, bool]:
    """Give each row from ``start`` on a code (``codes``): rows with equal string views
    share one, numbered in order of first appearance (``first``: each code's first row;
    ``m`` codes so far). Returns (row reached, m, some view is of a long string;
    ``long_seen`` on entry: one was in the rows before ``start``); it stops before a new
    code when ``table`` would get fuller than its ``cap`` codes (the caller grows it and
    resumes), or once a long id was seen, at ``limit`` codes (the caller gives up).

    ``table`` (size, 4) uint64 rows = (view word 0, word 1, code + 1, unused), code 0
    empty; open addressing. The view is stored with the bytes past a short string's
    end zeroed, so two views of one string always compare equal. A row whose view
    equals the previous row's (grouped input) takes its code without a probe; any other
    row probes the table, in one 32-byte row, kept 1/8 full (up to 8,192 codes; 1/2
    beyond) so that a probe almost never goes on to the next row: with a fleet of a few
    thousand cells the table stays in the CPU cache and a row of interleaved input
    costs ~3 ns (its bytes never hashed). Every array comes from the caller (NumPy): see
    :func:`_group_hashes`."""
    n = views.shape[0]
    size = table.shape[0]
    shift = _shift(size)
    mask = np.uint64(size - 1)
    one = np.uint64(1)
    low32 = np.uint64(0xFFFFFFFF)
    p0 = views[start - 1, 0] if start > 0 else np.uint64(0)
    p1 = views[start - 1, 1] if start > 0 else np.uint64(0)
    pc = codes[start - 1] if start > 0 else -1
    for k in range(start, n):
        w0 = views[k, 0]
        w1 = views[k, 1]
        if w0 == p0 and w1 == p1 and pc >= 0:
            codes[k] = pc
            continue
        p0 = w0
        p1 = w1
        size_b = w0 & low32
        if size_b <= np.uint64(12):
            # Arrow zero-pads a short string's view; zeroed here anyway (no branch).
            w0 &= _MASK0[size_b]
            w1 &= _MASK1[size_b]
        else:
            long_seen = True
        j = _slot(w0, w1, shift)
        while True:
            c = np.int64(table[j, 2]) - 1
            if c < 0 or (table[j, 0] == w0 and table[j, 1] == w1):
                break
            j = (j + one) & mask
        if c < 0:
            if m >= cap or (long_seen and m >= limit):
                return k, m, long_seen
            table[j, 0] = w0
            table[j, 1] = w1
            table[j, 2] = np.uint64(m + 1)
            first[m] = k
            c = m
            m += 1
        codes[k] = c
        pc = c
    return n, m, long_seen


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _regrow(table: np.ndarray, out: np.ndarray) -> None:
    """The entries of ``table`` into ``out`` (zeros, larger), as _group_views probes."""
    shift = _shift(out.shape[0])
    mask = np.uint64(out.shape[0] - 1)
    one = np.uint64(1)
    for i in range(table.shape[0]):
        if table[i, 2] != 0:
            j = _slot(table[i, 0], table[i, 1], shift)
            while out[j, 2] != 0:
                j = (j + one) & mask
            out[j, 0] = table[i, 0]
            out[j, 1] = table[i, 1]
            out[j, 2] = table[i, 2]


def _cap(size: int) -> int:
    # 1/8 full while the table is small enough for the CPU cache, 1/2 beyond (memory).
    return size // 8 if size <= 65_536 else size // 2


def _view_codes(views: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """(code per row, first row per code, some id is long) of rows grouped by string
    view (see :func:`_group_views`), or ``None`` when long ids have more than
    ``max(4096, rows / 16)`` distinct views (long ids stored one copy per row, as a text
    reader makes them: the caller hashes the strings instead). Short ids have one view
    each: no limit."""
    n = views.shape[0]
    limit = max(4096, n // 16)
    size = 512
    while size < 8 * min(n, 1024):  # 1,024 codes before the first growth (256 KiB)
        size *= 2
    codes = np.empty(n, dtype=np.int64)
    first = np.empty(min(n, _cap(size)), dtype=np.int64)
    table = np.zeros((size, 4), dtype=np.uint64)
    k, m, long_seen = _group_views(views, 0, 0, table, first, codes, _cap(size), limit, False)
    while k < n:
        if long_seen and m >= limit:
            return None
        # Grown for the codes the rows so far project to (at least doubled): ids that
        # keep coming new (one per row) take a few large steps, not a dozen doublings.
        want = 2 * table.shape[0]
        while _cap(want) < min(n, m * n // max(k, 1)):
            want *= 2
        grown = np.zeros((want, 4), dtype=np.uint64)
        _regrow(table, grown)
        table = grown
        if first.shape[0] < _cap(table.shape[0]):
            first = np.concatenate([first, np.empty(min(n, _cap(table.shape[0])) - first.shape[0],
                                                    dtype=np.int64)])
        k, m, long_seen = _group_views(views, k, m, table, first, codes, _cap(table.shape[0]),
                                       limit, long_seen)
    return codes, first[:m], long_seen


def _view_codes_of(ids: pl.Series) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """:func:`_view_codes` of a column's string views; ``None`` without them."""
    with string_views(ids) as views:
        return None if views is None else _view_codes(views)


def dedupe(ids: pl.Series) -> IdCodes | None:
    """The ids dictionary-encoded, exactly; ``None`` when the batch is empty, or on the
    hashed path when two distinct ids share a hash (astronomically rare: the caller
    takes a general path).

    From the string views (:func:`_view_codes`) the codes are exact by construction: a
    short id is its view; equal views of long ids point at the same bytes, and the
    distinct views of long ids are then merged by their strings (one per view, few)."""
    n = len(ids)
    if n == 0:
        return None
    got = _view_codes_of(ids)
    if got is None:
        return _dedupe_hashed(ids)
    codes, first, long_seen = got
    distinct = ids.gather(first)
    if long_seen:
        # One long id may be stored at several places (views): merge those by value.
        index: dict[str, int] = {}
        lut = np.fromiter((index.setdefault(x, len(index)) for x in distinct.to_list()),
                          dtype=np.int64, count=len(distinct))
        if len(index) < len(distinct):
            distinct = distinct.gather(np.unique(lut, return_index=True)[1])
            codes = lut[codes]
    return IdCodes(distinct, codes)


def _dedupe_hashed(ids: pl.Series) -> IdCodes | None:
    """:func:`dedupe` from a 64-bit hash of each id, confirmed exactly.

    Exactness: rows grouped by cell (few runs) are confirmed by comparing each row with
    the previous one (the exact runs must be the hash's runs) and each run's id with its
    code's id; otherwise every row's id is compared with its code's id."""
    n = len(ids)
    codes, first, runs = _codes(ids.hash(seed=_SEED).to_numpy().view(np.int64), n // 16)
    distinct = ids.gather(first)
    if len(runs):
        exact = ids.ne_missing(ids.shift(1)).fill_null(True).arg_true().to_numpy()
        if not np.array_equal(exact, runs):
            return None
        if not distinct.gather(codes[runs]).equals(ids.gather(runs), check_names=False):
            return None
    elif not distinct.gather(codes).equals(ids, check_names=False):
        return None
    return IdCodes(distinct, codes)


def _mostly_distinct(ids: pl.Series) -> bool:
    # One sample per cell of a large fleet: encoding the ids costs more than checking
    # every row's id, and there is nothing to gain downstream.
    head = ids.head(2048)
    return head.len() >= 256 and head.n_unique() * 2 > head.len()


def _floats(col: pl.Series) -> np.ndarray | None:
    """Zero-copy float64 view of a column without nulls in one chunk (else ``None``)."""
    if col.null_count() or col.n_chunks() != 1:
        return None
    return col.to_numpy()


def all_good(df: pl.DataFrame, limits: object) -> Quick | None:
    """``df`` (conformed: canonical columns and dtypes) with NaN temperatures as null
    when every row passes the rules, else ``None`` (then the full checks decide).
    ``limits`` is a :class:`~chargetracker.schema.Limits`."""
    n = df.height
    if n == 0:
        return None
    for name in ("ts", "voltage_v", "current_a"):
        x = _floats(df.get_column(name))
        lo, hi = getattr(limits, name)
        if x is None or not _in_range(x, float(lo), float(hi)):
            return None
    temp = df.get_column("temperature_c")
    nan_temp = False
    if temp.null_count() != n:
        x = _floats(temp)
        if x is None:
            return None
        lo, hi = limits.temperature_c  # type: ignore[attr-defined]
        ok, nan_temp = _nan_or_in_range(x, float(lo), float(hi))
        if not ok:
            return None
    st = df.get_column("step_time_s")
    if st.null_count() != n:
        x = _floats(st)
        if x is None or not _finite_nonneg(x):
            return None
    ids = df.get_column("cell_id")
    if ids.null_count():
        return None
    codes = None if _mostly_distinct(ids) else dedupe(ids)
    d = ids if codes is None else codes.distinct
    max_len = limits.max_cell_id_length  # type: ignore[attr-defined]
    if not bool(((d.str.strip_chars() != "") & (d.str.len_bytes() <= max_len)).all()):
        return None
    good = df.with_columns(pl.col("temperature_c").fill_nan(None)) if nan_temp else df
    return Quick(good, codes)
