"""Names every layer shares: the alert layout and the cycle metrics a trend may show.

One definition each, imported by the engine's alert rules, the stores, the query layer,
the API models and the dashboard (it sits beside :mod:`chargetracker.schema`: it imports
nothing but Polars and the error tree, so the pure engine may use it).
"""

from __future__ import annotations

import polars as pl

from .errors import ValidationError

__all__ = ["ALERT_KEY", "ALERT_SCHEMA", "TREND_METRICS", "check_metric"]

#: Columns of an alert frame (the store adds ``id`` and the acknowledgement columns).
#: ``ts`` (s since epoch, of the data that raised it) and ``rule`` are required; a missing
#: ``severity`` is stored as ``"warning"``. Values are in the metric's own unit.
ALERT_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Float64(),
    "cell_id": pl.Utf8(),          # the entity (cell, vehicle, meter); null for group alerts
    "group": pl.Utf8(),
    "rule": pl.Utf8(),             # e.g. over_temperature, low_coulombic_efficiency, outlier_*
    "severity": pl.Utf8(),         # info | warning | critical
    "value": pl.Float64(),         # the offending value, in the metric's unit
    "threshold": pl.Float64(),
    "cycle": pl.Int64(),
    "message": pl.Utf8(),
}

#: An alert's identity: committing it again (a replay, an open cycle closing) does not
#: duplicate it.
ALERT_KEY: tuple[str, ...] = ("ts", "cell_id", "rule", "cycle")

#: Cycle metrics the group trend, deep dive and cell trend accept (CYCLE_SCHEMA columns).
TREND_METRICS: tuple[str, ...] = (
    "discharge_ah", "charge_ah", "discharge_wh", "charge_wh", "coulombic_efficiency",
    "energy_efficiency", "retention", "mean_charge_v", "mean_discharge_v",
    "internal_resistance_ohm", "duration_s", "max_temperature_c", "mean_temperature_c",
)


def check_metric(metric: str) -> str:
    """``metric`` when it is one of :data:`TREND_METRICS`, else a ValidationError naming it.

    The one allow-list check: column names reach SQL text only through it.
    """
    if metric not in TREND_METRICS:
        raise ValidationError(f"unknown metric {metric!r}; one of {list(TREND_METRICS)}",
                              field="metric")
    return metric
