"""Compiled per-meter pass: daily energy, coverage, zero runs and spike episodes.

Readings of many meters are processed in one call, sorted by (meter slot, ts). Each
reading touches only its meter's row of the state arrays; sums are left folds in reading
order, so the carried state after any prefix is exactly the state one pass would have
there, and incremental results equal batch results bit for bit.

A mains meter's run of exact 0 W readings cannot be judged until it ends or outlasts
the zero-run limit, so such readings are *held*: not processed, handed back to the caller
(``held``) and fed again with the next batch. Once judged, a short run is processed as
ordinary readings, a long one as an excluded gap.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# The whole-batch checks live in .kernel_checks; re-exported here, where the engine looks.
from .kernel_checks import accepted, order_flags, reject_flags, scan
from .layout import (
    C_FLOOR,
    C_GAP,
    C_MARGIN,
    C_ZERO,
    D_COUNTER,
    D_COVERED,
    D_ENERGY,
    D_FIRST,
    D_LAST,
    D_LEN,
    D_MAX,
    D_MIN,
    D_PEAK_TS,
    D_START,
    D_ZERO_S,
    DI_CNT_N,
    DI_DATE,
    DI_GAPS,
    DI_N,
    DI_SLOT,
    DI_ZRUNS,
    E_END,
    E_PEAK,
    E_PEAK_TS,
    E_START,
    E_THR,
    EI_CLOSED,
    EI_N,
    EI_SLOT,
    F_COUNTER,
    F_COVERED,
    F_DAY_LEN,
    F_DAY_START,
    F_ENERGY,
    F_EP_LAST,
    F_EP_PEAK,
    F_EP_PEAK_TS,
    F_EP_START,
    F_EP_THR,
    F_FIRST_TS,
    F_LAST_TS,
    F_MAX,
    F_MIN,
    F_PEAK_TS,
    F_PREV_E,
    F_PREV_P,
    F_PREV_TS,
    F_THR,
    F_ZERO_S,
    I_CNT_N,
    I_DATE,
    I_EP_N,
    I_EP_OPEN,
    I_GAPS,
    I_HAS_DAY,
    I_HAS_PREV,
    I_MAINS,
    I_N,
    I_TOUCHED,
    I_TZ,
    I_ZR_SUSP,
    I_ZRUNS,
    ND,
    NDI,
    NE,
    NEI,
)

__all__ = ["run", "close_episodes", "order_flags", "reject_flags", "scan", "accepted"]



@nb.njit(cache=True, nogil=True)
def _open_day(f, iv, s, k, bounds, bstart, first_day):
    f[s, F_DAY_START] = bounds[k]
    f[s, F_DAY_LEN] = bounds[k + 1] - bounds[k]
    iv[s, I_DATE] = first_day + (k - bstart)
    iv[s, I_HAS_DAY] = 1
    f[s, F_ENERGY] = 0.0
    f[s, F_COVERED] = 0.0
    f[s, F_MIN] = np.inf
    f[s, F_MAX] = -np.inf
    f[s, F_PEAK_TS] = np.nan
    f[s, F_FIRST_TS] = np.nan
    f[s, F_LAST_TS] = np.nan
    f[s, F_ZERO_S] = 0.0
    f[s, F_COUNTER] = 0.0
    iv[s, I_N] = 0
    iv[s, I_GAPS] = 0
    iv[s, I_ZRUNS] = 0
    iv[s, I_CNT_N] = 0


@nb.njit(cache=True, nogil=True)
def _close_day(f, iv, s, dd, di, cnt):
    m = cnt[0]
    dd[m, D_START] = f[s, F_DAY_START]
    dd[m, D_LEN] = f[s, F_DAY_LEN]
    dd[m, D_FIRST] = f[s, F_FIRST_TS]
    dd[m, D_LAST] = f[s, F_LAST_TS]
    dd[m, D_ENERGY] = f[s, F_ENERGY]
    dd[m, D_COVERED] = f[s, F_COVERED]
    dd[m, D_MIN] = f[s, F_MIN]
    dd[m, D_MAX] = f[s, F_MAX]
    dd[m, D_PEAK_TS] = f[s, F_PEAK_TS]
    dd[m, D_ZERO_S] = f[s, F_ZERO_S]
    dd[m, D_COUNTER] = f[s, F_COUNTER]
    di[m, DI_SLOT] = s
    di[m, DI_DATE] = iv[s, I_DATE]
    di[m, DI_N] = iv[s, I_N]
    di[m, DI_GAPS] = iv[s, I_GAPS]
    di[m, DI_ZRUNS] = iv[s, I_ZRUNS]
    di[m, DI_CNT_N] = iv[s, I_CNT_N]
    cnt[0] = m + 1
    iv[s, I_HAS_DAY] = 0


@nb.njit(cache=True, nogil=True)
def _segment(f, iv, s, ta, pa, tb, pb, de, excluded):
    dt = tb - ta
    if excluded:
        f[s, F_ZERO_S] += dt
    else:
        f[s, F_ENERGY] += 0.5 * (pa + pb) * dt
        f[s, F_COVERED] += dt
        if de == de:
            f[s, F_COUNTER] += de
            iv[s, I_CNT_N] += 1


@nb.njit(cache=True, nogil=True)
def _emit_event(ef, ei, cnt, s, closed, start, end, peak, peak_ts, thr, n):
    m = cnt[1]
    ef[m, E_START] = start
    ef[m, E_END] = end
    ef[m, E_PEAK] = peak
    ef[m, E_PEAK_TS] = peak_ts
    ef[m, E_THR] = thr
    ei[m, EI_SLOT] = s
    ei[m, EI_CLOSED] = closed
    ei[m, EI_N] = n
    cnt[1] = m + 1


@nb.njit(cache=True, nogil=True)
def _close_episode(f, iv, s, ef, ei, cnt):
    _emit_event(ef, ei, cnt, s, 1, f[s, F_EP_START], f[s, F_EP_LAST], f[s, F_EP_PEAK],
                f[s, F_EP_PEAK_TS], f[s, F_EP_THR], iv[s, I_EP_N])
    iv[s, I_EP_OPEN] = 0


@nb.njit(cache=True, nogil=True)
def _step(j, s, ts, p, e, dpos, bounds, bstart, first_day, f, iv, cfg, dd, di, ef, ei, cnt,
          interval_excluded, reading_excluded):
    t1 = ts[j]
    p1 = p[j]
    e1 = e[j]
    k1 = dpos[j]
    gap = False
    if iv[s, I_HAS_PREV] == 0 or iv[s, I_HAS_DAY] == 0:
        _open_day(f, iv, s, k1, bounds, bstart, first_day)
    else:
        t0 = f[s, F_PREV_TS]
        p0 = f[s, F_PREV_P]
        e0 = f[s, F_PREV_E]
        dt = t1 - t0
        if dt > cfg[C_GAP]:
            gap = True
            if bounds[k1] != f[s, F_DAY_START]:
                _close_day(f, iv, s, dd, di, cnt)
                _open_day(f, iv, s, k1, bounds, bstart, first_day)
            iv[s, I_GAPS] += 1
        else:
            de = e1 - e0  # NaN unless both readings carry the counter
            ta = t0
            pa = p0
            if bounds[k1] > t0:
                # The interval crosses one or more local midnights: split it there,
                # the power linearly interpolated at each boundary.
                k = k1
                while k > bstart and bounds[k - 1] > t0:
                    k -= 1
                for kk in range(k, k1 + 1):
                    b = bounds[kk]
                    pb = p0 + (p1 - p0) * ((b - t0) / dt)
                    _segment(f, iv, s, ta, pa, b, pb, de * ((b - ta) / dt), interval_excluded)
                    _close_day(f, iv, s, dd, di, cnt)
                    _open_day(f, iv, s, kk, bounds, bstart, first_day)
                    ta = b
                    pa = pb
                _segment(f, iv, s, ta, pa, t1, p1, de * ((t1 - ta) / dt), interval_excluded)
            else:
                _segment(f, iv, s, ta, pa, t1, p1, de, interval_excluded)
    if not reading_excluded:
        if p1 < f[s, F_MIN]:
            f[s, F_MIN] = p1
        if p1 > f[s, F_MAX]:
            f[s, F_MAX] = p1
            f[s, F_PEAK_TS] = t1
    iv[s, I_N] += 1
    if f[s, F_FIRST_TS] != f[s, F_FIRST_TS]:
        f[s, F_FIRST_TS] = t1
    f[s, F_LAST_TS] = t1
    f[s, F_PREV_TS] = t1
    f[s, F_PREV_P] = p1
    f[s, F_PREV_E] = e1
    iv[s, I_HAS_PREV] = 1
    # Spike episodes: one alert when an episode opens, its update when it ends.
    thr = f[s, F_THR]
    spike = thr == thr and p1 > thr * (1.0 + cfg[C_MARGIN]) and p1 > cfg[C_FLOOR]
    if iv[s, I_EP_OPEN] == 1 and (gap or not spike):
        _close_episode(f, iv, s, ef, ei, cnt)
    if spike:
        if iv[s, I_EP_OPEN] == 0:
            iv[s, I_EP_OPEN] = 1
            iv[s, I_EP_N] = 1
            f[s, F_EP_START] = t1
            f[s, F_EP_PEAK] = p1
            f[s, F_EP_PEAK_TS] = t1
            f[s, F_EP_LAST] = t1
            f[s, F_EP_THR] = thr
            _emit_event(ef, ei, cnt, s, 0, t1, t1, p1, t1, thr, 1)
        else:
            iv[s, I_EP_N] += 1
            f[s, F_EP_LAST] = t1
            if p1 > f[s, F_EP_PEAK]:
                f[s, F_EP_PEAK] = p1
                f[s, F_EP_PEAK_TS] = t1


@nb.njit(cache=True, nogil=True)
def _positions(slot, ts, p, bounds, tz_bstart, tz_len, iv, f, cfg):
    """Each reading's day position in ``bounds`` and capacities of the output buffers."""
    n = len(slot)
    dpos = np.empty(n, dtype=np.int64)
    n_days = 1
    n_ev = 1
    margin = 1.0 + cfg[C_MARGIN]
    floor = cfg[C_FLOOR]
    i = 0
    while i < n:
        s = slot[i]
        tz = iv[s, I_TZ]
        b0 = tz_bstart[tz]
        b1 = b0 + tz_len[tz] - 1
        k = b0 + np.searchsorted(bounds[b0 : b1 + 1], ts[i], side="right") - 1
        thr = f[s, F_THR]
        n_days += 2
        n_ev += 2
        while i < n and slot[i] == s:
            while k < b1 and bounds[k + 1] <= ts[i]:
                k += 1
                n_days += 3
            dpos[i] = k
            if thr == thr and p[i] > thr * margin and p[i] > floor:
                n_ev += 2
            i += 1
    return dpos, n_days, n_ev


