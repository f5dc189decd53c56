"""Decisions the kernel takes from evidence in the data (compiled, per cell, in sample
order): is an interval a data gap, what is this cell's rest threshold, is a run big
enough to be a step, was a cycle's start inside the data. Every decision depends on past
samples only, so any split of the stream decides identically. See docs/metrics.md.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .layout import (
    A_CHG_AS,
    A_DIS_AS,
    A_DT,
    A_GAP_AS,
    A_GAP_S,
    A_GAPS,
    A_IDT,
    A_MAXI,
    A_MINI,
    C_CYCLE_START,
    C_DT_K,
    C_EPS_FLOOR,
    C_EPS_FRAC,
    C_GAP_FACTOR,
    C_GAP_FIXED,
    C_GAP_MIN,
    C_MAX_FIRST_CE,
    C_MIN_STEP_Q,
    F_CAP_AS,
    F_DTMAX,
    F_DTMAX_ALL,
    F_EPS,
    F_IMAX,
    F_NOMINAL_AH,
    F_PREV_ST,
    I_CYC_PARTIAL,
    I_DT_COUNT,
    I_DTN,
    I_LAST_ACTIVE,
    I_N_CYCLES,
    I_SEEN_OPP,
    I_SEEN_START,
)

__all__ = ["acc_gap", "big_enough", "gap_of", "is_gap", "is_partial", "labelled_kind", "learn_eps",
           "note_kind", "observe_dt"]


@nb.njit(cache=True, nogil=True)
def is_gap(cfg: np.ndarray, f: np.ndarray, iv: np.ndarray, c: int, dt: float, kind: int,
            same_step: bool, pi: float, ik: float, st: float, eps: float) -> bool:
    """Is the interval of ``dt`` seconds into this sample missing data?

    Cyclers log on triggers (1 s after a step change, minutes apart in a long
    constant-current step), so length alone is no evidence. An interval is a gap when
    the cycler's step timer disagrees with the clock (a pause or clock jump), or when it
    is far beyond the longest interval this cell's logger has made in this kind of step
    -- unless the current held steady within one step and the step is a rest, or the
    step timer vouches for the interval, or the logger's habit in this kind of step is
    not known yet.
    """
    k = kind + 1
    return gap_of(cfg, dt, kind, same_step, pi, ik, st, eps, f[c, F_PREV_ST],
                  f[c, F_DTMAX + k], iv[c, I_DTN + k], f[c, F_DTMAX_ALL])


@nb.njit(cache=True, nogil=True)
def gap_of(cfg: np.ndarray, dt: float, kind: int, same_step: bool, pi: float, ik: float,
           st: float, eps: float, pst: float, dtmax_kind: float, dtn_kind: int,
           dtmax_all: float) -> bool:
    """:func:`is_gap` on the cell's values (``pst``: previous step time, s; longest
    interval and intervals counted in this kind of step; longest in any): the kernel's
    run loop keeps them in registers."""
    fixed = cfg[C_GAP_FIXED]
    if not math.isnan(fixed):
        return dt > fixed
    clock_ok = False
    if same_step and not math.isnan(st) and not math.isnan(pst):
        tol = max(1.0, 0.01 * dt)
        dst = st - pst
        if dst < dt - tol:
            return True  # the step ran for less time than the clock says passed
        clock_ok = abs(dst - dt) <= tol
    ref = dtmax_kind
    known = dtn_kind >= int(cfg[C_DT_K])
    if not known:
        ref = max(ref, dtmax_all)
    if dt <= max(cfg[C_GAP_MIN], cfg[C_GAP_FACTOR] * ref):
        return False
    steady = same_step and abs(ik - pi) <= max(eps, 0.02 * max(abs(ik), abs(pi)))
    # A rest is logged only when its voltage moves (any pause is normal) and carries no
    # charge; a steady current is vouched for by the step timer, or taken on trust
    # until the logger's habit in this kind of step is known.
    return not (steady and (kind == 0 or clock_ok or not known))


@nb.njit(cache=True, nogil=True)
def observe_dt(f: np.ndarray, iv: np.ndarray, c: int, dt: float, kind: int) -> None:
    """An integrated interval teaches what this cell's logger does in this kind of step."""
    if dt <= 0.0:
        return
    k = kind + 1
    if dt > f[c, F_DTMAX + k]:
        f[c, F_DTMAX + k] = dt
    if dt > f[c, F_DTMAX_ALL]:
        f[c, F_DTMAX_ALL] = dt
    iv[c, I_DTN + k] += 1
    iv[c, I_DT_COUNT] += 1


