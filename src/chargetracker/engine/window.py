"""The lateness window of a live stream, kept per cell: each cell's samples not yet passed by its watermark,
in time order, in a small fixed-depth block of the state (no per-batch concatenation).

A live stream's batch (every cell's held-back and new rows in time order) is split by
:func:`take_ready`: the ready rows (each cell's held-back prefix, then its new rows that
the watermark has passed) go to the kernel, grouped by cell or in arrival order, and the
rest join the cell's block. Before, the held-back rows (~2.5 per cell at
1 Hz and 2 s lateness) were read, judged and written out again every batch: ~3.5x the
batch's rows through eight columns. Here a held-back sample is written once and read
once. Units: ts and step time s, V, A, degC.

The flat form (columns as :data:`COLUMNS`, each cell's rows in time order) is
what the state serializes and what the general path (late rows, sorting) works on.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = ["COLUMNS", "Pending", "admit", "in_order_after", "take_ready", "take_with_cells"]

#: Sample columns of the flat form and of the ready rows, in this order.
COLUMNS = ("slot", "ts", "v", "i", "t", "cyc", "step", "stime")

#: Float fields of a held-back sample, then int fields (the slot is the block's cell).
_P_TS, _P_V, _P_I, _P_T, _P_ST = 0, 1, 2, 3, 4
_NPF = 5
_P_CYC, _P_STEP = 0, 1
_NPI = 2
#: Rows per cell block to start with (1 Hz and a 2 s window hold 2-3); it doubles when a
#: cell needs more.
_DEPTH = 4


class Pending:
    """Held-back samples per cell slot: cell c's rows are ``f[c, :n[c]]`` (ts, v, i, t,
    stime) and ``ints[c, :n[c]]`` (cycle and step labels), oldest first."""

    __slots__ = ("f", "ints", "n", "_out_f", "_out_i", "_counts")

    def __init__(self, cells: int = 0, depth: int = _DEPTH) -> None:
        self.f = np.zeros((cells, depth, _NPF))
        self.ints = np.zeros((cells, depth, _NPI), dtype=np.int64)
        self.n = np.zeros(cells, dtype=np.int64)
        # Scratch of take_ready, reused batch after batch (not state: never saved). Fresh
        # buffers of ~2 MB per batch at 10,000 cells cost a page fault per 4 KiB touched.
        self._out_f = np.empty((_NPF + 1, 0))
        self._out_i = np.empty((3, 0), dtype=np.int64)
        self._counts = np.empty((2, 0), dtype=np.int64)

    @property
    def rows(self) -> int:
        return int(self.n.sum())

    def reserve(self, cells: int, depth: int = 0) -> None:
        """Room for ``cells`` slots of at least ``depth`` rows (grows by doubling)."""
        have_c, have_d = self.n.shape[0], self.f.shape[1]
        if cells <= have_c and depth <= have_d:
            return
        new_c = max(cells, have_c) if cells <= have_c else max(cells, 2 * have_c, 16)
        new_d = have_d if depth <= have_d else max(depth, 2 * have_d)
        f = np.zeros((new_c, new_d, _NPF))
        ints = np.zeros((new_c, new_d, _NPI), dtype=np.int64)
        f[:have_c, :have_d] = self.f
        ints[:have_c, :have_d] = self.ints
        n = np.zeros(new_c, dtype=np.int64)
        n[:have_c] = self.n
        self.f, self.ints, self.n = f, ints, n

    def to_flat(self, n_cells: int) -> dict[str, np.ndarray]:
        """Every held-back row, grouped by slot, each cell's in time order."""
        cols = _flatten(self.f, self.ints, self.n[:n_cells])
        return dict(zip(COLUMNS, cols, strict=True))

    def load(self, flat: dict[str, np.ndarray], cells: int) -> None:
        """Replace the contents with ``flat``'s rows (each cell's rows in time order)."""
        self.n[:] = 0
        slot = flat["slot"]
        if len(slot) == 0:
            self.reserve(cells)
            return
        self.reserve(max(cells, int(slot.max()) + 1), int(np.bincount(slot).max()))
        _fill(self.f, self.ints, self.n, *(flat[k] for k in COLUMNS))


