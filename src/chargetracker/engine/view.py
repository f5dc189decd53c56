"""A named, read-only view of the engine state's arrays.

:class:`~chargetracker.engine.state.EngineState` keeps its per-cell numbers in a few 2-D
arrays so the compiled kernel can work on them without Python per sample: ``f`` (scalar
floats, ``F_*``), ``iv`` (scalar ints, ``I_*``) and three accumulators indexed by
``A_*`` -- ``s`` (the open step), ``r`` (the candidate run that may become the next step)
and ``cy`` (the open cycle). The indices are the constants of :mod:`.layout`; this module
names them, so tests, debugging and tools read ``view.frame("cycle")["dis_as"]`` instead
of ``state.cy[:, 1]``.

Only a view: the compiled kernel takes the same arrays as a named tuple
(:class:`~chargetracker.engine.layout.CellArrays`, from ``EngineState.arrays()``), and
:func:`~chargetracker.engine.update` advances the state **in place** (the returned state is
the same object; undo = reload a checkpoint).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl

from . import layout
from .state import EngineState

__all__ = ["ACCUMULATORS", "FLOATS", "INTS", "Part", "StateView"]


_PER_KIND = ("F_DTMAX", "I_DTN")
_KINDS = ("discharge", "rest", "charge")


def _fields(prefix: str, count: str) -> dict[str, int]:
    n = getattr(layout, count)
    out = {name[len(prefix):].lower(): int(v) for name, v in vars(layout).items()
           if name.startswith(prefix) and isinstance(v, int) and 0 <= v < n}
    # Per-kind blocks (discharge, rest, charge) start at one named index.
    for name, start in list(out.items()):
        if prefix + name.upper() in _PER_KIND:
            del out[name]
            out.update({f"{name}_{kind}": start + k for k, kind in enumerate(_KINDS)})
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


#: Column name -> index of the accumulator arrays (``s``, ``r``, ``cy``), from ``A_*``.
ACCUMULATORS: dict[str, int] = _fields("A_", "NA")
#: Column name -> index of ``f`` (``F_*``).
FLOATS: dict[str, int] = _fields("F_", "NF")
#: Column name -> index of ``iv`` (``I_*``).
INTS: dict[str, int] = _fields("I_", "NI")

Part = Literal["floats", "ints", "step", "run", "cycle"]
_ARRAYS: dict[str, tuple[str, dict[str, int]]] = {
    "floats": ("f", FLOATS), "ints": ("iv", INTS), "step": ("s", ACCUMULATORS),
    "run": ("r", ACCUMULATORS), "cycle": ("cy", ACCUMULATORS),
}


class StateView:
    """Named read access to one :class:`EngineState` (copies, never aliases)."""

    def __init__(self, state: EngineState) -> None:
        self.state = state

    def array(self, part: Part) -> np.ndarray:
        attr, _ = _ARRAYS[part]
        return np.array(getattr(self.state, attr)[: self.state.n_cells], copy=True)

    def frame(self, part: Part) -> pl.DataFrame:
        """One row per cell (``cell_id`` first), one named column per field of ``part``."""
        attr, names = _ARRAYS[part]
        arr = getattr(self.state, attr)[: self.state.n_cells]  # rows beyond are spare capacity
        cols: dict[str, object] = {"cell_id": list(self.state.cell_ids)}
        cols.update({name: arr[:, i].copy() for name, i in names.items()})
        return pl.DataFrame(cols)

    def cell(self, cell_id: str, part: Part) -> dict[str, float | int]:
        """The named fields of ``part`` for one cell (KeyError for an unknown cell)."""
        slot = self.state.index[cell_id]
        attr, names = _ARRAYS[part]
        row = getattr(self.state, attr)[slot]
        return {name: row[i].item() for name, i in names.items()}
