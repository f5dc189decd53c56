"""Novonix HPC CSV export reader.

Layout: ``[Summary]`` ... ``[End Summary]``, ``[Protocol]`` ... ``[End Protocol]``, then
``[Data]`` and the comma-separated column header and records (some copies quote each whole
line: handled). Columns: ``Date and Time`` (``YYYY-MM-DD hh:mm:ss AM``, local),
``Cycle Number``, ``Step Type`` (code), ``Step Number``, ``Run Time (h)`` (test time),
``Step Time (h)``, ``Current (A)`` (signed, + = charge), ``Potential (V)``,
``Temperature (°C)`` and the per-step unsigned counters ``Capacity (Ah)`` and
``Energy (Wh)`` (reference ``capacity_ah``/``energy_wh``). ``Capacity (Ah):`` in the summary
is the nominal capacity.
"""

from __future__ import annotations

import re
from typing import BinaryIO

from ..errors import SchemaError
from .arbin import TableReader
from .text import _decode, _split_header

__all__ = ["NovonixReader"]

_MAX_HEADER = 2000


class NovonixReader(TableReader):
    """Novonix CSV export (see module docstring)."""

    format = "novonix"
    test_time_keys = ("runtime",)
    datetime_keys = ("dateandtime",)
    step_time_keys = ("steptime",)
    step_keys = ("stepnumber",)
    cycle_keys = ("cyclenumber",)
    voltage_keys = ("potential", "voltage")
    temperature_keys = ("temperature",)
    temperature_prefix = False
    reference_keys = {"capacity_ah": ("capacity",), "energy_wh": ("energy",)}
    labels = {"test_time": "Run Time (h)", "current": "Current (A)", "voltage": "Potential (V)"}
    _quoted = False

    def _read_header(self, fh: BinaryIO) -> tuple[list[str], int, int]:
        offset = 0
        summary: list[str] = []
        in_data = False
        for n in range(_MAX_HEADER):
            line = fh.readline()
            if not line:
                break
            offset += len(line)
            text = _decode(line).strip()
            if in_data:
                if text.startswith('"') and text.endswith('"') and text.count('"') == 2:
                    self._quoted = True
                    text = text[1:-1]
                self._summary(summary)
                return _split_header(text, ","), n + 1, offset
            if text.strip('"') == "[Data]":
                in_data = True
            elif len(summary) < 40:
                summary.append(text)
        raise SchemaError("no [Data] section with a column header", source=self.name)

    def _summary(self, lines: list[str]) -> None:
        for ln in lines:
            m = re.match(r"Capacity \(Ah\):\s*([0-9.]+)", ln)
            if m and float(m.group(1)) > 0:
                self._meta["nominal_capacity_ah"] = float(m.group(1))
            m = re.match(r"Channel:\s*(\S+)", ln)
            if m:
                self._attributes["channel"] = m.group(1)

    def _transform_block(self, block: bytes) -> bytes:
        # A copy that quotes each whole line: the values themselves hold no quotes.
        return block.replace(b'"', b"") if self._quoted else block

