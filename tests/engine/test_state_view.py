"""The named view of the engine state's arrays (engine/view.py)."""

from __future__ import annotations

import polars as pl

from chargetracker.engine import layout as L
from chargetracker.engine import new_state, update
from chargetracker.engine.view import ACCUMULATORS, FLOATS, INTS, StateView


def test_names_cover_every_index_once() -> None:
    assert sorted(ACCUMULATORS.values()) == list(range(L.NA))
    assert sorted(FLOATS.values()) == list(range(L.NF))
    assert sorted(INTS.values()) == list(range(L.NI))
    assert ACCUMULATORS["dis_as"] == L.A_DIS_AS and FLOATS["max_ts"] == L.F_MAX_TS


def test_view_reads_the_open_cycle_by_name() -> None:
    # 1 A for 10 intervals of 60 s, then -2 A for 5: 600 A*s charged, 600 A*s discharged.
    ts = [60.0 * i for i in range(17)]
    cur = [1.0] * 11 + [-2.0] * 6
    frame = pl.DataFrame({"cell_id": ["c"] * 17, "ts": ts, "voltage_v": [3.7] * 17,
                          "current_a": cur})
    state, _ = update(new_state(), frame)
    view = StateView(state)
    assert view.cell("c", "floats")["max_ts"] == ts[-1]
    # The charge step (11 samples, 10 x 60 s at 1 A) is closed into the open cycle.
    cyc = view.cell("c", "cycle")
    assert (cyc["chg_as"], cyc["dis_as"], cyc["n"]) == (600.0, 0.0, 11.0)
    # The open discharge step: the jump interval 600->660 s holds the new -2 A, then
    # 660..900 s; the sample at 960 s waits in the 2 s lateness window.
    step = view.cell("c", "step")
    assert (step["chg_as"], step["dis_as"], step["n"]) == (0.0, 5 * 60.0 * 2.0, 5.0)
    ints = view.cell("c", "ints")
    assert (ints["step_no"], ints["cycle_no"], ints["step_kind"]) == (2, 1, -1)
    assert view.frame("cycle")["cell_id"].to_list() == ["c"]
    snapshot = view.array("cycle")
    snapshot[:] = -1.0  # a copy: the state is untouched
    assert view.cell("c", "cycle")["chg_as"] == 600.0
