"""Calendar panels and the reference's sliding windows.

The reference (AWS sample) turns each vehicle's daily rows into samples: at day index
``t >= 14`` of a VIN, the features are days ``t-14 .. t-1`` (14 days x 6 signals,
oldest day first) and the label is 1 when any of days ``t .. t+13`` has an alarm. The
prediction date is day ``t``. Here the day index is the *calendar* day since the VIN's
first record: dates missing from the input are inserted as empty (all-NaN) days, which
is what an empty row means in the reference (its sample has no missing dates, so the
two agree on it exactly: 4,852 samples, 343 positive).

Everything is vectorized: the panel is one (N, 6) float64 array of all VINs' days laid
end to end, windows are strided views of it, labels come from a cumulative sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ValidationError
from .records import SIGNALS

__all__ = ["CONTEXT_DAYS", "HORIZON_DAYS", "MAX_SPAN_DAYS", "Panel", "Windows", "build_panel",
           "build_windows"]

#: Days of history in a window, and days ahead the label looks (both from the reference).
CONTEXT_DAYS = 14
HORIZON_DAYS = 14
#: Longest date span one VIN may cover (a guard against a mistyped year making the
#: calendar panel huge), days.
MAX_SPAN_DAYS = 36_600

_EPOCH = np.datetime64("1970-01-01", "D")


@dataclass(frozen=True, slots=True)
class Panel:
    """All VINs' calendar days end to end.

    ``x`` (N, 6) float64 signals in :data:`SIGNALS` order, NaN for days without data;
    ``label`` (N,) int8: 1 alarm, 0 none, -1 unknown; ``day`` (N,) int32 days since
    1970-01-01; ``vin_start`` (V+1,) offsets of each VIN's block; ``span`` (V,) days from
    the VIN's first to its last record (rows past it are the ``extend_days``); ``vins``
    the VINs. ``prior`` (V, 4), optional: per VIN, the spread summary of days *before*
    the panel's first day (a live stream keeps only a trailing window, see
    :mod:`chargetracker.kinds.pack`): days with a spread, sum of spreads [V], days with
    spread > 50 mV, highest spread [V] (-1 when none); the ``history_*`` features add it.
    """

    vins: tuple[str, ...]
    vin_start: np.ndarray
    span: np.ndarray
    day: np.ndarray
    x: np.ndarray
    label: np.ndarray
    prior: np.ndarray | None = None

    @property
    def n_days(self) -> int:
        return int(self.day.size)

    def vin_of(self) -> np.ndarray:
        """(N,) index into :attr:`vins` of every panel row."""
        return np.repeat(np.arange(len(self.vins)), np.diff(self.vin_start))


@dataclass(frozen=True, slots=True)
class Windows:
    """Samples: ``index`` (n,) the panel row of day t; ``vin`` (n,) VIN index; ``day``
    (n,) int32 prediction day; ``label`` (n,) int8 (1/0, -1 when no label is known);
    ``complete`` (n,) True when all 14 label days are inside the data."""

    panel: Panel
    index: np.ndarray
    vin: np.ndarray
    day: np.ndarray
    label: np.ndarray
    complete: np.ndarray

    def __len__(self) -> int:
        return int(self.index.size)

    def signal(self, k: int) -> np.ndarray:
        """(n, 14) float64 values of signal ``k`` on days t-14 .. t-1 (oldest first)."""
        col = np.ascontiguousarray(self.panel.x[:, k])
        if col.size < CONTEXT_DAYS:
            return np.empty((0, CONTEXT_DAYS))
        view = sliding_window_view(col, CONTEXT_DAYS)
        return view[self.index - CONTEXT_DAYS]

    def reference_matrix(self) -> np.ndarray:
        """(n, 84) the reference's flattened window: day-major, 6 signals per day."""
        stack = np.stack([self.signal(k) for k in range(len(SIGNALS))], axis=2)  # (n,14,6)
        return stack.reshape(len(self), CONTEXT_DAYS * len(SIGNALS))

    def dates(self) -> np.ndarray:
        return _EPOCH + self.day.astype("timedelta64[D]")

    def vin_names(self) -> np.ndarray:
        return np.asarray(self.panel.vins, dtype=object)[self.vin]

    def take(self, mask: np.ndarray) -> Windows:
        return Windows(self.panel, self.index[mask], self.vin[mask], self.day[mask],
                       self.label[mask], self.complete[mask])