@nb.njit(inline="always", error_model="numpy")
def _hold(f: np.ndarray, ints: np.ndarray, n: np.ndarray, c: int, k: int, ts: np.ndarray,
          v: np.ndarray, i: np.ndarray, t: np.ndarray, stime: np.ndarray, cyc: np.ndarray,
          step: np.ndarray) -> None:
    """Row ``k`` of the columns appended to cell ``c``'s block (room checked by the caller)."""
    j = n[c]
    f[c, j, _P_TS] = ts[k]
    f[c, j, _P_V] = v[k]
    f[c, j, _P_I] = i[k]
    f[c, j, _P_T] = t[k]
    f[c, j, _P_ST] = stime[k]
    ints[c, j, _P_CYC] = cyc[k]
    ints[c, j, _P_STEP] = step[k]
    n[c] = j + 1


@nb.njit(inline="always", error_model="numpy")
def _emit(f: np.ndarray, ints: np.ndarray, c: int, h: int, at: int, slot: np.ndarray,
          ts: np.ndarray, v: np.ndarray, i: np.ndarray, t: np.ndarray, stime: np.ndarray,
          cyc: np.ndarray, step: np.ndarray) -> None:
    """Cell ``c``'s held-back row ``h`` written to row ``at`` of the output columns."""
    slot[at] = c
    ts[at] = f[c, h, _P_TS]
    v[at] = f[c, h, _P_V]
    i[at] = f[c, h, _P_I]
    t[at] = f[c, h, _P_T]
    stime[at] = f[c, h, _P_ST]
    cyc[at] = ints[c, h, _P_CYC]
    step[at] = ints[c, h, _P_STEP]


@nb.njit(inline="always", error_model="numpy")
def _drop_front(f: np.ndarray, ints: np.ndarray, n: np.ndarray, c: int, h: int) -> None:
    """Cell ``c``'s first ``h`` held-back rows removed (the rest move to the front)."""
    for j in range(h, n[c]):
        for x in range(_NPF):
            f[c, j - h, x] = f[c, j, x]
        for x in range(_NPI):
            ints[c, j - h, x] = ints[c, j, x]
    n[c] -= h


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _fill(f: np.ndarray, ints: np.ndarray, n: np.ndarray, slot: np.ndarray, ts: np.ndarray,
          v: np.ndarray, i: np.ndarray, t: np.ndarray, cyc: np.ndarray, step: np.ndarray,
          stime: np.ndarray) -> None:
    for k in range(slot.shape[0]):
        _hold(f, ints, n, slot[k], k, ts, v, i, t, stime, cyc, step)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _flatten(f: np.ndarray, ints: np.ndarray, n: np.ndarray) -> tuple:
    m = 0
    for c in range(n.shape[0]):
        m += n[c]
    slot, cyc, step = np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.int64)
    ts, v, i, t, stime = np.empty(m), np.empty(m), np.empty(m), np.empty(m), np.empty(m)
    k = 0
    for c in range(n.shape[0]):
        for j in range(n[c]):
            _emit(f, ints, c, j, k, slot, ts, v, i, t, stime, cyc, step)
            k += 1
    return slot, ts, v, i, t, cyc, step, stime


@nb.njit(cache=True, nogil=True, error_model="numpy")
def in_order_after(f: np.ndarray, n: np.ndarray, q_slot: np.ndarray, q_ts: np.ndarray) -> bool:
    """True when each cell's held-back rows then ``q``'s rows are strictly increasing
    in ts (the held-back rows are, by construction)."""
    last = np.full(n.shape[0], -np.inf)
    for c in range(n.shape[0]):
        if n[c] > 0:
            last[c] = f[c, n[c] - 1, _P_TS]
    for k in range(q_ts.shape[0]):
        c = q_slot[k]
        if not q_ts[k] > last[c]:
            return False
        last[c] = q_ts[k]
    return True


