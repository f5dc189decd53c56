"""Alert rules (pure): limit checks on cycles and outlier alerts from group deviations.

An alert is identified by (ts, cell_id, rule, cycle); ``ts`` is the start of the cycle
that raised it, so re-evaluating the same cycle (an open snapshot, then the closed
record, or a replay) yields the same identity and the store keeps one alert.
"""

from __future__ import annotations

import polars as pl

from ..config import AlertConfig
from ..vocabulary import ALERT_SCHEMA

__all__ = ["ALERT_SCHEMA", "JUDGED_SCHEMA", "empty_alerts", "empty_judged", "judged_limits",
           "limit_alerts", "limit_rules", "outlier_alerts"]

#: Positions a rule evaluated (hit or clean), for alert episodes: the entity, the alert
#: rule, the cycle and its start (s since epoch).
JUDGED_SCHEMA: dict[str, pl.DataType] = {
    "cell_id": pl.Utf8(), "rule": pl.Utf8(), "cycle": pl.Int64(), "ts": pl.Float64(),
}


def empty_alerts() -> pl.DataFrame:
    """An alert frame without rows (ALERT_SCHEMA)."""
    return pl.DataFrame(schema=ALERT_SCHEMA)


def empty_judged() -> pl.DataFrame:
    """A judged-positions frame without rows (JUDGED_SCHEMA)."""
    return pl.DataFrame(schema=JUDGED_SCHEMA)


def limit_rules(config: AlertConfig) -> list[str]:
    """Names of the limit rules ``config`` switches on."""
    return [name for name, on in (
        ("over_voltage", config.over_voltage_v is not None),
        ("under_voltage", config.under_voltage_v is not None),
        ("over_temperature", config.over_temperature_c is not None),
        ("low_coulombic_efficiency", config.min_coulombic_efficiency is not None)) if on]


def judged_limits(cycles: pl.DataFrame, config: AlertConfig) -> pl.DataFrame:
    """Every (cell, limit rule, cycle) whose verdict is final (JUDGED_SCHEMA).

    A cycle still running is not judged clean (its extremes may still cross a limit):
    voltage and temperature are judged on closed and partial cycles, coulombic
    efficiency on closed cycles with charge (where :func:`limit_alerts` applies it).
    """
    rules = limit_rules(config)
    if cycles.height == 0 or not rules:
        return empty_judged()
    final = pl.col("status").is_in(["closed", "partial"])
    ce_ok = (pl.col("status") == "closed") & (pl.col("charge_ah") > 0)
    parts = []
    for rule in rules:
        cond = ce_ok if rule == "low_coulombic_efficiency" else final
        parts.append(cycles.filter(cond.fill_null(False)).select(
            "cell_id", pl.lit(rule).alias("rule"), "cycle", pl.col("start_ts").alias("ts")))
    return pl.concat(parts).cast(JUDGED_SCHEMA)  # type: ignore[arg-type]


def limit_alerts(cycles: pl.DataFrame, config: AlertConfig) -> pl.DataFrame:
    """Alerts for cycles whose extremes cross the configured limits.

    Voltage and temperature limits apply to open and closed cycles (raised as soon as
    crossed); low coulombic efficiency only to closed cycles (a half-finished cycle's
    efficiency means nothing).
    """
    if cycles.height == 0:
        return empty_alerts()
    rules: list[tuple[str, str, pl.Expr, pl.Expr, float, str, str]] = []
    if config.over_voltage_v is not None:
        rules.append(("over_voltage", "critical", pl.col("max_v") > config.over_voltage_v,
                      pl.col("max_v"), config.over_voltage_v, "max voltage {v:.3f} V above {t:g} V", ""))
    if config.under_voltage_v is not None:
        rules.append(("under_voltage", "critical", pl.col("min_v") < config.under_voltage_v,
                      pl.col("min_v"), config.under_voltage_v, "min voltage {v:.3f} V below {t:g} V", ""))
    if config.over_temperature_c is not None:
        rules.append(("over_temperature", "critical",
                      pl.col("max_temperature_c") > config.over_temperature_c,
                      pl.col("max_temperature_c"), config.over_temperature_c,
                      "max temperature {v:.1f} degC above {t:g} degC", ""))
    if config.min_coulombic_efficiency is not None:
        rules.append(("low_coulombic_efficiency", "warning",
                      (pl.col("status") == "closed") & (pl.col("charge_ah") > 0)
                      & (pl.col("coulombic_efficiency") < config.min_coulombic_efficiency),
                      pl.col("coulombic_efficiency"), config.min_coulombic_efficiency,
                      "coulombic efficiency {v:.4f} below {t:g}", ""))
    parts = []
    for rule, severity, cond, value, threshold, template, _ in rules:
        hit = cycles.filter(cond.fill_null(False))
        if hit.height == 0:
            continue
        vals = hit.select(value.alias("v")).get_column("v")
        parts.append(pl.DataFrame({
            "ts": hit.get_column("start_ts"),
            "cell_id": hit.get_column("cell_id"),
            "group": hit.get_column("group") if "group" in hit.columns else [None] * hit.height,
            "rule": [rule] * hit.height,
            "severity": [severity] * hit.height,
            "value": vals,
            "threshold": [float(threshold)] * hit.height,
            "cycle": hit.get_column("cycle"),
            "message": [template.format(v=v, t=threshold) + f" in cycle {c}"
                        for v, c in zip(vals.to_list(), hit.get_column("cycle").to_list(), strict=True)],
        }, schema=ALERT_SCHEMA))
    return pl.concat(parts) if parts else empty_alerts()


def outlier_alerts(deviations: pl.DataFrame, *, metric: str, start_ts: pl.DataFrame) -> pl.DataFrame:
    """One alert per flagged (cell, cycle) of a :func:`~chargetracker.engine.stats.deviations` frame.

    ``start_ts`` maps (cell_id, cycle) to the cycle start, the alert's ts.
    """
    flagged = deviations.filter(pl.col("outlier"))
    if flagged.height == 0:
        return empty_alerts()
    flagged = flagged.join(start_ts.select("cell_id", "cycle", "start_ts"), on=["cell_id", "cycle"], how="left")
    msgs = [
        f"{metric} {v:.4g} deviates {d:+.1f} % from the group mean (robust z {rz:+.1f}) in cycle {c}"
        for v, d, rz, c in zip(flagged.get_column("value").to_list(),
                               flagged.get_column("pct_deviation").fill_null(0.0).to_list(),
                               flagged.get_column("robust_z").to_list(),
                               flagged.get_column("cycle").to_list(), strict=True)
    ]
    return pl.DataFrame({
        "ts": flagged.get_column("start_ts"),
        "cell_id": flagged.get_column("cell_id"),
        "group": flagged.get_column("group"),
        "rule": [f"outlier_{metric}"] * flagged.height,
        "severity": ["warning"] * flagged.height,
        "value": flagged.get_column("value"),
        "threshold": flagged.get_column("median"),
        "cycle": flagged.get_column("cycle"),
        "message": msgs,
    }, schema=ALERT_SCHEMA)
