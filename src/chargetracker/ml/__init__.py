"""Pure machine learning for daily pack records: consistency-alarm prediction.

No I/O, no environment: records in, windows, features, models, evaluation reports and
predictions out. See docs/alarms.md.
"""

from __future__ import annotations

from .artifact import FILES, FORMAT_VERSION, ModelArtifact, build_artifact, fingerprint_records
from .evaluation import EvaluationPlan, evaluate, format_report, sample_summary
from .features import FEATURE_SETS, feature_matrix, feature_names
from .predict import PREDICTION_SCHEMA, BatchRows, Predictor, is_batch84, parse_batch84
from .records import (
    PACK_SCHEMA,
    REJECT_SCHEMA,
    SIGNALS,
    ValidatedRecords,
    parse_records_csv,
    require_valid,
    validate_records,
)
from .training import BASELINE, CHARGETRACKER, FittedModel, ModelConfig, fit_model
from .windows import CONTEXT_DAYS, HORIZON_DAYS, Panel, Windows, build_panel, build_windows

__all__ = [
    "BASELINE", "BatchRows", "CHARGETRACKER", "CONTEXT_DAYS", "EvaluationPlan", "FEATURE_SETS",
    "FILES", "FORMAT_VERSION", "FittedModel", "HORIZON_DAYS", "ModelArtifact", "ModelConfig",
    "PACK_SCHEMA", "PREDICTION_SCHEMA", "Panel", "Predictor", "REJECT_SCHEMA", "SIGNALS",
    "ValidatedRecords", "Windows", "build_artifact", "build_panel", "build_windows",
    "evaluate", "feature_matrix", "feature_names", "fingerprint_records", "fit_model",
    "format_report", "is_batch84", "parse_batch84", "parse_records_csv", "require_valid",
    "sample_summary", "validate_records",
]
