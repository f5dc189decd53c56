"""The fused fast path of a chunk: parsed columns -> canonical rows in compiled passes.

:func:`.chunk.process_chunk` turns parsed rows into canonical rows with Polars expressions
(presence flags, conversions, a combined failure mask, :func:`schema.validate`) so that every
bad row is named exactly. Most chunks of a real file have no bad row at all; for them
:func:`fused_chunk` does the same work in one compiled pass per column over the NumPy/Arrow
buffers (unit scale and offset, integral labels, duration text, presence of required values)
and one compiled pass over the canonical columns with the plausibility limits of
:class:`schema.Limits` (finite, in range), then assembles the canonical frame directly.

It is a *detector*: whenever anything is not plainly clean (a missing required value, text
where a number belongs, a value outside the limits, NaN, a format's own rejection, a type it
does not know), it returns ``None`` and the chunk takes the exact path, which names every bad
row. So the rows it returns are those the exact path returns, value for value; it never
produces a dead letter itself. ``tests/readers/test_fused.py`` holds both paths to that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba as nb
import numpy as np
import polars as pl
import pyarrow as pa

from ..schema import MEASUREMENT_SCHEMA, Limits, dead_letters
from .base import REFERENCE_COLUMNS, ReadChunk
from .durations import durations_checked, readonly, string_spans
from .fields import Field

if TYPE_CHECKING:
    from .text import TextReader

__all__ = ["fused_chunk", "clean_rows", "ENABLED"]

#: Switch for tests and benchmarks that compare the fused path with the exact one.
ENABLED = True

_LIMITS = Limits()
_EMPTY = readonly(np.zeros(0, dtype=np.float64))
_EMPTY_B = readonly(np.zeros(0, dtype=np.bool_))
_NO_DEAD = dead_letters()


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _float_to_int(src: np.ndarray, valid: np.ndarray, has_valid: bool, out: np.ndarray) -> int:
    """Integral floats -> int64 (``1.0`` -> 1); returns how many present values are not
    integral (NaN, inf, ``1.5``) or do not fit in int64."""
    bad = 0
    for r in range(src.size):
        if has_valid and not valid[r]:
            out[r] = 0
            continue
        x = src[r]
        if x != x or x != np.floor(x) or not (-9.2e18 < x < 9.2e18):
            bad += 1
            out[r] = 0
        else:
            out[r] = np.int64(x)
    return bad


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _text_clean(starts: np.ndarray, ends: np.ndarray, data: np.ndarray,
                valid: np.ndarray) -> tuple[int, int, int]:
    """(absent, needs stripping, longest in bytes) of a text column. A value needs stripping
    when it is empty or starts or ends with a blank or a non-ASCII byte (which may be a
    Unicode blank): the exact path handles those."""
    absent = 0
    strip = 0
    longest = 0
    for r in range(valid.size):
        if not valid[r]:
            absent += 1
            continue
        start, end = starts[r], ends[r]
        if end == start:
            strip += 1
            continue
        a, b = data[start], data[end - 1]
        if a <= 32 or a >= 128 or b <= 32 or b >= 128:
            strip += 1
        if end - start > longest:
            longest = end - start
    return absent, strip, longest


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _check(ts: np.ndarray, v: np.ndarray, i: np.ndarray,
           temp: np.ndarray, temp_valid: np.ndarray, has_temp: bool, temp_masked: bool,
           st: np.ndarray, st_valid: np.ndarray, has_st: bool, st_masked: bool,
           lim: np.ndarray) -> tuple[int, int]:
    """One pass over the canonical columns with the limits of :class:`schema.Limits`
    (``lim`` = ts, voltage, current, temperature as lo, hi pairs): returns (rows that
    :func:`schema.validate` would refuse, NaN temperatures, which become null)."""
    bad = 0
    nan_t = 0
    for r in range(ts.size):
        ok = lim[0] <= ts[r] <= lim[1] and lim[2] <= v[r] <= lim[3] and lim[4] <= i[r] <= lim[5]
        if has_temp and (not temp_masked or temp_valid[r]):
            t = temp[r]
            if t != t:
                nan_t += 1
            elif not lim[6] <= t <= lim[7]:
                ok = False
        if has_st and (not st_masked or st_valid[r]):
            s = st[r]
            if not (s >= 0.0 and s < np.inf):  # false for NaN
                ok = False
        if not ok:
            bad += 1
    return bad, nan_t


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _epoch_seconds(src: np.ndarray, out: np.ndarray) -> None:
    """Numeric times -> epoch s: values above 1e11 are ms (as :func:`.fields._epoch_number`)."""
    for r in range(src.size):
        x = src[r]
        out[r] = x / 1000.0 if x > 1e11 else x


def _limits() -> np.ndarray:
    lim = _LIMITS
    return np.array([*lim.ts, *lim.voltage_v, *lim.current_a, *lim.temperature_c],
                    dtype=np.float64)


def _with_nulls(name: str, values: np.ndarray, valid: np.ndarray | None) -> pl.Series:
    if valid is None or valid.all():
        return pl.Series(name, values)
    return pl.Series(name, pa.array(values, mask=~valid))


def _floats(s: pl.Series) -> tuple[np.ndarray, np.ndarray | None]:
    """(float64 values, validity or None when no nulls) without a copy where possible."""
    if s.dtype != pl.Float64:
        s = s.cast(pl.Float64)
    if s.null_count():
        return readonly(s.fill_null(0.0).to_numpy()), readonly(s.is_not_null().to_numpy())
    return readonly(s.to_numpy()), None


def _masked_floats(s: pl.Series) -> tuple[np.ndarray, np.ndarray | None]:
    """(float64 values, validity or None when no nulls) straight from the Arrow buffers: the
    values under a null are whatever the buffer holds, so only for kernels that read a value
    only where it is valid. Without the fill and the mask that :func:`_floats` computes
    (two passes; ~0.5 ms for 200,000 rows)."""
    if not isinstance(s.dtype, pl.Float64):
        s = s.cast(pl.Float64)
    if not s.null_count():
        return readonly(s.to_numpy()), None
    arr = s.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    bits, values = arr.buffers()
    n, at = len(arr), arr.offset
    vals = np.frombuffer(values, dtype=np.float64, count=at + n)[at:]
    valid = np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=at + n,
                          bitorder="little")[at:].view(np.bool_)
    return readonly(vals), readonly(valid)


def _field(f: Field, s: pl.Series, longest: dict[str, int]) -> pl.Series | None:
    """The parsed column of one field, or None when the exact path must decide; a text
    field's longest value (bytes) goes to ``longest``."""
    dtype = s.dtype
    numeric = dtype.is_numeric() and dtype != pl.Boolean
    if f.kind == "str":
        if dtype != pl.Utf8:
            return None
        absent, strip, longest_bytes = _text_clean(*string_spans(s))
        if strip or (absent and f.required):
            return None
        longest[f.out] = -1 if absent else int(longest_bytes)
        return s.alias(f.out)
    if f.required and s.null_count():
        return None
    if f.kind == "int":
        if dtype.is_integer():
            return s.cast(pl.Int64).alias(f.out)
        if not numeric:
            return None
        vals, valid = _masked_floats(s)  # _float_to_int reads only valid values
        out = np.empty(vals.size, dtype=np.int64)
        if _float_to_int(vals, valid if valid is not None else _EMPTY_B, valid is not None, out):
            return None
        return _with_nulls(f.out, out, valid)
    if f.kind == "duration" and dtype == pl.Utf8:
        secs, ok, absent, unread = durations_checked(s)
        if (unread and f.strict) or (absent and f.required):
            return None
        return _with_nulls(f.out, secs, ok)
    if not numeric:
        return None  # text times, text numbers: the exact path parses them
    num = s.cast(pl.Float64)
    if f.kind == "duration":
        return (num * f.scale).alias(f.out)
    if f.kind == "datetime":
        if f.scale != 1.0:
            return (num * f.scale).alias(f.out)
        vals, valid = _floats(num)
        out = np.empty(vals.size, dtype=np.float64)
        _epoch_seconds(vals, out)
        return _with_nulls(f.out, out, valid)
    if f.kind in ("float", "epoch"):
        if f.scale != 1.0 or f.offset != 0.0:
            num = num * f.scale + f.offset
        return num.alias(f.out)
    return None