@nb.njit(cache=True, nogil=True)
def _fast_run(j, hi, replay_until, mains, ts, p, e, dpos, bounds, f, iv, s, gap_limit, margin,
              floor):
    """Readings ``j..`` of slot ``s`` while each is ordinary: same day as the previous one,
    no gap, no spike, no open episode, not a mains zero that may start a zero run. The
    meter's sums live in locals (stores to ``f`` per reading cannot be kept in registers:
    the arrays may alias) and are written back once; the arithmetic is the inline path's
    of :func:`run`, in the same order, so results are identical. Returns the first
    reading not processed."""
    t0 = f[s, F_PREV_TS]
    p0 = f[s, F_PREV_P]
    e0 = f[s, F_PREV_E]
    thr = f[s, F_THR]
    has_thr = thr == thr
    lim = thr * margin
    energy = f[s, F_ENERGY]
    covered = f[s, F_COVERED]
    counter = f[s, F_COUNTER]
    mn = f[s, F_MIN]
    mx = f[s, F_MAX]
    peak_ts = f[s, F_PEAK_TS]
    cnt_n = iv[s, I_CNT_N]
    n = iv[s, I_N]
    j0 = j
    while j < hi:
        pw = p[j]
        if mains and pw == 0.0 and j >= replay_until:
            break
        t1 = ts[j]
        dt = t1 - t0
        if dt > gap_limit or bounds[dpos[j]] > t0 or (has_thr and pw > lim and pw > floor):
            break
        energy += 0.5 * (p0 + pw) * dt
        covered += dt
        e1 = e[j]
        de = e1 - e0
        if de == de:
            counter += de
            cnt_n += 1
        if pw < mn:
            mn = pw
        if pw > mx:
            mx = pw
            peak_ts = t1
        n += 1
        t0 = t1
        p0 = pw
        e0 = e1
        j += 1
    if j > j0:
        f[s, F_ENERGY] = energy
        f[s, F_COVERED] = covered
        f[s, F_COUNTER] = counter
        f[s, F_MIN] = mn
        f[s, F_MAX] = mx
        f[s, F_PEAK_TS] = peak_ts
        iv[s, I_CNT_N] = cnt_n
        iv[s, I_N] = n
        f[s, F_LAST_TS] = t0
        f[s, F_PREV_TS] = t0
        f[s, F_PREV_P] = p0
        f[s, F_PREV_E] = e0
    return j


