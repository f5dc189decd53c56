"""Engine output records: the kernel's accumulator rows turned into the step and cycle
tables (STEP_SCHEMA, CYCLE_SCHEMA), and the status of each cell's last cycle at the end
of the data. Units: accumulators hold A*s and W*s; the tables Ah, Wh, V, A, s."""

from __future__ import annotations

import numba as nb
import numpy as np
import polars as pl

from ..frames import ColumnLayout, frame_from_columns, gather
from ..schema import CYCLE_SCHEMA, STEP_SCHEMA
from . import kernel as K
from .evidence import labelled_kind
from .layout import (
    A_CHG_AS,
    A_CHG_WS,
    A_DIS_AS,
    A_DIS_WS,
    A_DT,
    A_END,
    A_ENDV,
    A_GAP_AS,
    A_GAP_S,
    A_GAPS,
    A_I2DT,
    A_IDT,
    A_IR,
    A_MAXI,
    A_MAXT,
    A_MAXV,
    A_MINI,
    A_MINT,
    A_MINV,
    A_N,
    A_NT,
    A_START,
    A_STARTV,
    A_STEPS,
    A_SUMT,
    A_V2DT,
    A_VDT,
    F_EPS,
    F_NOMINAL_AH,
    I_CYC_PARTIAL,
    I_LAST_ACTIVE,
    I_N_CYCLES,
    I_SEEN_OPP,
    I_SEEN_START,
    I_STEP_KIND,
    I_STEP_LABEL,
    KIND_NAMES,
    NULL_LABEL,
    STATUS_CLOSED,
    STATUS_NAMES,
    STATUS_OPEN,
    STATUS_PARTIAL,
)
from .state import EngineState

__all__ = ["final_status", "steps_frame", "cycles_frame"]


def final_status(state: EngineState, slots: np.ndarray, open_s: np.ndarray,
                  open_c: np.ndarray) -> np.ndarray:
    """Status of each cell's last cycle when the data has ended.

    It is closed when complete: it holds both halves (a step of the cycle_start kind and
    one of the opposite kind), its last charge/discharge step was the closing half and
    the data ended in the rest after it; else the data stopped inside it (partial). A
    cell's only cycle also passes the kernel's first-cycle checks.
    """
    cfg = state.config
    iv = state.iv[slots]
    start_kind = 1 if cfg.cycle_start == "charge" else -1
    kind = iv[:, I_STEP_KIND].copy()
    for k, c in enumerate(slots.tolist()):
        if iv[k, I_STEP_LABEL] != NULL_LABEL:  # a handful of cells: one call each
            kind[k] = labelled_kind(open_s, k, float(state.f[c, F_EPS]))
    seen_start = (iv[:, I_SEEN_START] == 1) | (kind == start_kind)
    seen_opp = (iv[:, I_SEEN_OPP] == 1) | (kind == -start_kind)
    complete = (seen_start & seen_opp & (iv[:, I_LAST_ACTIVE] == -start_kind) & (kind == 0)
                & (iv[:, I_CYC_PARTIAL] == 0))  # 2: the data never left its first step
    first = iv[:, I_N_CYCLES] == 0
    if start_kind == 1:
        excess = open_c[:, A_DIS_AS] > cfg.max_first_cycle_ce * open_c[:, A_CHG_AS]
        complete &= ~(first & excess)
    return np.where(complete, STATUS_CLOSED, STATUS_PARTIAL)



_KIND_CODES = {1: KIND_NAMES[1], -1: KIND_NAMES[-1], 0: KIND_NAMES[0]}
_MODE_CODES = {0: "rest", 1: "CC", 2: "CV", 3: "CC-CV"}


_OPEN_CLOSED = {0: "closed", 1: "open"}


def _status(n: int, n_closed: int) -> pl.Series:
    codes = np.ones(n, dtype=np.int8)
    codes[:n_closed] = 0
    return _names(codes, _OPEN_CLOSED)


_STATUS_CODES = {STATUS_CLOSED: STATUS_NAMES[STATUS_CLOSED], STATUS_PARTIAL: STATUS_NAMES[STATUS_PARTIAL],
                 STATUS_OPEN: STATUS_NAMES[STATUS_OPEN]}