def build_panel(records: pl.DataFrame, *, extend_days: int = 0) -> Panel:
    """Lay validated records (:func:`~.records.validate_records` output, unique per
    vin and date) on a daily calendar per VIN, from its first to its last date plus
    ``extend_days`` empty days (so a window can end at the last record)."""
    if records.height == 0:
        return Panel((), np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32),
                     np.zeros((0, len(SIGNALS))), np.zeros(0, np.int8))
    frame = records.sort("vin", "date")
    vin_col = frame.get_column("vin").to_numpy()
    first = np.r_[True, vin_col[1:] != vin_col[:-1]]
    starts = np.flatnonzero(first)
    vins = tuple(str(v) for v in vin_col[starts])
    day = frame.get_column("date").cast(pl.Int32).to_numpy()
    bounds = np.r_[starts, day.size]
    lo = day[starts]
    hi = day[bounds[1:] - 1]
    span = hi - lo + 1
    too_long = np.flatnonzero(span > MAX_SPAN_DAYS)
    if too_long.size:
        v = vins[int(too_long[0])]
        raise ValidationError(f"VIN {v!r}: dates span {int(span[too_long[0]])} days (more than "
                              f"{MAX_SPAN_DAYS}); is a year mistyped?", field="date")
    length = span + int(extend_days)
    vin_start = np.r_[0, np.cumsum(length)].astype(np.int64)
    n = int(vin_start[-1])
    rows_vin = np.repeat(np.arange(len(vins)), np.diff(bounds))
    pos = vin_start[rows_vin] + (day - lo[rows_vin])
    x = np.full((n, len(SIGNALS)), np.nan)
    x[pos] = frame.select(SIGNALS).to_numpy().astype(np.float64, copy=False)
    label = np.full(n, -1, np.int8)
    lab = frame.get_column("label").fill_null(-1).to_numpy().astype(np.int8)
    label[pos] = lab
    panel_vin = np.repeat(np.arange(len(vins)), length)
    panel_day = (lo[panel_vin] + (np.arange(n) - vin_start[panel_vin])).astype(np.int32)
    return Panel(vins, vin_start, span.astype(np.int64), panel_day, x, label)


def build_windows(panel: Panel, *, include_next_day: bool = False) -> Windows:
    """Every sample day t >= 14 of each VIN (the reference's set).

    ``include_next_day``: also the day after each VIN's last record (``build_panel``
    with ``extend_days=1``), i.e. the forecast an operator wants from yesterday's data;
    its label is unknown (-1). Label days past the data, and days whose label is unknown,
    count as "no alarm", as in the reference; ``complete`` tells which samples saw all
    14 label days inside the data.
    """
    vin_of = panel.vin_of()
    offset = np.arange(panel.n_days) - panel.vin_start[vin_of]
    last = panel.span[vin_of] - 1 + (1 if include_next_day else 0)
    index = np.flatnonzero((offset >= CONTEXT_DAYS) & (offset <= last))
    vin = vin_of[index]
    # Label days end at the VIN's last record (the reference slices past the end).
    data_end = panel.vin_start[vin] + panel.span[vin]
    end = np.minimum(index + HORIZON_DAYS, data_end)
    alarms = np.r_[0, np.cumsum(panel.label == 1)]
    positive = alarms[np.maximum(end, index)] - alarms[index] > 0
    beyond = index >= data_end
    label = np.where(beyond, -1, positive.astype(np.int8)).astype(np.int8)
    complete = (index + HORIZON_DAYS) <= data_end
    return Windows(panel, index, vin, panel.day[index], label, complete)
