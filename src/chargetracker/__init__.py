"""ChargeTracker: near-real-time battery and energy telemetry analytics."""

from __future__ import annotations

from .errors import ChargeTrackerError

__version__ = "0.1.0"

__all__ = ["ChargeTrackerError", "__version__"]
