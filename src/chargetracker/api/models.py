"""Request and response models of the HTTP API (they define the OpenAPI document).

Row models (cycle, step, measurement, alert, ...) are generated from the canonical Polars
schemas in :mod:`chargetracker.schema`, so the API cannot drift from the store. Units
follow the column names: ``_s`` seconds, ``_ts`` seconds since the epoch (UTC), ``_v``
volts, ``_a`` amperes (**+ = charging**), ``_ah`` ampere-hours, ``_wh`` watt-hours,
``_c`` degrees Celsius, ``_ohm`` ohms. Non-finite numbers are sent as ``null``.
"""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from ..readers import FORMATS
from ..schema import CYCLE_SCHEMA, MEASUREMENT_SCHEMA, STEP_SCHEMA
from ..stores.base import ALERT_SCHEMA, TREND_METRICS
from ..stores.sql import ALERT_EPISODE_ROW_SCHEMA

__all__ = [
    "CELL_ID_PATTERN", "GROUP_KEY_PATTERN", "MetricName", "FileFormat",
    "CellIn", "CellRecord", "Cell", "CellDetail", "CellPage",
    "Cycle", "Step", "Measurement", "CyclePage", "StepPage", "MeasurementSeries",
    "CellTrend", "GroupTrendRow", "GroupTrend", "DeepDiveRow", "GroupCycle", "Outliers",
    "Alert", "AlertPage", "AlertEpisode", "AlertEpisodePage", "AckIn", "AckOut",
    "RowError", "IngestResponse", "FileIngestResponse", "Health", "Ready",
    "MeasurementIn", "IngestEnvelope",
]

#: Cell ids addressable in a URL path: 1-256 characters, no control characters, no
#: ``/`` or ``\``.
CELL_ID_PATTERN = r"^[^\x00-\x1f\x7f/\\]{1,256}$"
#: A metadata column (group, chemistry, test_type) or an attributes key.
GROUP_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$"

MetricName = Literal[TREND_METRICS]  # type: ignore[valid-type]
FileFormat = Literal[("auto", *FORMATS)]  # type: ignore[valid-type]

_DOCS: dict[str, str] = {
    "cell_id": "Cell, channel or meter id.",
    "ts": "Sample time, s since the Unix epoch (UTC).",
    "voltage_v": "Voltage, V.",
    "current_a": "Current, A; positive = charging, negative = discharging.",
    "temperature_c": "Temperature, degC.",
    "cycle": "Cycle number (the cycler's label when given, else detected).",
    "step": "Step number.",
    "step_time_s": "Time since the cycler's step start, s.",
    "status": "`open` (still in progress) or `closed`.",
    "start_ts": "Start, s since the epoch (UTC).",
    "end_ts": "End, s since the epoch (UTC).",
    "duration_s": "Duration, s.",
    "charge_ah": "Charge capacity, Ah.",
    "discharge_ah": "Discharge capacity, Ah.",
    "charge_wh": "Charge energy, Wh.",
    "discharge_wh": "Discharge energy, Wh.",
    "coulombic_efficiency": "discharge_ah / charge_ah.",
    "energy_efficiency": "discharge_wh / charge_wh.",
    "retention": "discharge_ah relative to the cell's early cycles.",
    "internal_resistance_ohm": "Internal resistance from the largest current step, ohm.",
    "throughput_ah": "Cumulative charge + discharge Ah up to the end of the cycle.",
    "equivalent_full_cycles": "Throughput over twice the nominal capacity.",
    "gap_count": "Intervals longer than the gap limit (not integrated).",
    "kind": "charge | discharge | rest.",
    "mode": "CC | CV | CC-CV | rest.",
}


def _py_type(dtype: pl.DataType) -> Any:
    if dtype == pl.Utf8:
        return str
    if dtype == pl.Boolean:
        return bool
    if dtype.is_integer():
        return int
    if dtype.is_float():
        return float
    raise TypeError(f"no JSON type for {dtype}")  # pragma: no cover - schema is fixed


def _row_model(name: str, schema: dict[str, pl.DataType], doc: str,
               required: tuple[str, ...] = ()) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for col, dtype in schema.items():
        t = _py_type(dtype)
        if col in required:
            fields[col] = (t, Field(description=_DOCS.get(col)))
        else:
            fields[col] = (t | None, Field(description=_DOCS.get(col)))
    model = create_model(name, __doc__=doc, **fields)  # type: ignore[call-overload]
    return model  # type: ignore[no-any-return]


