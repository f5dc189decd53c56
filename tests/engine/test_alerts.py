"""Alert rules (engine/alerts.py): limit hits and the positions each limit rule judges for
alert episodes (a running cycle is never judged clean)."""

from __future__ import annotations

import polars as pl

from chargetracker.config import AlertConfig
from chargetracker.engine.alerts import JUDGED_SCHEMA, judged_limits, limit_alerts, limit_rules
from chargetracker.schema import CYCLE_SCHEMA


def _cycles(*rows: dict) -> pl.DataFrame:
    return pl.DataFrame([{k: r.get(k) for k in CYCLE_SCHEMA} for r in rows], schema=CYCLE_SCHEMA)


CYC = _cycles(
    {"cell_id": "c", "cycle": 1, "status": "closed", "start_ts": 10.0, "max_temperature_c": 70.0,
     "charge_ah": 1.0, "coulombic_efficiency": 0.99, "max_v": 4.1, "min_v": 3.0},
    {"cell_id": "c", "cycle": 2, "status": "partial", "start_ts": 20.0, "max_temperature_c": 30.0,
     "charge_ah": 0.0, "coulombic_efficiency": None, "max_v": 4.1, "min_v": 3.0},
    {"cell_id": "c", "cycle": 3, "status": "open", "start_ts": 30.0, "max_temperature_c": 65.0,
     "charge_ah": 1.0, "coulombic_efficiency": 0.5, "max_v": 4.3, "min_v": 3.0},
)


def test_limit_rules_follow_the_config() -> None:
    assert limit_rules(AlertConfig()) == ["over_temperature", "low_coulombic_efficiency"]
    assert limit_rules(AlertConfig(over_voltage_v=4.2, over_temperature_c=None,
                                   min_coulombic_efficiency=None)) == ["over_voltage"]


def test_judged_positions_are_final_cycles_only() -> None:
    cfg = AlertConfig(over_voltage_v=4.2)
    judged = judged_limits(CYC, cfg)
    assert judged.schema == JUDGED_SCHEMA
    got = sorted(judged.select("rule", "cycle").rows())
    # Voltage and temperature: closed and partial cycles; CE: closed cycles with charge.
    assert got == [("low_coulombic_efficiency", 1), ("over_temperature", 1), ("over_temperature", 2),
                   ("over_voltage", 1), ("over_voltage", 2)]
    assert judged.filter(pl.col("cycle") == 2)["ts"].unique().to_list() == [20.0]
    # The open cycle 3 is not judged clean, yet its hits count at once.
    hits = limit_alerts(CYC, cfg)
    assert sorted(hits.select("rule", "cycle").rows()) == [
        ("over_temperature", 1), ("over_temperature", 3), ("over_voltage", 3)]
    assert judged_limits(CYC.clear(), cfg).height == 0
    assert judged_limits(CYC, AlertConfig(over_temperature_c=None, min_coulombic_efficiency=None)).height == 0