def _names(codes: np.ndarray, names: dict[int, str]) -> pl.Series:
    """Small integer codes to their names, vectorized: a gather from the table of names
    (no expression engine: a batch's fixed cost matters for a live fleet's batches)."""
    lo = min(names)
    key = tuple(names.items())
    table = _NAME_TABLES.get(key)
    if table is None:
        table = pl.Series("name", [names.get(k, "") for k in range(lo, max(names) + 1)], dtype=pl.Utf8)
        _NAME_TABLES[key] = table
    return gather(table, codes.astype(np.int64) - lo)


#: The Series of names of each code table, by its (code, name) pairs.
_NAME_TABLES: dict[tuple[tuple[int, str], ...], pl.Series] = {}


#: Frames are immutable: one empty frame per schema serves every empty output (building
#: one costs about as much as a small frame with rows).
_EMPTY_STEPS = pl.DataFrame(schema=STEP_SCHEMA)
_EMPTY_CYCLES = pl.DataFrame(schema=CYCLE_SCHEMA)
#: One null Int64, repeated to a column of nulls (pyarrow's ``nulls`` is as fast, but
#: importing pyarrow here slowed the Polars work of the whole process by ~7 %).
_NULL_INT = pl.Series("null", [None], dtype=pl.Int64)
_STEP_LAYOUT = ColumnLayout(STEP_SCHEMA)
_CYCLE_LAYOUT = ColumnLayout(CYCLE_SCHEMA)


def _with_nulls(name: str, values: np.ndarray, valid: np.ndarray) -> pl.Series:
    """Int64 Series of ``values``, null where ``valid`` is false."""
    if valid.all():
        return pl.Series(name, values, dtype=pl.Int64)
    if not valid.any():
        return _NULL_INT.new_from_index(0, len(values)).alias(name)
    return pl.Series(name, values, dtype=pl.Int64).scatter(np.flatnonzero(~valid), None)


# Derived columns, computed in one compiled pass over the accumulator rows: the NumPy
# form (~40 array expressions, each a temporary) cost more than the rows' values at a
# live fleet's batch sizes. Each formula is the NumPy one's, operation for operation
# (the same IEEE results: incremental == batch bit for bit); ratios are NaN without a
# positive denominator.
_D_DURATION, _D_CHG_AH, _D_DIS_AH, _D_CHG_WH, _D_DIS_WH, _D_MEAN_V, _D_MEAN_I = 0, 1, 2, 3, 4, 5, 6
_D_MEAN_T, _D_MAX_T, _D_MIN_T, _D_GAP_AH = 7, 8, 9, 10
_ND = 11
_E_N, _E_GAPS, _E_KIND, _E_MODE = 0, 1, 2, 3  # int columns: the last two only for steps
# Cycle-only float columns, after the common ones.
_D_CE, _D_EE, _D_MCV, _D_MDV, _D_THR_AH, _D_EFC = 11, 12, 13, 14, 15, 16
_NDC = 17


