"""The fleet simulator: many cells, each on its group's protocol, sampled like a BMS.

>>> fleet = Fleet(default_fleet_config(cells=104, seed=1))
>>> for frame in fleet.chunks(seconds=3600):   # canonical measurement frames
...     ...
>>> fleet.cells                                 # CELL_SCHEMA metadata

Sample ``k`` (0, 1, ...) of every cell is taken at ``t = k * sample_period_s`` and shows
the cell after ``k + 1`` model periods; its ``ts = start_epoch + t + jitter``. Rows are in
*delivery order*: by sample index, then cell, except for faults that delay rows.

Determinism: the same config (incl. seed) gives bit-identical frames, and concatenating
the frames of any split into chunks gives the same rows as one big chunk. The model
state, the fault state and every random stream carry over between chunks; rows delayed
past the end of a chunk are delivered in a later one (all of them at the end of a
bounded run).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from ..schema import CELL_SCHEMA, MEASUREMENT_SCHEMA
from . import kernel
from .ageing import CellAgeing, draw_ageing
from .chemistry import CHEMISTRIES, get_chemistry
from .fleet_config import FleetConfig
from .measurement import (
    FaultState,
    add_noise,
    apply_spikes,
    apply_stuck,
    delivery_delays,
    dropout_mask,
)
from .protocol import compile_protocols, get_protocol

__all__ = ["Fleet", "CellTruth"]

_OCV_POINTS = 2001
#: Upper bound on samples (cells x periods) generated per internal block, to bound memory.
_BLOCK_SAMPLES = 1 << 20
_STREAMS = ("params", "voltage", "current", "temperature", "jitter", "spikes", "dropouts",
            "duplicates", "out_of_order", "stuck")


@dataclass(frozen=True, slots=True)
class CellTruth:
    """Ground truth per cell (arrays in cell order), for tests and demos."""

    cell_id: tuple[str, ...]
    group: npt.NDArray[np.int64]
    initial_capacity_ah: npt.NDArray[np.float64]
    ageing: CellAgeing
    stuck: npt.NDArray[np.bool_]


class Fleet:
    """A resumable, seeded fleet simulation producing canonical measurement frames."""

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        cfg = config
        self.dt = float(cfg.sample_period_s)
        self.n_total: int | None = (
            None if cfg.duration_s is None else int(math.ceil(cfg.duration_s / self.dt - 1e-9))
        )
        seqs = np.random.SeedSequence(cfg.seed).spawn(len(_STREAMS))
        self._rng = {name: np.random.Generator(np.random.PCG64(s)) for name, s in zip(_STREAMS, seqs, strict=True)}
        rp = self._rng["params"]

        custom = cfg.custom_protocols
        chem_names = sorted(CHEMISTRIES)
        ids: list[str] = []
        group_idx: list[np.ndarray] = []
        ageings: list[CellAgeing] = []
        protos, q_nom, vmins, vmaxs = [], [], [], []
        p_rows: list[np.ndarray] = []
        for gi, g in enumerate(cfg.groups):
            chem = get_chemistry(g.chemistry)
            qn = g.nominal_capacity_ah or chem.nominal_capacity_ah
            protos.append(get_protocol(g.test_type, custom))
            q_nom.append(qn)
            vmins.append(chem.v_min)
            vmaxs.append(chem.v_max)
            ids.extend(f"{g.name}-{j + 1:03d}" for j in range(g.count))
            group_idx.append(np.full(g.count, gi, np.int64))
            ag = draw_ageing(g.ageing or cfg.ageing, g.count, rp)
            ageings.append(ag)
            p = np.empty((g.count, kernel.N_P))
            p[:, 0] = qn * ag.capacity_factor
            p[:, 1] = chem.r0_ohm * ag.resistance_factor
            p[:, 2] = chem.r1_ohm * ag.resistance_factor
            p[:, 3] = chem.tau1_s
            p[:, 4] = chem.r_activation_k
            p[:, 5] = chem.r_low_soc_gain
            # Capacity scales the thermal mass and surface (bigger cells, same chemistry).
            scale = qn / chem.nominal_capacity_ah
            p[:, 6] = chem.heat_capacity_j_per_k * scale
            p[:, 7] = chem.cooling_w_per_k * scale ** (2.0 / 3.0)
            p[:, 8] = g.ambient_c
            p[:, 9] = chem.coulombic_efficiency
            p[:, 10] = ag.fade_per_cycle
            p[:, 11] = ag.knee_cycle
            p[:, 12] = ag.knee_factor
            p[:, 13] = ag.resistance_growth
            p_rows.append(p)
        self._ids = pl.Series("cell_id", ids, dtype=pl.Utf8)
        self.n_cells = len(ids)
        self._p = np.ascontiguousarray(np.concatenate(p_rows))
        self._group = np.concatenate(group_idx)
        self._chem = np.array(
            [chem_names.index(g.chemistry) for g in cfg.groups], np.int64
        )[self._group]
        tables = np.stack([CHEMISTRIES[c].ocv.table(_OCV_POINTS) for c in chem_names])
        # Force a strictly increasing table: the LFP plateau fit wiggles by < 0.1 mV.
        tables = np.maximum.accumulate(tables, axis=1)
        d = 1.0 / (_OCV_POINTS - 1)
        lo = np.maximum((tables[:, 1] - tables[:, 0]) / d, 5.0)
        hi = np.maximum((tables[:, -1] - tables[:, -2]) / d, 5.0)
        self._table = np.ascontiguousarray(tables)
        self._slopes = np.ascontiguousarray(np.stack([lo, hi], axis=1))
        self._proto = compile_protocols(protos, q_nom, vmins, vmaxs)
        self._q_nom = np.array(q_nom)
        self._vmin = np.array(vmins)
        self._vmax = np.array(vmaxs)

        n = self.n_cells
        self._state = np.zeros((n, kernel.N_S))
        self._state[:, 0] = np.clip(cfg.initial_soc + 0.02 * rp.standard_normal(n), 0.0, 1.0)
        self._state[:, 2] = self._p[:, 8]
        self._istate = np.zeros((n, 2), np.int64)

        ag_all = CellAgeing(*(np.concatenate([getattr(a, f) for a in ageings])
                              for f in CellAgeing.__dataclass_fields__))
        stuck = np.zeros(n, bool)
        fs = FaultState(gap_end=np.full(n, -1, np.int64), stuck_start=np.zeros(0, np.int64),
                        stuck_end=np.zeros(0, np.int64), stuck_cells=np.zeros(0, np.int64))
        if cfg.faults.on("stuck"):
            rs = self._rng["stuck"]
            m = max(1, int(round(cfg.faults.stuck_fraction * n)))
            cells = np.sort(rs.permutation(n)[:m])
            horizon = self.n_total if self.n_total is not None else int(86400 / self.dt)
            start = (rs.random(m) * 0.8 * horizon).astype(np.int64)
            lo_s, hi_s = cfg.faults.stuck_duration_s
            length = np.maximum(2, ((lo_s + (hi_s - lo_s) * rs.random(m)) / self.dt).astype(np.int64))
            fs = FaultState(gap_end=fs.gap_end, stuck_start=start, stuck_end=start + length,
                            stuck_cells=cells, held_v=np.zeros(m), held_t=np.zeros(m))
            stuck[cells] = True
        self._faults = fs
        self.truth = CellTruth(tuple(ids), self._group, self._p[:, 0].copy(), ag_all, stuck)
        self._k = 0                  # next sample index
        self._t_target = 0.0         # simulated time requested so far, s
        self._pending: dict[str, np.ndarray] | None = None
        self._flushed = False

    # ------------------------------------------------------------------ metadata
    @property
    def cell_ids(self) -> list[str]:
        return self._ids.to_list()

    @property
    def cells(self) -> pl.DataFrame:
        """Cell metadata in :data:`~chargetracker.schema.CELL_SCHEMA`. ``attributes`` is JSON
        with ``defective``, ``knee``, ``knee_cycle``, ``fade_per_cycle``, ``stuck_sensor``,
        ``initial_capacity_ah``, ``seed`` and ``simulated``."""
        cfg = self.config
        tr = self.truth
        ag = tr.ageing
        attrs = []
        g = self._group
        within = np.zeros(self.n_cells, dtype=np.int64)  # a cell's index in its group
        for i in range(len(cfg.groups)):
            members = np.flatnonzero(g == i)
            within[members] = np.arange(members.size)
        for c in range(self.n_cells):  # metadata only, once per cell
            kc = ag.knee_cycle[c]
            group = cfg.groups[g[c]]
            pack = ({} if group.cells_per_pack is None else
                    {"pack_id": f"{group.name}-pack-{within[c] // group.cells_per_pack + 1:02d}"})
            attrs.append(json.dumps({
                **pack,
                "simulated": True,
                "seed": cfg.seed,
                "defective": bool(ag.defective[c]),
                "knee": bool(ag.knee[c]),
                "knee_cycle": int(kc) if np.isfinite(kc) else None,
                "fade_per_cycle": float(ag.fade_per_cycle[c]),
                "initial_capacity_ah": float(tr.initial_capacity_ah[c]),
                "stuck_sensor": bool(tr.stuck[c]),
            }))
        return pl.DataFrame({
            "cell_id": self._ids,
            "group": [cfg.groups[i].name for i in g],
            "chemistry": [cfg.groups[i].chemistry for i in g],
            "test_type": [cfg.groups[i].test_type for i in g],
            "nominal_capacity_ah": self._q_nom[g],
            "v_min": self._vmin[g],
            "v_max": self._vmax[g],
            "attributes": attrs,
        }, schema=CELL_SCHEMA)

    @property
    def metadata(self) -> dict[str, list[str]]:
        """Cell ids with a defect, a knee or a stuck sensor (what the dashboard must catch)."""
        ids = np.array(self.truth.cell_id)
        ag = self.truth.ageing
        return {
            "defective": ids[ag.defective].tolist(),
            "knee": ids[ag.knee].tolist(),
            "stuck_sensor": ids[self.truth.stuck].tolist(),
        }

    @property
    def sample_index(self) -> int:
        """Index of the next sample to generate."""
        return self._k

    @property
    def sim_time_s(self) -> float:
        """Simulated time covered so far, s."""
        return self._k * self.dt

    @property
    def done(self) -> bool:
        """True when a bounded run has produced and delivered everything."""
        return self.n_total is not None and self._k >= self.n_total and self._flushed

    def state(self) -> dict[str, npt.NDArray[np.float64] | npt.NDArray[np.int64]]:
        """Copy of the true model state per cell: soc, v1_v, temperature_c, step_time_s,
        step_index, cycles (completed)."""
        out: dict[str, npt.NDArray[np.float64] | npt.NDArray[np.int64]] = {
            name: self._state[:, j].copy() for j, name in enumerate(kernel.S_FIELDS)
        }
        out["step_index"] = self._istate[:, 0].copy()
        out["cycles"] = self._istate[:, 1].copy()
        return out

    # ------------------------------------------------------------------ generation
    def chunks(self, seconds: float = 3600.0) -> Iterator[pl.DataFrame]:
        """Successive frames of ``seconds`` simulated time each, until the configured
        duration (forever when ``duration_s`` is None)."""
        if not seconds > 0:
            raise ValueError("seconds must be > 0")
        while not self.done:
            yield self.advance(seconds)

    def advance(self, seconds: float) -> pl.DataFrame:
        """The next frame: samples with ``t < sim_time_requested + seconds`` (s), capped at
        the duration. The last frame of a bounded run also delivers delayed rows."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._t_target += seconds
        k_stop = int(math.ceil(self._t_target / self.dt - 1e-9))
        if self.n_total is not None:
            k_stop = min(k_stop, self.n_total)
        frames = []
        block = max(1, _BLOCK_SAMPLES // self.n_cells)
        while self._k < k_stop:
            kk = min(k_stop, self._k + block)
            final = self.n_total is not None and kk >= self.n_total
            frames.append(self._generate(kk - self._k, final))
        if self.n_total is not None and self._k >= self.n_total and not self._flushed:
            if not frames:
                frames.append(self._flush())
            self._flushed = True
        if not frames:
            return pl.DataFrame(schema=MEASUREMENT_SCHEMA)
        return frames[0] if len(frames) == 1 else pl.concat(frames, rechunk=False)

    def _flush(self) -> pl.DataFrame:
        rows = self._pending
        self._pending = None
        if rows is None:
            return pl.DataFrame(schema=MEASUREMENT_SCHEMA)
        return self._frame(rows)

    def _generate(self, n_samples: int, final: bool) -> pl.DataFrame:
        cfg = self.config
        n = self.n_cells
        k0 = self._k
        out_v = np.empty((n, n_samples))
        out_i = np.empty((n, n_samples))
        out_t = np.empty((n, n_samples))
        out_c = np.empty((n, n_samples), np.int64)
        out_s = np.empty((n, n_samples), np.int64)
        out_st = np.empty((n, n_samples))
        pr = self._proto
        kernel.advance(n_samples, self.dt, self._p, self._group, self._chem, self._table,
                       self._slopes, pr.kind, pr.current_a, pr.v_limit, pr.cutoff_a,
                       pr.duration_s, pr.n_steps, self._state, self._istate,
                       out_v, out_i, out_t, out_c, out_s, out_st)
        self._k = k0 + n_samples
        # Time-major (sample, cell) from here on: the order a live stream delivers.
        v, i, t = out_v.T.copy(), out_i.T.copy(), out_t.T.copy()
        shape = v.shape
        rng = self._rng
        add_noise(v, i, t, cfg.noise, rng["voltage"], rng["current"], rng["temperature"])
        kcol = np.arange(k0, k0 + n_samples, dtype=np.int64)
        ts = np.empty(shape)
        ts[:] = (cfg.start_epoch + kcol * self.dt)[:, None]
        js = cfg.noise.jitter_sigma_s
        if js > 0:
            lim = 0.45 * self.dt
            ts += np.clip(js * rng["jitter"].standard_normal(shape, dtype=np.float32), -lim, lim)
        faults = cfg.faults
        if faults.on("spikes"):
            apply_spikes(v, faults, rng["spikes"])
        if faults.on("stuck"):
            apply_stuck(v, t, k0, self._faults)
        keep = (~dropout_mask(shape, k0, self.dt, faults, rng["dropouts"], self._faults)
                if faults.on("dropouts") else None)
        labels = cfg.include_labels
        if keep is None:
            # No gaps: every (sample, cell); ravel the time-major arrays as they are.
            kk = np.repeat(kcol - k0, n)
            cc = np.tile(np.arange(n, dtype=np.int64), n_samples)
            rows: dict[str, np.ndarray] = {"cell": cc, "k": kk + k0, "ts": ts.ravel(), "v": v.ravel(),
                    "i": i.ravel(), "t": t.ravel()}
            if labels:
                rows |= {"cycle": out_c.T.ravel(), "step": out_s.T.ravel(), "st": out_st.T.ravel()}
        else:
            kk, cc = np.nonzero(keep)          # row-major: ordered by sample, then cell
            rows = {"cell": cc.astype(np.int64), "k": kk + k0, "ts": ts[kk, cc], "v": v[kk, cc],
                    "i": i[kk, cc], "t": t[kk, cc]}
            if labels:
                rows |= {"cycle": out_c[cc, kk], "step": out_s[cc, kk], "st": out_st[cc, kk]}
        reorder = False
        if faults.on("out_of_order"):
            delay = delivery_delays(shape, faults.out_of_order_rate, faults.max_delay_samples,
                                    rng["out_of_order"])[kk, cc]
            rows["key"] = rows["k"] + delay
            reorder = True
        else:
            rows["key"] = rows["k"].copy()
        rows["copy"] = np.zeros(len(kk), np.int64)
        if faults.on("duplicates"):
            # Copy delivered 0..2 samples after the original (a retransmission).
            dd = delivery_delays(shape, faults.duplicate_rate, 3, rng["duplicates"])[kk, cc]
            dup = dd > 0
            copies = {f: rows[f][dup] for f in rows}
            copies["key"] = copies["k"] + dd[dup] - 1
            copies["copy"] = np.ones(int(dup.sum()), np.int64)
            rows = {f: np.concatenate([rows[f], copies[f]]) for f in rows}
            reorder = True
        if self._pending is not None:
            rows = {f: np.concatenate([self._pending[f], rows[f]]) for f in rows}
            self._pending = None
            reorder = True
        if reorder:
            order = np.lexsort((rows["copy"], rows["k"], rows["cell"], rows["key"]))
            rows = {f: a[order] for f, a in rows.items()}
            if not final:
                late = rows["key"] >= self._k
                if late.any():
                    self._pending = {f: a[late] for f, a in rows.items()}
                    rows = {f: a[~late] for f, a in rows.items()}
        return self._frame(rows)

    def _frame(self, rows: dict[str, np.ndarray]) -> pl.DataFrame:
        n = len(rows["ts"])
        cols: dict[str, pl.Series] = {
            "cell_id": self._ids.gather(pl.Series(rows["cell"], dtype=pl.UInt32)),
            "ts": pl.Series(rows["ts"]),
            "voltage_v": pl.Series(rows["v"]),
            "current_a": pl.Series(rows["i"]),
            "temperature_c": pl.Series(rows["t"]),
        }
        if self.config.include_labels:
            cols["cycle"] = pl.Series(rows["cycle"])
            cols["step"] = pl.Series(rows["step"])
            cols["step_time_s"] = pl.Series(rows["st"])
        else:
            cols["cycle"] = pl.Series([None] * 0, dtype=pl.Int64).extend_constant(None, n)
            cols["step"] = pl.Series([None] * 0, dtype=pl.Int64).extend_constant(None, n)
            cols["step_time_s"] = pl.Series([None] * 0, dtype=pl.Float64).extend_constant(None, n)
        return pl.DataFrame({k: s.alias(k) for k, s in cols.items()}, schema=MEASUREMENT_SCHEMA)
