"""Small hand-made frames in the canonical layouts for the dashboard unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import polars as pl

from chargetracker.schema import CELL_SCHEMA, CYCLE_SCHEMA


def cells_frame(groups: dict[str, str], **extra: str) -> pl.DataFrame:
    """CELL_SCHEMA rows: cell id -> group (NMC, 2.5 Ah)."""
    ids = list(groups)
    return pl.DataFrame({
        "cell_id": ids, "group": [groups[c] for c in ids], "chemistry": ["NMC"] * len(ids),
        "test_type": ["standard"] * len(ids), "nominal_capacity_ah": [2.5] * len(ids),
        "v_min": [2.75] * len(ids), "v_max": [4.2] * len(ids),
        "attributes": [extra.get(c, '{"rack": "A"}') for c in ids],
    }, schema=CELL_SCHEMA)


def cycles_frame(rows: Iterable[tuple[str, int, float]], *, status: str | Callable[[str, int], str] = "closed",
                 start: float = 1.7e9) -> pl.DataFrame:
    """CYCLE_SCHEMA rows from (cell_id, cycle, discharge_ah); the other metrics derived."""
    data: dict[str, list[object]] = {k: [] for k in CYCLE_SCHEMA}
    for cell, cycle, dis in rows:
        st = status(cell, cycle) if callable(status) else status
        vals = {
            "cell_id": cell, "cycle": cycle, "status": st, "start_ts": start + cycle * 7200.0,
            "end_ts": start + cycle * 7200.0 + 7000.0, "duration_s": 7000.0, "n_samples": 700,
            "n_steps": 4, "charge_ah": dis / 0.998, "discharge_ah": dis, "charge_wh": dis * 3.8,
            "discharge_wh": dis * 3.6, "coulombic_efficiency": 0.998, "energy_efficiency": 3.6 / 3.8 * 0.998,
            "mean_charge_v": 3.8, "mean_discharge_v": 3.6, "min_v": 2.8, "max_v": 4.2, "mean_v": 3.7,
            "min_current_a": -2.5, "max_current_a": 2.5, "mean_current_a": 0.0,
            "min_temperature_c": 25.0, "max_temperature_c": 30.0, "mean_temperature_c": 27.0,
            "retention": dis / 2.5, "internal_resistance_ohm": 0.03, "throughput_ah": 5.0 * cycle,
            "equivalent_full_cycles": float(cycle), "gap_count": 0, "gap_excluded_s": 0.0,
            "gap_missing_ah": 0.0,
        }
        for k in CYCLE_SCHEMA:
            data[k].append(vals[k])
    return pl.DataFrame(data, schema=CYCLE_SCHEMA)


def trend_frame(rows: Iterable[tuple[str | None, int, int, float, float | None]]) -> pl.DataFrame:
    """Queries.group_trend layout from (group, cycle, n, mean, std)."""
    out = []
    for g, cyc, n, mean, std in rows:
        out.append({"group": g, "cycle": cyc, "n": n, "mean": mean, "std": std, "median": mean, "mad": 0.0,
                    "min": mean, "max": mean,
                    "std_pct": None if std is None else 100.0 * std / abs(mean)})
    return pl.DataFrame(out, schema={"group": pl.Utf8, "cycle": pl.Int64, "n": pl.Int64, "mean": pl.Float64,
                                     "std": pl.Float64, "median": pl.Float64, "mad": pl.Float64,
                                     "min": pl.Float64, "max": pl.Float64, "std_pct": pl.Float64})
