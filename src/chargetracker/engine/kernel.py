"""Compiled per-cell state machine: segmentation, integration, step and cycle assembly.

The samples of many cells are processed in one call, each cell's rows in time order
(cells grouped or interleaved). Each sample touches only its own cell's row in the state arrays, so the work is a single
sequential pass in machine code (Numba) -- no Python per sample -- and the result does
not depend on how the stream was split into batches: the state carried between calls
is exactly the state the pass has at that sample. Floating-point sums are left folds in
sample order, so incremental and batch results are bit-identical. Runs of one cell's
samples that only extend its open step go through the run loop of :mod:`.steady`
(the same arithmetic with the totals in registers).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .accumulate import acc_interval, acc_merge, acc_reset, acc_sample, fold_ir
from .evidence import (
    acc_gap,
    big_enough,
    is_gap,
    is_partial,
    labelled_kind,
    learn_eps,
    note_kind,
    observe_dt,
)
from .layout import (
    A_CHG_AS,
    A_DIS_AS,
    A_FIRST,
    A_N,
    A_START,
    A_STEPS,
    C_CYCLE_START,
    C_HYST,
    C_IR_MAX_DT,
    C_IR_MIN_DEPS,
    C_MIN_STEP,
    C_REF_CYCLES,
    C_START_ST,
    C_USE_CYC,
    C_USE_STEP,
    F_CAND_DI,
    F_CAND_IR,
    F_CAP_AS,
    F_EPS,
    F_LAST_DI,
    F_LAST_IR,
    F_PREV_I,
    F_PREV_ST,
    F_PREV_TS,
    F_PREV_V,
    F_REF_DIS,
    F_THROUGHPUT,
    I_CAND_KIND,
    I_CYC_PARTIAL,
    I_CYCLE_LABELLED,
    I_CYCLE_NO,
    I_EPS_LEARN,
    I_HAS_CAND,
    I_HAS_PREV,
    I_LAST_ACTIVE,
    I_N_CYCLES,
    I_PREV_KIND,
    I_PREV_SLAB,
    I_REF_COUNT,
    I_SEEN_OPP,
    I_SEEN_START,
    I_STEP_CYCLE,
    I_STEP_KIND,
    I_STEP_LABEL,
    I_STEP_NO,
    NA,
    NULL_LABEL,
    STATUS_CLOSED,
    STATUS_PARTIAL,
    CellArrays,
    Records,
    Samples,
)
from .steady import classify, run_in_step

#: A cycler's current settles within about this long after a step starts, s.
_SETTLE_S = 1.0
#: ... and a first point logged while settling stands for nothing when the next interval
#: is this many times longer than the point's step time.
_SETTLE_RATIO = 10.0

__all__ = ["CellArrays", "Records", "Samples", "finish", "partial_state", "process"]

# Emitted step record ints: slot, step_no, cycle_no, step_label, kind
SO_SLOT, SO_STEP, SO_CYCLE, SO_LABEL, SO_KIND = 0, 1, 2, 3, 4
NSO = 5
# Emitted cycle record ints: slot, cycle_no, status ; extra floats: retention, throughput_as, ref_dis_as
CO_SLOT, CO_CYCLE, CO_STATUS = 0, 1, 2
NCO = 3
CX_RETENTION, CX_THROUGHPUT, CX_REF = 0, 1, 2
NCX = 3



@nb.njit(cache=True, nogil=True)
def _emit_step(s: np.ndarray, c: int, iv: np.ndarray, out_f: np.ndarray,
               out_i: np.ndarray, n_out: np.ndarray) -> None:
    k = n_out[0]
    for j in range(NA):
        out_f[k, j] = s[c, j]
    out_i[k, SO_SLOT] = c
    out_i[k, SO_STEP] = iv[c, I_STEP_NO]
    out_i[k, SO_CYCLE] = iv[c, I_STEP_CYCLE]
    out_i[k, SO_LABEL] = iv[c, I_STEP_LABEL]
    out_i[k, SO_KIND] = iv[c, I_STEP_KIND]
    n_out[0] = k + 1


@nb.njit(cache=True, nogil=True)
def _emit_cycle(cfg: np.ndarray, cy: np.ndarray, c: int, iv: np.ndarray, f: np.ndarray,
                out_f: np.ndarray, out_i: np.ndarray, out_x: np.ndarray,
                n_out: np.ndarray) -> None:
    k = n_out[0]
    dis = cy[c, A_DIS_AS]
    partial = is_partial(cfg, cy, iv, c)
    if not partial:
        if iv[c, I_REF_COUNT] < int(cfg[C_REF_CYCLES]) and dis > 0.0:
            iv[c, I_REF_COUNT] += 1
            if math.isnan(f[c, F_REF_DIS]) or dis > f[c, F_REF_DIS]:
                f[c, F_REF_DIS] = dis
        if dis > f[c, F_CAP_AS]:
            f[c, F_CAP_AS] = dis
    iv[c, I_N_CYCLES] += 1
    ref = f[c, F_REF_DIS]
    f[c, F_THROUGHPUT] += cy[c, A_CHG_AS] + cy[c, A_DIS_AS]
    for j in range(NA):
        out_f[k, j] = cy[c, j]
    out_i[k, CO_SLOT] = c
    out_i[k, CO_CYCLE] = iv[c, I_CYCLE_NO]
    out_i[k, CO_STATUS] = STATUS_PARTIAL if partial else STATUS_CLOSED
    out_x[k, CX_RETENTION] = dis / ref if ref > 0.0 else np.nan
    out_x[k, CX_THROUGHPUT] = f[c, F_THROUGHPUT]
    out_x[k, CX_REF] = ref
    n_out[0] = k + 1


@nb.njit(cache=True, nogil=True)
def _start_step(cfg: np.ndarray, iv: np.ndarray, f: np.ndarray,
                cy: np.ndarray, c: int, kind: int, cyc_label: int, new_cycle_by_label: bool,
                cyc_f: np.ndarray, cyc_i: np.ndarray, cyc_x: np.ndarray,
                n_cyc: np.ndarray) -> None:
    """After the open step was closed: decide on a new cycle, then open the next step."""
    start_kind = int(cfg[C_CYCLE_START])
    new_cycle = False
    if new_cycle_by_label:
        new_cycle = True
    elif iv[c, I_CYCLE_LABELLED] == 0 and kind == start_kind and iv[c, I_SEEN_OPP] == 1:
        new_cycle = True
    if new_cycle:
        _emit_cycle(cfg, cy, c, iv, f, cyc_f, cyc_i, cyc_x, n_cyc)
        acc_reset(cy, c)
        iv[c, I_SEEN_OPP] = 0
        iv[c, I_SEEN_START] = 0
        iv[c, I_CYC_PARTIAL] = 0
        iv[c, I_LAST_ACTIVE] = 0
        if new_cycle_by_label:
            iv[c, I_CYCLE_NO] = cyc_label
            iv[c, I_CYCLE_LABELLED] = 1
        else:
            iv[c, I_CYCLE_NO] += 1
    iv[c, I_STEP_NO] += 1
    iv[c, I_STEP_KIND] = kind
    iv[c, I_STEP_CYCLE] = iv[c, I_CYCLE_NO]


@nb.njit(cache=True, nogil=True)
def _close_step(cfg: np.ndarray, iv: np.ndarray, f: np.ndarray, s: np.ndarray, cy: np.ndarray,
                c: int, step_f: np.ndarray, step_i: np.ndarray, n_step: np.ndarray) -> None:
    kind = iv[c, I_STEP_KIND]
    if iv[c, I_STEP_LABEL] != NULL_LABEL:
        kind = labelled_kind(s, c, f[c, F_EPS])
    # Only a step that carries charge enough to matter counts for the cycle (a cell's
    # first step opens at its first sample, before the rest threshold is learnt).
    real = kind != 0 and big_enough(cfg, f, s, c, kind)
    if real:
        note_kind(cfg, iv, c, kind)
    if iv[c, I_CYC_PARTIAL] == 2 and iv[c, I_STEP_NO] == 1:
        iv[c, I_CYC_PARTIAL] = 1 if real else 0
    fold_ir(s, c, f[c, F_LAST_IR], f[c, F_LAST_DI])
    f[c, F_LAST_IR] = np.nan
    f[c, F_LAST_DI] = 0.0
    s[c, A_STEPS] = 1.0
    _emit_step(s, c, iv, step_f, step_i, n_step)
    acc_merge(cy, c, s, c)
    acc_reset(s, c)


@nb.njit(cache=True, nogil=True)
def _ir(cfg: np.ndarray, f: np.ndarray, c: int, v: float, i: float, dt: float) -> float:
    """|dV/dI| across a current step sampled within ``resistance_max_dt_s``; nan otherwise."""
    di = abs(i - f[c, F_PREV_I])
    if di >= cfg[C_IR_MIN_DEPS] * f[c, F_EPS] and dt <= cfg[C_IR_MAX_DT] and di > 0.0:
        return abs(v - f[c, F_PREV_V]) / di
    return np.nan


@nb.njit(cache=True, nogil=True)
def process(samples: Samples, start: int, slot_lo: int, slot_hi: int, cfg: np.ndarray,
            cells: CellArrays, out: Records) -> int:
    """Process the samples ``start..`` of cells ``slot_lo..slot_hi-1`` in order (other
    rows are skipped: two threads can share one interleaved batch); returns the index
    reached. ``cfg`` is the C_* vector of .layout; ``cells`` is advanced in place.

    Returns early (before the sample it could not finish) when the output buffers are
    nearly full, so the caller can grow them and resume.
    """
    slots, ts, v, cur = samples.slot, samples.ts, samples.voltage_v, samples.current_a
    temp, cyc_lab, step_lab = samples.temperature_c, samples.cycle_label, samples.step_label
    step_time = samples.step_time_s
    f, iv, s, r, cy = cells.floats, cells.ints, cells.step, cells.run, cells.cycle
    step_f, step_i, n_step = out.step_f, out.step_i, out.n_step
    cyc_f, cyc_i, cyc_x, n_cyc = out.cycle_f, out.cycle_i, out.cycle_x, out.n_cycle
    n = ts.shape[0]
    min_step = cfg[C_MIN_STEP]
    hyst = cfg[C_HYST]
    use_cyc = cfg[C_USE_CYC] > 0.0
    use_step = cfg[C_USE_STEP] > 0.0
    skip = start  # samples before this were taken by the run loop
    for k in range(start, n):
        if k < skip:
            continue
        if n_step[0] + 2 > step_f.shape[0] or n_cyc[0] + 2 > cyc_f.shape[0]:
            return k
        c = slots[k]
        if c < slot_lo or c >= slot_hi:
            continue
        if (k + 1 < n and slots[k + 1] == c and iv[c, I_HAS_PREV] == 1
                and iv[c, I_HAS_CAND] == 0 and s[c, A_N] > 0.0):
            # A run of this cell's samples: those that only extend its open step go
            # through the run loop (totals in registers, bit-identical).
            skip = run_in_step(slots, ts, v, cur, temp, cyc_lab, step_lab, step_time, k,
                               cfg, f, iv, s)
            if skip > k:
                continue
        t_k = ts[k]
        v_k = v[k]
        i_k = cur[k]
        temp_k = temp[k]
        clab = cyc_lab[k]
        slab = step_lab[k]
        st = step_time[k]
        if iv[c, I_EPS_LEARN] == 1 and iv[c, I_HAS_PREV] == 1:
            learn_eps(cfg, f, c, f[c, F_PREV_I], i_k)
        eps = f[c, F_EPS]
        kind = classify(i_k, eps, hyst, iv[c, I_PREV_KIND])

        if iv[c, I_HAS_PREV] == 0:
            # First sample of this cell: open the first step and cycle.
            acc_reset(s, c)
            acc_reset(r, c)
            acc_reset(cy, c)
            iv[c, I_HAS_PREV] = 1
            iv[c, I_STEP_NO] = 1
            iv[c, I_STEP_KIND] = kind
            iv[c, I_STEP_LABEL] = slab if use_step else NULL_LABEL
            if use_cyc and clab != NULL_LABEL:
                iv[c, I_CYCLE_NO] = clab
                iv[c, I_CYCLE_LABELLED] = 1
            else:
                iv[c, I_CYCLE_NO] = 1
                iv[c, I_CYCLE_LABELLED] = 0
            iv[c, I_STEP_CYCLE] = iv[c, I_CYCLE_NO]
            iv[c, I_SEEN_OPP] = 0
            iv[c, I_SEEN_START] = 0
            iv[c, I_LAST_ACTIVE] = 0
            # Data that opens inside a charge or discharge missed that step's start
            # (unless the cycler's step timer says it had only just begun); 2 = decided
            # when the first step closes, by whether it was a real step or noise.
            at_start = not math.isnan(st) and st <= cfg[C_START_ST]
            iv[c, I_CYC_PARTIAL] = 2 if kind != 0 and not at_start else 0
            iv[c, I_HAS_CAND] = 0
            acc_sample(s, c, t_k, v_k, i_k, temp_k)
        else:
            dt = t_k - f[c, F_PREV_TS]
            pv = f[c, F_PREV_V]
            pi = f[c, F_PREV_I]
            label_mode = use_step and slab != NULL_LABEL
            cyc_change = (use_cyc and clab != NULL_LABEL
                          and (iv[c, I_CYCLE_LABELLED] == 0 or clab != iv[c, I_CYCLE_NO]))
            if label_mode or cyc_change:
                same_step = not cyc_change and slab == iv[c, I_STEP_LABEL]
            else:
                same_step = kind == iv[c, I_PREV_KIND]
            gap = is_gap(cfg, f, iv, c, dt, kind, same_step, pi, i_k,
                          st if slab == iv[c, I_PREV_SLAB] else np.nan, eps)
            if not gap:
                observe_dt(f, iv, c, dt, kind)
            if label_mode or cyc_change:
                if iv[c, I_HAS_CAND] == 1:
                    acc_merge(s, c, r, c)
                    acc_reset(r, c)
                    iv[c, I_HAS_CAND] = 0
                if same_step:
                    if gap:
                        acc_gap(s, c, dt, pi, i_k)
                    elif (s[c, A_N] == 1.0 and f[c, F_PREV_ST] <= _SETTLE_S
                          and dt > _SETTLE_RATIO * f[c, F_PREV_ST] and dt > _SETTLE_S):
                        # The step's first point was logged while the cycler's control
                        # loop was still settling (under a second): it does not stand for
                        # the long interval after it, the next point does.
                        acc_interval(s, c, v_k, i_k, v_k, i_k, dt)
                    else:
                        acc_interval(s, c, pv, pi, v_k, i_k, dt)
                    acc_sample(s, c, t_k, v_k, i_k, temp_k)
                else:
                    ir = np.nan if gap else _ir(cfg, f, c, v_k, i_k, dt)
                    split = 0.0
                    if not gap and not math.isnan(st):
                        split = min(max(dt - st, 0.0), dt)
                        if split > 0.0:
                            # The old step ran until the new one started: hold its last values.
                            acc_interval(s, c, pv, pi, pv, pi, split)
                    _close_step(cfg, iv, f, s, cy, c, step_f, step_i, n_step)
                    _start_step(cfg, iv, f, cy, c, kind, clab, cyc_change,
                                cyc_f, cyc_i, cyc_x, n_cyc)
                    iv[c, I_STEP_LABEL] = slab if label_mode else NULL_LABEL
                    s[c, A_START] = f[c, F_PREV_TS] + split
                    if gap:
                        acc_gap(s, c, dt, pi, i_k)
                    else:
                        # The cycler logs a step's first point at its start of current:
                        # hold the new values over the rest of the interval.
                        acc_interval(s, c, v_k, i_k, v_k, i_k, dt - split)
                    f[c, F_LAST_IR] = ir
                    f[c, F_LAST_DI] = abs(i_k - pi)
                    acc_sample(s, c, t_k, v_k, i_k, temp_k)
            else:
                step_kind = iv[c, I_STEP_KIND]
                if iv[c, I_HAS_CAND] == 1:
                    cand_kind = iv[c, I_CAND_KIND]
                    if kind == cand_kind:
                        if gap:
                            acc_gap(r, c, dt, pi, i_k)
                        else:
                            acc_interval(r, c, pv, pi, v_k, i_k, dt)
                        acc_sample(r, c, t_k, v_k, i_k, temp_k)
                        if t_k - r[c, A_FIRST] >= min_step and big_enough(cfg, f, r, c, kind):
                            _confirm(cfg, iv, f, s, r, cy, c, step_f, step_i, n_step,
                                     cyc_f, cyc_i, cyc_x, n_cyc)
                        _remember(f, iv, c, t_k, v_k, i_k, kind, st, slab)
                        continue
                    # The candidate run ended here; it stands as a step if long enough
                    # and, for a charge or discharge, carrying enough charge to matter.
                    if t_k - r[c, A_FIRST] >= min_step and big_enough(cfg, f, r, c, cand_kind):
                        _confirm(cfg, iv, f, s, r, cy, c, step_f, step_i, n_step,
                                 cyc_f, cyc_i, cyc_x, n_cyc)
                    else:
                        acc_merge(s, c, r, c)
                        acc_reset(r, c)
                        iv[c, I_HAS_CAND] = 0
                        f[c, F_CAND_IR] = np.nan
                    step_kind = iv[c, I_STEP_KIND]
                if kind == step_kind:
                    if gap:
                        acc_gap(s, c, dt, pi, i_k)
                    else:
                        acc_interval(s, c, pv, pi, v_k, i_k, dt)
                    acc_sample(s, c, t_k, v_k, i_k, temp_k)
                else:
                    # A new run begins: a candidate step until it lasts min_step seconds.
                    acc_reset(r, c)
                    iv[c, I_HAS_CAND] = 1
                    iv[c, I_CAND_KIND] = kind
                    r[c, A_START] = f[c, F_PREV_TS]
                    if gap:
                        acc_gap(r, c, dt, pi, i_k)
                        f[c, F_CAND_IR] = np.nan
                    else:
                        acc_interval(r, c, v_k, i_k, v_k, i_k, dt)
                        f[c, F_CAND_IR] = _ir(cfg, f, c, v_k, i_k, dt)
                        f[c, F_CAND_DI] = abs(i_k - pi)
                    acc_sample(r, c, t_k, v_k, i_k, temp_k)
                    if min_step <= 0.0 and big_enough(cfg, f, r, c, kind):
                        _confirm(cfg, iv, f, s, r, cy, c, step_f, step_i, n_step,
                                 cyc_f, cyc_i, cyc_x, n_cyc)
        _remember(f, iv, c, t_k, v_k, i_k, kind, st, slab)
    return n


@nb.njit(cache=True, nogil=True)
def _remember(f: np.ndarray, iv: np.ndarray, c: int, t: float, v: float, i: float,
              kind: int, st: float, slab: int) -> None:
    f[c, F_PREV_TS] = t
    f[c, F_PREV_V] = v
    f[c, F_PREV_I] = i
    f[c, F_PREV_ST] = st
    iv[c, I_PREV_KIND] = kind
    iv[c, I_PREV_SLAB] = slab


@nb.njit(cache=True, nogil=True)
def _confirm(cfg: np.ndarray, iv: np.ndarray, f: np.ndarray, s: np.ndarray, r: np.ndarray,
             cy: np.ndarray, c: int, step_f: np.ndarray, step_i: np.ndarray,
             n_step: np.ndarray, cyc_f: np.ndarray, cyc_i: np.ndarray, cyc_x: np.ndarray,
             n_cyc: np.ndarray) -> None:
    """The candidate run becomes the open step."""
    kind = iv[c, I_CAND_KIND]
    _close_step(cfg, iv, f, s, cy, c, step_f, step_i, n_step)
    _start_step(cfg, iv, f, cy, c, kind, NULL_LABEL, False, cyc_f, cyc_i, cyc_x, n_cyc)
    acc_merge(s, c, r, c)
    s[c, A_START] = r[c, A_START]
    acc_reset(r, c)
    iv[c, I_HAS_CAND] = 0
    f[c, F_LAST_IR] = f[c, F_CAND_IR]
    f[c, F_LAST_DI] = f[c, F_CAND_DI]
    f[c, F_CAND_IR] = np.nan


@nb.njit(cache=True, nogil=True)
def finish(slots: np.ndarray, iv: np.ndarray, f: np.ndarray, s: np.ndarray,
           r: np.ndarray) -> None:
    """End of stream: a pending candidate shorter than min_step joins the open step."""
    for idx in range(slots.shape[0]):
        c = slots[idx]
        if iv[c, I_HAS_CAND] == 1:
            acc_merge(s, c, r, c)
            acc_reset(r, c)
            iv[c, I_HAS_CAND] = 0
            f[c, F_CAND_IR] = np.nan


@nb.njit(cache=True, nogil=True)
def partial_state(iv: np.ndarray, f: np.ndarray, s: np.ndarray, r: np.ndarray,
                  cy: np.ndarray, slots: np.ndarray, out_step: np.ndarray,
                  out_cycle: np.ndarray) -> None:
    """Snapshots of the open step (+ pending candidate) and open cycle of ``slots``."""
    for idx in range(slots.shape[0]):
        c = slots[idx]
        for j in range(NA):
            out_step[idx, j] = s[c, j]
            out_cycle[idx, j] = cy[c, j]
        if iv[c, I_HAS_CAND] == 1:
            acc_merge(out_step, idx, r, c)
        fold_ir(out_step, idx, f[c, F_LAST_IR], f[c, F_LAST_DI])
        out_step[idx, A_STEPS] = 1.0
        acc_merge(out_cycle, idx, out_step, idx)