def clean_rows(frame: pl.DataFrame | dict[str, pl.Series],
               cell_id_ok: bool) -> tuple[bool, int]:
    """(every row passes :func:`schema.validate`, NaN temperatures) for canonical columns
    (a frame, or columns by name)."""
    by_name = frame if isinstance(frame, dict) else {c: frame.get_column(c) for c in frame.columns}
    cols: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for name in ("ts", "voltage_v", "current_a"):
        s = by_name[name]
        if not isinstance(s.dtype, pl.Float64) or s.null_count():
            return False, 0
        cols[name] = (readonly(s.to_numpy()), None)
    opt: dict[str, tuple[np.ndarray, np.ndarray, bool, bool]] = {}
    for name in ("temperature_c", "step_time_s"):
        if name not in by_name:
            opt[name] = (_EMPTY, _EMPTY_B, False, False)
            continue
        s = by_name[name]
        if not isinstance(s.dtype, pl.Float64):
            return False, 0
        vals, valid = _masked_floats(s)  # _check reads only valid values
        opt[name] = (vals, valid if valid is not None else _EMPTY_B, True, valid is not None)
    bad, nan_t = _check(cols["ts"][0], cols["voltage_v"][0], cols["current_a"][0],
                        *opt["temperature_c"], *opt["step_time_s"], _limits())
    return bad == 0 and cell_id_ok, int(nan_t)


