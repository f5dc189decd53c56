"""Row-order checks of the engine (compiled): lateness and duplicates in arrival order,
whether rows need sorting, and a counting sort by cell slot. Each keeps per-cell state
only, so cells may come interleaved (a live fleet) or grouped (a file per cell)."""

from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = ["chunked_slot_order", "duplicate_mask", "gather_block", "in_cell_order", "is_strictly_sorted",
           "late_and_duplicates",
           "slot_order", "touched_slots"]


def late_and_duplicates(slots: np.ndarray, ts: np.ndarray, labels: np.ndarray,
                        max_ts: np.ndarray, max_lab: np.ndarray,
                        lateness: float) -> np.ndarray:
    """Classify rows as 0 ok, 1 late, 2 duplicate (see :func:`_late_and_duplicates`).
    The flags are allocated by NumPy: its large allocations use huge pages, Numba's
    take a page fault per 4 KiB (~6 ms per 5 M rows here).

    ``max_ts`` is usually a strided view into the cells' state (one cache line per
    cell): with many rows per cell it is worked on as a contiguous copy (8 bytes per
    cell, so interleaved rows of a few thousand cells hit the L1 cache, not L2) and
    written back; with few rows per cell (a live fleet's poll) the copy would cost
    more than it saves."""
    out = np.empty(ts.shape[0], dtype=np.int8)
    if max_ts.strides[0] != max_ts.itemsize and ts.shape[0] >= 16 * max_ts.shape[0]:
        newest = np.ascontiguousarray(max_ts)
        _late_and_duplicates(slots, ts, labels, newest, max_lab, lateness, out)
        max_ts[:] = newest
    else:
        _late_and_duplicates(slots, ts, labels, max_ts, max_lab, lateness, out)
    return out


@nb.njit(cache=True, nogil=True)
def _late_and_duplicates(slots: np.ndarray, ts: np.ndarray, labels: np.ndarray,
                         max_ts: np.ndarray, max_lab: np.ndarray, lateness: float,
                         out: np.ndarray) -> None:
    """Classify rows (grouped by cell, in arrival order) as 0 ok, 1 late, 2 duplicate.

    A row is late when its ts is older than the newest earlier ts of its cell minus the
    lateness window. ``max_ts`` and ``max_lab`` (per cell: the newest ts and the step
    label logged at it) are updated in place. With no lateness window the newest sample
    is processed at once, so a repeat of its ts is a duplicate here -- unless it carries
    a new step label (cyclers log a step's end and the next one's start at one instant);
    other duplicates (inside a window) are found by the caller.
    """
    n = ts.shape[0]
    for k in range(n):
        out[k] = 0
        c = slots[k]
        m = max_ts[c]
        t = ts[k]
        if not math.isnan(m) and t < m - lateness:
            out[k] = 1
        elif lateness <= 0.0 and t == m:
            if labels[k] == max_lab[c]:
                out[k] = 2
            else:
                max_lab[c] = labels[k]
        elif math.isnan(m) or t > m:
            max_ts[c] = t
            max_lab[c] = labels[k]


@nb.njit(cache=True, nogil=True)
def is_strictly_sorted(slots: np.ndarray, ts: np.ndarray) -> bool:
    """True when rows are ordered by cell and strictly by time within each cell."""
    for k in range(1, ts.shape[0]):
        if slots[k] < slots[k - 1] or (slots[k] == slots[k - 1] and not ts[k] > ts[k - 1]):
            return False
    return True


