"""Compiled per-cell state machine: segmentation, integration, step and cycle assembly.

The samples of many cells are processed in one call, sorted by (cell, ts). Each
sample touches only its own cell's row in the state arrays, so the work is a single
sequential pass in machine code (Numba) -- no Python per sample -- and the result does
not depend on how the stream was split into batches: the state carried between calls
is exactly the state the pass has at that sample. Floating-point sums are left folds in
sample order, so incremental and batch results are bit-identical.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

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
    A_CHG_WS,
    A_DIS_AS,
    A_DIS_WS,
    A_DT,
    A_END,
    A_ENDV,
    A_FIRST,
    A_GAP_AS,
    A_GAP_S,
    A_GAPS,
    A_I2DT,
    A_IDT,
    A_IR,
    A_IR_DI,
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
)

#: A cycler's current settles within about this long after a step starts, s.
_SETTLE_S = 1.0
#: ... and a first point logged while settling stands for nothing when the next interval
#: is this many times longer than the point's step time.
_SETTLE_RATIO = 10.0

# Emitted step record ints: slot, step_no, cycle_no, step_label, kind
SO_SLOT, SO_STEP, SO_CYCLE, SO_LABEL, SO_KIND = 0, 1, 2, 3, 4
NSO = 5
# Emitted cycle record ints: slot, cycle_no, status ; extra floats: retention, throughput_as, ref_dis_as
CO_SLOT, CO_CYCLE, CO_STATUS = 0, 1, 2
NCO = 3
CX_RETENTION, CX_THROUGHPUT, CX_REF = 0, 1, 2
NCX = 3


@nb.njit(cache=True, nogil=True)
def acc_reset(a: np.ndarray, c: int) -> None:
    for k in range(NA):
        a[c, k] = 0.0
    a[c, A_MINV] = np.inf
    a[c, A_MAXV] = -np.inf
    a[c, A_MINI] = np.inf
    a[c, A_MAXI] = -np.inf
    a[c, A_MAXT] = -np.inf
    a[c, A_MINT] = np.inf
    a[c, A_START] = np.nan
    a[c, A_END] = np.nan
    a[c, A_STARTV] = np.nan
    a[c, A_ENDV] = np.nan
    a[c, A_FIRST] = np.nan
    a[c, A_IR] = np.nan


@nb.njit(cache=True, nogil=True)
def acc_interval(a: np.ndarray, c: int, va: float, ia: float, vb: float, ib: float,
                 dt: float) -> None:
    """Trapezoid over one interval of ``dt`` seconds from (va, ia) to (vb, ib)."""
    h = 0.5 * dt
    pa = va * ia
    pb = vb * ib
    a[c, A_CHG_AS] += (max(ia, 0.0) + max(ib, 0.0)) * h
    a[c, A_DIS_AS] += (max(-ia, 0.0) + max(-ib, 0.0)) * h
    a[c, A_CHG_WS] += (max(pa, 0.0) + max(pb, 0.0)) * h
    a[c, A_DIS_WS] += (max(-pa, 0.0) + max(-pb, 0.0)) * h
    a[c, A_VDT] += (va + vb) * h
    a[c, A_V2DT] += (va * va + vb * vb) * h
    a[c, A_IDT] += (ia + ib) * h
    a[c, A_I2DT] += (ia * ia + ib * ib) * h
    a[c, A_DT] += dt


@nb.njit(cache=True, nogil=True)
def acc_sample(a: np.ndarray, c: int, ts: float, v: float, i: float, t: float) -> None:
    if a[c, A_N] == 0.0:
        a[c, A_STARTV] = v
        a[c, A_FIRST] = ts
        if math.isnan(a[c, A_START]):
            a[c, A_START] = ts
    a[c, A_N] += 1.0
    a[c, A_END] = ts
    a[c, A_ENDV] = v
    if v < a[c, A_MINV]:
        a[c, A_MINV] = v
    if v > a[c, A_MAXV]:
        a[c, A_MAXV] = v
    if i < a[c, A_MINI]:
        a[c, A_MINI] = i
    if i > a[c, A_MAXI]:
        a[c, A_MAXI] = i
    if not math.isnan(t):
        a[c, A_SUMT] += t
        a[c, A_NT] += 1.0
        if t > a[c, A_MAXT]:
            a[c, A_MAXT] = t
        if t < a[c, A_MINT]:
            a[c, A_MINT] = t


@nb.njit(cache=True, nogil=True)
def acc_merge(dst: np.ndarray, cd: int, src: np.ndarray, cs: int) -> None:
    """Fold ``src`` (a later span) into ``dst`` (an earlier one)."""
    for k in (A_CHG_AS, A_DIS_AS, A_CHG_WS, A_DIS_WS, A_VDT, A_V2DT, A_IDT, A_I2DT, A_DT,
              A_SUMT, A_NT, A_N, A_GAPS, A_STEPS, A_GAP_S, A_GAP_AS):
        dst[cd, k] += src[cs, k]
    if src[cs, A_IR_DI] > dst[cd, A_IR_DI]:
        # Keep the estimate from the largest current step: least relative error.
        dst[cd, A_IR_DI] = src[cs, A_IR_DI]
        dst[cd, A_IR] = src[cs, A_IR]
    dst[cd, A_MINV] = min(dst[cd, A_MINV], src[cs, A_MINV])
    dst[cd, A_MAXV] = max(dst[cd, A_MAXV], src[cs, A_MAXV])
    dst[cd, A_MINI] = min(dst[cd, A_MINI], src[cs, A_MINI])
    dst[cd, A_MAXI] = max(dst[cd, A_MAXI], src[cs, A_MAXI])
    dst[cd, A_MAXT] = max(dst[cd, A_MAXT], src[cs, A_MAXT])
    dst[cd, A_MINT] = min(dst[cd, A_MINT], src[cs, A_MINT])
    if math.isnan(dst[cd, A_START]):
        dst[cd, A_START] = src[cs, A_START]
    if math.isnan(dst[cd, A_FIRST]):
        dst[cd, A_FIRST] = src[cs, A_FIRST]
        dst[cd, A_STARTV] = src[cs, A_STARTV]
    if src[cs, A_N] > 0.0:
        dst[cd, A_END] = src[cs, A_END]
        dst[cd, A_ENDV] = src[cs, A_ENDV]


@nb.njit(cache=True, nogil=True)
def _classify(i: float, eps: float, hyst: float, prev: int) -> int:
    if i > eps:
        return 1
    if i < -eps:
        return -1
    low = hyst * eps
    if prev == 1 and i >= low:
        return 1
    if prev == -1 and i <= -low:
        return -1
    return 0


@nb.njit(cache=True, nogil=True)
def _emit_step(s: np.ndarray, c: int, iv: np.ndarray, f: np.ndarray, out_f: np.ndarray,
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
def _start_step(cfg: np.ndarray, iv: np.ndarray, f: np.ndarray, s: np.ndarray,
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
    _fold_ir(s, c, f[c, F_LAST_IR], f[c, F_LAST_DI])
    f[c, F_LAST_IR] = np.nan
    f[c, F_LAST_DI] = 0.0
    s[c, A_STEPS] = 1.0
    _emit_step(s, c, iv, f, step_f, step_i, n_step)
    acc_merge(cy, c, s, c)
    acc_reset(s, c)


@nb.njit(cache=True, nogil=True)
def _fold_ir(a: np.ndarray, c: int, r_ohm: float, di: float) -> None:
    if not math.isnan(r_ohm) and di > a[c, A_IR_DI]:
        a[c, A_IR] = r_ohm
        a[c, A_IR_DI] = di


@nb.njit(cache=True, nogil=True)
def _ir(cfg: np.ndarray, f: np.ndarray, c: int, v: float, i: float, dt: float) -> float:
    """|dV/dI| across a current step sampled within ``resistance_max_dt_s``; nan otherwise."""
    di = abs(i - f[c, F_PREV_I])
    if di >= cfg[C_IR_MIN_DEPS] * f[c, F_EPS] and dt <= cfg[C_IR_MAX_DT] and di > 0.0:
        return abs(v - f[c, F_PREV_V]) / di
    return np.nan


@nb.njit(cache=True, nogil=True)
def process(slots: np.ndarray, ts: np.ndarray, v: np.ndarray, cur: np.ndarray,
            temp: np.ndarray, cyc_lab: np.ndarray, step_lab: np.ndarray,
            step_time: np.ndarray, start: int, slot_lo: int, slot_hi: int, cfg: np.ndarray,
            f: np.ndarray, iv: np.ndarray, s: np.ndarray, r: np.ndarray, cy: np.ndarray,
            step_f: np.ndarray, step_i: np.ndarray, n_step: np.ndarray, cyc_f: np.ndarray,
            cyc_i: np.ndarray, cyc_x: np.ndarray, n_cyc: np.ndarray) -> int:
    """Process the samples ``start..`` of cells ``slot_lo..slot_hi-1`` in order (other
    rows are skipped: two threads can share one interleaved batch); returns the index
    reached.

    Returns early (before the sample it could not finish) when the output buffers are
    nearly full, so the caller can grow them and resume.
    """
    n = ts.shape[0]
    min_step = cfg[C_MIN_STEP]
    hyst = cfg[C_HYST]
    use_cyc = cfg[C_USE_CYC] > 0.0
    use_step = cfg[C_USE_STEP] > 0.0
    for k in range(start, n):
        if n_step[0] + 2 > step_f.shape[0] or n_cyc[0] + 2 > cyc_f.shape[0]:
            return k
        c = slots[k]
        if c < slot_lo or c >= slot_hi:
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
        kind = _classify(i_k, eps, hyst, iv[c, I_PREV_KIND])

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
                    _start_step(cfg, iv, f, s, cy, c, kind, clab, cyc_change,
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
    _start_step(cfg, iv, f, s, cy, c, kind, NULL_LABEL, False, cyc_f, cyc_i, cyc_x, n_cyc)
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
def late_and_duplicates(slots: np.ndarray, ts: np.ndarray, labels: np.ndarray,
                        max_ts: np.ndarray, max_lab: np.ndarray,
                        lateness: float) -> np.ndarray:
    """Classify rows (grouped by cell, in arrival order) as 0 ok, 1 late, 2 duplicate.

    A row is late when its ts is older than the newest earlier ts of its cell minus the
    lateness window. ``max_ts`` and ``max_lab`` (per cell: the newest ts and the step
    label logged at it) are updated in place. With no lateness window the newest sample
    is processed at once, so a repeat of its ts is a duplicate here -- unless it carries
    a new step label (cyclers log a step's end and the next one's start at one instant);
    other duplicates (inside a window) are found by the caller.
    """
    n = ts.shape[0]
    out = np.zeros(n, dtype=np.int8)
    for k in range(n):
        c = slots[k]
        m = max_ts[c]
        t = ts[k]
        if not math.isnan(m) and t < m - lateness:
            out[k] = 1
        elif lateness <= 0.0 and t == m:
            if labels[k] == max_lab[c]:
                out[k] = 2
            else:
                max_lab[c] = labels[k]
        elif math.isnan(m) or t > m:
            max_ts[c] = t
            max_lab[c] = labels[k]
    return out


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
        _fold_ir(out_step, idx, f[c, F_LAST_IR], f[c, F_LAST_DI])
        out_step[idx, A_STEPS] = 1.0
        acc_merge(out_cycle, idx, out_step, idx)




@nb.njit(cache=True, nogil=True)
def is_strictly_sorted(slots: np.ndarray, ts: np.ndarray) -> bool:
    """True when rows are ordered by cell and strictly by time within each cell."""
    for k in range(1, ts.shape[0]):
        if slots[k] < slots[k - 1] or (slots[k] == slots[k - 1] and not ts[k] > ts[k - 1]):
            return False
    return True


@nb.njit(cache=True, nogil=True)
def duplicate_mask(slots: np.ndarray, ts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rows (sorted by cell, ts) that repeat an earlier row of the same cell, ts and step label.

    A row sharing its ts with the previous one but carrying another step label is real:
    a step's last point and the next step's first logged at one instant.
    """
    n = ts.shape[0]
    out = np.zeros(n, dtype=np.bool_)
    first = 0  # first row of the current (slot, ts) run
    for k in range(1, n):
        if slots[k] == slots[k - 1] and ts[k] == ts[k - 1]:
            for j in range(first, k):
                if not out[j] and labels[j] == labels[k]:
                    out[k] = True
                    break
        else:
            first = k
    return out


