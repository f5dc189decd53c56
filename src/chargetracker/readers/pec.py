"""PEC (SBT series) CSV export reader.

Layout: a preamble of ``Key:,value`` lines (``Test:``, ``TestRegime Name:``, ``Start Time:``
...) and a ``#RESULTS CHECK`` block, then the column header (the line holding ``Total Time
(Seconds)``), then comma-separated records. Columns: ``Total Time (Seconds)`` (test time),
``Step Time (Seconds)``, ``Step``, ``Cycle``, ``Real Time`` (``MM/DD/YYYY HH:MM:SS`` local),
``Voltage (mV)``, ``Current (mA)`` (signed, + = charge), ``Charge/Discharge Capacity (mAh)``
and, despite the name, ``Charge/Discharge Capacity (mWh)`` (the energy counters), reset each
cycle; ``Cell surface temperature (°C)`` (else ``Ambient temperature``). Units follow the
column suffixes (mV, mA, mAh, mWh -> V, A, Ah, Wh).
"""

from __future__ import annotations

from typing import BinaryIO

from ..errors import SchemaError
from .arbin import TableReader
from .fields import ColumnLookup, Field, unit_scale
from .text import _decode, _split_header

__all__ = ["PecReader"]

_MAX_PREAMBLE = 200


class PecReader(TableReader):
    """PEC CSV export (see module docstring)."""

    format = "pec"
    test_time_keys = ("totaltime",)
    datetime_keys = ("realtime",)
    step_time_keys = ("steptime",)
    step_keys = ("step",)
    cycle_keys = ("cycle",)
    temperature_keys = ("cellsurfacetemperature", "celltemperature", "ambienttemperature")
    temperature_prefix = False
    reference_keys = {}
    labels = {"test_time": "Total Time (Seconds)", "current": "Current (mA)",
              "voltage": "Voltage (mV)"}

    def _read_header(self, fh: BinaryIO) -> tuple[list[str], int, int]:
        offset = 0
        preamble: dict[str, str] = {}
        for n in range(_MAX_PREAMBLE):
            line = fh.readline()
            if not line:
                break
            offset += len(line)
            text = _decode(line)
            if "Total Time" in text and "Current" in text:
                self._attributes.update({f"pec_{k}": v for k, v in preamble.items()
                                         if k in ("test", "testregime_name", "start_time")})
                return _split_header(text, ","), n + 1, offset
            if ":," in text:
                k, v = text.split(":,", 1)
                preamble[k.strip().lower().replace(" ", "_")] = v.strip().rstrip(",")
        raise SchemaError(f"no PEC column header (with 'Total Time' and 'Current') in the first "
                          f"{_MAX_PREAMBLE} lines", source=self.name)

    def _plan(self, cols: ColumnLookup) -> list[Field]:
        fields = super()._plan(cols)
        if self.keep_reference:
            # Capacity and energy share a name, told apart by the unit only.
            for c in cols.columns:
                name = c.strip().lower()
                for which in ("charge", "discharge"):
                    if name.startswith(f"{which} capacity ("):
                        unit = name[name.index("(") + 1: name.rindex(")")]
                        kind = "energy_wh" if unit.endswith("wh") else "capacity_ah"
                        fields.append(Field(f"{which}_{kind}", c, scale=unit_scale(unit, c)))
        return fields

