"""Battery Archive (batteryarchive.org) time-series CSV reader.

Columns: ``Date_Time`` (local date string; read in ``timezone``, default UTC),
``Test_Time (s)``, ``Cycle_Index`` (written as a float, ``1.0``), ``Current (A)`` (+ = charge),
``Voltage (V)``, ``Cell_Temperature (C)`` (``Environment_Temperature (C)`` when there is no
cell temperature) and the cumulative reference columns ``Charge_Capacity (Ah)``,
``Discharge_Capacity (Ah)``, ``Charge_Energy (Wh)``, ``Discharge_Energy (Wh)``. There are no
step labels. ``ts`` = test start (``Date_Time`` - ``Test_Time`` of the first row) +
``Test_Time``.
"""

from __future__ import annotations

import re
from typing import Any

from .arbin import TableReader

__all__ = ["BatteryArchiveReader", "parse_cell_name"]

_CHEMISTRIES = ("LCO", "LFP", "NMC", "NCA", "LMO", "LTO", "NCM")


def parse_cell_name(stem: str) -> tuple[str, dict[str, Any]]:
    """Battery Archive file stem -> (cell id, metadata guessed from the name).

    ``CALCE_CX2-33_prism_LCO_25C_0-100_0.5-0.5C_d_timeseries`` -> cell id without the
    ``_timeseries`` suffix (so it matches the ``_cycle_data`` file), chemistry ``LCO``,
    form factor ``prism``, temperature ``25C``, SOC window ``0-100``, C-rates ``0.5-0.5C``.
    """
    cell = re.sub(r"_timeseries$", "", stem)
    parts = cell.split("_")
    meta: dict[str, Any] = {}
    for p in parts[1:]:
        if p.upper() in _CHEMISTRIES and "chemistry" not in meta:
            meta["chemistry"] = p.upper()
        elif p.lower() in ("prism", "pouch", "18650", "21700", "cyl", "coin"):
            meta["form_factor"] = p.lower()
        elif re.fullmatch(r"-?\d+(\.\d+)?C", p) and "temperature" not in meta:
            meta["temperature"] = p
        elif re.fullmatch(r"\d+-\d+", p):
            meta["soc_window"] = p
        elif re.fullmatch(r"[\d.]+-[\d.]+C", p):
            meta["c_rates"] = p
    return cell, meta


class BatteryArchiveReader(TableReader):
    """Battery Archive ``*_timeseries.csv`` (see module docstring)."""

    format = "battery_archive"
    step_time_keys = ()
    step_keys = ()
    temperature_keys = ("celltemperature", "environmenttemperature", "temperature")
    temperature_prefix = False

    def __init__(self, path: Any, **kw: Any) -> None:
        from pathlib import Path

        cell, guessed = parse_cell_name(Path(path).stem)
        if kw.get("cell_id") is None:
            kw["cell_id"] = cell
        super().__init__(path, **kw)
        if "chemistry" in guessed:
            self._meta["chemistry"] = guessed.pop("chemistry")
        self._attributes.update({f"name_{k}": v for k, v in guessed.items()})