@nb.njit(cache=True, nogil=True, error_model="numpy")
def admit(slots: np.ndarray, ts: np.ndarray, max_ts: np.ndarray, lateness: float,
          flags: np.ndarray, span: np.ndarray) -> int:
    """The lateness check of a live stream's batch (``lateness`` > 0) and its order
    check in one pass over the rows (arrival order), advancing each cell's newest ts
    ``max_ts`` in place as :func:`.order.late_and_duplicates` does.

    ``flags[k]``: 0 on time, 1 late (older than the cell's newest ts minus ``lateness``;
    with a window no repeat is a duplicate here, see that function). Returns 2 when a
    row is late; else 0 when every row is newer than every earlier sample of its cell
    -- then each cell's held-back rows (never newer than ``max_ts``) and new rows are in
    time order (:func:`in_order_after` holds) -- else 1. The caller gets the same
    flags and ``max_ts`` as from ``late_and_duplicates``, without its pass over a copy of
    the step labels (read only without a window) and the separate order pass.
    ``span`` gets (oldest, newest) ts of the rows: with status 0 and a span of at most
    ``lateness`` no new row can be ready yet (each cell's newest ts is at most the
    newest, every row at least the oldest; see :func:`take_with_cells`)."""
    status = 0
    lo, hi = np.inf, -np.inf
    for k in range(ts.shape[0]):
        c = slots[k]
        m = max_ts[c]
        t = ts[k]
        lo = min(lo, t)
        hi = max(hi, t)
        if math.isnan(m) or t > m:
            max_ts[c] = t
            flags[k] = 0
        elif t < m - lateness:
            flags[k] = 1
            status = 2
        else:  # inside the window, not newer than the cell's newest: may need sorting
            flags[k] = 0
            if status == 0:
                status = 1
    span[0] = lo
    span[1] = hi
    return status


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _is_ready(ts: float, wm: float, lateness: float) -> bool:
    # Without a window nothing can still arrive before the newest sample: processed at
    # once; otherwise a sample waits until the watermark has passed it.
    return ts <= wm if lateness <= 0.0 else ts < wm


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _take(f: np.ndarray, ints: np.ndarray, n: np.ndarray, q_slot: np.ndarray, q_ts: np.ndarray,
          q_v: np.ndarray, q_i: np.ndarray, q_t: np.ndarray, q_cyc: np.ndarray,
          q_step: np.ndarray, q_st: np.ndarray, max_ts: np.ndarray, lateness: float,
          group: bool, out_f: np.ndarray, out_i: np.ndarray, counts: np.ndarray) -> tuple[int, int, int, int]:
    """See :func:`take_ready`. Returns (depth needed, rows of output needed, ready rows,
    the distinct slots of the ready rows, ascending, in ``counts[1]``):
    when a cell's block may be too shallow for its waiting rows, or the output buffers
    too short for every row that could be ready, nothing is changed and that depth or
    row count is returned (the caller grows and calls again). One pass over the new
    rows, one over the cells' blocks (each read once), one more over the new rows to
    place them.

    The ready rows are written to the caller's buffers: ``out_f`` rows (ts, v, i, t,
    stime, spare), ``out_i`` rows (slot, cycle label, step label), ``counts`` (2, cells)
    scratch; their first ``ready`` columns hold the rows. Scratch (``counts``, and the
    new rows' ready flag kept in ``out_f``'s spare row) is reused batch after batch."""
    n_cells = n.shape[0]
    n_q = q_ts.shape[0]
    # Room for every row that could wait (held-back + new waiting) and for every row
    # that could be ready, checked before any change.
    bound = n_q
    for c in range(n_cells):
        bound += n[c]
    if out_f.shape[1] < bound or counts.shape[1] < n_cells:
        return 0, bound + 1, 0, 0
    new_ready = counts[0]
    wait_new = counts[1]
    for c in range(n_cells):
        new_ready[c] = 0
        wait_new[c] = 0
    q_ready = out_f[_NPF]  # 1.0: the new row is ready (its slot in the buffer is free till then)
    for k in range(n_q):
        c = q_slot[k]
        r = _is_ready(q_ts[k], max_ts[c] - lateness, lateness)
        q_ready[k] = 1.0 if r else 0.0
        if r:
            new_ready[c] += 1
        else:
            wait_new[c] += 1
    # The ready held-back ones leave first, so this bound is never too small.
    need = 0
    for c in range(n_cells):
        need = max(need, n[c] + wait_new[c])
    if need > f.shape[1]:
        return need, 0, 0, 0
    ts, v, i, t, stime = out_f[_P_TS], out_f[_P_V], out_f[_P_I], out_f[_P_T], out_f[_P_ST]
    slot, cyc, step = out_i[0], out_i[1], out_i[2]
    start = new_ready  # group: next row of each cell, in place of its count
    touched = wait_new  # the cells with a ready row, ascending (wait_new is read no more)
    m = 0
    pos = 0
    for c in range(n_cells):
        h = 0
        if n[c] > 0:
            wm = max_ts[c] - lateness
            while h < n[c] and _is_ready(f[c, h, _P_TS], wm, lateness):
                _emit(f, ints, c, h, pos + h, slot, ts, v, i, t, stime, cyc, step)
                h += 1
            if h:
                _drop_front(f, ints, n, c, h)
        if h > 0 or new_ready[c] > 0:
            touched[m] = c
            m += 1
        pos += h
        if group:  # the cell's new ready rows follow its held-back ones
            w = new_ready[c]
            start[c] = pos
            pos += w
    n_ready = pos
    if not group:
        for c in range(n_cells):
            n_ready += new_ready[c]
    # (The new rows' flags sit in out_f's spare row, which no ready row writes.)
    for k in range(n_q):
        c = q_slot[k]
        if q_ready[k] != 0.0:
            if group:
                at = start[c]
                start[c] += 1
            else:
                at = pos
                pos += 1
            slot[at] = c
            ts[at] = q_ts[k]
            v[at] = q_v[k]
            i[at] = q_i[k]
            t[at] = q_t[k]
            stime[at] = q_st[k]
            cyc[at] = q_cyc[k]
            step[at] = q_step[k]
        else:
            _hold(f, ints, n, c, k, q_ts, q_v, q_i, q_t, q_st, q_cyc, q_step)
    return 0, 0, n_ready, m


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _take_held(f: np.ndarray, ints: np.ndarray, n: np.ndarray, max_ts: np.ndarray, lateness: float,
               out_f: np.ndarray, out_i: np.ndarray, touched: np.ndarray, c0: int, pos: int,
               m: int) -> tuple[int, int, int]:
    """The held-back rows the watermark has passed, cells ``c0``.. in slot order, into
    the output buffers from row ``pos`` (each cell's rest moved to the front of its
    block), their cells into ``touched`` from ``m``. Returns (cell reached, rows
    written, cells written): it stops before a cell whose rows would not fit, so the
    caller can grow the buffers and resume."""
    cap = out_f.shape[1]
    ts, v, i, t, stime = out_f[_P_TS], out_f[_P_V], out_f[_P_I], out_f[_P_T], out_f[_P_ST]
    slot, cyc, step = out_i[0], out_i[1], out_i[2]
    for c in range(c0, n.shape[0]):
        k = n[c]
        if k == 0:
            continue
        if pos + k > cap:
            return c, pos, m
        wm = max_ts[c] - lateness
        h = 0
        while h < k and _is_ready(f[c, h, _P_TS], wm, lateness):
            _emit(f, ints, c, h, pos, slot, ts, v, i, t, stime, cyc, step)
            pos += 1
            h += 1
        if h:
            touched[m] = c
            m += 1
            _drop_front(f, ints, n, c, h)
    return n.shape[0], pos, m


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _hold_new(f: np.ndarray, ints: np.ndarray, n: np.ndarray, q_slot: np.ndarray, q_ts: np.ndarray,
              q_v: np.ndarray, q_i: np.ndarray, q_t: np.ndarray, q_cyc: np.ndarray,
              q_step: np.ndarray, q_st: np.ndarray, k0: int) -> int:
    """Append new rows ``k0``.. to their cells' blocks; returns the row reached (it
    stops at a row whose cell's block is full, so the caller can deepen it and resume)."""
    depth = f.shape[1]
    for k in range(k0, q_ts.shape[0]):
        c = q_slot[k]
        j = n[c]
        if j >= depth:
            return k
        _hold(f, ints, n, c, k, q_ts, q_v, q_i, q_t, q_st, q_cyc, q_step)
    return q_ts.shape[0]


