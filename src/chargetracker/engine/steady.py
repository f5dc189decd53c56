"""The kernel's run loop (compiled): consecutive samples of one cell that stay inside its
open step, with the step's running totals held in locals (registers) instead of being
read and written through the state arrays on every sample.

The per-sample path of :mod:`.kernel` stores every accumulator back to the 2-D state
arrays after each sample, and the compiler must assume those stores may alias the
sample columns and the other state arrays, so each sample reloads them. Most samples
change nothing but the open step's integrals (a step lasts hundreds to thousands of
samples): this loop takes those, in the same order with the same arithmetic (the
same left folds as :mod:`.accumulate`, so the totals are bit-identical), and stops --
without having changed anything for it -- at the first sample that may do more (a
step or cycle boundary, a candidate run, a data gap, another cell), which the
per-sample path then handles. Units as in :mod:`.layout` (A*s, W*s, V*s, s).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .evidence import gap_of
from .layout import (
    A_CHG_AS,
    A_CHG_WS,
    A_DIS_AS,
    A_DIS_WS,
    A_DT,
    A_END,
    A_ENDV,
    A_I2DT,
    A_IDT,
    A_MAXI,
    A_MAXT,
    A_MAXV,
    A_MINI,
    A_MINT,
    A_MINV,
    A_N,
    A_NT,
    A_SUMT,
    A_V2DT,
    A_VDT,
    C_EPS_FLOOR,
    C_EPS_FRAC,
    C_HYST,
    C_USE_CYC,
    C_USE_STEP,
    F_DTMAX,
    F_DTMAX_ALL,
    F_EPS,
    F_IMAX,
    F_PREV_I,
    F_PREV_ST,
    F_PREV_TS,
    F_PREV_V,
    I_CYCLE_LABELLED,
    I_CYCLE_NO,
    I_DT_COUNT,
    I_DTN,
    I_EPS_LEARN,
    I_PREV_KIND,
    I_PREV_SLAB,
    I_STEP_KIND,
    I_STEP_LABEL,
    NULL_LABEL,
)

__all__ = ["classify", "run_in_step"]

#: As in .kernel: a step's first point logged within this long of its start, s ...
_SETTLE_S = 1.0
#: ... stands for nothing when the next interval is this many times its step time.
_SETTLE_RATIO = 10.0


@nb.njit(cache=True, nogil=True, error_model="numpy")
def classify(i: float, eps: float, hyst: float, prev: int) -> int:
    """Charge (+1), discharge (-1) or rest (0) of a sample's current ``i`` (A) against
    the threshold ``eps`` (A), with hysteresis from the previous sample's kind."""
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


