"""The pack kind: daily BMS pack records per vehicle -> consistency-alarm predictions.

A plug-in of the one core (:mod:`chargetracker.kinds.base`): the step validates daily
records (:func:`chargetracker.ml.records.validate_records`: errors name VIN, date and
field), the kind stores them (``pack_records``, upsert by (vin, date)) and emits a
prediction for every VIN-day that now has its 14 earlier calendar days
(``alarm_predictions``, upsert by (vin, date, model_version)), including the day after
a VIN's last record (the forecast from "tomorrow"). Its alert rule turns predicted
alarms into alert episodes (:mod:`chargetracker.episodes`): the VIN is the subject, the
prediction day (days since 1970-01-01) the position, so five consecutive alarm days are
one episode and one alert, and a replay adds none.

State, per VIN: the records of the trailing :data:`KEEP_DAYS` calendar days before the
day after its last record (windows need 14; the rest absorbs records arriving up to 14
days late), its first day, and a running summary of the cell-voltage spread over the
days that left the trailing window (the ``history_*`` features read it, see
:class:`~chargetracker.ml.windows.Panel`). A stream in daily batches therefore gives the
same predictions as :meth:`~chargetracker.ml.predict.Predictor.predict_records` on all
records at once. A record older than the trailing window is stored but predicts
nothing (its windows were scored long ago from the days then known).

Pure (Polars, NumPy, the ml package): the model is handed in by the composition root.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from ..errors import SchemaError
from ..ml.predict import PREDICTION_SCHEMA, Predictor
from ..ml.records import PACK_SCHEMA, SIGNALS, validate_records
from ..ml.windows import CONTEXT_DAYS, build_panel, build_windows
from ..schema import DEAD_LETTER_SCHEMA, Validated
from ..vocabulary import ALERT_SCHEMA
from .base import AlertContext, AlertRule, KindOutput, ReadQuery, TableSpec

__all__ = ["ALARM_PREDICTIONS", "ALARM_RULE", "KEEP_DAYS", "PACK_FEED_CELLS", "PACK_RECORDS", "PackKind",
           "PackState", "SOURCES"]

#: Days of records kept per VIN before the day after its last record (>= 14).
KEEP_DAYS = 2 * CONTEXT_DAYS
#: Where records and predictions came from (the ``source`` column).
SOURCES = ("batch", "http", "stream")
#: The alert rule's name (an alert row's ``rule``).
ALARM_RULE = "predicted_consistency_alarm"
#: Spread above which a day counts as high in the ``history_*`` features, V.
_HIGH_SPREAD_V = 0.05
_DAY_S = 86_400.0

PACK_RECORDS = TableSpec(
    "pack_records",
    {"vin": pl.Utf8(), "date": pl.Date(), **{s: pl.Float64() for s in SIGNALS},
     "label": pl.Int64(), "source": pl.Utf8()},
    key=("vin", "date"), mode="upsert")
ALARM_PREDICTIONS = TableSpec(
    "alarm_predictions",
    {**PREDICTION_SCHEMA, "source": pl.Utf8(), "request_id": pl.Utf8()},
    key=("vin", "date", "model_version"), mode="upsert")
#: The live feed's open cell-days (runtime/pack_days.py): per feed scope (a pipeline, a
#: Kafka partition) and pack cell two rows -- ``part`` "newest": the cell's newest open
#: day and its newest sample ts [s]; "older": its other open days -- each holding the
#: days' running sums as packed records (base64). A commit upserts the rows its batch changed, so
#: the feed's persisted state per commit grows with the batch, not with the fleet.
PACK_FEED_CELLS = TableSpec(
    "pack_feed_cells",
    {"scope": pl.Utf8(), "cell_id": pl.Utf8(), "part": pl.Utf8(), "last_ts": pl.Float64(),
     "days": pl.Utf8()},
    key=("scope", "cell_id", "part"), mode="upsert")

_STATE_MAGIC = b"CTPK"
_STATE_VERSION = 1
#: Per VIN: first and last record day (days since epoch) and the spread summary of the
#: days before its trailing window (n days, sum V, n high, max V or -1).
_VIN_SCHEMA: dict[str, pl.DataType] = {
    "vin": pl.Utf8(), "first_day": pl.Int32(), "last_day": pl.Int32(), "prior_n": pl.Float64(),
    "prior_sum": pl.Float64(), "prior_high": pl.Float64(), "prior_max": pl.Float64(),
}


@dataclass(slots=True)
class PackState:
    """The trailing records (:data:`PACK_SCHEMA` without labels' use) and per-VIN summary."""

    recent: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=PACK_SCHEMA))
    vins: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_VIN_SCHEMA))