Cycle = _row_model("Cycle", CYCLE_SCHEMA, "One cycle of one cell (closed, or a snapshot of the open one).",
                   required=("cell_id", "cycle", "status"))
Step = _row_model("Step", STEP_SCHEMA, "One step of one cell.", required=("cell_id", "step", "status"))
Measurement = _row_model("Measurement", MEASUREMENT_SCHEMA, "One stored raw sample.",
                         required=("cell_id", "ts"))
Alert = _row_model("Alert", {"id": pl.Int64(), **ALERT_SCHEMA, "acknowledged": pl.Boolean(),
                             "acknowledged_by": pl.Utf8(), "acknowledged_at": pl.Float64()},
                   "An alert raised by a limit rule or the outlier rule.",
                   required=("id", "ts", "rule", "acknowledged"))


# -- cells ---------------------------------------------------------------------------
class CellIn(BaseModel):
    """Cell metadata; groups are defined from these. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    group: str | None = Field(None, max_length=256, description="Group the cell belongs to.")
    chemistry: str | None = Field(None, max_length=256, examples=["NMC"])
    test_type: str | None = Field(None, max_length=256, description="Test type / protocol.")
    nominal_capacity_ah: float | None = Field(None, gt=0, le=1e6, allow_inf_nan=False,
                                              description="Nominal capacity, Ah.")
    v_min: float | None = Field(None, ge=-10, le=2000, allow_inf_nan=False,
                                description="Lower voltage limit, V.")
    v_max: float | None = Field(None, ge=-10, le=2000, allow_inf_nan=False,
                                description="Upper voltage limit, V.")
    attributes: dict[str, Any] = Field(default_factory=dict, description="Any user keys "
                                       "(JSON object; filterable with `attr=key:value`).")

    @field_validator("attributes")
    @classmethod
    def _small(cls, v: dict[str, Any]) -> dict[str, Any]:
        if len(v) > 256:
            raise ValueError("at most 256 attributes")
        for key in v:
            if not 0 < len(key) <= 64:
                raise ValueError("attribute keys must be 1-64 characters")
        return v


class CellRecord(CellIn):
    """Cell metadata with its id (the ``cells`` list of an ingest envelope)."""

    cell_id: str = Field(pattern=CELL_ID_PATTERN)

    @field_validator("cell_id")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("cell_id must not be blank (only whitespace)")
        return v


class Cell(BaseModel):
    cell_id: str
    group: str | None = None
    chemistry: str | None = None
    test_type: str | None = None
    nominal_capacity_ah: float | None = None
    v_min: float | None = None
    v_max: float | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class CellDetail(Cell):
    n_measurements: int = Field(description="Raw samples stored (within the retention window).")
    first_ts: float | None = None
    last_ts: float | None = None
    n_steps: int
    n_cycles: int
    n_closed_cycles: int
    latest_cycle: Cycle | None = None  # type: ignore[valid-type]


class CellPage(BaseModel):
    items: list[Cell]
    total: int = Field(description="Cells matching the filters.")
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last.")


class CyclePage(BaseModel):
    cell_id: str
    items: list[Cycle]  # type: ignore[valid-type]
    limit: int
    offset: int
    next_offset: int | None


class StepPage(BaseModel):
    cell_id: str
    items: list[Step]  # type: ignore[valid-type]
    limit: int
    offset: int
    next_offset: int | None


class MeasurementSeries(BaseModel):
    cell_id: str
    start_ts: float | None
    end_ts: float | None
    max_points: int = Field(description="At most this many samples: longer ranges are "
                            "downsampled to every k-th sample.")
    items: list[Measurement]  # type: ignore[valid-type]


class CellTrend(BaseModel):
    cell_id: str
    metric: str
    n_cycles: int
    fade_rate_per_cycle: float | None = Field(description="Slope of the metric per cycle.")
    recent_fade_rate_per_cycle: float | None = Field(description="Slope after the knee.")
    knee_cycle: float | None = Field(description="Cycle of the knee; null when none.")
    cycles_to_80pct: float | None = Field(description="Forecast cycle at which retention "
                                          "reaches 80 %.")
    retention_last: float | None
    intercept: float | None


# -- groups --------------------------------------------------------------------------
class GroupTrendRow(BaseModel):
    cycle: int
    n: int = Field(description="Cells with this cycle closed (open cycles: in progress).")
    mean: float | None
    std: float | None
    median: float | None
    mad: float | None = Field(description="Median absolute deviation.")
    min: float | None
    max: float | None
    std_pct: float | None = Field(description="100 * std / |mean|.")


class GroupTrend(BaseModel):
    group: str
    group_key: str
    metric: str
    status: Literal["closed", "open"]
    items: list[GroupTrendRow]


class DeepDiveRow(BaseModel):
    group: str | None
    cell_id: str
    cycle: int
    value: float | None
    n: int | None
    mean: float | None
    std: float | None
    median: float | None
    mad: float | None
    min: float | None
    max: float | None
    z: float | None
    robust_z: float | None
    pct_deviation: float | None
    outlier: bool


class GroupCycle(BaseModel):
    group: str
    group_key: str
    metric: str
    cycle: int | None = Field(description="The cycle shown (the latest complete one for "
                              "`latest`); null when the group has no closed cycle yet.")
    items: list[DeepDiveRow] = Field(description="Cells sorted by |% deviation|, largest first.")


class Outliers(BaseModel):
    metric: str
    group_key: str
    latest_only: bool
    items: list[DeepDiveRow]


class AlertPage(BaseModel):
    items: list[Alert]  # type: ignore[valid-type]


AlertEpisode = _row_model(
    "AlertEpisode", ALERT_EPISODE_ROW_SCHEMA,
    "One episode of a (cell, rule) condition: open while it lasts, resolved after "
    "`resolve_after_cycles` clean cycles. `alert_id` and `acknowledged*` are those of its "
    "notification (null when the rate limit suppressed it: `notified` false).",
    required=("cell_id", "rule", "start_ts", "state", "occurrences"))


class EpisodeCount(BaseModel):
    rule: str
    open: int = Field(description="Episodes still open.")
    resolved: int = Field(description="Episodes resolved.")
    suppressed: int = Field(description="Episodes the per-rule rate limit kept from notifying.")


class AlertEpisodePage(BaseModel):
    counts: list[EpisodeCount] = Field(description="Per rule, over every stored episode.")
    items: list[AlertEpisode]  # type: ignore[valid-type]


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(None, max_length=128, description="Who acknowledges.")


class AckOut(BaseModel):
    id: int
    acknowledged: bool
    acknowledged_by: str | None


# -- ingest --------------------------------------------------------------------------
class RowError(BaseModel):
    row: int | None = Field(description="0-based row of the batch (for file uploads: the "
                            "file's line number for rows the reader refused).")
    field: str | None = Field(description="Offending column.")
    reason: str


class IngestResponse(BaseModel):
    accepted: int = Field(description="Samples taken in.")
    rejected: int = Field(description="Samples refused (kept as dead letters with the reason).")
    already_stored: int = Field(0, description="Exact copies of samples already stored (a "
                                "re-sent batch): acknowledged, not counted again, not dead letters.")
    errors: list[RowError] = Field(description="One entry per rejected row, first rows first.")
    errors_truncated: bool = Field(description="True when more rows were rejected than listed.")
    closed_cycles: int = Field(description="Cycles this batch closed.")
    alerts: int = Field(description="Alerts this batch raised.")
    cells_registered: int = Field(description="Cell metadata records stored.")
    ignored_columns: list[str] = Field(description="Input columns that are not canonical.")
    format: str
    source: str


class FileIngestResponse(IngestResponse):
    cell_id: str | None = Field(description="The file's cell (the first one for multi-cell files).")
    cell_ids: list[str]
    file_format: str = Field(description="Reader used (detected or given).")
    filename: str
    bytes: int
    chunks: int


class MeasurementIn(BaseModel):
    """One canonical measurement (JSON body row)."""

    cell_id: str = Field(max_length=256, description=_DOCS["cell_id"])
    ts: float = Field(description=_DOCS["ts"])
    voltage_v: float = Field(description=_DOCS["voltage_v"])
    current_a: float = Field(description=_DOCS["current_a"])
    temperature_c: float | None = Field(None, description=_DOCS["temperature_c"])
    cycle: int | None = Field(None, description="Cycler's cycle label, when known.")
    step: int | None = Field(None, description="Cycler's step label, when known.")
    step_time_s: float | None = Field(None, description=_DOCS["step_time_s"])


class IngestEnvelope(BaseModel):
    """A batch with optional cell metadata. ``measurements`` may also be columnar:
    an object of equal-length arrays keyed by column name."""

    measurements: list[MeasurementIn] | dict[str, list[Any]] = Field(default_factory=list)
    cells: list[CellRecord] = Field(default_factory=list)


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    store: str