@nb.njit(cache=True, nogil=True, error_model="numpy")
def run_in_step(slots: np.ndarray, ts: np.ndarray, v: np.ndarray, cur: np.ndarray,
                temp: np.ndarray, cyc_lab: np.ndarray, step_lab: np.ndarray,
                step_time: np.ndarray, k0: int, cfg: np.ndarray, f: np.ndarray,
                iv: np.ndarray, s: np.ndarray) -> int:
    """Take the samples ``k0, k0+1, ...`` of cell ``slots[k0]`` while each one only
    extends the cell's open step; returns the first sample not taken (``k0`` when
    none). The caller guarantees the cell has a previous sample, no candidate run and
    a step with samples in it."""
    n = ts.shape[0]
    c = slots[k0]
    hyst = cfg[C_HYST]
    use_cyc = cfg[C_USE_CYC] > 0.0
    use_step = cfg[C_USE_STEP] > 0.0
    eps_floor = cfg[C_EPS_FLOOR]
    eps_frac = cfg[C_EPS_FRAC]
    learn = iv[c, I_EPS_LEARN] == 1
    step_kind = iv[c, I_STEP_KIND]
    step_label = iv[c, I_STEP_LABEL]
    cycle_no = iv[c, I_CYCLE_NO]
    labelled = iv[c, I_CYCLE_LABELLED] != 0
    # The cell's scalars the loop advances.
    eps = f[c, F_EPS]
    imax = f[c, F_IMAX]
    p_ts = f[c, F_PREV_TS]
    p_v = f[c, F_PREV_V]
    p_i = f[c, F_PREV_I]
    p_st = f[c, F_PREV_ST]
    p_kind = iv[c, I_PREV_KIND]
    p_slab = iv[c, I_PREV_SLAB]
    dmax_all = f[c, F_DTMAX_ALL]
    dmax0, dmax1, dmax2 = f[c, F_DTMAX], f[c, F_DTMAX + 1], f[c, F_DTMAX + 2]
    dn0, dn1, dn2 = iv[c, I_DTN], iv[c, I_DTN + 1], iv[c, I_DTN + 2]
    dcount = iv[c, I_DT_COUNT]
    # The open step's accumulator.
    chg_as, dis_as = s[c, A_CHG_AS], s[c, A_DIS_AS]
    chg_ws, dis_ws = s[c, A_CHG_WS], s[c, A_DIS_WS]
    vdt, v2dt, idt, i2dt, adt = s[c, A_VDT], s[c, A_V2DT], s[c, A_IDT], s[c, A_I2DT], s[c, A_DT]
    minv, maxv, mini, maxi = s[c, A_MINV], s[c, A_MAXV], s[c, A_MINI], s[c, A_MAXI]
    sumt, nt, maxt, mint = s[c, A_SUMT], s[c, A_NT], s[c, A_MAXT], s[c, A_MINT]
    ns = s[c, A_N]
    end, endv = s[c, A_END], s[c, A_ENDV]
    k = k0
    while k < n and slots[k] == c:
        t_k = ts[k]
        v_k = v[k]
        i_k = cur[k]
        clab = cyc_lab[k]
        slab = step_lab[k]
        st = step_time[k]
        # Tentative: nothing is kept until the sample is known to stay in the step.
        n_eps, n_imax = eps, imax
        if learn and (p_i > 0.0) == (i_k > 0.0):
            sus = min(abs(p_i), abs(i_k))
            if sus > n_imax:
                n_imax = sus
                n_eps = max(eps_floor, eps_frac * sus)
        kind = classify(i_k, n_eps, hyst, p_kind)
        if use_cyc and clab != NULL_LABEL and (not labelled or clab != cycle_no):
            break  # a new cycle by its label
        label_mode = use_step and slab != NULL_LABEL
        if label_mode:
            if slab != step_label:
                break  # the cycler's next step
            same_step = True
        else:
            if kind != step_kind:
                break  # a candidate run may begin
            same_step = kind == p_kind
        dt = t_k - p_ts
        kk = kind + 1
        dmax_k = dmax0 if kk == 0 else dmax1 if kk == 1 else dmax2
        dn_k = dn0 if kk == 0 else dn1 if kk == 1 else dn2
        if gap_of(cfg, dt, kind, same_step, p_i, i_k, st if slab == p_slab else np.nan,
                  n_eps, p_st, dmax_k, dn_k, dmax_all):
            break  # a data gap
        # Kept from here on (the per-sample path's order of operations).
        eps, imax = n_eps, n_imax
        if not dt <= 0.0:  # observe_dt
            if dt > dmax_k:
                if kk == 0:
                    dmax0 = dt
                elif kk == 1:
                    dmax1 = dt
                else:
                    dmax2 = dt
            if dt > dmax_all:
                dmax_all = dt
            if kk == 0:
                dn0 += 1
            elif kk == 1:
                dn1 += 1
            else:
                dn2 += 1
            dcount += 1
        if label_mode and (ns == 1.0 and p_st <= _SETTLE_S and dt > _SETTLE_RATIO * p_st
                           and dt > _SETTLE_S):
            va, ia = v_k, i_k  # the step's first point was logged while settling
        else:
            va, ia = p_v, p_i
        # acc_interval(s, c, va, ia, v_k, i_k, dt)
        h = 0.5 * dt
        pa = va * ia
        pb = v_k * i_k
        chg_as += (max(ia, 0.0) + max(i_k, 0.0)) * h
        dis_as += (max(-ia, 0.0) + max(-i_k, 0.0)) * h
        chg_ws += (max(pa, 0.0) + max(pb, 0.0)) * h
        dis_ws += (max(-pa, 0.0) + max(-pb, 0.0)) * h
        vdt += (va + v_k) * h
        v2dt += (va * va + v_k * v_k) * h
        idt += (ia + i_k) * h
        i2dt += (ia * ia + i_k * i_k) * h
        adt += dt
        # acc_sample(s, c, t_k, v_k, i_k, temp_k) of a step that has samples
        ns += 1.0
        end = t_k
        endv = v_k
        if v_k < minv:
            minv = v_k
        if v_k > maxv:
            maxv = v_k
        if i_k < mini:
            mini = i_k
        if i_k > maxi:
            maxi = i_k
        t = temp[k]
        if not math.isnan(t):
            sumt += t
            nt += 1.0
            if t > maxt:
                maxt = t
            if t < mint:
                mint = t
        # _remember
        p_ts, p_v, p_i, p_st, p_kind, p_slab = t_k, v_k, i_k, st, kind, slab
        k += 1
    if k == k0:
        return k0
    f[c, F_EPS] = eps
    f[c, F_IMAX] = imax
    f[c, F_PREV_TS] = p_ts
    f[c, F_PREV_V] = p_v
    f[c, F_PREV_I] = p_i
    f[c, F_PREV_ST] = p_st
    iv[c, I_PREV_KIND] = p_kind
    iv[c, I_PREV_SLAB] = p_slab
    f[c, F_DTMAX_ALL] = dmax_all
    f[c, F_DTMAX], f[c, F_DTMAX + 1], f[c, F_DTMAX + 2] = dmax0, dmax1, dmax2
    iv[c, I_DTN], iv[c, I_DTN + 1], iv[c, I_DTN + 2] = dn0, dn1, dn2
    iv[c, I_DT_COUNT] = dcount
    s[c, A_CHG_AS], s[c, A_DIS_AS] = chg_as, dis_as
    s[c, A_CHG_WS], s[c, A_DIS_WS] = chg_ws, dis_ws
    s[c, A_VDT], s[c, A_V2DT], s[c, A_IDT], s[c, A_I2DT], s[c, A_DT] = vdt, v2dt, idt, i2dt, adt
    s[c, A_MINV], s[c, A_MAXV], s[c, A_MINI], s[c, A_MAXI] = minv, maxv, mini, maxi
    s[c, A_SUMT], s[c, A_NT], s[c, A_MAXT], s[c, A_MINT] = sumt, nt, maxt, mint
    s[c, A_N] = ns
    s[c, A_END], s[c, A_ENDV] = end, endv
    return k
