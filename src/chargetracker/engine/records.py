"""Engine output records: the kernel's accumulator rows turned into the step and cycle
tables (STEP_SCHEMA, CYCLE_SCHEMA), and the status of each cell's last cycle at the end
of the data. Units: accumulators hold A*s and W*s; the tables Ah, Wh, V, A, s."""

from __future__ import annotations

import numpy as np
import polars as pl

from ..frames import frame_from_columns, gather
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


def _with_nulls(name: str, values: np.ndarray, valid: np.ndarray) -> pl.Series:
    """Int64 Series of ``values``, null where ``valid`` is false."""
    if valid.all():
        return pl.Series(name, values, dtype=pl.Int64)
    if not valid.any():
        return _NULL_INT.new_from_index(0, len(values)).alias(name)
    return pl.Series(name, values, dtype=pl.Int64).scatter(np.flatnonzero(~valid), None)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def _common(state: EngineState, a: np.ndarray) -> dict[str, np.ndarray]:
    dt = a[:, A_DT]
    mean_v = np.where(dt > 0, _safe_div(a[:, A_VDT], dt), a[:, A_STARTV])
    mean_i = np.where(dt > 0, _safe_div(a[:, A_IDT], dt), 0.5 * (a[:, A_MINI] + a[:, A_MAXI]))
    mean_t = _safe_div(a[:, A_SUMT], a[:, A_NT])
    max_t = np.where(a[:, A_NT] > 0, a[:, A_MAXT], np.nan)
    min_t = np.where(a[:, A_NT] > 0, a[:, A_MINT], np.nan)
    return {
        "start_ts": a[:, A_START],
        "end_ts": a[:, A_END],
        "duration_s": a[:, A_END] - a[:, A_START],
        "n_samples": a[:, A_N].astype(np.int64),
        "charge_ah": a[:, A_CHG_AS] / 3600.0,
        "discharge_ah": a[:, A_DIS_AS] / 3600.0,
        "charge_wh": a[:, A_CHG_WS] / 3600.0,
        "discharge_wh": a[:, A_DIS_WS] / 3600.0,
        "min_v": a[:, A_MINV],
        "max_v": a[:, A_MAXV],
        "mean_v": mean_v,
        "mean_current_a": mean_i,
        "min_current_a": a[:, A_MINI],
        "max_current_a": a[:, A_MAXI],
        "mean_temperature_c": mean_t,
        "max_temperature_c": max_t,
        "min_temperature_c": min_t,
        "internal_resistance_ohm": a[:, A_IR],
        "gap_count": a[:, A_GAPS].astype(np.int64),
        "gap_excluded_s": a[:, A_GAP_S],
        "gap_missing_ah": a[:, A_GAP_AS] / 3600.0,
    }


def steps_frame(state: EngineState, a: np.ndarray, ints: np.ndarray, n_closed: int) -> pl.DataFrame:
    """Step rows; the first ``n_closed`` are closed, the rest open snapshots."""
    if a.shape[0] == 0:
        return _EMPTY_STEPS
    cfg = state.config
    base = _common(state, a)
    slot = ints[:, K.SO_SLOT]
    label = ints[:, K.SO_LABEL]
    kind = ints[:, K.SO_KIND].copy()
    labelled = label != NULL_LABEL
    if labelled.any():
        # A cycler's step is named by its net current, not by its first sample.
        eps = state.f[slot, F_EPS]
        mi = base["mean_current_a"]
        kind = np.where(labelled, np.where(mi > eps, 1, np.where(mi < -eps, -1, 0)), kind)
    dt = a[:, A_DT]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_i = base["mean_current_a"]
        var_i = np.maximum(_safe_div(a[:, A_I2DT], dt) - mean_i**2, 0.0)
        mean_v = _safe_div(a[:, A_VDT], dt)
        var_v = np.maximum(_safe_div(a[:, A_V2DT], dt) - mean_v**2, 0.0)
        rel_i = np.sqrt(var_i) / np.abs(mean_i)
    std_v = np.sqrt(var_v)
    mode = np.where(
        kind == 0, 0,
        np.where((dt <= 0) | (rel_i < cfg.cc_rel_std), 1, np.where(std_v < cfg.cv_v_std_v, 2, 3)),
    ).astype(np.int8)
    data: dict[str, np.ndarray | pl.Series] = {
        "cell_id": gather(state.id_series(), slot),
        "step": ints[:, K.SO_STEP],
        "cycle": ints[:, K.SO_CYCLE],
        "step_label": _with_nulls("step_label", label, labelled),
        "kind": _names(kind.astype(np.int8), _KIND_CODES),
        "mode": _names(mode, _MODE_CODES),
        "status": _status(a.shape[0], n_closed),
        "start_ts": base["start_ts"],
        "end_ts": base["end_ts"],
        "duration_s": base["duration_s"],
        "n_samples": base["n_samples"],
        "charge_ah": base["charge_ah"],
        "discharge_ah": base["discharge_ah"],
        "charge_wh": base["charge_wh"],
        "discharge_wh": base["discharge_wh"],
        "start_v": a[:, A_STARTV],
        "end_v": a[:, A_ENDV],
        "min_v": base["min_v"],
        "max_v": base["max_v"],
        "mean_v": base["mean_v"],
        "mean_current_a": base["mean_current_a"],
        "min_current_a": base["min_current_a"],
        "max_current_a": base["max_current_a"],
        "mean_temperature_c": base["mean_temperature_c"],
        "max_temperature_c": base["max_temperature_c"],
        "internal_resistance_ohm": base["internal_resistance_ohm"],
        "gap_count": base["gap_count"],
        "gap_excluded_s": base["gap_excluded_s"],
        "gap_missing_ah": base["gap_missing_ah"],
    }
    return frame_from_columns(data, STEP_SCHEMA)


