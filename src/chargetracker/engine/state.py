"""The engine's carried state: small per cell, serializable, versioned.

Per cell the state holds a few scalars (among them what the cell's logger does in each
kind of step, the learnt current threshold and capacity) and three accumulators (open
step, pending candidate run, open cycle): under 1 KiB, whatever the length of the stream. Samples still inside the lateness window are
kept (``pending``) until the watermark passes them.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from ..config import EngineConfig
from ..errors import EngineStateError
from .layout import (
    F_CAND_IR,
    F_EPS,
    F_LAST_IR,
    F_MAX_TS,
    F_NOMINAL_AH,
    F_PREV_ST,
    F_REF_DIS,
    F_SNAP_TS,
    I_EPS_LEARN,
    I_PREV_SLAB,
    NA,
    NF,
    NI,
    NULL_LABEL,
    CellArrays,
)
from .window import Pending

__all__ = ["EngineState", "STATE_VERSION", "PENDING_FIELDS", "empty_pending"]

#: 2: evidence-based gaps, learnt epsilon and capacity, partial cycles (layout changed).
#: 3: per-cell time of the last open snapshot (F_SNAP_TS).
STATE_VERSION = 3
_MAGIC = b"CTES"

#: Columns of the pending buffer: accepted samples still inside the lateness window.
#: Nulls are NaN (floats) or NULL_LABEL (labels).
PENDING_FIELDS: dict[str, type] = {
    "slot": np.int64, "ts": np.float64, "v": np.float64, "i": np.float64, "t": np.float64,
    "cyc": np.int64, "step": np.int64, "stime": np.float64,
}


def empty_pending() -> dict[str, np.ndarray]:
    return {k: np.zeros(0, dtype=dt) for k, dt in PENDING_FIELDS.items()}


def _new_f(n: int) -> np.ndarray:
    f = np.zeros((n, NF), dtype=np.float64)
    for col in (F_REF_DIS, F_MAX_TS, F_NOMINAL_AH, F_LAST_IR, F_CAND_IR, F_PREV_ST, F_SNAP_TS):
        f[:, col] = np.nan
    return f


def _new_iv(n: int) -> np.ndarray:
    iv = np.zeros((n, NI), dtype=np.int64)
    iv[:, I_PREV_SLAB] = NULL_LABEL
    return iv


@dataclass
class EngineState:
    """Mutable container passed through :func:`update`; treat it as opaque."""

    config: EngineConfig
    cell_ids: list[str] = field(default_factory=list)
    f: np.ndarray = field(default_factory=lambda: _new_f(0))
    iv: np.ndarray = field(default_factory=lambda: _new_iv(0))
    s: np.ndarray = field(default_factory=lambda: np.zeros((0, NA)))
    r: np.ndarray = field(default_factory=lambda: np.zeros((0, NA)))
    cy: np.ndarray = field(default_factory=lambda: np.zeros((0, NA)))
    #: Samples inside the lateness window, per cell (see .window).
    window: Pending = field(default_factory=Pending)
    index: dict[str, int] = field(default_factory=dict)
    _id_enum: pl.Enum | None = None
    _slot_frame: pl.DataFrame | None = None
    _id_series: pl.Series | None = None
    _last_ids: tuple[pl.Series, np.ndarray] | None = None
    #: (cells when built, hash table of the ids): see .ids (rebuilt, not saved).
    _id_table: tuple[int, np.ndarray] | None = None

    @property
    def pending(self) -> dict[str, np.ndarray]:
        """The held-back samples as flat columns (PENDING_FIELDS): grouped by slot, each
        cell's in time order (the serialized form, and the general path's)."""
        return self.window.to_flat(self.n_cells)

    @pending.setter
    def pending(self, flat: dict[str, np.ndarray]) -> None:
        self.window.load(flat, self.n_cells)

    def arrays(self) -> CellArrays:
        """The per-cell arrays by name (the compiled kernel's view; rows beyond
        ``n_cells`` are spare capacity)."""
        return CellArrays(self.f, self.iv, self.s, self.r, self.cy)

    # -- cells --------------------------------------------------------------------
    @property
    def n_cells(self) -> int:
        return len(self.cell_ids)

    def id_series(self) -> pl.Series:
        """Cell ids by slot, as a Series (gathered to name output rows)."""
        if self._id_series is None or len(self._id_series) != self.n_cells:
            self._id_series = pl.Series("cell_id", self.cell_ids, dtype=pl.Utf8)
        return self._id_series

    def slot_frame(self) -> pl.DataFrame:
        """cell_id -> __slot, for joins."""
        if self._slot_frame is None or self._slot_frame.height != self.n_cells:
            self._slot_frame = pl.DataFrame(
                {"cell_id": self.cell_ids, "__slot": np.arange(self.n_cells, dtype=np.int64)},
                schema={"cell_id": pl.Utf8, "__slot": pl.Int64},
            )
        return self._slot_frame

    def id_enum(self) -> pl.Enum:
        """An Enum of the cell ids in slot order: a cast to it maps an id to its slot."""
        if self._id_enum is None or len(self._id_enum.categories) != self.n_cells:
            self._id_enum = pl.Enum(self.cell_ids)
        return self._id_enum

    def add_cells(self, ids: list[str], nominal_ah: dict[str, float] | None = None) -> None:
        """Allocate slots for new cells (in the given order)."""
        new = [c for c in ids if c not in self.index]
        if not new:
            return
        start = self.n_cells
        need = start + len(new)
        cap = self.f.shape[0]
        if need > cap:
            newcap = max(need, 2 * cap, 16)
            self.f = np.concatenate([self.f, _new_f(newcap - cap)])
            self.iv = np.concatenate([self.iv, _new_iv(newcap - cap)])
            self.s = np.concatenate([self.s, np.zeros((newcap - cap, NA))])
            self.r = np.concatenate([self.r, np.zeros((newcap - cap, NA))])
            self.cy = np.concatenate([self.cy, np.zeros((newcap - cap, NA))])
        for k, cid in enumerate(new):
            self.index[cid] = start + k
        self.cell_ids.extend(new)
        nominal_ah = nominal_ah or {}
        for k, cid in enumerate(new):
            self.f[start + k, F_NOMINAL_AH] = nominal_ah.get(cid, np.nan)
            self._set_epsilon(start + k, nominal_ah.get(cid))

    def _set_epsilon(self, slot: int, nominal_ah: float | None) -> None:
        eps = self.epsilon_for(nominal_ah)
        self.f[slot, F_EPS] = self.config.epsilon_floor_a if eps is None else eps
        self.iv[slot, I_EPS_LEARN] = 1 if eps is None else 0

    def epsilon_for(self, nominal_ah: float | None) -> float | None:
        """The fixed rest threshold of a cell, A; ``None``: learnt from its own currents."""
        cfg = self.config
        if cfg.current_epsilon_a is not None:
            return float(cfg.current_epsilon_a)
        if nominal_ah is not None and np.isfinite(nominal_ah) and nominal_ah > 0:
            return float(nominal_ah) * cfg.epsilon_c_rate
        return cfg.default_epsilon_a

    def set_nominal(self, nominal_ah: dict[str, float]) -> None:
        """Record nominal capacities of known cells that have seen no sample yet."""
        for cid, cap in nominal_ah.items():
            slot = self.index.get(cid)
            if slot is None or not np.isfinite(cap):
                continue
            if self.iv[slot, 0] == 0:  # no sample processed: threshold may still change
                self.f[slot, F_NOMINAL_AH] = cap
                self._set_epsilon(slot, cap)

    # -- serialization ---------------------------------------------------------------
    def to_bytes(self) -> bytes:
        n = self.n_cells
        header = {
            "version": STATE_VERSION,
            "config": asdict(self.config),
            "cell_ids": self.cell_ids,
        }
        buf = io.BytesIO()
        arrays: dict[str, Any] = {
            "f": self.f[:n], "iv": self.iv[:n], "s": self.s[:n], "r": self.r[:n],
            "cy": self.cy[:n],
        }
        arrays.update({f"p_{k}": v for k, v in self.pending.items()})
        np.savez(buf, **arrays)
        hb = json.dumps(header).encode()
        return _MAGIC + struct.pack("<II", STATE_VERSION, len(hb)) + hb + buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, config: EngineConfig | None = None) -> EngineState:
        """Restore state; ``config`` must match the one the state was made with, if given."""
        try:
            if data[:4] != _MAGIC:
                raise EngineStateError("not a ChargeTracker engine state (bad magic)")
            version, hlen = struct.unpack("<II", data[4:12])
            if version != STATE_VERSION:
                raise EngineStateError(
                    f"engine state version {version} is not supported (expected {STATE_VERSION}): "
                    "it was written by a ChargeTracker whose state layout or gap, rest-threshold "
                    "and cycle rules differ; re-analyse from the archive (backfill) or start "
                    "from an empty state"
                )
            header = json.loads(data[12 : 12 + hlen])
            arrays = np.load(io.BytesIO(data[12 + hlen :]), allow_pickle=False)
            saved_cfg = EngineConfig(**header["config"])
        except EngineStateError:
            raise
        except Exception as exc:
            raise EngineStateError(f"corrupt engine state: {exc}") from exc
        if config is not None and config != saved_cfg:
            raise EngineStateError(
                "engine state was made with a different engine configuration; "
                "re-analyse from the archive (backfill) after changing settings"
            )
        st = cls(config=saved_cfg)
        ids = list(header["cell_ids"])
        st.cell_ids = ids
        st.index = {c: k for k, c in enumerate(ids)}
        st.f = arrays["f"].copy()
        st.iv = arrays["iv"].copy()
        st.s = arrays["s"].copy()
        st.r = arrays["r"].copy()
        st.cy = arrays["cy"].copy()
        pend = {k: arrays[f"p_{k}"].astype(dt) for k, dt in PENDING_FIELDS.items()}
        st.pending = pend
        return st
