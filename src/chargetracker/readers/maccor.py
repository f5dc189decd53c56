"""Maccor text export reader.

Layout: optional preamble line(s) (``Today's Date``, ``Date of Test``, ``Filename``,
``Procedure``, ``Comment/Barcode``; a ``C-rate= 2.4 mAh`` text gives the nominal capacity),
then a tab-separated column header, CRLF line ends. ``Amps`` is unsigned; ``State`` (or ``MD``)
gives the sign: ``C`` charge (+), ``D`` discharge (-), ``R`` rest. Any other state letter is
accepted only with zero current (the sign does not matter then); with non-zero current the
row is rejected with the reason, since the sign cannot be known.

Time: ``Test (Min)`` / ``Step (Min)`` in minutes (or ``(Sec)``, ``(Hr)``), ``DPt Time`` as
``MM/DD/YYYY HH:MM:SS`` local time (read in ``timezone``, default UTC). ``ts`` = epoch of the
test start (``DPt Time`` - test time of the first row) + test time, so intervals keep the test
time's resolution. ``Amp-hr``/``Watt-hr`` (unsigned, as the cycler accumulated them) are the
``capacity_ah``/``energy_wh`` reference columns.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import BinaryIO

import numba as nb
import numpy as np
import polars as pl
import pyarrow as pa

from ..errors import SchemaError
from .base import shown_columns
from .durations import readonly, string_spans
from .fields import ColumnLookup, Field, _norm, unit_scale
from .fused import _masked_floats
from .text import TextReader, _decode, _split_header

__all__ = ["MaccorReader", "parse_preamble"]

_MAX_PREAMBLE = 20
_LABELS = r"(?:Today's Date|Date of Test|Filename|Procedure|Comment/Barcode)"
# Each value runs to the next tab or the next known label (the export omits some tabs).
_END = rf"(?=\t|\s+{_LABELS}:?|$)"
_KEYS = {
    "test_date": rf"Date of Test:?\s*(.+?){_END}",
    "export_date": rf"Today's Date:?\s*(.+?){_END}",
    "filename": rf"Filename:?\s*(.+?){_END}",
    "procedure": rf"Procedure:?\s*(.+?){_END}",
    "comment": rf"Comment/Barcode:?\s*(.+?){_END}",
}
_CAPACITY = re.compile(r"C-?rate\s*[=:]\s*([0-9]*\.?[0-9]+)\s*(mAh|Ah)\b", re.IGNORECASE)


def _ones(n: int) -> np.ndarray:
    return readonly(np.ones(n, dtype=np.bool_))


def parse_preamble(text: str) -> tuple[dict[str, str], float | None]:
    """Header text -> (attributes, nominal capacity in Ah or None)."""
    attrs: dict[str, str] = {}
    for key, pat in _KEYS.items():
        m = re.search(pat, text)
        if m:
            attrs[key] = m.group(1).strip()
    cap = None
    m = _CAPACITY.search(text)
    if m:
        cap = float(m.group(1)) * (1e-3 if m.group(2).lower() == "mah" else 1.0)
    return attrs, cap


def _is_column_header(cells: list[str]) -> bool:
    keys = {_norm(c)[0] for c in cells}
    return ("amps" in keys or "current" in keys) and ("volts" in keys or "voltage" in keys)


def _time_unit_from_clock(probe: pl.DataFrame) -> float:
    """Seconds per unit of a unit-less numeric test time: 1, 60 or 3600, whichever makes
    its span match the wall clock's (DPt Time) over the first rows."""
    both = probe.filter(pl.col("__epoch").is_finite() & pl.col("__test_time").is_finite())
    if both.height < 2:
        return 1.0
    d_clock = float(both["__epoch"][-1] - both["__epoch"][0])
    d_test = float(both["__test_time"][-1] - both["__test_time"][0])
    if d_test <= 0 or d_clock <= 0:
        return 1.0
    ratio = d_clock / d_test
    return min((1.0, 60.0, 3600.0), key=lambda s: abs(math.log(ratio / s)))