@nb.njit(cache=True, nogil=True)
def in_cell_order(slots: np.ndarray, ts: np.ndarray, n_cells: int) -> bool:
    """True when each cell's rows are strictly increasing in ts, in row order (cells may
    be interleaved: a live fleet, a time-ordered dump)."""
    last = np.full(n_cells, -np.inf)
    for k in range(ts.shape[0]):
        c = slots[k]
        if not ts[k] > last[c]:
            return False
        last[c] = ts[k]
    return True


@nb.njit(cache=True, nogil=True)
def slot_order(slots: np.ndarray, n_cells: int) -> np.ndarray:
    """Stable permutation grouping rows by slot (a counting sort: O(rows + cells))."""
    n = slots.shape[0]
    start = np.zeros(n_cells + 1, dtype=np.int64)
    for k in range(n):
        start[slots[k] + 1] += 1
    for c in range(n_cells):
        start[c + 1] += start[c]
    order = np.empty(n, dtype=np.int64)
    for k in range(n):
        c = slots[k]
        order[start[c]] = k
        start[c] += 1
    return order


@nb.njit(cache=True, nogil=True)
def touched_slots(slots: np.ndarray, n_cells: int) -> np.ndarray:
    """The distinct slots of ``slots``, ascending."""
    seen = np.zeros(n_cells, dtype=np.bool_)
    for k in range(slots.shape[0]):
        seen[slots[k]] = True
    return np.flatnonzero(seen)
