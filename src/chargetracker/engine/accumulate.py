"""Accumulator arithmetic of the kernel (compiled): an accumulator row holds additive
integrals over a span of samples (a step, a candidate run, a cycle) -- A*s, W*s, V*s,
s -- indexed by the ``A_*`` constants of :mod:`.layout`. Sums are left folds in sample
order, so incremental and batch results are bit-identical.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

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
    NA,
)

__all__ = ["acc_interval", "acc_merge", "acc_reset", "acc_sample", "fold_ir"]


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
def fold_ir(a: np.ndarray, c: int, r_ohm: float, di: float) -> None:
    if not math.isnan(r_ohm) and di > a[c, A_IR_DI]:
        a[c, A_IR] = r_ohm
        a[c, A_IR_DI] = di