@nb.njit(cache=True, nogil=True)
def run(slot, ts, p, e, bounds, tz_bstart, tz_len, tz_first_day, f, iv, cfg, final):
    """One pass over readings sorted by (slot, ts); returns closed days, events, held mask."""
    n = len(slot)
    dpos, cap_d, cap_e = _positions(slot, ts, p, bounds, tz_bstart, tz_len, iv, f, cfg)
    dd = np.empty((cap_d, ND))
    di = np.empty((cap_d, NDI), dtype=np.int64)
    ef = np.empty((cap_e, NE))
    ei = np.empty((cap_e, NEI), dtype=np.int64)
    cnt = np.zeros(2, dtype=np.int64)
    held = np.zeros(n, dtype=np.bool_)
    zlimit = cfg[C_ZERO]
    gap_limit = cfg[C_GAP]
    margin = 1.0 + cfg[C_MARGIN]
    floor = cfg[C_FLOOR]
    i = 0
    while i < n:
        s = slot[i]
        hi = i
        while hi < n and slot[hi] == s:
            hi += 1
        iv[s, I_TOUCHED] = 1
        tz = iv[s, I_TZ]
        bstart = tz_bstart[tz]
        fday = tz_first_day[tz]
        mains = iv[s, I_MAINS] == 1
        hold = -1
        replay_until = -1
        j = i
        while j < hi:
            if hold < 0 and iv[s, I_ZR_SUSP] == 0 and iv[s, I_HAS_PREV] == 1 \
                    and iv[s, I_HAS_DAY] == 1 and iv[s, I_EP_OPEN] == 0:
                # The common case, a run of ordinary readings, with the meter's state in
                # locals; it stops at the first reading that needs more (handled below).
                j = _fast_run(j, hi, replay_until, mains, ts, p, e, dpos, bounds, f, iv, s,
                              gap_limit, margin, floor)
                if j >= hi:
                    break
            pw = p[j]
            if mains and pw == 0.0 and iv[s, I_ZR_SUSP] == 0 and j >= replay_until:
                if hold < 0:
                    hold = j
                if ts[j] - ts[hold] > zlimit:
                    for k in range(hold, j + 1):
                        _step(k, s, ts, p, e, dpos, bounds, bstart, fday, f, iv, cfg,
                              dd, di, ef, ei, cnt, True, True)
                        if k == hold:
                            iv[s, I_ZRUNS] += 1
                    iv[s, I_ZR_SUSP] = 1
                    hold = -1
                j += 1
                continue
            if hold >= 0:
                # A short zero run: real readings after all; process them in order.
                replay_until = j
                j = hold
                hold = -1
                continue
            if iv[s, I_ZR_SUSP] == 1:
                zero = mains and pw == 0.0
                _step(j, s, ts, p, e, dpos, bounds, bstart, fday, f, iv, cfg,
                      dd, di, ef, ei, cnt, True, zero)
                if not zero:
                    iv[s, I_ZR_SUSP] = 0
            else:
                # The common case inline: same day, no gap, no spike, no open episode.
                # (A call passes every array and costs reference counting per reading.)
                # The arithmetic is _step's, in the same order, so results are identical.
                if iv[s, I_HAS_PREV] == 1 and iv[s, I_HAS_DAY] == 1 and iv[s, I_EP_OPEN] == 0:
                    t1 = ts[j]
                    t0 = f[s, F_PREV_TS]
                    dt = t1 - t0
                    thr = f[s, F_THR]
                    if (dt <= gap_limit and bounds[dpos[j]] <= t0
                            and not (thr == thr and pw > thr * margin and pw > floor)):
                        f[s, F_ENERGY] += 0.5 * (f[s, F_PREV_P] + pw) * dt
                        f[s, F_COVERED] += dt
                        e1 = e[j]
                        de = e1 - f[s, F_PREV_E]
                        if de == de:
                            f[s, F_COUNTER] += de
                            iv[s, I_CNT_N] += 1
                        if pw < f[s, F_MIN]:
                            f[s, F_MIN] = pw
                        if pw > f[s, F_MAX]:
                            f[s, F_MAX] = pw
                            f[s, F_PEAK_TS] = t1
                        iv[s, I_N] += 1
                        f[s, F_LAST_TS] = t1
                        f[s, F_PREV_TS] = t1
                        f[s, F_PREV_P] = pw
                        f[s, F_PREV_E] = e1
                        j += 1
                        continue
                _step(j, s, ts, p, e, dpos, bounds, bstart, fday, f, iv, cfg,
                      dd, di, ef, ei, cnt, False, False)
            j += 1
        if hold >= 0:
            if final:
                susp = ts[hi - 1] - ts[hold] > zlimit
                for k in range(hold, hi):
                    _step(k, s, ts, p, e, dpos, bounds, bstart, fday, f, iv, cfg,
                          dd, di, ef, ei, cnt, susp, susp)
                    if susp and k == hold:
                        iv[s, I_ZRUNS] += 1
                if susp:
                    iv[s, I_ZR_SUSP] = 1
            else:
                for k in range(hold, hi):
                    held[k] = True
        i = hi
    m = cnt[0]
    q = cnt[1]
    return dd[:m], di[:m], ef[:q], ei[:q], held


@nb.njit(cache=True, nogil=True)
def close_episodes(f, iv, n_slots):
    """Close every open spike episode (end of stream); returns the close events."""
    ef = np.empty((n_slots, NE))
    ei = np.empty((n_slots, NEI), dtype=np.int64)
    cnt = np.zeros(2, dtype=np.int64)
    for s in range(n_slots):
        if iv[s, I_EP_OPEN] == 1:
            _close_episode(f, iv, s, ef, ei, cnt)
            iv[s, I_TOUCHED] = 1
    q = cnt[1]
    return ef[:q], ei[:q]
