"""Index layout of the engine's per-cell numeric state (shared by kernel and state).

Accumulators hold additive integrals over a span of samples (a step, a candidate run,
a cycle); units: A*s for charge, W*s for energy, V*s / V^2*s / A*s / A^2*s for the
time-weighted moments, s for time.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..config import EngineConfig

# Accumulator fields ------------------------------------------------------------
A_CHG_AS = 0      # charge, A*s (positive current)
A_DIS_AS = 1      # discharge, A*s (magnitude of negative current)
A_CHG_WS = 2      # charge energy, W*s
A_DIS_WS = 3      # discharge energy, W*s
A_VDT = 4         # integral of V dt, V*s
A_V2DT = 5        # integral of V^2 dt
A_IDT = 6         # integral of I dt, A*s (signed)
A_I2DT = 7        # integral of I^2 dt
A_DT = 8          # integrated time, s
A_MINV = 9
A_MAXV = 10
A_MINI = 11
A_MAXI = 12
A_SUMT = 13       # sum of temperature samples, degC
A_NT = 14         # number of temperature samples
A_MAXT = 15
A_MINT = 16
A_N = 17          # samples
A_GAPS = 18       # intervals judged data gaps (not integrated)
A_START = 19      # start of the span, s since epoch
A_END = 20        # last sample, s since epoch
A_STARTV = 21     # first sample's voltage, V
A_ENDV = 22       # last sample's voltage, V
A_IR = 23         # internal resistance at the largest current step in the span, ohm
A_IR_DI = 24      # |dI| of that current step, A (0: none)
A_FIRST = 25      # first sample's ts (the run start for debouncing), s
A_STEPS = 26      # number of steps folded in (cycles only)
A_GAP_S = 27      # time excluded as data gaps, s
A_GAP_AS = 28     # estimated charge in those gaps (trapezoid of |I|), A*s
NA = 29

# Per-cell scalar floats --------------------------------------------------------
F_EPS = 0         # current threshold, A
F_PREV_TS = 1
F_PREV_V = 2
F_PREV_I = 3
F_DTMAX_ALL = 4   # longest interval integrated so far in any kind of step, s
F_REF_DIS = 5     # retention reference discharge, A*s
F_THROUGHPUT = 6  # cumulative charge+discharge of closed cycles, A*s
F_NOMINAL_AH = 7  # nominal capacity, Ah (nan when unknown)
F_MAX_TS = 8      # newest accepted ts (watermark = F_MAX_TS - lateness)
F_LAST_IR = 9     # internal resistance measured at the open step's start (nan)
F_CAND_IR = 10    # internal resistance at the candidate's start (nan)
F_LAST_DI = 11    # |dI| of the current step behind F_LAST_IR, A
F_CAND_DI = 12
F_DTMAX = 13      # 13..15: longest integrated interval per kind (discharge, rest, charge), s
F_PREV_ST = 16    # step time of the previous sample, s (nan when the file has none)
F_IMAX = 17       # largest sustained |I| so far (two consecutive samples), A
F_CAP_AS = 18     # learnt capacity: largest discharge of a complete cycle, A*s
F_SNAP_TS = 19    # ts of the last sample in the cell's last open snapshot (nan: none yet)
NF = 20

# Per-cell scalar ints -----------------------------------------------------------
I_HAS_PREV = 0
I_PREV_KIND = 1   # hysteresis state of the previous sample: -1, 0, +1
I_STEP_KIND = 2   # kind of the open step
I_STEP_NO = 3     # open step's sequence number (1-based)
I_STEP_LABEL = 4  # open step's cycler label (NULL_LABEL when none)
I_CYCLE_NO = 5    # open cycle number
I_CYCLE_LABELLED = 6
I_SEEN_OPP = 7    # the open cycle has seen the kind opposite to cycle_start
I_HAS_CAND = 8
I_CAND_KIND = 9
I_DT_COUNT = 10   # intervals integrated (any kind)
I_REF_COUNT = 11  # cycles folded into the retention reference
I_STEP_CYCLE = 12  # cycle of the open step
I_DTN = 13        # 13..15: intervals integrated per kind (discharge, rest, charge)
I_SEEN_START = 16  # the open cycle has a step of the cycle_start kind
I_CYC_PARTIAL = 17  # the open cycle is known to be partial (data started inside it)
I_N_CYCLES = 18   # cycles emitted so far
I_LAST_ACTIVE = 19  # kind of the open cycle's last charge/discharge step (0: none)
I_EPS_LEARN = 20  # 1: epsilon is learnt from the cell's own currents
I_PREV_SLAB = 21  # raw step label of the previous sample (NULL_LABEL when none)
NI = 22

NULL_LABEL = -(2**62)

#: Cycle status codes in the kernel's output.
STATUS_CLOSED, STATUS_OPEN, STATUS_PARTIAL = 0, 1, 2
STATUS_NAMES = {STATUS_CLOSED: "closed", STATUS_OPEN: "open", STATUS_PARTIAL: "partial"}

KIND_NAMES = {1: "charge", -1: "discharge", 0: "rest"}

# Config vector layout (floats) --------------------------------------------------
C_MIN_STEP = 0
C_HYST = 1
C_GAP_FIXED = 2     # nan = from evidence
C_GAP_FACTOR = 3
C_GAP_MIN = 4
C_DT_K = 5
C_CYCLE_START = 6   # +1 charge, -1 discharge
C_USE_CYC = 7
C_USE_STEP = 8
C_REF_CYCLES = 9
C_IR_MIN_DEPS = 10
C_IR_MAX_DT = 11
C_EPS_FRAC = 12     # learnt epsilon = this x largest sustained |I|
C_EPS_FLOOR = 13    # A
C_MIN_STEP_Q = 14   # a charge/discharge run needs this fraction of the capacity
C_START_ST = 15     # step time (s) up to which a first sample is at its step's start
C_MAX_FIRST_CE = 16  # a first cycle with more discharge than this x its charge is partial
NC = 17


# Named views of the arrays the compiled kernel takes ---------------------------

class CellArrays(NamedTuple):
    """The engine state's per-cell arrays, one row per cell slot (a named view the
    compiled code takes whole; inside the kernel they are ``f, iv, s, r, cy``)."""

    floats: np.ndarray  # (cells, NF): scalar floats, F_* of .layout
    ints: np.ndarray    # (cells, NI): scalar ints, I_*
    step: np.ndarray    # (cells, NA): accumulator of the open step, A_*
    run: np.ndarray     # (cells, NA): the candidate run that may become the next step
    cycle: np.ndarray   # (cells, NA): the open cycle


class Samples(NamedTuple):
    """Canonical samples as arrays, rows of many cells; nulls are NaN / NULL_LABEL."""

    slot: np.ndarray           # int64, the cell's slot
    ts: np.ndarray             # s since epoch
    voltage_v: np.ndarray
    current_a: np.ndarray
    temperature_c: np.ndarray
    cycle_label: np.ndarray    # int64, the cycler's cycle number
    step_label: np.ndarray     # int64, the cycler's step number
    step_time_s: np.ndarray    # the cycler's step timer, s


class Records(NamedTuple):
    """Output buffers for closed steps and cycles, filled from row 0; ``n_step`` /
    ``n_cycle`` (one-element arrays) count the rows written."""

    step_f: np.ndarray   # (cap, NA) accumulators
    step_i: np.ndarray   # (cap, NSO of .kernel) SO_* ints
    n_step: np.ndarray
    cycle_f: np.ndarray  # (cap, NA)
    cycle_i: np.ndarray  # (cap, NCO of .kernel) CO_* ints
    cycle_x: np.ndarray  # (cap, NCX of .kernel) CX_* floats
    n_cycle: np.ndarray


#: The kernel's configuration vector of the last configuration used (configs are frozen
#: and hashable): rebuilding it set 17 fields per batch.
_CFG_CACHE: dict[EngineConfig, np.ndarray] = {}


def config_vector(cfg: EngineConfig) -> np.ndarray:
    """The kernel's configuration vector (float64, layout ``C_*``; the kernel only reads it)."""
    v = _CFG_CACHE.get(cfg)
    if v is None:
        if len(_CFG_CACHE) > 16:
            _CFG_CACHE.clear()
        v = _CFG_CACHE[cfg] = _build_config_vector(cfg)
    return v


