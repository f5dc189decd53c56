"""The lateness window kept per cell gives the rows the NumPy formulation gives: ready =
each cell's held-back then new rows before its watermark (grouped by cell, stable; or
held-back by cell then new in arrival order), waiting = the others, kept per cell in
time order; the flat form round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from chargetracker.engine import window as W


def _rows(rng: np.random.Generator, n: int, cells: int, t0: float) -> dict[str, np.ndarray]:
    return {
        "slot": rng.integers(0, cells, n).astype(np.int64),
        "ts": t0 + np.sort(rng.uniform(0, 5, n)),
        "v": rng.uniform(3, 4, n), "i": rng.normal(0, 1, n), "t": rng.uniform(20, 30, n),
        "cyc": rng.integers(0, 9, n).astype(np.int64), "step": rng.integers(-(2**62), 9, n).astype(np.int64),
        "stime": rng.uniform(0, 100, n),
    }


def _by_slot(rows: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    return idx[np.argsort(rows["slot"][idx], kind="stable")]


@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("lateness", [0.0, 2.0])
def test_take_ready_matches_mask_and_stable_sort(group: bool, lateness: float) -> None:
    rng = np.random.default_rng(11)
    cells = 7
    held, new = _rows(rng, 40, cells, 0.0), _rows(rng, 60, cells, 5.0)
    max_ts = np.full(cells, -np.inf)
    for part in (held, new):
        np.maximum.at(max_ts, part["slot"], part["ts"])
    max_ts[3] = np.nan  # a cell with no accepted sample yet: nothing of it is ready
    pending = W.Pending(depth=2)  # too shallow for these rows: grows as it loads and takes
    pending.load(held, cells)
    flat = pending.to_flat(cells)
    np.testing.assert_array_equal(flat["ts"], held["ts"][_by_slot(held, np.arange(40))])
    ready = W.take_ready(pending, new, max_ts, lateness, cells, group=group)

    def is_ready(rows: dict[str, np.ndarray]) -> np.ndarray:
        wm = max_ts[rows["slot"]] - lateness
        return rows["ts"] <= wm if lateness <= 0 else rows["ts"] < wm

    h_ready, q_ready = is_ready(flat), is_ready(new)
    both = {k: np.concatenate([flat[k], new[k]]) for k in W.COLUMNS}
    order = np.concatenate([np.flatnonzero(h_ready), 40 + np.flatnonzero(q_ready)])
    if group:
        order = _by_slot(both, order)
    waiting = _by_slot(both, np.concatenate([np.flatnonzero(~h_ready), 40 + np.flatnonzero(~q_ready)]))
    left = pending.to_flat(cells)
    for k in W.COLUMNS:
        np.testing.assert_array_equal(ready[k], both[k][order])
        np.testing.assert_array_equal(left[k], both[k][waiting])
    assert 0 < len(order) < 100
    assert pending.rows == len(waiting)


def test_order_check_spans_held_back_and_new() -> None:
    slot = np.array([0, 1], dtype=np.int64)
    rows = _rows(np.random.default_rng(1), 2, 2, 0.0)
    rows["slot"], rows["ts"] = slot, np.array([1.0, 2.0])
    pending = W.Pending()
    pending.load(rows, 2)
    assert W.in_order_after(pending.f, pending.n[:2], slot, np.array([3.0, 4.0]))
    # Cell 1's new row is older than its held-back one: not in order.
    assert not W.in_order_after(pending.f, pending.n[:2], slot, np.array([3.0, 1.5]))


def test_empty_window_and_new_cells() -> None:
    pending = W.Pending()
    new = _rows(np.random.default_rng(2), 30, 5, 0.0)
    pending.reserve(5)
    ready = W.take_ready(pending, new, np.full(5, 100.0), 2.0, 5, group=True)
    np.testing.assert_array_equal(ready["ts"], new["ts"][_by_slot(new, np.arange(30))])
    assert pending.rows == 0 and pending.to_flat(5)["ts"].size == 0


def test_block_deepens_for_many_waiting_rows() -> None:
    pending = W.Pending(cells=2, depth=1)
    held = _rows(np.random.default_rng(3), 1, 1, 0.0)
    pending.load(held, 2)
    new = _rows(np.random.default_rng(4), 6, 1, 10.0)  # all cell 0, all inside the window
    ready = W.take_ready(pending, new, np.array([15.0, np.nan]), 30.0, 2, group=False)
    assert ready["ts"].size == 0 and pending.f.shape[1] >= 7
    left = pending.to_flat(2)
    np.testing.assert_array_equal(left["ts"], np.concatenate([held["ts"], new["ts"]]))
    np.testing.assert_array_equal(left["step"], np.concatenate([held["step"], new["step"]]))


@pytest.mark.parametrize("seed", range(6))
def test_admit_equals_lateness_check_then_order_check(seed: int) -> None:
    """admit (lateness > 0) gives late_and_duplicates' flags and newest ts, and status 0
    only where in_order_after holds for the rows that are not late."""
    from chargetracker.engine import order as O

    rng = np.random.default_rng(seed)
    cells, lateness = 6, 2.0
    held = _rows(rng, 12, cells, 0.0)
    keep = held["slot"] != 5  # cell 5: no sample accepted yet
    held = {k: a[keep] for k, a in held.items()}
    pending = W.Pending()
    pending.load(held, cells)
    max_ts = np.full(cells, np.nan)
    for c in range(cells):  # the newest accepted sample of a cell is its newest held-back one
        mine = held["ts"][held["slot"] == c]
        if mine.size:
            max_ts[c] = mine.max()
    new = _rows(rng, 30, cells, 5.0 if seed % 2 else 2.0)
    if seed % 3 == 0:  # a few rows far in the past: late
        new["ts"][rng.integers(0, 30, 3)] = -100.0
    ref_ts, got_ts = max_ts.copy(), max_ts.copy()
    labels = np.zeros(cells, dtype=np.int64)
    ref = O.late_and_duplicates(new["slot"], new["ts"], new["step"], ref_ts, labels, lateness)
    flags = np.empty(30, dtype=np.int8)
    span = np.empty(2)
    status = W.admit(new["slot"], new["ts"], got_ts, lateness, flags, span)
    assert tuple(span) == (new["ts"].min(), new["ts"].max())
    np.testing.assert_array_equal(flags, ref)
    np.testing.assert_array_equal(got_ts, ref_ts)
    assert (status == 2) == bool((ref == 1).any())
    if status == 0:
        assert W.in_order_after(pending.f, pending.n[:cells], new["slot"], new["ts"])


def test_take_ready_buffers_are_reused_and_grow() -> None:
    """The ready columns are views of scratch kept between calls: a later, larger batch
    grows them and gives the same rows as a fresh window would."""
    pending, fresh = W.Pending(), W.Pending()
    rng = np.random.default_rng(5)
    for n in (10, 200, 50):
        new = _rows(rng, n, 4, 0.0)
        max_ts = np.full(4, 100.0)
        got = {k: a.copy() for k, a in W.take_ready(pending, new, max_ts, 2.0, 4, group=True).items()}
        want = W.take_ready(fresh, new, max_ts, 2.0, 4, group=True)
        fresh = W.Pending()
        for k in W.COLUMNS:
            np.testing.assert_array_equal(got[k], want[k])
            assert got[k].size == n


def test_a_backlog_batchs_buffers_are_released_at_the_next_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scratch beyond ``_KEEP_ROWS`` rows is not kept once its views are void (the next
    call), so a replayed backlog does not leave its largest batch's buffers in the state."""
    monkeypatch.setattr(W, "_KEEP_ROWS", 100)
    pending = W.Pending()
    rng = np.random.default_rng(3)
    max_ts = np.full(4, 100.0)
    big = W.take_ready(pending, _rows(rng, 1000, 4, 0.0), max_ts, 2.0, 4, group=True)
    assert big["ts"].size == 1000 and pending._out_f.shape[1] >= 1000
    small = _rows(rng, 10, 4, 0.0)
    got = {k: a.copy() for k, a in W.take_ready(pending, small, max_ts, 2.0, 4, group=True).items()}
    assert pending._out_f.shape[1] <= 100
    want = W.take_ready(W.Pending(), small, max_ts, 2.0, 4, group=True)
    for k in W.COLUMNS:
        np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize("group", [False, True])
