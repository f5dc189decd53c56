"""Request and response models of the consistency-alarm endpoints
(:mod:`chargetracker.api.routes_alarms`); units in the field descriptions."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["BatchOut", "Contribution", "PackRecordIn", "PredictIn", "PredictOut",
           "PredictionPage", "PredictionRow", "RecordsOut", "RejectedRow", "VIN_PATTERN"]

VIN_PATTERN = r"^[^\x00-\x1f\x7f]{1,64}$"


class PackRecordIn(BaseModel):
    """One daily pack record (reference column names are accepted too)."""

    date: str = Field(description="Day, YYYY-MM-DD.", examples=["2019-12-01"])
    vin: str | None = Field(None, description="VIN (may be given once at the top level).")
    total_voltage_v: float | None = Field(None, description="Pack voltage, V.")
    total_current_a: float | None = Field(None, description="Pack current, A (+ charging).")
    cell_max_v: float | None = Field(None, description="Highest cell voltage, V.")
    cell_min_v: float | None = Field(None, description="Lowest cell voltage, V.")
    max_temperature_c: float | None = Field(None, description="Highest temperature, degC.")
    min_temperature_c: float | None = Field(None, description="Lowest temperature, degC.")
    label: int | None = Field(None, description="Ignored for prediction.")


class PredictIn(BaseModel):
    """Either ``records`` (the VIN's last 14+ daily records) or ``features`` (the
    reference's 84 values, 14 days x 6 signals oldest first, -1 = missing) with ``date``."""

    vin: str = Field(min_length=1, max_length=64, pattern=VIN_PATTERN)
    records: list[dict[str, Any]] | None = Field(None, description="Daily records "
                                                 "(see PackRecordIn), at least 14 days.")
    features: str | list[float] | None = Field(None, description="84 comma-separated values "
                                               "(or a list), as in the reference.")
    date: str | None = Field(None, description="Prediction day of the 84-value form "
                                               "(default: today, UTC).")
    store: bool = Field(True, description="Store the prediction.")


class Contribution(BaseModel):
    feature: str
    contribution: float = Field(description="SHAP contribution to the log-odds.")
    value: float | None


class PredictOut(BaseModel):
    vin: str
    date: str = Field(description="Prediction day t: the alarm horizon is t .. t+13.")
    probability: float = Field(description="Calibrated probability of an alarm in the horizon.")
    alarm: bool
    threshold: float
    model_version: str
    days_with_data: int = Field(description="Days with data among the 14 before t.")
    contributions: list[Contribution]
    warnings: list[str]
    request_id: str


class PredictionRow(BaseModel):
    vin: str
    date: str
    probability: float
    alarm: bool
    threshold: float
    model_version: str
    source: str | None = None
    request_id: str | None = None
    created_at: float | None = None


class PredictionPage(BaseModel):
    items: list[PredictionRow]
    total: int
    next_offset: int | None


class RejectedRow(BaseModel):
    row: int
    vin: str | None
    date: str | None
    field: str | None
    reason: str


class BatchOut(BaseModel):
    predictions: list[PredictionRow]
    rejected: list[RejectedRow]
    model_version: str
    request_id: str


class RecordsOut(BaseModel):
    accepted: int
    rejected: int
    errors: list[RejectedRow]