@nb.njit(cache=True, nogil=True)
def acc_gap(a: np.ndarray, c: int, dt: float, pi: float, ik: float) -> None:
    """Count an excluded interval, its time and the charge it probably carried."""
    a[c, A_GAPS] += 1.0
    a[c, A_GAP_S] += dt
    a[c, A_GAP_AS] += 0.5 * (abs(pi) + abs(ik)) * dt


@nb.njit(cache=True, nogil=True)
def learn_eps(cfg: np.ndarray, f: np.ndarray, c: int, pi: float, ik: float) -> None:
    """Epsilon from the cell's own currents: a fraction of its largest sustained |I|.

    Sustained = held by two consecutive samples of one sign, so a single spike does not
    count. The value only grows and depends on past samples alone, so any split of the
    stream learns it identically.
    """
    if (pi > 0.0) == (ik > 0.0):
        sus = min(abs(pi), abs(ik))
        if sus > f[c, F_IMAX]:
            f[c, F_IMAX] = sus
            f[c, F_EPS] = max(cfg[C_EPS_FLOOR], cfg[C_EPS_FRAC] * sus)


@nb.njit(cache=True, nogil=True)
def big_enough(cfg: np.ndarray, f: np.ndarray, r: np.ndarray, c: int, kind: int) -> bool:
    """A charge/discharge run carrying too little charge for this cell is noise."""
    if kind == 0:
        return True
    nominal = f[c, F_NOMINAL_AH]
    if not math.isnan(nominal) and nominal > 0.0:
        cap = nominal * 3600.0
    elif f[c, F_CAP_AS] > 0.0:
        cap = f[c, F_CAP_AS]
    else:
        cap = f[c, F_IMAX] * 3600.0  # no capacity known yet: one hour at the largest current
    return r[c, A_CHG_AS] + r[c, A_DIS_AS] >= cfg[C_MIN_STEP_Q] * cap


@nb.njit(cache=True, nogil=True)
def is_partial(cfg: np.ndarray, a: np.ndarray, iv: np.ndarray, c: int) -> bool:
    """Did the data start inside the open cycle (judged when it ends)?

    The cell's first cycle is partial when its first sample was inside a charge or
    discharge, when it has no step of the kind that starts a cycle, or (cycles that start
    with a charge) when it gave back more than ``C_MAX_FIRST_CE`` times the charge it
    took: the rest of that charge happened before the data.
    """
    if iv[c, I_CYC_PARTIAL] != 0:
        return True
    if iv[c, I_N_CYCLES] > 0:
        return False
    if iv[c, I_SEEN_START] == 0:
        return True
    return cfg[C_CYCLE_START] > 0.0 and a[c, A_DIS_AS] > cfg[C_MAX_FIRST_CE] * a[c, A_CHG_AS]


@nb.njit(cache=True, nogil=True)
def labelled_kind(a: np.ndarray, c: int, eps: float) -> int:
    """A cycler's step is named by its time-weighted mean current, not its first sample."""
    dt = a[c, A_DT]
    mean_i = a[c, A_IDT] / dt if dt > 0.0 else 0.5 * (a[c, A_MINI] + a[c, A_MAXI])
    if mean_i > eps:
        return 1
    if mean_i < -eps:
        return -1
    return 0


@nb.njit(cache=True, nogil=True)
def note_kind(cfg: np.ndarray, iv: np.ndarray, c: int, kind: int) -> None:
    """Record that the open cycle holds a step of ``kind`` (for its completeness)."""
    start_kind = int(cfg[C_CYCLE_START])
    if kind == start_kind:
        iv[c, I_SEEN_START] = 1
    elif kind == -start_kind:
        iv[c, I_SEEN_OPP] = 1
    if kind != 0:
        iv[c, I_LAST_ACTIVE] = kind
