"""The pure analysis engine: segmentation, integration, cycles, statistics, trends.

No I/O, no environment, no imports from sources, stores, api or dashboard.
"""

from __future__ import annotations

from .core import EngineOutput, Summary, flush, new_state, summarize, update, update_checked
from .state import STATE_VERSION, EngineState

__all__ = [
    "EngineOutput",
    "EngineState",
    "STATE_VERSION",
    "Summary",
    "flush",
    "new_state",
    "summarize",
    "update",
    "update_checked",
]
