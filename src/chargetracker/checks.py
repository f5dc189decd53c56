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
  bytes -- checked on the distinct ids. The distinct ids come from a 64-bit hash of
  each row's id grouped in a compiled table, then confirmed exactly (the distinct ids
  gathered back per row equal the column), so a hash clash can never hide a bad id.
  The per-row codes are handed on (:class:`IdCodes`): the engine maps cells to state
  slots from them instead of looking every row up again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np
import polars as pl

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
    ids: IdCodes


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
def _grow(a: np.ndarray, fill: int) -> np.ndarray:
    out = np.full(2 * a.shape[0], fill, dtype=np.int64)
    out[:a.shape[0]] = a
    return out


@nb.njit(cache=True, nogil=True)
def _group_hashes(h: np.ndarray, max_runs: int,
                  codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill ``codes`` (per row) and return (first row of each code, first row of each run
    of equal hashes -- empty when there are more than ``max_runs`` runs): rows with equal
    hashes share a code, numbered in order of first appearance. Open addressing (load
    <= 1/2); a row equal to the previous one (grouped input) takes its code without a
    probe. ``codes`` is allocated by NumPy: its large allocations use huge pages, and
    Numba's take a page fault per 4 KiB (60 vs 9 ms for 40 MB here)."""
    n = h.shape[0]
    size = 256
    keys = np.empty(size, dtype=np.int64)
    vals = np.full(size, -1, dtype=np.int64)
    first = np.empty(16, dtype=np.int64)
    runs = np.empty(max_runs + 1, dtype=np.int64)
    n_runs = 0
    m = 0
    cur_q = 0
    cur_c = -1
    for k in range(n):
        q = h[k]
        if q == cur_q and cur_c >= 0:
            codes[k] = cur_c
            continue
        if n_runs <= max_runs:
            runs[n_runs] = k
        n_runs += 1
        mask = size - 1
        j = q & mask
        while vals[j] >= 0 and keys[j] != q:
            j = (j + 1) & mask
        if vals[j] >= 0:
            c = vals[j]
        else:
            keys[j] = q
            vals[j] = m
            if m == first.shape[0]:
                grown = np.empty(2 * m, dtype=np.int64)
                grown[:m] = first
                first = grown
            first[m] = k
            c = m
            m += 1
            if 8 * m > size:  # rehash into twice the size (load <= 1/8: short probes)
                size *= 2
                mask = size - 1
                nk = np.empty(size, dtype=np.int64)
                nv = np.full(size, -1, dtype=np.int64)
                for i in range(size // 2):
                    if vals[i] >= 0:
                        jj = keys[i] & mask
                        while nv[jj] >= 0:
                            jj = (jj + 1) & mask
                        nk[jj] = keys[i]
                        nv[jj] = vals[i]
                keys, vals = nk, nv
        codes[k] = c
        cur_q = q
        cur_c = c
    return first[:m], runs[:n_runs] if n_runs <= max_runs else runs[:0]


def dedupe(ids: pl.Series) -> IdCodes | None:
    """The ids dictionary-encoded, exactly; ``None`` when two distinct ids share a hash
    (astronomically rare: the caller takes a general path) or the batch is empty.

    Exactness: rows grouped by cell (few runs) are confirmed by comparing each row with
    the previous one (the exact runs must be the hash's runs) and each run's id with its
    code's id; otherwise every row's id is compared with its code's id."""
    n = len(ids)
    if n == 0:
        return None
    codes = np.empty(n, dtype=np.int64)
    first, runs = _group_hashes(ids.hash(seed=_SEED).to_numpy().view(np.int64), n // 16, codes)
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
    codes = dedupe(ids)
    if codes is None:
        return None
    d = codes.distinct
    max_len = limits.max_cell_id_length  # type: ignore[attr-defined]
    if not bool(((d.str.strip_chars() != "") & (d.str.len_bytes() <= max_len)).all()):
        return None
    good = df.with_columns(pl.col("temperature_c").fill_nan(None)) if nan_temp else df
    return Quick(good, codes)
