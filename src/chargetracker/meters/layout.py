"""Column indices of the meter engine's per-meter state arrays and output buffers.

The state is two small arrays per meter, ``f`` (float64) and ``iv`` (int64), so the
compiled kernel can take them whole; these constants name their columns.
"""

from __future__ import annotations

# -- f: float state per meter ---------------------------------------------------------------
F_PREV_TS = 0      # last committed reading, s
F_PREV_P = 1       # W
F_PREV_E = 2       # Wh counter or NaN
F_DAY_START = 3    # open day's local midnight, s
F_DAY_LEN = 4      # s
F_ENERGY = 5       # open day, W*s
F_COVERED = 6      # s
F_MIN = 7          # W
F_MAX = 8          # W
F_PEAK_TS = 9
F_FIRST_TS = 10
F_LAST_TS = 11
F_ZERO_S = 12      # excluded zero-run time, s
F_COUNTER = 13     # Wh of the meter's own counter over integrated intervals
F_THR = 14         # spike threshold, W (NaN: none yet)
F_EP_START = 15
F_EP_PEAK = 16
F_EP_PEAK_TS = 17
F_EP_LAST = 18
F_EP_THR = 19      # threshold the open episode was judged against
F_MAX_SEEN = 20    # newest ts seen (lateness watermark), s
NF = 21

# -- iv: integer state per meter --------------------------------------------------------------
I_HAS_PREV = 0
I_HAS_DAY = 1
I_DATE = 2         # open day, days since 1970-01-01 (local)
I_N = 3            # readings in the open day
I_GAPS = 4
I_ZRUNS = 5
I_MAINS = 6        # 1: a mains meter (suspicious zero runs apply)
I_TZ = 7           # index into the state's time-zone names
I_EP_OPEN = 8
I_EP_N = 9
I_ZR_SUSP = 10     # 1: inside a zero run already judged suspicious
I_CNT_N = 11       # counter intervals in the open day
I_TOUCHED = 12     # scratch: meter changed in this update
NI = 13

# -- day output buffer: float columns -----------------------------------------------------
D_START = 0
D_LEN = 1
D_FIRST = 2
D_LAST = 3
D_ENERGY = 4
D_COVERED = 5
D_MIN = 6
D_MAX = 7
D_PEAK_TS = 8
D_ZERO_S = 9
D_COUNTER = 10
ND = 11
# int columns
DI_SLOT = 0
DI_DATE = 1
DI_N = 2
DI_GAPS = 3
DI_ZRUNS = 4
DI_CNT_N = 5
NDI = 6

# -- alert event buffer -------------------------------------------------------------------------
E_START = 0
E_END = 1
E_PEAK = 2
E_PEAK_TS = 3
E_THR = 4
NE = 5
EI_SLOT = 0
EI_CLOSED = 1
EI_N = 2
NEI = 3

# -- kernel configuration vector ----------------------------------------------------------------
C_GAP = 0
C_ZERO = 1
C_MARGIN = 2
C_FLOOR = 3
NC = 4
