"""The second telemetry kind: smart-meter power readings (daily energy per meter,
percentile thresholds, spike episodes). A thin declaration over the pure meter engine
(:mod:`chargetracker.meters`), like :mod:`.cell` over the cell engine.

Tables (written by the generic store machinery: DDL from the specs, upserts by key):

=====================  ==========================  ===========================================
table                  key                         rows
=====================  ==========================  ===========================================
``meter_readings``     (meter_id, ts)              accepted raw readings (insert_new)
``meter_days``         (meter_id, date)            one meter's local day, open or closed
``meter_alerts``       (meter_id, start_ts)        spike episodes as the engine sees them
``meter_thresholds``   (meter_id)                  p97 of "on" power (the batch layer)
``meter_meters``       (meter_id)                  metadata: house, appliance, zip, zone
``meter_alert_acks``   (meter_id, start_ts)        operators' acknowledgements of episodes
=====================  ==========================  ===========================================

Spike alerts follow the episode model (:mod:`chargetracker.episodes`): the engine's
compiled pass decides where a spike episode starts and ends (a reading above
threshold x (1 + margin) and the floor opens one, the first reading below it or a data
gap ends it); the ``spike`` rule reports those as observations -- a hit at the episode's
start and last spike reading, a clean verdict just after it ends -- with the reading ts
as position (:data:`METER_EPISODE_KEYS`), so the step raises one notification per
episode into the shared alert tables (``cell_id`` there names the meter, ``group`` its
house), rate-limited per rule, and the episode state is checkpointed with the commit:
a restart or a replay neither repeats nor loses one.

Meter metadata and thresholds reach the engine as the kind's *entities*
(``update(..., entities=frame)``): METER_SCHEMA rows register meters, a ``p97_w``
column installs thresholds (null: leave the meter's threshold as it is).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from ..config import Settings
from ..episodes import EpisodeKeys, EpisodePolicy
from ..meters import engine as meter_engine
from ..meters.config import MeterConfig
from ..meters.schema import (
    ALERT_SCHEMA as SPIKE_SCHEMA,
)
from ..meters.schema import (
    DAY_SCHEMA,
    METER_SCHEMA,
    READING_SCHEMA,
    THRESHOLD_SCHEMA,
    ReadingLimits,
    validate_meters,
    validate_readings,
)
from ..meters.state import MeterState
from ..schema import DEAD_LETTER_SCHEMA, Validated
from ..vocabulary import ALERT_SCHEMA
from .base import AlertContext, AlertRule, KindOutput, ReadQuery, TableSpec

__all__ = [
    "ACKS",
    "DAYS",
    "METERS",
    "METER_EPISODE_KEYS",
    "METER_TABLES",
    "MeterKind",
    "READINGS",
    "SPIKES",
    "SPIKE_RULE",
    "THRESHOLDS",
    "meter_kind",
    "to_cell_letters",
]

READINGS = TableSpec("meter_readings", READING_SCHEMA, ("meter_id", "ts"), "insert_new")
DAYS = TableSpec("meter_days", DAY_SCHEMA, ("meter_id", "date"))
SPIKES = TableSpec("meter_alerts", SPIKE_SCHEMA, ("meter_id", "start_ts"))
THRESHOLDS = TableSpec("meter_thresholds", THRESHOLD_SCHEMA, ("meter_id",))
METERS = TableSpec("meter_meters", METER_SCHEMA, ("meter_id",))
#: Acknowledgements live apart from the episodes: an episode's upsert (when it ends)
#: must not clear an operator's acknowledgement.
ACK_SCHEMA: dict[str, pl.DataType] = {"meter_id": pl.Utf8(), "start_ts": pl.Float64(),
                                      "acked_ts": pl.Float64()}
ACKS = TableSpec("meter_alert_acks", ACK_SCHEMA, ("meter_id", "start_ts"))
METER_TABLES: tuple[TableSpec, ...] = (DAYS, SPIKES, THRESHOLDS, METERS, ACKS)

#: Rule name of the spike alerts in the shared alert tables.
SPIKE_RULE = "meter_spike"
#: Episodes of meters: the shared alert rows' entity column (the meter id), the reading
#: ts as position.
METER_EPISODE_KEYS = EpisodeKeys(subject="cell_id", rule="rule", position="ts", ts="ts")

_JUDGED = {"cell_id": pl.Utf8(), "rule": pl.Utf8(), "cycle": pl.Int64(), "ts": pl.Float64()}


def to_cell_letters(letters: pl.DataFrame) -> pl.DataFrame:
    """Meter dead letters (``meter_id``) in the shared dead-letter layout (``cell_id``
    names the entity of any kind)."""
    if "cell_id" in letters.columns:
        return letters.select(list(DEAD_LETTER_SCHEMA))
    return letters.rename({"meter_id": "cell_id"}).select(list(DEAD_LETTER_SCHEMA))


def _spike_rows(events: pl.DataFrame, *, hits: bool) -> pl.DataFrame:
    """Engine spike events as observations: hits at an episode's start (its first
    reading's power) and at its last spike reading (its peak) (ALERT_SCHEMA), or -- ``hits=False`` -- the clean verdict just after a
    closed episode's last spike reading (the smallest float above it: later than it,
    and no later than the reading that ended it)."""
    if not hits:
        closed = events.filter(pl.col("status") == "closed")
        after = np.nextafter(closed.get_column("end_ts").to_numpy(), np.inf)
        return pl.DataFrame({"cell_id": closed.get_column("meter_id"),
                             "rule": [SPIKE_RULE] * closed.height,
                             "cycle": pl.Series([None] * closed.height, dtype=pl.Int64),
                             "ts": after}, schema=_JUDGED)
    # The start hit from the event the engine emits when an episode opens (its first
    # reading), whether or not it also ended in this batch: values never depend on batching.
    start = events.filter(pl.col("status") == "open").select(
        pl.col("start_ts").alias("ts"), "meter_id", "house_id", "peak_w", "threshold_w")
    last = events.filter((pl.col("status") == "closed") & (pl.col("end_ts") > pl.col("start_ts"))
                         ).select(pl.col("end_ts").alias("ts"), "meter_id", "house_id",
                                  "peak_w", "threshold_w")
    both = pl.concat([start, last])
    return both.select(
        "ts", pl.col("meter_id").alias("cell_id"), pl.col("house_id").alias("group"),
        pl.lit(SPIKE_RULE).alias("rule"), pl.lit("warning").alias("severity"),
        pl.col("peak_w").alias("value"), pl.col("threshold_w").alias("threshold"),
        pl.lit(None, pl.Int64).alias("cycle"),
        pl.format("spike: {} W, {}x the threshold of {} W", pl.col("peak_w").round(1),
                  (pl.col("peak_w") / pl.col("threshold_w")).round(2),
                  pl.col("threshold_w").round(1)).alias("message"),
    ).cast(ALERT_SCHEMA)  # type: ignore[arg-type]


def _spikes(tables: Mapping[str, pl.DataFrame], ctx: AlertContext) -> pl.DataFrame:
    """Without episodes: one alert per spike episode that opened in the batch."""
    events = tables.get(SPIKES.name)
    if events is None or events.height == 0:
        return pl.DataFrame(schema=ALERT_SCHEMA)
    return _spike_rows(events.filter(pl.col("status") == "open"), hits=True)


def _judge_spikes(tables: Mapping[str, pl.DataFrame],
                  ctx: AlertContext) -> tuple[pl.DataFrame, pl.DataFrame]:
    """For episodes: the engine's episode events as (clean verdicts, hits)."""
    events = tables.get(SPIKES.name)
    if events is None or events.height == 0:
        return pl.DataFrame(schema=_JUDGED), pl.DataFrame(schema=ALERT_SCHEMA)
    return _spike_rows(events, hits=False), _spike_rows(events, hits=True)


