"""Decoding limits and a vectorized look at JSON structure before any native parser runs.

Polars' JSON readers recurse once per nesting level in native code: an object nested
~800 levels deep overflows the stack and kills the process with SIGSEGV (no exception
to catch). So every JSON or NDJSON payload is measured here first, with numpy over the
few bytes that matter (quotes, backslashes, brackets, newlines, colons), and only
bodies within :class:`DecodeLimits` reach Polars; the rest take Python's ``json`` (which
raises ``RecursionError`` instead of crashing) or are refused with the line named.

The scan agrees with a strict JSON parser wherever that parser has not yet failed:
strings are delimited by unescaped quotes, a raw newline never sits inside a valid
string (so each line's strings must balance), and brackets inside strings do not count.
A line whose quotes do not balance is reported as *unbalanced*; it is malformed JSON and
never handed to a native parser.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DecodeLimits", "JsonShape", "json_shape", "short", "DEFAULT_LIMITS"]


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds applied to every ingest payload (API bodies, Kafka messages).

    ``max_depth``: JSON nesting levels (a flat measurement object is 1, an array of them
    2, the ``{"measurements": [...]}`` envelope 3). ``max_columns``: columns (or JSON
    keys per line) of one batch. ``max_listed``: names listed in a reply (ignored
    columns). ``max_text_chars``: characters of user data quoted in an error message.
    """

    max_depth: int = 32
    max_columns: int = 1024
    max_listed: int = 50
    max_text_chars: int = 120


DEFAULT_LIMITS = DecodeLimits()

_QUOTE, _BACKSLASH, _NEWLINE, _COLON = 34, 92, 10, 58


@dataclass(frozen=True, slots=True)
class JsonShape:
    """Per line of a payload (lines split at ``\\n``): how deep and how wide it is.

    ``depth[i]``: deepest nesting on line ``i`` (counted from the line's start for
    NDJSON, from the body's start for one JSON document); ``keys[i]``: colons outside
    strings on the line (an upper bound on its object keys; exact only when above
    ``max_columns``, else it may count colons inside strings); ``unbalanced[i]``: the
    line's quotes do not pair up (malformed: a string cannot hold a raw newline).
    """

    depth: np.ndarray
    keys: np.ndarray
    unbalanced: np.ndarray

    @property
    def lines(self) -> int:
        return int(self.depth.size)

    def max_depth(self) -> int:
        return int(self.depth.max()) if self.depth.size else 0

    def safe(self, limits: DecodeLimits) -> np.ndarray:
        """Lines a native parser may see: shallow and narrow enough."""
        return (self.depth <= limits.max_depth) & (self.keys <= limits.max_columns)


def _where(arr: np.ndarray, byte: int) -> np.ndarray:
    return np.flatnonzero(arr == byte)


def _unescaped(quotes: np.ndarray, backslashes: np.ndarray) -> np.ndarray:
    """The quotes not escaped, i.e. not preceded by an odd run of backslashes."""
    if not backslashes.size or not quotes.size:
        return quotes
    # Runs of adjacent backslashes: start and end (exclusive) positions.
    brk = np.flatnonzero(np.diff(backslashes) != 1)
    starts = np.concatenate(([backslashes[0]], backslashes[brk + 1]))
    ends = np.concatenate((backslashes[brk] + 1, [backslashes[-1] + 1]))
    k = np.searchsorted(ends, quotes, side="right") - 1  # the last run ending at or before
    hit = k >= 0
    kk = np.maximum(k, 0)
    odd = hit & (ends[kk] == quotes) & ((ends[kk] - starts[kk]) & 1).astype(bool)
    return quotes[~odd]


