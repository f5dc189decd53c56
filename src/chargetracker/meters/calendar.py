"""Local days of a meter: the UTC instants of its time zone's midnights.

A day is ``[midnight(d), midnight(d + 1))`` in the meter's IANA time zone, so a DST day
lasts 23 or 25 hours. Dates are day numbers since 1970-01-01 (the physical value of a
polars ``Date``). Midnights come from :mod:`zoneinfo` (the system or ``tzdata`` database),
computed once per zone and year.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from ..errors import ConfigError, ValidationError

__all__ = ["check_timezone", "midnights", "day_table"]

_EPOCH = dt.date(1970, 1, 1)


def check_timezone(name: str, *, field: str = "timezone", row: int | None = None) -> ZoneInfo:
    """The zone called ``name``; a clear error naming the field when it is not an IANA zone."""
    try:
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        err = ValidationError if row is not None else ConfigError
        msg = f"{name!r} is not an IANA time zone (e.g. 'Europe/London', 'UTC')"
        if err is ValidationError:
            raise ValidationError(msg, field=field, row=row) from exc
        raise ConfigError(f"{field}: {msg}") from exc


@lru_cache(maxsize=512)
def _year(tz: str, year: int) -> tuple[np.ndarray, int]:
    """Midnights (epoch s) of every day of ``year`` and Jan 1 of the next; first day number."""
    zone = ZoneInfo(tz)
    first = dt.date(year, 1, 1)
    n = (dt.date(year + 1, 1, 1) - first).days
    out = np.empty(n + 1, dtype=np.float64)
    for k in range(n + 1):
        d = first + dt.timedelta(days=k)
        out[k] = dt.datetime(d.year, d.month, d.day, tzinfo=zone).timestamp()
    return out, (first - _EPOCH).days


def midnights(tz: str, first_day: int, last_day: int) -> np.ndarray:
    """UTC instants (s) of the local midnights starting days ``first_day..last_day + 1``."""
    y0 = (_EPOCH + dt.timedelta(days=first_day)).year
    y1 = (_EPOCH + dt.timedelta(days=last_day + 1)).year
    parts = []
    for y in range(y0, y1 + 1):
        arr, d0 = _year(tz, y)
        parts.append(arr[:-1] if y < y1 else arr)
        if y == y0:
            base = d0
    allm = np.concatenate(parts)
    return allm[first_day - base : last_day - base + 2]


def day_table(tz: str, ts_min: float, ts_max: float) -> tuple[np.ndarray, int]:
    """Midnights covering ``[ts_min, ts_max]`` and the day number of the first one.

    ``bounds[k] <= ts < bounds[k + 1]`` means ``ts`` lies on day ``first + k``. The table
    starts a day early and ends a day late so that offsets up to 14 h always fit.
    """
    first = int(np.floor(ts_min / 86_400.0)) - 1
    last = int(np.floor(ts_max / 86_400.0)) + 1
    return midnights(tz, first, last), first
