"""ChargeTracker: near-real-time battery and energy telemetry analytics.

``chargetracker.analyze(path)`` returns the per-cycle table of a cycler file; the
engine (``chargetracker.engine``) gives the same numbers incrementally.
"""

from __future__ import annotations

from .analysis import Analysis, analyze, analyze_files
from .config import EngineConfig, Settings, StatsConfig
from .errors import ChargeTrackerError

__version__ = "0.1.0"

__all__ = [
    "Analysis",
    "ChargeTrackerError",
    "EngineConfig",
    "Settings",
    "StatsConfig",
    "__version__",
    "analyze",
    "analyze_files",
]
