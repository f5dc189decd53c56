"""Whole-batch passes of the meter engine before its per-meter pass (:mod:`.kernel`):
order check, per-slot counts and newest readings, duplicates and late rows, accepted rows.
Each is one compiled pass over the batch instead of several numpy ones."""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["order_flags", "scan", "accepted", "reject_flags"]


@nb.njit(cache=True, nogil=True)
def order_flags(slot, ts):
    """True when rows are sorted by (slot, ts)."""
    for i in range(1, len(slot)):
        if slot[i] < slot[i - 1] or (slot[i] == slot[i - 1] and ts[i] < ts[i - 1]):
            return False
    return True


@nb.njit(cache=True, nogil=True)
def scan(slot, ts, n_slots):
    """One pass over a batch: sorted by (slot, ts)?, readings and newest ts per slot
    (-inf when none), oldest and newest ts. Replaces several whole-array numpy passes."""
    n = len(slot)
    counts = np.zeros(n_slots, dtype=np.int64)
    newest = np.full(n_slots, -np.inf)
    ordered = True
    lo = np.inf
    hi = -np.inf
    for i in range(n):
        s = slot[i]
        t = ts[i]
        counts[s] += 1
        if t > newest[s]:
            newest[s] = t
        if t < lo:
            lo = t
        if t > hi:
            hi = t
        if ordered and i > 0 and (s < slot[i - 1] or (s == slot[i - 1] and t < ts[i - 1])):
            ordered = False
    return ordered, counts, newest, lo, hi


@nb.njit(cache=True, nogil=True)
def accepted(row):
    """Rows >= 0 (input rows, not carried-over ones) and whether they are ascending."""
    out = np.empty(len(row), dtype=np.int64)
    m = 0
    asc = True
    for i in range(len(row)):
        r = row[i]
        if r >= 0:
            if m > 0 and r < out[m - 1]:
                asc = False
            out[m] = r
            m += 1
    return out[:m], asc


@nb.njit(cache=True, nogil=True)
def reject_flags(slot, ts, prev_ts):
    """Per sorted row: 0 ok, 1 duplicate (same ts as an earlier reading), 2 late."""
    n = len(slot)
    out = np.zeros(n, dtype=np.int8)
    for i in range(n):
        s = slot[i]
        c = prev_ts[s]
        if i > 0 and slot[i - 1] == s and ts[i - 1] == ts[i]:
            out[i] = 1
        elif ts[i] == c:
            out[i] = 1
        elif ts[i] < c:
            out[i] = 2
    return out
