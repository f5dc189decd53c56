"""batterydata.energy.gov raw time-series CSV reader.

Columns: ``Cycle_Index``, ``Step``, ``Time_s`` (s since the test start), ``Current_A``
(+ = charge), ``Voltage_V``, ``Cell_Temperature_C``; optionally ``Date_Time`` (gives the test
start; read in ``timezone``; else ``start_time`` or 0) and the cumulative reference columns
``Charge_Capacity_Ah``, ``Discharge_Capacity_Ah``, ``Charge_Energy_Wh``, ``Discharge_Energy_Wh``.
The unit is the name's suffix, so there is no unit conversion.
"""

from __future__ import annotations

from .arbin import TableReader

__all__ = ["BatteryDataReader"]


class BatteryDataReader(TableReader):
    """batterydata.energy.gov raw CSV (see module docstring)."""

    format = "batterydata"
    test_time_keys = ("times", "testtimes", "testtime")
    datetime_keys = ("datetime",)
    step_time_keys = ("steptimes", "steptime")
    step_keys = ("step", "stepindex")
    cycle_keys = ("cycleindex", "cycle")
    current_keys = ("currenta", "current")
    voltage_keys = ("voltagev", "voltage")
    temperature_keys = ("celltemperaturec", "celltemperature", "temperaturec", "temperature")
    temperature_prefix = False
    reference_keys = {
        "charge_capacity_ah": ("chargecapacityah", "chargecapacity"),
        "discharge_capacity_ah": ("dischargecapacityah", "dischargecapacity"),
        "charge_energy_wh": ("chargeenergywh", "chargeenergy"),
        "discharge_energy_wh": ("dischargeenergywh", "dischargeenergy"),
    }
    labels = {"test_time": "Time_s", "current": "Current_A", "voltage": "Voltage_V"}