def _source_of(source: str) -> str:
    return source if source in SOURCES else "stream"


def _dead_letters(rejected: pl.DataFrame, source: str) -> pl.DataFrame:
    """ml's rejected rows (row, vin, date, field, reason) as dead letters whose reason
    names the VIN and date."""
    if rejected.height == 0:
        return pl.DataFrame(schema=DEAD_LETTER_SCHEMA)
    return rejected.select(
        pl.lit(source, pl.Utf8).alias("source"), pl.col("row").cast(pl.Int64),
        pl.col("vin").alias("cell_id"),
        (pl.col("date").str.slice(0, 10).str.strptime(pl.Date, "%Y-%m-%d", strict=False)
         .cast(pl.Int32).cast(pl.Float64) * _DAY_S).alias("ts"),
        "field",
        pl.format("VIN {}, date {}: {}", pl.col("vin").fill_null("(none)"),
                  pl.col("date").fill_null("(none)"), pl.col("reason")).alias("reason"),
        pl.struct("vin", "date").struct.json_encode().alias("payload"),
    ).cast(DEAD_LETTER_SCHEMA)  # type: ignore[arg-type]


def _spread_summary(frame: pl.DataFrame) -> pl.DataFrame:
    """Per VIN: the spread summary of ``frame``'s records (see :data:`_VIN_SCHEMA`)."""
    spread = pl.col("cell_max_v") - pl.col("cell_min_v")
    return frame.group_by("vin").agg(
        n=spread.is_not_null().sum().cast(pl.Float64),
        s=spread.fill_null(0.0).sum(),
        h=(spread > _HIGH_SPREAD_V).fill_null(False).sum().cast(pl.Float64),
        m=spread.fill_null(-1.0).max())


