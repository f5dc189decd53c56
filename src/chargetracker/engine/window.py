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

import numba as nb
import numpy as np

__all__ = ["COLUMNS", "Pending", "in_order_after", "take_ready"]

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

    __slots__ = ("f", "ints", "n")

    def __init__(self, cells: int = 0, depth: int = _DEPTH) -> None:
        self.f = np.zeros((cells, depth, _NPF))
        self.ints = np.zeros((cells, depth, _NPI), dtype=np.int64)
        self.n = np.zeros(cells, dtype=np.int64)

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


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _fill(f: np.ndarray, ints: np.ndarray, n: np.ndarray, slot: np.ndarray, ts: np.ndarray,
          v: np.ndarray, i: np.ndarray, t: np.ndarray, cyc: np.ndarray, step: np.ndarray,
          stime: np.ndarray) -> None:
    for k in range(slot.shape[0]):
        c = slot[k]
        j = n[c]
        f[c, j, _P_TS] = ts[k]
        f[c, j, _P_V] = v[k]
        f[c, j, _P_I] = i[k]
        f[c, j, _P_T] = t[k]
        f[c, j, _P_ST] = stime[k]
        ints[c, j, _P_CYC] = cyc[k]
        ints[c, j, _P_STEP] = step[k]
        n[c] = j + 1


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
            slot[k] = c
            ts[k] = f[c, j, _P_TS]
            v[k] = f[c, j, _P_V]
            i[k] = f[c, j, _P_I]
            t[k] = f[c, j, _P_T]
            stime[k] = f[c, j, _P_ST]
            cyc[k] = ints[c, j, _P_CYC]
            step[k] = ints[c, j, _P_STEP]
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
def _is_ready(ts: float, wm: float, lateness: float) -> bool:
    # Without a window nothing can still arrive before the newest sample: processed at
    # once; otherwise a sample waits until the watermark has passed it.
    return ts <= wm if lateness <= 0.0 else ts < wm


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _take(f: np.ndarray, ints: np.ndarray, n: np.ndarray, q_slot: np.ndarray, q_ts: np.ndarray,
          q_v: np.ndarray, q_i: np.ndarray, q_t: np.ndarray, q_cyc: np.ndarray,
          q_step: np.ndarray, q_st: np.ndarray, max_ts: np.ndarray, lateness: float,
          group: bool) -> tuple:
    """See :func:`take_ready`. Returns (depth needed, ready columns); when a cell's block
    may be too shallow for its waiting rows nothing is changed and that depth is
    returned. One pass over the new rows, one over the cells' blocks (each read once),
    one more over the new rows to place them."""
    n_cells = n.shape[0]
    n_q = q_ts.shape[0]
    q_ready = np.empty(n_q, dtype=np.bool_)
    new_ready = np.zeros(n_cells, dtype=np.int64)
    wait_new = np.zeros(n_cells, dtype=np.int64)
    for k in range(n_q):
        c = q_slot[k]
        r = _is_ready(q_ts[k], max_ts[c] - lateness, lateness)
        q_ready[k] = r
        if r:
            new_ready[c] += 1
        else:
            wait_new[c] += 1
    # Room for every row that could wait (held-back + new waiting), checked before any
    # change; the ready held-back ones leave first, so this bound is never too small.
    need = 0
    bound = n_q
    for c in range(n_cells):
        need = max(need, n[c] + wait_new[c])
        bound += n[c]
    if need > f.shape[1]:
        return need, (np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0),
                      np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    # Outputs sized for the most rows that can be ready (untouched pages cost nothing).
    slot, cyc, step = np.empty(bound, np.int64), np.empty(bound, np.int64), np.empty(bound, np.int64)
    ts, v, i, t, stime = np.empty(bound), np.empty(bound), np.empty(bound), np.empty(bound), np.empty(bound)
    start = np.empty(n_cells if group else 0, dtype=np.int64)  # next row of each cell (group)
    pos = 0
    for c in range(n_cells):
        h = 0
        if n[c] > 0:
            wm = max_ts[c] - lateness
            while h < n[c] and _is_ready(f[c, h, _P_TS], wm, lateness):
                slot[pos + h] = c
                ts[pos + h] = f[c, h, _P_TS]
                v[pos + h] = f[c, h, _P_V]
                i[pos + h] = f[c, h, _P_I]
                t[pos + h] = f[c, h, _P_T]
                stime[pos + h] = f[c, h, _P_ST]
                cyc[pos + h] = ints[c, h, _P_CYC]
                step[pos + h] = ints[c, h, _P_STEP]
                h += 1
            if h:
                for j in range(h, n[c]):  # the rest move to the front of the block
                    for x in range(_NPF):
                        f[c, j - h, x] = f[c, j, x]
                    for x in range(_NPI):
                        ints[c, j - h, x] = ints[c, j, x]
                n[c] -= h
        pos += h
        if group:  # the cell's new ready rows follow its held-back ones
            start[c] = pos
            pos += new_ready[c]
    n_ready = pos
    if not group:
        for c in range(n_cells):
            n_ready += new_ready[c]
    for k in range(n_q):
        c = q_slot[k]
        if q_ready[k]:
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
            j = n[c]
            f[c, j, _P_TS] = q_ts[k]
            f[c, j, _P_V] = q_v[k]
            f[c, j, _P_I] = q_i[k]
            f[c, j, _P_T] = q_t[k]
            f[c, j, _P_ST] = q_st[k]
            ints[c, j, _P_CYC] = q_cyc[k]
            ints[c, j, _P_STEP] = q_step[k]
            n[c] = j + 1
    return 0, (slot[:n_ready], ts[:n_ready], v[:n_ready], i[:n_ready], t[:n_ready],
               cyc[:n_ready], step[:n_ready], stime[:n_ready])


def take_ready(pending: Pending, new: dict[str, np.ndarray], max_ts: np.ndarray, lateness: float,
               n_cells: int, *, group: bool) -> dict[str, np.ndarray]:
    """The rows the watermark has passed -- each cell's held-back prefix, then its new
    rows -- as columns :data:`COLUMNS`; the other new rows join their cell's
    block. Every cell's held-back then new rows must be in time order
    (:func:`in_order_after`).

    ``group``: ready rows grouped by slot (each cell's in time order); else the held-back
    ones by slot, then the new ones in arrival order. ``max_ts``: each cell's newest
    accepted ts (the watermark is that minus ``lateness``).
    """
    pending.reserve(n_cells)
    args = (new["slot"], new["ts"], new["v"], new["i"], new["t"], new["cyc"], new["step"],
            new["stime"], max_ts, lateness, group)
    need, cols = _take(pending.f, pending.ints, pending.n[:n_cells], *args)
    if need:
        pending.reserve(n_cells, need)
        need, cols = _take(pending.f, pending.ints, pending.n[:n_cells], *args)
    return dict(zip(COLUMNS, cols, strict=True))
