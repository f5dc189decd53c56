"""The one exception tree of ChargeTracker.

Every error the package raises on purpose derives from :class:`ChargeTrackerError`.
Adapters (readers, stores, sources) translate third-party exceptions at the edge,
e.g. ``raise StoreUnavailable("...") from exc``.
"""

from __future__ import annotations

__all__ = [
    "ChargeTrackerError",
    "ConfigError",
    "ValidationError",
    "SchemaError",
    "ReaderError",
    "UnknownFormat",
    "EngineStateError",
    "StoreError",
    "StoreUnavailable",
    "NotFound",
    "SourceError",
    "SourceUnavailable",
    "AuthError",
]


class ChargeTrackerError(Exception):
    """Root of every error raised by ChargeTracker on purpose."""


class ConfigError(ChargeTrackerError):
    """A setting or a fleet/pipeline configuration is invalid."""


class ValidationError(ChargeTrackerError):
    """Input data is invalid.

    ``field`` names the column, ``row`` the 0-based row (or line) when known and
    ``reason`` says what is wrong, so a user can fix the input.
    """

    def __init__(self, reason: str, *, field: str | None = None, row: int | None = None,
                 source: str | None = None) -> None:
        self.reason = reason
        self.field = field
        self.row = row
        self.source = source
        where = []
        if source is not None:
            where.append(str(source))
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {reason}" if prefix else reason)


class SchemaError(ValidationError):
    """Columns are missing, unknown or of the wrong type or unit."""


class ReaderError(ChargeTrackerError):
    """A file could not be read (I/O, encoding, truncated)."""


class UnknownFormat(ReaderError):
    """``--format auto`` could not recognise the file's header."""


class EngineStateError(ChargeTrackerError):
    """Serialized engine state is corrupt or of an unsupported version."""


class StoreError(ChargeTrackerError):
    """A store operation failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached (server down, file locked)."""


class NotFound(StoreError):
    """The requested object does not exist."""


class SourceError(ChargeTrackerError):
    """A source (file tail, simulator, Kafka, HTTP) failed."""


class SourceUnavailable(SourceError):
    """A source cannot be reached (broker down, directory missing)."""


class AuthError(ChargeTrackerError):
    """Missing or wrong API key."""
