"""A tiny telemetry kind, written only against the kind protocol (no runtime/ or kafka/
code): power meters whose readings integrate to energy per meter and UTC day, with a
spike alert. It shows what a new kind provides (docs/architecture.md)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from chargetracker.frames import conform_frame
from chargetracker.kinds import AlertContext, AlertRule, KindOutput, ReadQuery, TableSpec
from chargetracker.schema import DEAD_LETTER_SCHEMA, Validated
from chargetracker.vocabulary import ALERT_SCHEMA

READING = {"meter_id": pl.Utf8(), "ts": pl.Float64(), "power_w": pl.Float64()}
DAILY = {"meter_id": pl.Utf8(), "day": pl.Int64(), "energy_wh": pl.Float64(),
         "n_intervals": pl.Int64()}
SPIKE_W = 1000.0


def _spikes(tables: Mapping[str, pl.DataFrame], ctx: AlertContext) -> pl.DataFrame:
    raw = tables.get("toy_readings")
    if raw is None:
        return pl.DataFrame(schema=ALERT_SCHEMA)
    hit = raw.filter(pl.col("power_w") > SPIKE_W)
    return pl.DataFrame({
        "ts": hit["ts"], "cell_id": hit["meter_id"], "group": [None] * hit.height,
        "rule": ["toy_spike"] * hit.height, "severity": ["warning"] * hit.height,
        "value": hit["power_w"], "threshold": [SPIKE_W] * hit.height, "cycle": [None] * hit.height,
        "message": [f"power {p:g} W above {SPIKE_W:g} W" for p in hit["power_w"].to_list()],
    }, schema=ALERT_SCHEMA)


@dataclass
class ToyState:
    last: dict[str, tuple[float, float]] = field(default_factory=dict)   # meter -> (ts, W)
    daily: dict[str, list[float]] = field(default_factory=dict)          # "meter|day" -> [Wh, n]


@dataclass(frozen=True)
class ToyKind:
    name: str = "toy"
    entity_key: str = "meter_id"
    measurement_schema: Mapping[str, pl.DataType] = field(default_factory=lambda: READING)
    raw_table: TableSpec | None = TableSpec("toy_readings", READING, ("meter_id", "ts"), "insert_new")
    tables: tuple[TableSpec, ...] = (TableSpec("toy_daily", DAILY, ("meter_id", "day")),)
    alert_rules: tuple[AlertRule, ...] = (AlertRule("spike", _spikes),)
    queries: tuple[ReadQuery, ...] = (ReadQuery("daily", "toy_daily", ("meter_id", "day")),
                                      ReadQuery("readings", "toy_readings", ("meter_id",)))

    def validate(self, frame: pl.DataFrame, *, source: str) -> Validated:
        df = conform_frame(frame, READING, table="toy", required=tuple(READING))
        ok = (pl.col("meter_id").is_not_null() & pl.col("ts").is_finite()
              & pl.col("power_w").is_finite() & (pl.col("power_w") >= 0)).fill_null(False)
        mask = df.select(ok).to_series()
        bad = df.with_row_index("row").filter(~mask)
        rejected = pl.DataFrame({
            "source": [source] * bad.height, "row": bad["row"].cast(pl.Int64),
            "cell_id": bad["meter_id"], "ts": bad["ts"], "field": ["power_w"] * bad.height,
            "reason": ["missing, non-finite or negative value"] * bad.height,
            "payload": [json.dumps(r) for r in bad.drop("row").to_dicts()],
        }, schema=DEAD_LETTER_SCHEMA)
        rows = np.flatnonzero(mask.to_numpy())
        return Validated(df.filter(mask), rejected, None if bad.height == 0 else rows)

    def new_state(self) -> ToyState:
        return ToyState()

    def update(self, state: ToyState, checked: Validated, *, source: str,
               entities: pl.DataFrame | None = None) -> tuple[ToyState, KindOutput]:
        good = checked.good.sort(["meter_id", "ts"], maintain_order=True)
        touched: set[str] = set()
        for meter, ts, p in good.iter_rows():  # a toy: the real engines are vectorized
            prev = state.last.get(meter)
            if prev is not None and ts > prev[0]:
                key = f"{meter}|{int(prev[0] // 86400)}"
                acc = state.daily.setdefault(key, [0.0, 0])
                acc[0] += (prev[1] + p) / 2.0 * (ts - prev[0]) / 3600.0
                acc[1] += 1
                touched.add(key)
            if prev is None or ts > prev[0]:
                state.last[meter] = (ts, p)
        return state, KindOutput({"toy_daily": self._rows(state, touched)}, checked.rejected,
                                 good.height, np.arange(checked.good.height))

    def _rows(self, state: ToyState, keys: set[str]) -> pl.DataFrame:
        rows = [{"meter_id": k.split("|")[0], "day": int(k.split("|")[1]),
                 "energy_wh": state.daily[k][0], "n_intervals": int(state.daily[k][1])}
                for k in sorted(keys)]
        return pl.DataFrame(rows, schema=DAILY)

    def flush(self, state: ToyState) -> tuple[ToyState, KindOutput]:
        return state, KindOutput({})

    def summarize(self, frame: pl.DataFrame) -> KindOutput:
        state, out = self.update(ToyState(), self.validate(frame, source="batch"), source="batch")
        return KindOutput({"toy_daily": self._rows(state, set(state.daily))}, out.rejected,
                          out.accepted)

    def state_to_bytes(self, state: ToyState) -> bytes:
        return json.dumps({"last": state.last, "daily": state.daily}).encode()

    def state_from_bytes(self, data: bytes) -> ToyState:
        raw: dict[str, Any] = json.loads(data)
        return ToyState({k: (float(v[0]), float(v[1])) for k, v in raw["last"].items()},
                        raw["daily"])