def test_take_with_cells_names_the_ready_rows_cells(group: bool) -> None:
    rng = np.random.default_rng(21)
    cells = 8
    pending = W.Pending()
    pending.load(_rows(rng, 20, cells, 0.0), cells)
    new = _rows(rng, 25, cells, 4.0)
    max_ts = np.full(cells, 6.0)
    max_ts[2] = np.nan  # nothing of cell 2 is ready
    ready, moved = W.take_with_cells(pending, new, max_ts, 2.0, cells, group=group)
    np.testing.assert_array_equal(moved, np.unique(ready["slot"]))
    assert 2 not in moved.tolist() and moved.size > 0


@pytest.mark.parametrize("group", [False, True])
def test_all_wait_equals_the_counting_take(group: bool) -> None:
    """When no new row can be ready (each its cell's newest, the batch spanning at most
    the window), the two-pass take gives the same ready rows, cells and blocks, also
    when the buffers and blocks must grow on the way."""
    rng = np.random.default_rng(8)
    cells, lateness = 9, 2.0
    a, b = W.Pending(depth=1), W.Pending(depth=1)
    max_a, max_b = np.full(cells, np.nan), np.full(cells, np.nan)
    t0 = 0.0
    for _ in range(8):
        n = int(rng.integers(1, 40))
        new = _rows(rng, n, cells, t0)
        new["ts"] = t0 + np.sort(rng.uniform(0, lateness, n))  # spans <= the window
        flags, span = np.empty(n, dtype=np.int8), np.empty(2)
        assert W.admit(new["slot"], new["ts"], max_a, lateness, flags, span) == 0
        assert W.admit(new["slot"], new["ts"], max_b, lateness, flags, span) == 0
        got, got_cells = W.take_with_cells(a, new, max_a, lateness, cells, group=group, all_wait=True)
        got = {k: v.copy() for k, v in got.items()}
        got_cells = got_cells.copy()
        want, want_cells = W.take_with_cells(b, new, max_b, lateness, cells, group=group)
        np.testing.assert_array_equal(got_cells, want_cells)
        for k in W.COLUMNS:
            np.testing.assert_array_equal(got[k], want[k])
            np.testing.assert_array_equal(a.to_flat(cells)[k], b.to_flat(cells)[k])
        t0 += lateness + rng.uniform(0, 3)
