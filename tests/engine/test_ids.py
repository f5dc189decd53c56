"""Cell ids -> state slots: the hash-table path gives the slots a dict lookup gives,
allocates new cells in order of appearance, and survives hash clashes."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from chargetracker.engine import ids, new_state
from chargetracker.engine.state import EngineState

KNOWN = [f"cell-{k:03d}" for k in range(200)]


def _state() -> EngineState:
    state = new_state()
    state.add_cells(KNOWN)
    return state


def _shuffled(names: list[str], seed: int) -> pl.Series:
    order = np.random.default_rng(seed).permutation(len(names))
    return pl.Series("cell_id", [names[k] for k in order])


def test_shuffled_known_ids_map_to_their_slots() -> None:
    state = _state()
    for seed in range(3):  # a fresh order each batch, as a live fleet's arrive
        batch = _shuffled(KNOWN, seed)
        got = ids.assign_slots(state, batch, {})
        assert got.tolist() == [state.index[x] for x in batch.to_list()]
    assert state.n_cells == len(KNOWN)


def test_new_ids_get_new_slots_in_order_of_appearance() -> None:
    state = _state()
    names = [*KNOWN, "new-b", "new-a"]
    batch = pl.Series("cell_id", ["new-b", *KNOWN[::-1], "new-a", "new-b"])
    got = ids.assign_slots(state, batch, {})
    assert state.cell_ids == names
    assert got.tolist() == [names.index(x) for x in batch.to_list()]


@pytest.mark.parametrize("clash", ["among known cells", "unknown id on a known hash"])
def test_hash_clashes_fall_back_to_exact_lookup(clash: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if clash == "among known cells":
        # Every id hashes alike: the table cannot be built, the general path maps them.
        monkeypatch.setattr(ids, "_hashes", lambda s: np.zeros(len(s), dtype=np.int64))
    else:
        # Hash = length: the known ids (all 8 bytes long) clash among themselves too,
        # so give them distinct hashes and an unknown id the hash of a known one.
        def fake(s: pl.Series) -> np.ndarray:
            return np.array([KNOWN.index(x) if x in KNOWN else 7 for x in s.to_list()], dtype=np.int64)
        monkeypatch.setattr(ids, "_hashes", fake)
    state = _state()
    batch = pl.Series("cell_id", [*_shuffled(KNOWN, 1).to_list(), "intruder"])
    got = ids.assign_slots(state, batch, {})
    assert state.cell_ids == [*KNOWN, "intruder"]
    assert got.tolist() == [state.index[x] for x in batch.to_list()]