#: Output buffers up to this many rows are kept from one call to the next (a live
#: fleet's batches); larger ones are released at the next call.
_KEEP_ROWS = 262_144


def _grow_out(pending: Pending, rows: int, n_cells: int) -> None:
    """Output buffers for ``rows`` rows and scratch for ``n_cells`` cells, kept."""
    cap = max(rows + rows // 4, 64)
    pending._out_f = np.empty((_NPF + 1, cap))
    pending._out_i = np.empty((3, cap), dtype=np.int64)
    pending._counts = np.empty((2, max(n_cells, pending.n.shape[0])), dtype=np.int64)


def _all_wait(pending: Pending, new: dict[str, np.ndarray], max_ts: np.ndarray, lateness: float,
              n_cells: int) -> tuple[int, int]:
    """:func:`take_with_cells` when no new row is ready: returns (ready rows, cells)."""
    n = pending.n[:n_cells]
    n_q = len(new["ts"])
    if pending._counts.shape[1] < n_cells or pending._out_f.shape[1] < n_q:
        _grow_out(pending, max(pending._out_f.shape[1], n_q), n_cells)
    c, pos, m = 0, 0, 0
    while True:
        c, pos, m = _take_held(pending.f, pending.ints, n, max_ts, lateness, pending._out_f,
                               pending._out_i, pending._counts[1], c, pos, m)
        if c >= n_cells:
            break
        old_f, old_i, old_t = pending._out_f, pending._out_i, pending._counts
        _grow_out(pending, 2 * old_f.shape[1] + int(n[c]), n_cells)
        pending._out_f[:, :pos] = old_f[:, :pos]
        pending._out_i[:, :pos] = old_i[:, :pos]
        pending._counts[1, :m] = old_t[1, :m]
    q = (new["slot"], new["ts"], new["v"], new["i"], new["t"], new["cyc"], new["step"], new["stime"])
    k = 0
    while True:
        k = _hold_new(pending.f, pending.ints, pending.n, *q, k)
        if k >= len(q[1]):
            return pos, m
        pending.reserve(n_cells, pending.f.shape[1] + 1)


def take_ready(pending: Pending, new: dict[str, np.ndarray], max_ts: np.ndarray, lateness: float,
               n_cells: int, *, group: bool) -> dict[str, np.ndarray]:
    """:func:`take_with_cells` without the cells."""
    return take_with_cells(pending, new, max_ts, lateness, n_cells, group=group)[0]


def take_with_cells(pending: Pending, new: dict[str, np.ndarray], max_ts: np.ndarray,
                    lateness: float, n_cells: int, *, group: bool,
                    all_wait: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The rows the watermark has passed -- each cell's held-back prefix, then its new
    rows -- as columns :data:`COLUMNS`; the other new rows join their cell's
    block. Every cell's held-back then new rows must be in time order
    (:func:`in_order_after`).

    ``group``: ready rows grouped by slot (each cell's in time order); else the held-back
    ones by slot, then the new ones in arrival order. ``max_ts``: each cell's newest
    accepted ts (the watermark is that minus ``lateness``).

    Also returns the slots of the ready rows, distinct, ascending.

    ``all_wait``: the caller knows that no new row is ready (:func:`admit`'s span); then
    the held-back rows are judged in one pass over the blocks and the new ones appended
    in one pass over them, without first counting each cell's (at 100,000 cells that
    pass's random reads of the newest ts cost ~1 ms).

    The columns are views of buffers the next call overwrites: use them before then.
    """
    pending.reserve(n_cells)
    if pending._out_f.shape[1] > _KEEP_ROWS:
        # A backlog's batch grew the buffers: the last call's views are void now, so
        # give the memory back instead of keeping ~90 B per row of the largest batch.
        _grow_out(pending, 0, n_cells)
    if all_wait:
        ready, moved = _all_wait(pending, new, max_ts, lateness, n_cells)
    else:
        ready, moved = _counted(pending, new, max_ts, lateness, n_cells, group)
    of, oi = pending._out_f, pending._out_i
    cols = {"slot": oi[0, :ready], "ts": of[_P_TS, :ready], "v": of[_P_V, :ready], "i": of[_P_I, :ready],
            "t": of[_P_T, :ready], "cyc": oi[1, :ready], "step": oi[2, :ready], "stime": of[_P_ST, :ready]}
    return cols, pending._counts[1, :moved]


def _counted(pending: Pending, new: dict[str, np.ndarray], max_ts: np.ndarray, lateness: float,
             n_cells: int, group: bool) -> tuple[int, int]:
    """:func:`take_with_cells` in general: returns (ready rows, cells)."""
    args = (new["slot"], new["ts"], new["v"], new["i"], new["t"], new["cyc"], new["step"],
            new["stime"], max_ts, lateness, group)
    while True:
        need, rows, ready, moved = _take(pending.f, pending.ints, pending.n[:n_cells], *args,
                                         pending._out_f, pending._out_i, pending._counts)
        if need:
            pending.reserve(n_cells, need)
        elif rows:
            _grow_out(pending, rows, n_cells)
        else:
            return ready, moved
