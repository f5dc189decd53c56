"""Compiled passes of the batch layer over a chunk of whole meters (see :mod:`.batch`):
cheap whole-chunk checks, chunk cuts at meter boundaries, slot numbering."""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["cuts", "compact", "census"]


@nb.njit(cache=True, nogil=True)
def cuts(codes: np.ndarray, target: int) -> np.ndarray:
    """Chunk ends: the first meter boundary at or after every ``target`` readings, and the
    end of the array. Rows without a meter (code -1) stay with the meter before them."""
    n = len(codes)
    out = []
    start = 0
    prev = codes[0] if n else -1
    for i in range(1, n):
        k = codes[i]
        if k < 0:
            continue
        if prev >= 0 and k != prev and i - start >= target:
            out.append(i)
            start = i
        prev = k
    out.append(n)
    return np.array(out, dtype=np.int64)


@nb.njit(cache=True, nogil=True)
def compact(codes: np.ndarray, counts: np.ndarray, out: np.ndarray) -> None:
    """Codes renumbered to the meters present (``0..``, in code order), as int64 slots,
    written to ``out`` (a reused buffer: a fresh chunk-sized array costs page faults)."""
    lut = np.full(len(counts), -1, dtype=np.int64)
    m = 0
    for k in range(len(counts)):
        if counts[k] > 0:
            lut[k] = m
            m += 1
    for i in range(len(codes)):
        out[i] = lut[codes[i]]


@nb.njit(cache=True, nogil=True)
def census(codes: np.ndarray, ts: np.ndarray, p: np.ndarray, n_ids: int, ts_lo: float,
           ts_hi: float, p_lo: float, p_hi: float) -> tuple[np.ndarray, bool]:
    """Readings per meter code and whether every code, ts and power passes the cheap checks
    (in range, so not NaN), in one pass."""
    counts = np.zeros(n_ids, dtype=np.int64)
    ok = True
    for i in range(len(codes)):
        k = codes[i]
        if k < 0:
            ok = False
            continue
        counts[k] += 1
        if not (ts_lo <= ts[i] <= ts_hi and p_lo <= p[i] <= p_hi):
            ok = False
    return counts, ok