def cycles_frame(state: EngineState, a: np.ndarray, slot: np.ndarray, cycle: np.ndarray,
                  retention: np.ndarray, throughput_as: np.ndarray, ref_as: np.ndarray,
                  status: np.ndarray) -> pl.DataFrame:
    """Cycle rows with their status codes (closed, open snapshot or partial)."""
    if a.shape[0] == 0:
        return _EMPTY_CYCLES
    base = _common(state, a)
    nominal = state.f[slot, F_NOMINAL_AH]
    throughput_ah = throughput_as / 3600.0
    # Equivalent full cycles: throughput over twice the capacity (one charge + one
    # discharge); the nominal capacity when known, else the cell's own early capacity.
    cap_ah = np.where(np.isfinite(nominal) & (nominal > 0), nominal, ref_as / 3600.0)
    # Efficiencies need a real charge: charge below the rest threshold on average over
    # the cycle is sensor noise (a partial first cycle), and a ratio to it means nothing.
    charged = a[:, A_CHG_AS] > state.f[slot, F_EPS] * a[:, A_DT]
    data: dict[str, np.ndarray | pl.Series] = {
        "cell_id": gather(state.id_series(), slot),
        "cycle": cycle,
        "status": _names(status.astype(np.int8), _STATUS_CODES),
        "start_ts": base["start_ts"],
        "end_ts": base["end_ts"],
        "duration_s": base["duration_s"],
        "n_samples": base["n_samples"],
        "n_steps": a[:, A_STEPS].astype(np.int64),
        "charge_ah": base["charge_ah"],
        "discharge_ah": base["discharge_ah"],
        "charge_wh": base["charge_wh"],
        "discharge_wh": base["discharge_wh"],
        "coulombic_efficiency": np.where(charged, _safe_div(a[:, A_DIS_AS], a[:, A_CHG_AS]), np.nan),
        "energy_efficiency": np.where(charged, _safe_div(a[:, A_DIS_WS], a[:, A_CHG_WS]), np.nan),
        "mean_charge_v": _safe_div(a[:, A_CHG_WS], a[:, A_CHG_AS]),
        "mean_discharge_v": _safe_div(a[:, A_DIS_WS], a[:, A_DIS_AS]),
        "min_v": base["min_v"],
        "max_v": base["max_v"],
        "mean_v": base["mean_v"],
        "min_current_a": base["min_current_a"],
        "max_current_a": base["max_current_a"],
        "mean_current_a": base["mean_current_a"],
        "min_temperature_c": base["min_temperature_c"],
        "max_temperature_c": base["max_temperature_c"],
        "mean_temperature_c": base["mean_temperature_c"],
        "retention": retention,
        "internal_resistance_ohm": base["internal_resistance_ohm"],
        "throughput_ah": throughput_ah,
        "equivalent_full_cycles": _safe_div(throughput_ah, 2.0 * cap_ah),
        "gap_count": base["gap_count"],
        "gap_excluded_s": base["gap_excluded_s"],
        "gap_missing_ah": base["gap_missing_ah"],
    }
    return frame_from_columns(data, CYCLE_SCHEMA)