@nb.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _div(a: float, b: float) -> float:
    return a / b if b > 0 else np.nan


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _derive(a: np.ndarray, d: np.ndarray, e: np.ndarray) -> None:
    """Columns every table has (duration, Ah, Wh, time-weighted means, temperature
    statistics, sample and gap counts) of accumulator rows ``a`` into ``d`` / ``e``."""
    for k in range(a.shape[0]):
        dt = a[k, A_DT]
        nt = a[k, A_NT]
        d[k, _D_DURATION] = a[k, A_END] - a[k, A_START]
        d[k, _D_CHG_AH] = a[k, A_CHG_AS] / 3600.0
        d[k, _D_DIS_AH] = a[k, A_DIS_AS] / 3600.0
        d[k, _D_CHG_WH] = a[k, A_CHG_WS] / 3600.0
        d[k, _D_DIS_WH] = a[k, A_DIS_WS] / 3600.0
        d[k, _D_MEAN_V] = a[k, A_VDT] / dt if dt > 0 else a[k, A_STARTV]
        d[k, _D_MEAN_I] = a[k, A_IDT] / dt if dt > 0 else 0.5 * (a[k, A_MINI] + a[k, A_MAXI])
        d[k, _D_MEAN_T] = _div(a[k, A_SUMT], nt)
        d[k, _D_MAX_T] = a[k, A_MAXT] if nt > 0 else np.nan
        d[k, _D_MIN_T] = a[k, A_MINT] if nt > 0 else np.nan
        d[k, _D_GAP_AH] = a[k, A_GAP_AS] / 3600.0
        e[k, _E_N] = np.int64(a[k, A_N])
        e[k, _E_GAPS] = np.int64(a[k, A_GAPS])


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _step_codes(a: np.ndarray, d: np.ndarray, e: np.ndarray, kind0: np.ndarray, label: np.ndarray,
                eps: np.ndarray, cc_rel_std: float, cv_v_std_v: float) -> None:
    """Kind (a cycler's step named by its net current) and mode (rest, CC, CV, CC-CV)
    codes of step rows, after :func:`_derive`."""
    for k in range(a.shape[0]):
        mi = d[k, _D_MEAN_I]
        kind = kind0[k]
        if label[k] != NULL_LABEL:
            kind = 1 if mi > eps[k] else (-1 if mi < -eps[k] else 0)
        e[k, _E_KIND] = kind
        if kind == 0:
            e[k, _E_MODE] = 0
            continue
        dt = a[k, A_DT]
        var_i = _div(a[k, A_I2DT], dt) - mi * mi
        var_i = var_i if not var_i < 0.0 else 0.0  # np.maximum: NaN stays NaN
        mv = _div(a[k, A_VDT], dt)
        var_v = _div(a[k, A_V2DT], dt) - mv * mv
        var_v = var_v if not var_v < 0.0 else 0.0
        rel_i = np.sqrt(var_i) / abs(mi)
        if dt <= 0 or rel_i < cc_rel_std:
            e[k, _E_MODE] = 1
        elif np.sqrt(var_v) < cv_v_std_v:
            e[k, _E_MODE] = 2
        else:
            e[k, _E_MODE] = 3


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _cycle_ratios(a: np.ndarray, d: np.ndarray, eps: np.ndarray, nominal: np.ndarray,
                  throughput_as: np.ndarray, ref_as: np.ndarray) -> None:
    """Efficiencies, mean charge/discharge voltage, throughput and equivalent full
    cycles of cycle rows, after :func:`_derive`."""
    for k in range(a.shape[0]):
        # Efficiencies need a real charge: charge below the rest threshold on average
        # over the cycle is sensor noise (a partial first cycle).
        charged = a[k, A_CHG_AS] > eps[k] * a[k, A_DT]
        d[k, _D_CE] = _div(a[k, A_DIS_AS], a[k, A_CHG_AS]) if charged else np.nan
        d[k, _D_EE] = _div(a[k, A_DIS_WS], a[k, A_CHG_WS]) if charged else np.nan
        d[k, _D_MCV] = _div(a[k, A_CHG_WS], a[k, A_CHG_AS])
        d[k, _D_MDV] = _div(a[k, A_DIS_WS], a[k, A_DIS_AS])
        thr = throughput_as[k] / 3600.0
        d[k, _D_THR_AH] = thr
        # Equivalent full cycles: throughput over twice the capacity (one charge + one
        # discharge); the nominal capacity when known, else the cell's own early one.
        nom = nominal[k]
        cap = nom if (np.isfinite(nom) and nom > 0) else ref_as[k] / 3600.0
        d[k, _D_EFC] = _div(thr, 2.0 * cap)


