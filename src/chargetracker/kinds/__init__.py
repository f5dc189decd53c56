"""Telemetry kinds: each kind of telemetry is a plug-in of the one core (see
docs/architecture.md, "Adding a kind of telemetry")."""

from __future__ import annotations

from .base import (
    AlertContext,
    AlertRule,
    KindOutput,
    ReadQuery,
    TableSpec,
    TelemetryKind,
    WriteMode,
)
from .cell import CELL_TABLES, CellKind, cell_kind

__all__ = [
    "CELL_TABLES",
    "AlertContext",
    "AlertRule",
    "CellKind",
    "KindOutput",
    "ReadQuery",
    "TableSpec",
    "TelemetryKind",
    "WriteMode",
    "cell_kind",
]
