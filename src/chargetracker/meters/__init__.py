"""Smart-meter watchdog: daily energy per meter/house/zip, percentile thresholds, spikes.

The engine side (this package's face) is pure: no I/O, no environment, no imports from
sources, stores, api or dashboard. Readers (:mod:`.readers`) and the simulator
(:mod:`.simulator`) are separate modules.
"""

from __future__ import annotations

from .aggregate import house_breakdown, house_days, meter_days_with_share, zip_days
from .config import MeterConfig
from .engine import (
    MeterOutput,
    MeterSummary,
    flush,
    new_state,
    register_meters,
    set_thresholds,
    summarize,
    update,
)
from .schema import (
    ALERT_SCHEMA,
    DAY_SCHEMA,
    DEAD_LETTER_SCHEMA,
    HOUSE_DAY_SCHEMA,
    MAINS,
    METER_SCHEMA,
    READING_SCHEMA,
    THRESHOLD_SCHEMA,
    UNMETERED,
    ZIP_DAY_SCHEMA,
    validate_meters,
    validate_readings,
)
from .state import STATE_VERSION, MeterState
from .thresholds import compute_thresholds

__all__ = [
    "ALERT_SCHEMA", "DAY_SCHEMA", "DEAD_LETTER_SCHEMA", "HOUSE_DAY_SCHEMA", "MAINS",
    "METER_SCHEMA", "READING_SCHEMA", "THRESHOLD_SCHEMA", "UNMETERED", "ZIP_DAY_SCHEMA",
    "STATE_VERSION", "MeterConfig", "MeterOutput", "MeterState", "MeterSummary",
    "compute_thresholds", "flush", "house_breakdown", "house_days", "meter_days_with_share",
    "new_state", "register_meters", "set_thresholds", "summarize", "update",
    "validate_meters", "validate_readings", "zip_days",
]