SPIKE = AlertRule("spike", _spikes, description="a reading above the meter's threshold x "
                  "(1 + spike_margin) and spike_floor_w opens a spike episode (MeterConfig)",
                  judge=_judge_spikes)


@dataclass(frozen=True)
class MeterKind:
    """Smart meters: power readings -> local days, spike episodes (docs/meters.md)."""

    config: MeterConfig = field(default_factory=MeterConfig)
    settings: Settings = field(default_factory=Settings)
    limits: ReadingLimits = field(default_factory=ReadingLimits)
    name: str = "meter"
    entity_key: str = "meter_id"
    measurement_schema: Mapping[str, pl.DataType] = field(default_factory=lambda: READING_SCHEMA)
    raw_table: TableSpec | None = READINGS
    tables: tuple[TableSpec, ...] = METER_TABLES
    alert_rules: tuple[AlertRule, ...] = (SPIKE,)
    episode_keys: EpisodeKeys = METER_EPISODE_KEYS
    queries: tuple[ReadQuery, ...] = (
        ReadQuery("days", DAYS.name, ("meter_id", "date", "status"), "daily energy per meter"),
        ReadQuery("spikes", SPIKES.name, ("meter_id", "house_id", "zip", "status"),
                  "spike episodes"),
        ReadQuery("thresholds", THRESHOLDS.name, ("meter_id",), "p97 thresholds"),
        ReadQuery("meters", METERS.name, ("meter_id", "house_id", "zip", "appliance"),
                  "meter metadata"),
        ReadQuery("readings", READINGS.name, ("meter_id",), "raw readings"),
    )

    def adjust_episode_policy(self, policy: EpisodePolicy) -> EpisodePolicy:
        """The engine ends a spike episode at its first reading below the limit: one
        clean verdict resolves it (the rate limit and notifications stay the user's)."""
        return replace(policy, resolve_after=1)

    def validate(self, frame: pl.DataFrame, *, source: str) -> Validated:
        if frame.height == 0:  # e.g. every row was the reader's dead letter
            return Validated(pl.DataFrame(schema=READING_SCHEMA),
                             pl.DataFrame(schema=DEAD_LETTER_SCHEMA))
        checked = validate_readings(frame, limits=self.limits, source=source)
        rows = None if checked.rejected.height == 0 else checked.rows
        return Validated(checked.good, to_cell_letters(checked.rejected), rows)

    def new_state(self) -> MeterState:
        return meter_engine.new_state(self.config)

    def update(self, state: MeterState, checked: Validated, *, source: str,
               entities: pl.DataFrame | None = None) -> tuple[MeterState, KindOutput]:
        tables: dict[str, pl.DataFrame] = {}
        if entities is not None and entities.height:
            tables = self.register(state, entities)
        good = checked.good
        rows = checked.rows if checked.rows is not None else np.arange(good.height, dtype=np.int64)
        state, out = meter_engine.update_validated(state, good, rows, source=source)
        return state, self._output(out, checked, tables)

    def flush(self, state: MeterState) -> tuple[MeterState, KindOutput]:
        state, out = meter_engine.flush(state)
        return state, self._output(out)

    def summarize(self, frame: pl.DataFrame, *, entities: pl.DataFrame | None = None,
                  thresholds: pl.DataFrame | None = None, source: str = "input") -> KindOutput:
        """The batch form (equals update + flush on any split of ``frame``)."""
        meters = None
        if entities is not None and entities.height:
            meters = entities.select([c for c in METER_SCHEMA if c in entities.columns])
        s = meter_engine.summarize(frame, self.config, meters=meters, thresholds=thresholds,
                                   source=source)
        return KindOutput({DAYS.name: s.days, SPIKES.name: s.alerts}, to_cell_letters(s.rejected),
                          frame.height - s.rejected.height)

    def state_to_bytes(self, state: MeterState) -> bytes:
        return state.to_bytes()

    def state_from_bytes(self, data: bytes) -> MeterState:
        return MeterState.from_bytes(data, self.config)

    # -- entities: metadata and thresholds ---------------------------------------------
    def register(self, state: MeterState, entities: pl.DataFrame) -> dict[str, pl.DataFrame]:
        """Meter metadata (rows with a house and an appliance) and thresholds (a non-null
        ``p97_w``) into ``state``; returns the rows to store by table. Raises
        :class:`~chargetracker.errors.ValidationError` naming row and field."""
        out: dict[str, pl.DataFrame] = {}
        if "house_id" in entities.columns and "appliance" in entities.columns:
            meta = entities.filter(pl.col("house_id").is_not_null()
                                   & pl.col("appliance").is_not_null())
            # Threshold columns are not user keys (validate_meters folds those into
            # attributes).
            meta = meta.drop([c for c in THRESHOLD_SCHEMA if c != "meter_id" and c in meta.columns])
            if meta.height:
                out[METERS.name] = meter_engine.register_meters(state, meta)
        if "p97_w" in entities.columns:
            thr = entities.filter(pl.col("p97_w").is_not_null())
            if thr.height:
                meter_engine.set_thresholds(state, thr.select("meter_id", "p97_w"))
        return out

    def metadata(self, meters: pl.DataFrame) -> pl.DataFrame:
        """Canonical meter metadata (validated; raises ValidationError)."""
        return validate_meters(meters, default_timezone=self.config.default_timezone)

    # -- internals -----------------------------------------------------------------------
    def _output(self, out: Any, checked: Validated | None = None,
                tables: dict[str, pl.DataFrame] | None = None) -> KindOutput:
        rows = out.accepted_rows
        if checked is not None and checked.rows is not None and len(rows):
            # Engine rows index the input batch; raw storage takes rows of the good frame.
            rows = np.searchsorted(checked.rows, rows)
        result = {DAYS.name: out.days, SPIKES.name: out.alerts, **(tables or {})}
        rejected = to_cell_letters(out.rejected)
        if checked is not None and checked.rejected.height:
            # The validation's dead letters first, then the engine's (duplicates, late).
            rejected = pl.concat([checked.rejected.select(list(DEAD_LETTER_SCHEMA))
                                  .cast(DEAD_LETTER_SCHEMA), rejected])  # type: ignore[arg-type]
        return KindOutput(result, rejected, out.accepted, rows)


def meter_kind(settings: Settings | None = None, config: MeterConfig | None = None) -> MeterKind:
    """The meter kind configured by ``settings`` (alert episodes, rate limit) and
    ``config`` (the meter engine)."""
    return MeterKind(config or MeterConfig(), settings or Settings())