def _common(a: np.ndarray, d: np.ndarray) -> dict[str, np.ndarray]:
    """The columns every table has, by name: accumulator fields (views of ``a``) and
    the derived ones in ``d``."""
    return {
        "start_ts": a[:, A_START],
        "end_ts": a[:, A_END],
        "duration_s": d[:, _D_DURATION],
        "charge_ah": d[:, _D_CHG_AH],
        "discharge_ah": d[:, _D_DIS_AH],
        "charge_wh": d[:, _D_CHG_WH],
        "discharge_wh": d[:, _D_DIS_WH],
        "min_v": a[:, A_MINV],
        "max_v": a[:, A_MAXV],
        "mean_v": d[:, _D_MEAN_V],
        "mean_current_a": d[:, _D_MEAN_I],
        "min_current_a": a[:, A_MINI],
        "max_current_a": a[:, A_MAXI],
        "mean_temperature_c": d[:, _D_MEAN_T],
        "max_temperature_c": d[:, _D_MAX_T],
        "min_temperature_c": d[:, _D_MIN_T],
        "internal_resistance_ohm": a[:, A_IR],
        "gap_excluded_s": a[:, A_GAP_S],
        "gap_missing_ah": d[:, _D_GAP_AH],
    }


def steps_frame(state: EngineState, a: np.ndarray, ints: np.ndarray, n_closed: int) -> pl.DataFrame:
    """Step rows; the first ``n_closed`` are closed, the rest open snapshots."""
    if a.shape[0] == 0:
        return _EMPTY_STEPS
    cfg = state.config
    n = a.shape[0]
    d = np.empty((n, _ND), order="F")
    e = np.empty((n, 4), dtype=np.int64, order="F")
    _derive(a, d, e)
    slot = np.ascontiguousarray(ints[:, K.SO_SLOT])
    label = np.ascontiguousarray(ints[:, K.SO_LABEL])
    _step_codes(a, d, e, np.ascontiguousarray(ints[:, K.SO_KIND]), label, state.f[slot, F_EPS],
                cfg.cc_rel_std, cfg.cv_v_std_v)
    data: dict[str, np.ndarray | pl.Series] = {
        "cell_id": gather(state.id_series(), slot),
        "step": ints[:, K.SO_STEP],
        "cycle": ints[:, K.SO_CYCLE],
        "step_label": _with_nulls("step_label", label, label != NULL_LABEL),
        "kind": _names(e[:, _E_KIND], _KIND_CODES),
        "mode": _names(e[:, _E_MODE], _MODE_CODES),
        "status": _status(n, n_closed),
        "n_samples": e[:, _E_N],
        "start_v": a[:, A_STARTV],
        "end_v": a[:, A_ENDV],
        "gap_count": e[:, _E_GAPS],
        **_common(a, d),
    }
    return frame_from_columns(data, _STEP_LAYOUT)


def cycles_frame(state: EngineState, a: np.ndarray, slot: np.ndarray, cycle: np.ndarray,
                  retention: np.ndarray, throughput_as: np.ndarray, ref_as: np.ndarray,
                  status: np.ndarray) -> pl.DataFrame:
    """Cycle rows with their status codes (closed, open snapshot or partial)."""
    if a.shape[0] == 0:
        return _EMPTY_CYCLES
    n = a.shape[0]
    d = np.empty((n, _NDC), order="F")
    e = np.empty((n, 2), dtype=np.int64, order="F")
    _derive(a, d, e)
    _cycle_ratios(a, d, state.f[slot, F_EPS], state.f[slot, F_NOMINAL_AH],
                  np.ascontiguousarray(throughput_as), np.ascontiguousarray(ref_as))
    data: dict[str, np.ndarray | pl.Series] = {
        "cell_id": gather(state.id_series(), slot),
        "cycle": cycle,
        "status": _names(status, _STATUS_CODES),
        "n_samples": e[:, _E_N],
        "n_steps": a[:, A_STEPS].astype(np.int64),
        "coulombic_efficiency": d[:, _D_CE],
        "energy_efficiency": d[:, _D_EE],
        "mean_charge_v": d[:, _D_MCV],
        "mean_discharge_v": d[:, _D_MDV],
        "retention": retention,
        "throughput_ah": d[:, _D_THR_AH],
        "equivalent_full_cycles": d[:, _D_EFC],
        "gap_count": e[:, _E_GAPS],
        **_common(a, d),
    }
    return frame_from_columns(data, _CYCLE_LAYOUT)