class MaccorReader(TextReader):
    """Maccor text export (see module docstring)."""

    format = "maccor"
    separator = "\t"

    def _read_header(self, fh: BinaryIO) -> tuple[list[str], int, int]:
        preamble: list[str] = []
        offset = 0
        for n in range(_MAX_PREAMBLE):
            line = fh.readline()
            if not line:
                break
            offset += len(line)
            text = _decode(line)
            cells = _split_header(text, "\t")
            if _is_column_header(cells):
                self._preamble(preamble)
                return cells, n + 1, offset
            preamble.append(text)
        raise SchemaError(
            f"no Maccor column header (a tab-separated line with Amps and Volts) in the first "
            f"{_MAX_PREAMBLE} lines", field="Amps", source=self.name,
        )

    def _preamble(self, lines: list[str]) -> None:
        attrs, cap = parse_preamble("\t".join(lines))
        self._attributes.update(attrs)
        if cap is not None:
            self._meta["nominal_capacity_ah"] = cap
        if "procedure" in attrs:
            self._meta["test_type"] = attrs["procedure"]

    def _plan(self, cols: ColumnLookup) -> list[Field]:
        test = step_time = step = cycle = amps = volts = state = dpt = temp = None
        amphr = watthr = None
        for c in cols.columns:
            key, unit = _norm(c)
            if (key == "testtime" or (key == "test" and unit is not None)) and test is None:
                test = (c, unit)
            elif (key == "steptime" or (key == "step" and unit is not None)) and step_time is None:
                step_time = (c, unit)
            elif key in ("step", "stepindex") and unit is None and step is None:
                step = c
            elif key in ("cyc", "cycle", "cycleindex", "cyclec") and cycle is None:
                cycle = c
            elif key in ("amps", "current") and amps is None:
                amps = (c, unit)
            elif key in ("volts", "voltage") and volts is None:
                volts = (c, unit)
            elif key in ("state", "md") and state is None:
                state = c
            elif key in ("dpttime", "dptime", "datetime") and dpt is None:
                dpt = c
            elif key.startswith("temp") and temp is None:
                temp = c
            elif key in ("amphr", "cap") and amphr is None:
                amphr = (c, unit)
            elif key in ("watthr", "ener") and watthr is None:
                watthr = (c, unit)
        for label, hit in (("Test (Min)", test), ("Amps", amps), ("Volts", volts), ("State", state)):
            if hit is None:
                raise SchemaError(
                    f"maccor file lacks the {label!r} column; columns seen: {shown_columns(cols.columns)}",
                    field=label, source=self.name,
                )
        assert test and amps and volts and state  # for type checkers
        fields = [
            # Without a unit TestTime is "Nd hh:mm:ss" text, or a number whose unit is found
            # from DPt Time in _calibrate (MIMS exports write minutes).
            Field("__test_time", test[0], kind="duration", scale=unit_scale(test[1], test[0]),
                  required=True, canonical="ts"),
            Field("__amps", amps[0], scale=unit_scale(amps[1], amps[0]), required=True,
                  canonical="current_a"),
            Field("voltage_v", volts[0], scale=unit_scale(volts[1], volts[0]), required=True),
            Field("__state", state, kind="str", required=True),
        ]
        if dpt:
            fields.append(Field("__epoch", dpt, kind="datetime", strict=False,
                                probe_only=True,
                                timezone=self.timezone))
        if step_time:
            fields.append(Field("step_time_s", step_time[0], kind="duration",
                                scale=unit_scale(step_time[1], step_time[0])))
        if step:
            fields.append(Field("step", step, kind="int"))
        if cycle:
            fields.append(Field("cycle", cycle, kind="int"))
        if temp:
            fields.append(Field("temperature_c", temp))
        if self.keep_reference:
            if amphr:
                fields.append(Field("capacity_ah", amphr[0], scale=unit_scale(amphr[1], amphr[0])))
            if watthr:
                fields.append(Field("energy_wh", watthr[0], scale=unit_scale(watthr[1], watthr[0])))
        self._state_source = state
        self._time_unit_known = test[1] is not None
        return fields

    #: With a known test time unit the origin is all the probe gives: the first row having
    #: DPt Time and Test Time, most often in the first rows (see ``_head_calibrates``).
    calibration_head_rows = 50

    def _head_calibrates(self, head: pl.DataFrame) -> bool:
        # An unknown unit is learnt from the span of the whole probe.
        if not self._time_unit_known and "__epoch" in head.columns:
            return False
        return self._origin_settled(head)

    def _calibrate(self, probe: pl.DataFrame) -> None:
        if not self._time_unit_known and "__epoch" in probe.columns:
            scale = _time_unit_from_clock(probe)
            if scale != 1.0:
                self.fields = [dataclasses.replace(f, scale=scale)
                               if f.out in ("__test_time", "step_time_s") else f
                               for f in self.fields]
                probe = probe.with_columns(pl.col("__test_time") * scale)
                self._attributes["test_time_unit_s"] = scale
        self._calibrate_origin(probe, "DPt Time - Test Time of the first row")
        self._attributes["timezone"] = self.timezone

    def _signed(self, amps: pl.Series, state: pl.Series) -> tuple[pl.Series, np.ndarray, int]:
        """(signed current_a, unknown-state mask, how many unknown) from ``__amps`` and
        ``__state``, in one compiled pass over the Arrow buffers (string expressions cost a
        pass per comparison)."""
        # The kernel reads an amps value only where it is valid: no fill or mask pass.
        amps_values, amps_valid = _masked_floats(amps)
        if amps_valid is None:
            amps_valid = _ones(amps.len())
        starts, ends, data, valid = string_spans(state)
        current = np.empty(amps.len(), dtype=np.float64)
        ok = np.empty(amps.len(), dtype=np.bool_)
        unknown = np.empty(amps.len(), dtype=np.bool_)
        n_unknown = _sign_by_state(starts, ends, data, valid, amps_values, amps_valid,
                                   current, ok, unknown)
        cur = pl.Series("current_a", current) if ok.all() else \
            pl.Series("current_a", pa.array(current, mask=~ok))
        return cur, unknown, int(n_unknown)

    def _finish(self, parsed: pl.DataFrame) -> pl.DataFrame:
        # Unknown states are rare, so their reasons are built only when there are some.
        cur, unknown, n_unknown = self._signed(parsed.get_column("__amps"),
                                               parsed.get_column("__state"))
        out = parsed.with_columns(
            (pl.col("__test_time") + self._origin).alias("ts"), cur,
        )
        if n_unknown:
            bad = pl.Series("__unknown", unknown)
            out = out.with_columns(
                pl.when(bad).then(pl.lit(self._state_source)).otherwise(None)
                .alias("__reject_field"),
                pl.when(bad).then(pl.concat_str([
                    pl.lit("unknown State '"), pl.col("__state"),
                    pl.lit("' with non-zero current: cannot tell charge from discharge"),
                ])).otherwise(None).alias("__reject_reason"),
            )
        return out.drop("__test_time", "__epoch", "__amps", "__state", strict=False)

    def _finish_fused(self, cols: dict[str, pl.Series]) -> dict[str, pl.Series] | None:
        cur, _, n_unknown = self._signed(cols["__amps"], cols["__state"])
        if n_unknown:
            return None  # rows to reject: _finish names them
        out = self._finish_origin(cols, "__test_time", ("__epoch", "__amps", "__state"))
        out["current_a"] = cur
        return out


