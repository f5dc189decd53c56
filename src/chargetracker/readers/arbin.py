"""Arbin CSV export reader.

Columns (names matched ignoring case, ``_``/spaces and a unit suffix, so ``Current``,
``Current(A)`` and ``Current (mA)`` all work): ``Test_Time`` (s), ``DateTime``/``Date_Time``
(epoch s or a date string), ``Step_Time`` (s), ``Step_Index``, ``Cycle_Index``, ``Current``
(A, + = charge, the canonical sign already), ``Voltage`` (V), ``Temperature``/``Aux_Temperature``
(degC) and the cumulative ``Charge_Capacity``/``Discharge_Capacity`` (Ah) and
``Charge_Energy``/``Discharge_Energy`` (Wh) reference columns.

``DateTime`` may also be an OLE automation date (days since 1899-12-30, local time), as in
the ``Channel_Normal_Table`` of an Arbin ``.res`` file: values between 10,000 and 100,000
(which as epoch seconds would be January 1970) are read as such.

``ts`` = epoch of test start + ``Test_Time``: the export's ``DateTime`` has only 1 s
resolution, ``Test_Time`` has sub-second resolution, so intervals are exact. The test start
is taken from the first row having both (or ``start_time``; else 0 and the file's time is
relative, noted in the metadata attributes).
"""

from __future__ import annotations

import polars as pl

from .fields import OLE_EPOCH_DAYS, ColumnLookup, Field, unit_scale
from .text import TextReader

__all__ = ["ArbinReader", "TableReader", "ole_to_epoch"]


def ole_to_epoch(days: pl.Expr, timezone: str = "UTC") -> pl.Expr:
    """OLE automation date (days since 1899-12-30, local time in ``timezone``) -> epoch s."""
    naive = (days - OLE_EPOCH_DAYS) * 86400.0
    if timezone == "UTC":
        return naive
    dt = (naive * 1e6).cast(pl.Int64).cast(pl.Datetime("us"))
    local = dt.dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
    return local.dt.epoch("us").cast(pl.Float64) / 1e6


class TableReader(TextReader):
    """A comma-separated export whose columns are found from key tables.

    Keys are normalized column names (lower case, no ``_``/spaces, no ``(unit)`` suffix);
    the unit suffix, when present, scales the value to A, V, s, Ah, Wh.
    """

    format = "arbin"
    test_time_keys: tuple[str, ...] = ("testtime",)
    datetime_keys: tuple[str, ...] = ("datetime",)
    step_time_keys: tuple[str, ...] = ("steptime",)
    step_keys: tuple[str, ...] = ("stepindex",)
    cycle_keys: tuple[str, ...] = ("cycleindex",)
    current_keys: tuple[str, ...] = ("current",)
    voltage_keys: tuple[str, ...] = ("voltage",)
    temperature_keys: tuple[str, ...] = ("temperature", "auxtemperature")
    temperature_prefix: bool = True
    reference_keys: dict[str, tuple[str, ...]] = {
        "charge_capacity_ah": ("chargecapacity",),
        "discharge_capacity_ah": ("dischargecapacity",),
        "charge_energy_wh": ("chargeenergy",),
        "discharge_energy_wh": ("dischargeenergy",),
    }
    labels: dict[str, str] = {"test_time": "Test_Time", "current": "Current", "voltage": "Voltage"}

    def _plan(self, cols: ColumnLookup) -> list[Field]:
        fields: list[Field] = []
        src, unit = self._require(cols, self.labels["test_time"], *self.test_time_keys)
        fields.append(Field("__test_time", src, scale=unit_scale(unit, src), required=True,
                            canonical="ts"))
        hit = cols.find(*self.datetime_keys)
        if hit:
            fields.append(Field("__epoch", hit[0], kind="datetime", strict=False,
                                probe_only=True,
                                timezone=self.timezone))
        src, unit = self._require(cols, self.labels["current"], *self.current_keys)
        fields.append(Field("current_a", src, scale=unit_scale(unit, src), required=True))
        src, unit = self._require(cols, self.labels["voltage"], *self.voltage_keys)
        fields.append(Field("voltage_v", src, scale=unit_scale(unit, src), required=True))
        hit = cols.find(*self.step_time_keys)
        if hit:
            fields.append(Field("step_time_s", hit[0], scale=unit_scale(hit[1], hit[0])))
        hit = cols.find(*self.step_keys)
        if hit:
            fields.append(Field("step", hit[0], kind="int"))
        hit = cols.find(*self.cycle_keys)
        if hit:
            fields.append(Field("cycle", hit[0], kind="int"))
        hit = cols.find(*self.temperature_keys, prefix=self.temperature_prefix)
        if hit:
            fields.append(Field("temperature_c", hit[0]))
        if self.keep_reference:
            for out, keys in self.reference_keys.items():
                hit = cols.find(*keys)
                if hit:
                    fields.append(Field(out, hit[0], scale=unit_scale(hit[1], hit[0])))
        return fields

    #: The origin is the first row having date/time and test time: most files have it in
    #: their first rows (see :meth:`TextReader._head_calibrates`).
    calibration_head_rows = 50

    def _epoch_probe(self, probe: pl.DataFrame) -> tuple[pl.DataFrame, str]:
        """``probe`` with an OLE date/time read as epoch s (decided by its first value)."""
        how = "date/time - test time of the first row"
        if "__epoch" in probe.columns:
            first = probe.get_column("__epoch").drop_nulls()
            if len(first) and 1e4 < float(first[0]) < 1e5:
                probe = probe.with_columns(ole_to_epoch(pl.col("__epoch"), self.timezone))
                how = "OLE date/time - test time of the first row"
        return probe, how

    def _calibrate(self, probe: pl.DataFrame) -> None:
        self._calibrate_origin(*self._epoch_probe(probe))

    def _head_calibrates(self, head: pl.DataFrame) -> bool:
        # A head with a non-null date/time has the probe's first one: the same OLE choice.
        return self._origin_settled(self._epoch_probe(head)[0])

    def _finish(self, parsed: pl.DataFrame) -> pl.DataFrame:
        return parsed.with_columns(
            (pl.col("__test_time") + self._origin).alias("ts")
        ).drop("__test_time", "__epoch", strict=False)

    def _finish_fused(self, cols: dict[str, pl.Series]) -> dict[str, pl.Series] | None:
        return self._finish_origin(cols, "__test_time", ("__epoch",))


class ArbinReader(TableReader):
    """Arbin CSV export (see module docstring)."""

    format = "arbin"