def _build_config_vector(cfg: EngineConfig) -> np.ndarray:
    v = np.zeros(NC)
    v[C_MIN_STEP] = cfg.min_step_s
    v[C_HYST] = cfg.hysteresis
    v[C_GAP_FIXED] = np.nan if cfg.gap_limit_s is None else cfg.gap_limit_s
    v[C_GAP_FACTOR] = cfg.gap_factor
    v[C_GAP_MIN] = cfg.gap_min_s
    v[C_DT_K] = cfg.dt_ref_intervals
    v[C_CYCLE_START] = 1.0 if cfg.cycle_start == "charge" else -1.0
    v[C_USE_CYC] = 1.0 if cfg.use_cycle_labels else 0.0
    v[C_USE_STEP] = 1.0 if cfg.use_step_labels else 0.0
    v[C_REF_CYCLES] = cfg.retention_ref_cycles
    v[C_IR_MIN_DEPS] = cfg.resistance_min_delta_epsilons
    v[C_IR_MAX_DT] = cfg.resistance_max_dt_s
    v[C_EPS_FRAC] = cfg.epsilon_current_fraction
    v[C_EPS_FLOOR] = cfg.epsilon_floor_a
    v[C_MIN_STEP_Q] = cfg.min_step_capacity_fraction
    v[C_START_ST] = cfg.partial_start_step_s
    v[C_MAX_FIRST_CE] = cfg.max_first_cycle_ce
    return v