@nb.njit(cache=True, nogil=True)
def _sign_by_state(starts: np.ndarray, ends: np.ndarray, data: np.ndarray, valid: np.ndarray,
                   amps: np.ndarray,
                   amps_valid: np.ndarray, current: np.ndarray, ok: np.ndarray,
                   unknown: np.ndarray) -> int:
    """Signed current (A, + = charge) from unsigned ``amps`` and the one-letter State
    (C/c charge, D/d discharge, R/r rest: as is). Another state (or a null one) gives 0 A
    with zero current, else null; ``unknown`` marks another (non-null) state with non-zero
    current. Returns how many rows are unknown."""
    n_unknown = 0
    for r in range(amps.size):
        a = amps[r]
        letter = 0
        if valid[r] and ends[r] - starts[r] == 1:
            letter = data[starts[r]]
            if 97 <= letter <= 122:
                letter -= 32
        unknown[r] = False
        if not amps_valid[r]:
            current[r] = np.nan
            ok[r] = False
            continue
        ok[r] = True
        if letter == 67:  # C
            current[r] = abs(a)
        elif letter == 68:  # D
            current[r] = -abs(a)
        elif letter == 82:  # R
            current[r] = a
        elif a == 0:
            current[r] = 0.0
        else:
            current[r] = np.nan
            ok[r] = False
            if valid[r]:
                unknown[r] = True
                n_unknown += 1
    return n_unknown