def fused_chunk(reader: TextReader, raw: pl.DataFrame) -> ReadChunk | None:
    """The canonical chunk of ``raw`` when every row is clean, else None (see the module)."""
    if not ENABLED or reader.decimal_comma or raw.height == 0:
        return None
    if all(t == pl.Utf8 for t in raw.schema.values()):
        return None  # the text path: blank lines and text numbers are the exact path's
    parsed: list[pl.Series] = []
    longest: dict[str, int] = {}
    raw_columns = set(raw.columns)
    for f in reader.fields:
        if f.probe_only:
            continue
        if f.source not in raw_columns:
            return None
        col = _field(f, raw.get_column(f.source), longest)
        if col is None:
            return None
        parsed.append(col)
    height = raw.height
    cols = reader._finish_fused({s.name: s for s in parsed})
    if cols is None:
        frame = reader._finish(pl.DataFrame(parsed))
        if "__reject_field" in frame.columns:
            if frame.get_column("__reject_field").null_count() != frame.height:
                return None
            frame = frame.drop("__reject_field", "__reject_reason")
        cols = {c: frame.get_column(c) for c in frame.columns}
    lim = _LIMITS
    if "cell_id" in cols:
        cid = cols["cell_id"]
        if not isinstance(cid.dtype, pl.String):
            return None
        if "cell_id" in longest:  # checked as a field above (a _finish never rewrites it)
            n_bytes = longest["cell_id"]
            cell_ok = 0 <= n_bytes <= lim.max_cell_id_length
        else:
            absent, strip, n_bytes = _text_clean(*string_spans(cid))
            cell_ok = absent == 0 and strip == 0 and n_bytes <= lim.max_cell_id_length
        cell = cid
    else:
        cell_ok = bool(reader.cell_id.strip()) and \
            len(reader.cell_id.encode()) <= lim.max_cell_id_length
        # One value repeated, without an expression (pl.repeat runs a query: ~1 ms a chunk).
        cell = pl.Series("cell_id", [reader.cell_id], dtype=pl.Utf8).new_from_index(0, height)
    for name in ("ts", "voltage_v", "current_a"):
        if name not in cols:
            return None
    ok, nan_t = clean_rows(cols, cell_ok)
    if not ok:
        return None
    out: list[pl.Series] = []
    for name, dtype in MEASUREMENT_SCHEMA.items():
        if name == "cell_id":
            out.append(cell.alias("cell_id"))
            continue
        if name not in cols:
            out.append(pl.Series(name, [None], dtype=dtype).new_from_index(0, height))
            continue
        s = cols[name]
        if s.dtype != dtype:
            return None  # conform() casts or refuses: the exact path decides
        if name == "temperature_c" and nan_t:
            s = s.fill_nan(None)
        out.append(s)
    if reader.keep_reference:
        out += [cols[c] for c in REFERENCE_COLUMNS if c in cols]
    # The empty dead letters built once: a frame built from a schema costs ~1 ms a chunk.
    return ReadChunk(pl.DataFrame(out), _NO_DEAD)
