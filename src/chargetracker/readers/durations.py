"""Duration text (``[Nd ]hh:mm:ss[.fff]``, ``N-hh:mm:ss``) -> seconds, compiled.

Cyclers write step and test times as clock-like text: Neware ``123:04:05`` (hours beyond
24), Maccor ``0d 00:00:5`` (a one-digit second), BTS ``1-02:03:04``. Splitting such text
with string expressions costs several passes over the column per part; this parser reads
the Arrow string buffers once in a compiled loop (about 10 ns a value).

Accepted, surrounding blanks ignored: ``H:M:S`` with ``H`` any number of digits, ``M``
one or two digits, ``S`` digits with an optional fraction (``.fff``); optionally
preceded by a whole number of days and ``d`` (blanks around it allowed), ``-`` or blanks.
Anything else (signs, letters, a missing part, a fourth part) is not a duration: null.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import polars as pl
import pyarrow as pa

__all__ = ["parse_durations", "parse_durations_series", "durations_checked", "string_buffers",
           "string_spans", "readonly"]


@nb.njit(cache=True, nogil=True)
def _digits(data: np.ndarray, i: int, end: int) -> tuple[int, float]:
    """Whole number written in digits from ``i``: (index after it, value); index == i
    when there is no digit."""
    v = 0.0
    j = i
    while j < end and 48 <= data[j] <= 57:
        v = v * 10.0 + (data[j] - 48)
        j += 1
    return j, v


@nb.njit(cache=True, nogil=True)
def _skip_blanks(data: np.ndarray, i: int, end: int) -> int:
    while i < end and (data[i] == 32 or data[i] == 9):
        i += 1
    return i


@nb.njit(cache=True, nogil=True)
def _one(data: np.ndarray, start: int, end: int) -> float:
    i = _skip_blanks(data, start, end)
    while end > i and (data[end - 1] == 32 or data[end - 1] == 9 or data[end - 1] == 13):
        end -= 1
    j, first = _digits(data, i, end)
    if j == i:
        return np.nan
    days = 0.0
    hours = first
    k = _skip_blanks(data, j, end)
    if k < end and data[k] != 58:  # not ':' -> a day count: 'd', '-' or blanks follow it
        if data[k] == 100 or data[k] == 45:  # 'd' / '-'
            k = _skip_blanks(data, k + 1, end)
        elif k == j:
            return np.nan
        j2, hours = _digits(data, k, end)
        if j2 == k:
            return np.nan
        days = first
        j = j2
    elif k != j:
        return np.nan  # blanks before ':'
    if j >= end or data[j] != 58:
        return np.nan
    j2, minutes = _digits(data, j + 1, end)
    if j2 == j + 1 or j2 - (j + 1) > 2 or j2 >= end or data[j2] != 58:
        return np.nan
    j = j2 + 1
    j2, seconds = _digits(data, j, end)
    if j2 == j:
        return np.nan
    if j2 < end and data[j2] == 46:  # '.' + fraction digits
        # (whole * 10^k + fraction) / 10^k: one correctly rounded division, the same
        # double as parsing "S.fff" as a number (up to 15 fraction digits; more ignored).
        mant, k, f = seconds, 0, j2 + 1
        while f < end and 48 <= data[f] <= 57:
            if k < 15:
                mant = mant * 10.0 + (data[f] - 48)
                k += 1
            f += 1
        seconds = mant / 10.0 ** k
        j2 = f
    if j2 != end:
        return np.nan
    return days * 86400.0 + hours * 3600.0 + minutes * 60.0 + seconds


#: 10.0 ** k for k = 0..15, all exact doubles (what ``10.0 ** k`` gives in :func:`_one`).
_POW10 = np.array([10.0 ** k for k in range(16)], dtype=np.float64)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _parse_flags(starts: np.ndarray, ends: np.ndarray, data: np.ndarray, valid: np.ndarray,
                 out: np.ndarray, ok: np.ndarray) -> tuple[int, int]:
    """Every value parsed as :func:`_one` parses it (NaN: not a duration), also flagging each
    row: ``ok`` = a duration was read. Returns (absent: null or empty text, unread: text that
    is not a duration).

    The usual form ``H:MM:SS[.fff]`` (digits only; at most 15 digits of hours and 15 of
    seconds and fraction together) is read here with integer arithmetic, written out in the
    loop: a compiled call per value that passes the buffer costs more than parsing the value
    (the buffer's reference count is taken and dropped on each call). Whole numbers below
    10^15 are exact doubles, so this gives the double :func:`_one` gives, bit for bit: the
    same ``(H * 3600 + M * 60) + mantissa / 10^k`` in the same order (its day term is 0.0).
    Anything else (blanks, days, CR, signs, text) goes to :func:`_one`."""
    absent = 0
    unread = 0
    for r in range(out.size):
        start, end = starts[r], ends[r]
        if not valid[r] or end == start:
            out[r] = np.nan
            ok[r] = False
            absent += 1
            continue
        v = -1.0
        if end - start == 8 and data[start + 2] == 58 and data[start + 5] == 58:
            # "HH:MM:SS" (Neware, Arbin exports): fixed places, no loop.
            d0, d1, d3 = data[start] - 48, data[start + 1] - 48, data[start + 3] - 48
            d4, d6, d7 = data[start + 4] - 48, data[start + 6] - 48, data[start + 7] - 48
            if (0 <= d0 <= 9 and 0 <= d1 <= 9 and 0 <= d3 <= 9 and 0 <= d4 <= 9
                    and 0 <= d6 <= 9 and 0 <= d7 <= 9):
                out[r] = (np.float64(d0 * 10 + d1) * 3600.0 + np.float64(d3 * 10 + d4) * 60.0) \
                    + np.float64(d6 * 10 + d7)
                ok[r] = True
                continue
        i = start
        h = 0
        while i < end and 48 <= data[i] <= 57:
            h = h * 10 + (data[i] - 48)
            i += 1
        if i > start and i - start <= 15 and i < end and data[i] == 58:
            i += 1
            m0 = i
            m = 0
            while i < end and 48 <= data[i] <= 57:
                m = m * 10 + (data[i] - 48)
                i += 1
            if m0 < i <= m0 + 2 and i < end and data[i] == 58:
                i += 1
                s0 = i
                mant = 0
                while i < end and 48 <= data[i] <= 57:
                    mant = mant * 10 + (data[i] - 48)
                    i += 1
                n_digits = i - s0
                k = 0
                if i < end and data[i] == 46:  # '.' + fraction digits
                    i += 1
                    while i < end and 48 <= data[i] <= 57:
                        mant = mant * 10 + (data[i] - 48)
                        k += 1
                        i += 1
                if n_digits > 0 and i == end and n_digits + k <= 15:
                    v = (np.float64(h) * 3600.0 + np.float64(m) * 60.0) \
                        + np.float64(mant) / _POW10[k]
        if v < 0.0:
            v = _one(data, start, end)
        out[r] = v
        ok[r] = v == v
        if v != v:
            unread += 1
    return absent, unread


def readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a``: the compiled kernels then see one array type whether Polars
    lent its buffer (read-only) or copied it, so each is compiled once, not once for every
    combination of its inputs."""
    v = a.view()
    v.flags.writeable = False
    return v


def string_buffers(s: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets int64[n + 1], UTF-8 bytes uint8, valid bool[n]) of a text column, read from
    its Arrow buffers (no copy of the text beyond Arrow's own)."""
    arr = s.cast(pl.Utf8).to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    n = len(arr)
    if n == 0:
        return (readonly(np.zeros(1, dtype=np.int64)), readonly(np.zeros(0, dtype=np.uint8)),
                readonly(np.zeros(0, dtype=np.bool_)))
    validity, offs_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offs_buf, dtype=np.int64, count=n + 1 + arr.offset)[arr.offset:]
    data = (np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None
            else np.zeros(0, dtype=np.uint8))
    valid = (~np.asarray(arr.is_null())) if validity is not None else np.ones(n, dtype=np.bool_)
    return readonly(offsets), readonly(data), readonly(valid)


#: Longest text Arrow's string view holds inline (in its 16-byte view), bytes.
_INLINE = 12


def string_spans(s: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(starts int64[n], ends int64[n], bytes uint8, valid bool[n]): value ``r`` is
    ``bytes[starts[r]:ends[r]]`` (UTF-8). Short text (every value at most 12 bytes: states,
    labels, clock times, cell ids) is read in place from Polars' own string views, where it
    is stored inline, without the copy into an offsets-and-bytes array that
    :func:`string_buffers` makes (~0.5-1.5 ms for 200,000 values); longer text from that."""
    s = s.cast(pl.Utf8)
    arr = s.to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if n and pa.types.is_string_view(arr.type):
        bufs = arr.buffers()
        at = arr.offset
        views = np.frombuffer(bufs[1], dtype=np.uint8, count=16 * (at + n))[16 * at:]
        lengths = views.view(np.int32)[::4]
        if int(lengths.max()) <= _INLINE:
            starts = np.arange(4, 16 * n, 16, dtype=np.int64)
            ends = starts + lengths
            valid = (np.ones(n, dtype=np.bool_) if bufs[0] is None else
                     np.unpackbits(np.frombuffer(bufs[0], dtype=np.uint8), count=at + n,
                                   bitorder="little")[at:].view(np.bool_))
            return readonly(starts), readonly(ends), readonly(views), readonly(valid)
    offsets, data, valid = string_buffers(s)
    return readonly(offsets[:-1]), readonly(offsets[1:]), data, valid


def durations_checked(s: pl.Series) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Duration text -> (seconds float64, read bool, absent count, unread count): the fused
    reader pass (:mod:`.fused`) decides from the counts whether the column is clean."""
    starts, ends, data, valid = string_spans(s)
    out = np.empty(len(valid), dtype=np.float64)
    ok = np.empty(len(valid), dtype=np.bool_)
    absent, unread = _parse_flags(starts, ends, data, valid, out, ok)
    return out, ok, int(absent), int(unread)


def _series(s: pl.Series) -> pl.Series:
    starts, ends, data, valid = string_spans(s)
    out = np.empty(len(valid), dtype=np.float64)
    if len(valid):
        # Null or empty text is NaN here as in _one: the same values as a plain loop of _one.
        _parse_flags(starts, ends, data, valid, out, np.empty(len(valid), dtype=np.bool_))
    return pl.Series(s.name, out).fill_nan(None)


def parse_durations_series(text: pl.Series) -> pl.Series:
    """Duration text -> seconds (Float64; null where the text is not a duration)."""
    return _series(text)


def parse_durations(text: pl.Expr) -> pl.Expr:
    """Duration text -> seconds (Float64; null where the text is not a duration)."""
    return text.map_batches(_series, return_dtype=pl.Float64, is_elementwise=True)
