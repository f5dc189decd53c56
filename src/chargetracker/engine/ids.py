"""Cell ids -> state slots, per batch.

A live fleet's batch names every cell once, in a new order each time; a file or a
dump names a few cells many times. Both are mapped without a join on the slot table:
a 64-bit hash of each id (Polars, vectorized) looked up in an open-addressing table
of the known cells' hashes (compiled), then confirmed exactly by comparing the ids of
the slots found with the batch's ids (a wrong match would merge two cells). A batch
with an unknown id (or a hash clash) takes the general path, which also allocates the
new cells' slots.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import polars as pl

from ..frames import gather
from .state import EngineState

__all__ = ["assign_slots", "build_table"]

#: Seed of the id hash (any fixed value; the table is rebuilt in every process).
_SEED = 0x5EED


@nb.njit(cache=True, nogil=True)
def build_table(keys: np.ndarray) -> np.ndarray:
    """Open-addressing table (linear probing, load <= 1/2) of ``keys`` (int64 hashes,
    one per slot): row j = (hash, slot), slot -1 empty; a probe reads one row, no
    second lookup. Empty result when two keys are equal (then hashes cannot tell those
    cells apart: callers use the general path)."""
    size = 16
    while size < 2 * keys.shape[0]:
        size *= 2
    mask = size - 1
    table = np.full((size, 2), -1, dtype=np.int64)
    for slot in range(keys.shape[0]):
        j = keys[slot] & mask
        while table[j, 1] >= 0:
            if table[j, 0] == keys[slot]:
                return np.zeros((0, 2), dtype=np.int64)
            j = (j + 1) & mask
        table[j, 0] = keys[slot]
        table[j, 1] = slot
    return table


@nb.njit(cache=True, nogil=True)
def _probe(table: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Slot of each query hash, -1 when no known cell has it."""
    mask = table.shape[0] - 1
    out = np.empty(query.shape[0], dtype=np.int64)
    for k in range(query.shape[0]):
        q = query[k]
        j = q & mask
        while table[j, 1] >= 0 and table[j, 0] != q:
            j = (j + 1) & mask
        out[k] = table[j, 1]
    return out


def _hashes(ids: pl.Series) -> np.ndarray:
    return ids.hash(seed=_SEED).to_numpy().view(np.int64)


def _known_slots(state: EngineState, ids: pl.Series) -> np.ndarray | None:
    """Slots of ``ids`` when every one is a known cell; ``None`` otherwise."""
    n_cells = state.n_cells
    cached = state._id_table
    if cached is None or cached[0] != n_cells:
        keys = _hashes(state.id_series())
        cached = (n_cells, build_table(keys))
        state._id_table = cached
    table = cached[1]
    if table.shape[0] == 0:
        return None
    slots = _probe(table, _hashes(ids))
    if slots.min(initial=0) < 0:
        return None
    if not gather(state.id_series(), slots).equals(ids, check_names=False):
        return None  # a hash clash with an unknown id
    return slots


def assign_slots(state: EngineState, ids: pl.Series, nominal: dict[str, float]) -> np.ndarray:
    """Slot of each row's cell, allocating slots for new cells in order of appearance."""
    n = len(ids)
    prev = state._last_ids
    # The first and last ids first: a fleet whose order changes every poll would pay a
    # whole comparison (~20 us per 10,000 ids) for nothing.
    if (prev is not None and len(prev[0]) == n and n and prev[0][0] == ids[0]
            and prev[0][n - 1] == ids[n - 1] and prev[0].equals(ids)):
        # A live fleet that sends the same cells in the same order every poll.
        return prev[1]
    slots = _lookup_slots(state, ids, nominal)
    state._last_ids = (ids, slots)
    return slots


def _lookup_slots(state: EngineState, ids: pl.Series, nominal: dict[str, float]) -> np.ndarray:
    n = len(ids)
    if 0 < n < 4 * state.n_cells:
        # Few rows per known cell (a live fleet's batch, in any order): the hash table
        # first; finding runs of equal ids would cost more than the lookup.
        slots = _known_slots(state, ids)
        if slots is not None:
            return slots
    starts = np.flatnonzero(ids.ne_missing(ids.shift(1)).fill_null(True).to_numpy())
    if len(starts) <= n // 4 + 1:
        # Rows come grouped by cell (files, batch input): map each run once.
        run_ids = ids.gather(starts).to_list()
        state.add_cells(list(dict.fromkeys(run_ids)), nominal)
        index = state.index
        run_slots = np.fromiter((index[x] for x in run_ids), dtype=np.int64, count=len(run_ids))
        return np.repeat(run_slots, np.diff(np.append(starts, n)))
    if n >= 4 * state.n_cells > 0:
        slots = _known_slots(state, ids)
        if slots is not None:
            return slots
    # New cells (or a hash clash): allocate slots for the new ids from the distinct ones,
    # then a cast to an Enum of the ids in slot order, whose physical code is the slot.
    known = state.index
    fresh = [x for x in ids.unique(maintain_order=True).to_list() if x not in known]
    state.add_cells(fresh, nominal)
    return ids.cast(state.id_enum()).to_physical().to_numpy().astype(np.int64)