@nb.njit(cache=True, nogil=True)
def duplicate_mask(slots: np.ndarray, ts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rows (sorted by cell, ts) that repeat an earlier row of the same cell, ts and step label.

    A row sharing its ts with the previous one but carrying another step label is real:
    a step's last point and the next step's first logged at one instant.
    """
    n = ts.shape[0]
    out = np.zeros(n, dtype=np.bool_)
    first = 0  # first row of the current (slot, ts) run
    for k in range(1, n):
        if slots[k] == slots[k - 1] and ts[k] == ts[k - 1]:
            for j in range(first, k):
                if not out[j] and labels[j] == labels[k]:
                    out[k] = True
                    break
        else:
            first = k
    return out


@nb.njit(cache=True, nogil=True)
def in_cell_order(slots: np.ndarray, ts: np.ndarray, n_cells: int) -> bool:
    """True when each cell's rows are strictly increasing in ts, in row order (cells may
    be interleaved: a live fleet, a time-ordered dump)."""
    last = np.full(n_cells, -np.inf)
    for k in range(ts.shape[0]):
        c = slots[k]
        if not ts[k] > last[c]:
            return False
        last[c] = ts[k]
    return True


@nb.njit(cache=True, nogil=True)
def slot_order(slots: np.ndarray, n_cells: int) -> np.ndarray:
    """Stable permutation grouping rows by slot (a counting sort: O(rows + cells))."""
    n = slots.shape[0]
    start = np.zeros(n_cells + 1, dtype=np.int64)
    for k in range(n):
        start[slots[k] + 1] += 1
    for c in range(n_cells):
        start[c + 1] += start[c]
    order = np.empty(n, dtype=np.int64)
    for k in range(n):
        c = slots[k]
        order[start[c]] = k
        start[c] += 1
    return order


@nb.njit(cache=True, nogil=True)
def touched_slots(slots: np.ndarray, n_cells: int) -> np.ndarray:
    """The distinct slots of ``slots``, ascending."""
    seen = np.zeros(n_cells, dtype=np.bool_)
    for k in range(slots.shape[0]):
        seen[slots[k]] = True
    return np.flatnonzero(seen)


@nb.njit(cache=True, nogil=True)
def chunked_slot_order(slots: np.ndarray, n_cells: int, chunk: int) -> np.ndarray:
    """Stable permutation ordering rows by (block of ``chunk`` rows, slot): within each
    block the rows are grouped by cell, blocks stay in row order, so each cell's rows
    keep their order. A counting sort per block, O(rows + cells touched)."""
    n = slots.shape[0]
    order = np.empty(n, dtype=np.int64)
    count = np.zeros(n_cells + 1, dtype=np.int64)
    seen = np.empty(min(n, chunk) + 1, dtype=np.int64)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        m = 0
        for k in range(lo, hi):
            c = slots[k]
            if count[c] == 0:
                seen[m] = c
                m += 1
            count[c] += 1
        # Offsets of the distinct slots of the block, ascending slot order (a scan of
        # the slots when the block touches many of them, else a sort of the few).
        if 8 * m >= n_cells:
            j = 0
            for c in range(n_cells):
                if count[c] > 0:
                    seen[j] = c
                    j += 1
            cells = seen[:m]
        else:
            cells = np.sort(seen[:m])
        pos = lo
        for j in range(m):
            c = cells[j]
            w = count[c]
            count[c] = pos
            pos += w
        for k in range(lo, hi):
            c = slots[k]
            order[count[c]] = k
            count[c] += 1
        for j in range(m):
            count[cells[j]] = 0
    return order


@nb.njit(cache=True, nogil=True)
def gather_block(src: tuple, lo: int, hi: int, slot_lo: int, slot_hi: int, count: np.ndarray,
                 buf: np.ndarray, ibuf: np.ndarray, slot_out: np.ndarray, cols: np.ndarray) -> int:
    """Rows ``lo..hi-1`` of the cells ``slot_lo..slot_hi-1`` of ``src`` into the rows of
    ``buf``, grouped by cell (a stable counting sort: each cell's rows keep their order);
    returns how many.

    ``src``: (slot, ts, v, i, t, cyc, step, stime) arrays. ``cols[j]`` is the column of
    ``buf`` that takes ``src[j + 1]`` (ts, v, i always 0, 1, 2), -1 for a column not
    copied (a broadcast all-null one); ``ibuf`` is ``buf``'s int64 view (the labels).
    Only the columns the kernel reads are written, one sample per row of ``buf`` (4
    values, 32 bytes, for ts, v, i, t: two samples per cache line, each line written
    whole by consecutive samples of one cell), so the scattered writes move half the
    bytes of a 64-byte row. The slot of each sample goes into ``slot_out`` cell by cell
    (runs of one value, written in order, not scattered). ``count`` (cells + 1 zeros)
    is left zeroed."""
    slot, ts, v, i, t, cyc, step, stime = src
    c_t, c_cyc, c_step, c_st = cols[3], cols[4], cols[5], cols[6]
    for k in range(lo, hi):
        c = slot[k]
        if c >= slot_lo and c < slot_hi:
            count[c] += 1
    pos = 0
    for c in range(slot_lo, slot_hi):
        w = count[c]
        count[c] = pos
        for p in range(pos, pos + w):
            slot_out[p] = c
        pos += w
    for k in range(lo, hi):
        c = slot[k]
        if c < slot_lo or c >= slot_hi:
            continue
        p = count[c]
        count[c] = p + 1
        buf[p, 0] = ts[k]
        buf[p, 1] = v[k]
        buf[p, 2] = i[k]
        if c_t >= 0:
            buf[p, c_t] = t[k]
        if c_cyc >= 0:
            ibuf[p, c_cyc] = cyc[k]
        if c_step >= 0:
            ibuf[p, c_step] = step[k]
        if c_st >= 0:
            buf[p, c_st] = stime[k]
    for c in range(slot_lo, slot_hi):
        count[c] = 0
    return pos
