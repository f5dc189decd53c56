"""The lateness window's one-pass split gives the rows the NumPy formulation gives:
ready = ts before the cell's watermark (arrival order, or grouped by cell, stable),
waiting = the others in arrival order."""

from __future__ import annotations

import numpy as np
import pytest

from chargetracker.engine import window as W


def _rows(rng: np.random.Generator, n: int, cells: int, t0: float) -> dict[str, np.ndarray]:
    return {
        "slot": rng.integers(0, cells, n).astype(np.int64),
        "ts": t0 + np.sort(rng.uniform(0, 5, n)),
        "v": rng.uniform(3, 4, n), "i": rng.normal(0, 1, n), "t": rng.uniform(20, 30, n),
        "cyc": rng.integers(0, 9, n).astype(np.int64), "step": rng.integers(0, 9, n).astype(np.int64),
        "stime": rng.uniform(0, 100, n),
    }


@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("lateness", [0.0, 2.0])
def test_split_matches_mask_and_stable_sort(group: bool, lateness: float) -> None:
    rng = np.random.default_rng(11)
    cells = 7
    pend, new = _rows(rng, 40, cells, 0.0), _rows(rng, 60, cells, 5.0)
    max_ts = np.full(cells, -np.inf)
    for part in (pend, new):
        np.maximum.at(max_ts, part["slot"], part["ts"])
    max_ts[3] = np.nan  # a cell with no accepted sample yet: nothing of it is ready
    ready, wait = W.split(pend, new, max_ts, lateness, cells, group=group)
    both = {k: np.concatenate([pend[k], new[k]]) for k in W.COLUMNS}
    wm = max_ts[both["slot"]] - lateness
    is_ready = both["ts"] <= wm if lateness <= 0 else both["ts"] < wm
    order = np.flatnonzero(is_ready)
    if group:
        order = order[np.argsort(both["slot"][order], kind="stable")]
    for k in W.COLUMNS:
        np.testing.assert_array_equal(ready[k], both[k][order])
        np.testing.assert_array_equal(wait[k], both[k][~is_ready])
    assert 0 < len(order) < len(is_ready)


def test_order_check_spans_pending_and_new() -> None:
    slot = np.array([0, 1], dtype=np.int64)
    assert W.in_cell_order_after(slot, np.array([1.0, 2.0]), slot, np.array([3.0, 4.0]), 2)
    # Cell 1's new row is older than its pending one: not in order.
    assert not W.in_cell_order_after(slot, np.array([1.0, 5.0]), slot, np.array([3.0, 4.0]), 2)