def json_shape(body: bytes, *, per_line: bool, max_depth: int = 32,
               max_keys: int = 1024) -> JsonShape:
    """Measure ``body`` without parsing it (vectorized: a few passes over the body, then
    work on the bracket, quote and newline positions only).

    ``per_line``: NDJSON (each line its own document: depth restarts at every newline);
    otherwise one document spanning lines (depth carries over). For NDJSON the openers
    on a line bound its depth whatever its strings hold, so the exact (string-aware)
    count is only worked out for lines with more than ``max_depth`` openers; colons
    likewise for lines with more than ``max_keys``.
    """
    arr = np.frombuffer(body, dtype=np.uint8)
    newlines = _where(arr, _NEWLINE)
    n_lines = newlines.size + 1
    if per_line and body.count(b"{") + body.count(b"[") <= max_depth and \
            body.count(b":") <= max_keys:  # small bodies (memchr speed)
        zeros = np.zeros(n_lines, dtype=np.int64)
        return JsonShape(zeros + max_depth, zeros + max_keys, zeros.astype(bool))
    bounds = np.concatenate(([0], newlines + 1, [arr.size]))
    opens = np.flatnonzero((arr == 123) | (arr == 91))
    colons = _where(arr, _COLON)
    depth = np.diff(np.searchsorted(opens, bounds))[:n_lines]
    keys = np.diff(np.searchsorted(colons, bounds))[:n_lines]
    unbalanced = np.zeros(n_lines, dtype=bool)
    deep, wide = depth > max_depth, keys > max_keys
    if per_line and not deep.any() and not wide.any():
        return JsonShape(depth, keys, unbalanced)

    quotes = _where(arr, _QUOTE)
    if _BACKSLASH in body:
        quotes = _unescaped(quotes, _where(arr, _BACKSLASH))
    # Quotes before each line start; parity restarts per line (a valid string never
    # holds a raw newline).
    q_at_nl = np.searchsorted(quotes, newlines)
    line_q0 = np.concatenate(([0], q_at_nl))
    line_q1 = np.concatenate((q_at_nl, [quotes.size]))
    unbalanced = ((line_q1 - line_q0) & 1).astype(bool)

    def outside(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(line index, outside-a-string mask) of byte positions."""
        line = np.searchsorted(newlines, positions)
        before = np.searchsorted(quotes, positions) - line_q0[line]
        return line, ~(before & 1).astype(bool)

    if wide.any():
        k_line, k_out = outside(colons)
        exact_keys = np.bincount(k_line[k_out], minlength=n_lines)
        keys = np.where(wide & ~unbalanced, exact_keys, keys)
    if per_line and not deep.any():
        return JsonShape(depth, keys, unbalanced)
    closes = np.flatnonzero((arr == 125) | (arr == 93))
    o_line, o_out = outside(opens)
    c_out = outside(closes)[1]
    opens, o_line = opens[o_out], o_line[o_out]
    closes = closes[c_out]
    # Depth at an opener = openers up to it - closers before it (on its line for NDJSON).
    depth_at = np.arange(1, opens.size + 1) - np.searchsorted(closes, opens)
    if per_line and opens.size:
        o0 = np.searchsorted(opens, bounds[:-1])
        c0 = np.searchsorted(closes, bounds[:-1])
        depth_at = depth_at - (o0[o_line] - c0[o_line])
    exact = _per_line_max(o_line, depth_at, n_lines)
    # On a line whose quotes do not pair up the string-aware count is not to be
    # trusted: keep the bound (such a line is malformed anyway).
    depth = np.where(unbalanced, depth, exact) if per_line else exact
    return JsonShape(depth, keys, unbalanced)


def _per_line_max(lines: np.ndarray, values: np.ndarray, n_lines: int) -> np.ndarray:
    out = np.zeros(n_lines, dtype=np.int64)
    if lines.size:
        starts = np.flatnonzero(np.diff(lines, prepend=-1))
        out[lines[starts]] = np.maximum.reduceat(values, starts)
    return out


def short(text: object, limit: int = DEFAULT_LIMITS.max_text_chars) -> str:
    """``repr`` of user data for an error message: at most ``limit`` characters, control
    characters and undecodable bytes escaped (binary never reaches a reply or a log)."""
    if isinstance(text, bytes):
        text = text[: limit * 4].decode("utf-8", "backslashreplace")
    r = repr(text) if not isinstance(text, str) else repr(text[: limit + 1])
    return r if len(r) <= limit else r[: limit - 1] + "…"