def _judge(tables: Mapping[str, pl.DataFrame],
           ctx: AlertContext) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every prediction is a judged position (VIN, day); alarms are the hits."""
    preds = tables.get(ALARM_PREDICTIONS.name)
    if preds is None or preds.height == 0:
        return pl.DataFrame(schema={"cell_id": pl.Utf8(), "rule": pl.Utf8(), "cycle": pl.Int64(),
                                    "ts": pl.Float64()}), pl.DataFrame(schema=ALERT_SCHEMA)
    day = pl.col("date").cast(pl.Int32).cast(pl.Int64)
    judged = preds.select(pl.col("vin").alias("cell_id"), pl.lit(ALARM_RULE).alias("rule"),
                          day.alias("cycle"), (day.cast(pl.Float64) * _DAY_S).alias("ts"))
    hits = preds.filter(pl.col("alarm")).select(
        (day.cast(pl.Float64) * _DAY_S).alias("ts"), pl.col("vin").alias("cell_id"),
        pl.lit(None, pl.Utf8).alias("group"), pl.lit(ALARM_RULE).alias("rule"),
        pl.lit("warning").alias("severity"), pl.col("probability").alias("value"),
        "threshold", day.alias("cycle"),
        pl.format("predicted cell-consistency alarm in the 14 days from {}: probability {} "
                  "(threshold {}, model {})", pl.col("date").cast(pl.Utf8),
                  pl.col("probability").round(3), pl.col("threshold").round(3),
                  "model_version").alias("message"))
    return judged, hits.cast(ALERT_SCHEMA)  # type: ignore[arg-type]


def _alarms(tables: Mapping[str, pl.DataFrame], ctx: AlertContext) -> pl.DataFrame:
    return _judge(tables, ctx)[1]


@dataclass
class PackKind:
    """Daily pack records -> stored records, predictions, alarm episodes.

    ``predictor``: the alarm model (None: records are stored, nothing is predicted --
    enough for a store that only needs the kind's tables). ``settings``: the Settings
    whose ``alerts`` section configures the alarm episodes.
    """

    predictor: Predictor | None = None
    settings: Any = None
    keep_days: int = KEEP_DAYS
    name: str = "pack"
    entity_key: str = "vin"
    #: Days dated beyond the step's future horizon are dead letters (a mistyped year
    #: would otherwise make every real record "older than the trailing window").
    time_column: str = "date"
    measurement_schema: Mapping[str, pl.DataType] = field(default_factory=lambda: dict(PACK_SCHEMA))
    raw_table: TableSpec | None = None   # the records are a result table (with their source)
    tables: tuple[TableSpec, ...] = (PACK_RECORDS, ALARM_PREDICTIONS, PACK_FEED_CELLS)
    alert_rules: tuple[AlertRule, ...] = (
        AlertRule(ALARM_RULE, _alarms, description="the model predicts a cell-consistency "
                  "alarm within 14 days", judge=_judge),)
    queries: tuple[ReadQuery, ...] = (
        ReadQuery("records", "pack_records", ("vin", "date")),
        ReadQuery("predictions", "alarm_predictions", ("vin", "date", "model_version", "alarm")),
    )

    def __post_init__(self) -> None:
        if int(self.keep_days) < CONTEXT_DAYS:
            raise ValueError(f"keep_days must be >= {CONTEXT_DAYS}")

    # -- validation --------------------------------------------------------------------
    def validate(self, frame: pl.DataFrame, *, source: str) -> Validated:
        """Good records (:data:`PACK_SCHEMA`, sorted by vin, date) and dead letters."""
        if frame.width == 0:
            raise SchemaError("no columns: daily pack records need vin, date and the six "
                              "signals", field="vin", source=source)
        checked = validate_records(frame, source=source, with_rows=True)
        good = checked.records
        rows = good.get_column("row").to_numpy()
        return Validated(good.drop("row"), _dead_letters(checked.rejected, source),
                         None if checked.n_rejected == 0 else rows)

    # -- engine ------------------------------------------------------------------------
    def new_state(self) -> PackState:
        return PackState()

    def update(self, state: PackState, checked: Validated, *, source: str,
               entities: pl.DataFrame | None = None) -> tuple[PackState, KindOutput]:
        good = checked.good
        n = good.height
        if n == 0:
            return state, KindOutput({}, checked.rejected, 0)
        src = _source_of(source)
        tables = {PACK_RECORDS.name: good.with_columns(pl.col("label").cast(pl.Int64),
                                                       pl.lit(src).alias("source"))}
        day = pl.col("date").cast(pl.Int32)
        batch = good.group_by("vin").agg(b_min=day.min(), b_max=day.max())
        # What the state holds of a VIN starts at ``cutoff`` (older days were folded into
        # its summary): records before it are stored but predict nothing.
        info = batch.join(state.vins, on="vin", how="left").with_columns(
            cutoff=(pl.col("last_day") + 1 - int(self.keep_days)).cast(pl.Int32))
        fresh = good.join(info.select("vin", "cutoff"), on="vin").filter(
            pl.col("cutoff").is_null() | (day >= pl.col("cutoff"))).drop("cutoff")
        info = info.join(fresh.group_by("vin").agg(f_min=day.min(), f_max=day.max()),
                         on="vin", how="inner")
        if info.height:
            info = info.with_columns(
                first_day=pl.min_horizontal("first_day", "f_min").cast(pl.Int32),
                new_last=pl.max_horizontal("last_day", "f_max").cast(pl.Int32),
                # Days whose window the batch changed: from the day after its earliest
                # record, and every day past the previous forecast.
                lo=pl.min_horizontal(pl.col("f_min") + 1, pl.col("last_day") + 2).cast(pl.Int32),
            ).with_columns(
                start=pl.max_horizontal("first_day", "cutoff").cast(pl.Int32))
            state, preds = self._advance(state, fresh, info)
            if preds is not None and preds.height:
                tables[ALARM_PREDICTIONS.name] = preds.with_columns(
                    pl.lit(src).alias("source"), pl.lit(None, pl.Utf8).alias("request_id"))
        return state, KindOutput(tables, checked.rejected, n, np.arange(n))

    def _advance(self, state: PackState, fresh: pl.DataFrame,
                 info: pl.DataFrame) -> tuple[PackState, pl.DataFrame | None]:
        touched = info.get_column("vin")
        kept = state.recent.filter(~pl.col("vin").is_in(touched.implode()))
        mine = pl.concat([state.recent.filter(pl.col("vin").is_in(touched.implode())), fresh])
        mine = mine.unique(subset=["vin", "date"], keep="last", maintain_order=True)
        preds = None
        if self.predictor is not None:
            # An empty row on each VIN's window start makes the calendar panel begin
            # there (days without data are empty rows anyway).
            anchors = info.select("vin", pl.col("start").cast(pl.Date).alias("date"))
            anchors = anchors.join(mine.select("vin", "date"), on=["vin", "date"], how="anti")
            panel_rows = pl.concat([mine, anchors], how="diagonal_relaxed").cast(PACK_SCHEMA)  # type: ignore[arg-type]
            panel = build_panel(panel_rows, extend_days=1)
            prior = (pl.DataFrame({"vin": list(panel.vins)}).join(
                info.select("vin", "prior_n", "prior_sum", "prior_high", "prior_max"),
                on="vin", how="left", maintain_order="left")
                .select(pl.col("prior_n").fill_null(0.0), pl.col("prior_sum").fill_null(0.0),
                        pl.col("prior_high").fill_null(0.0), pl.col("prior_max").fill_null(-1.0))
                .to_numpy())
            panel = replace(panel, prior=prior)
            w = build_windows(panel, include_next_day=True)
            lo = (pl.DataFrame({"vin": list(panel.vins)})
                  .join(info.select("vin", "lo"), on="vin", how="left", maintain_order="left")
                  .get_column("lo").to_numpy())
            w = w.take(w.day >= lo[w.vin])
            preds = self.predictor.predict_windows(w)
        # Days leaving the trailing window fold into the VIN's prior summary.
        info = info.with_columns(cut=(pl.col("new_last") + 1 - int(self.keep_days)).cast(pl.Int32))
        mine = mine.join(info.select("vin", "cut"), on="vin")
        old = mine.filter(pl.col("date").cast(pl.Int32) < pl.col("cut")).drop("cut")
        mine = mine.filter(pl.col("date").cast(pl.Int32) >= pl.col("cut")).drop("cut")
        folded = info.join(_spread_summary(old), on="vin", how="left").select(
            "vin", "first_day", pl.col("new_last").alias("last_day"),
            (pl.col("prior_n").fill_null(0.0) + pl.col("n").fill_null(0.0)).alias("prior_n"),
            (pl.col("prior_sum").fill_null(0.0) + pl.col("s").fill_null(0.0)).alias("prior_sum"),
            (pl.col("prior_high").fill_null(0.0) + pl.col("h").fill_null(0.0)).alias("prior_high"),
            pl.max_horizontal(pl.col("prior_max").fill_null(-1.0), pl.col("m").fill_null(-1.0))
            .alias("prior_max")).cast(_VIN_SCHEMA)  # type: ignore[arg-type]
        vins = pl.concat([state.vins.filter(~pl.col("vin").is_in(touched.implode())), folded]).sort("vin")
        recent = pl.concat([kept, mine.select(list(PACK_SCHEMA))]).sort("vin", "date")
        return PackState(recent, vins), preds

    def flush(self, state: PackState) -> tuple[PackState, KindOutput]:
        return state, KindOutput({})  # nothing pending: every batch predicts what it can

    def summarize(self, frame: pl.DataFrame) -> KindOutput:
        checked = self.validate(frame, source="batch")
        _, out = self.update(self.new_state(), checked, source="batch")
        return out

    # -- checkpoints -------------------------------------------------------------------
    def state_to_bytes(self, state: PackState) -> bytes:
        parts = []
        for frame in (state.recent, state.vins):
            buf = io.BytesIO()
            frame.write_ipc(buf, compression="uncompressed")
            parts.append(buf.getvalue())
        head = json.dumps({"keep_days": int(self.keep_days)}).encode()
        return (_STATE_MAGIC + struct.pack("<HIQQ", _STATE_VERSION, len(head), len(parts[0]),
                                           len(parts[1])) + head + parts[0] + parts[1])

    def state_from_bytes(self, data: bytes) -> PackState:
        size = len(_STATE_MAGIC) + struct.calcsize("<HIQQ")
        if len(data) < size or data[:len(_STATE_MAGIC)] != _STATE_MAGIC:
            raise SchemaError("not a pack-kind state", source="checkpoint")
        version, nh, n0, n1 = struct.unpack("<HIQQ", data[len(_STATE_MAGIC):size])
        if version != _STATE_VERSION:
            raise SchemaError(f"pack state version {version}, this ChargeTracker reads "
                              f"{_STATE_VERSION}", source="checkpoint")
        if len(data) != size + nh + n0 + n1:
            raise SchemaError("truncated pack state", source="checkpoint")
        a = size + nh
        recent = pl.read_ipc(io.BytesIO(data[a:a + n0])).cast(PACK_SCHEMA)  # type: ignore[arg-type]
        vins = pl.read_ipc(io.BytesIO(data[a + n0:])).cast(_VIN_SCHEMA)  # type: ignore[arg-type]
        return PackState(recent, vins)
