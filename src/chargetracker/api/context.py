"""What every request handler works with: settings, the write port (store, pipelines),
the read side (queries), guard, metrics. Handlers read through ``queries`` only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from ..config import Settings
from ..queries import Queries
from ..runtime.pipeline import Pipeline
from ..stores.base import Store
from .metrics import Metrics
from .security import Guard

__all__ = ["API_PREFIX", "ApiContext", "get_ctx"]

#: Every API endpoint lives under this prefix (versioned).
API_PREFIX = "/api/v1"


@dataclass
class ApiContext:
    settings: Settings
    store: Store
    pipeline: Pipeline
    queries: Queries
    guard: Guard
    metrics: Metrics
    #: True when the app opened the store itself (and closes it at shutdown).
    owns_store: bool = False
    #: A KafkaSink when ``api.publish_kafka``: ingest goes to the topic, not the pipeline.
    sink: Any = None
    #: Pipelines of plug-in telemetry kinds by kind name (``/telemetry/<kind>``).
    kinds: dict[str, Pipeline] = field(default_factory=dict)

    def add_kind(self, pipeline: Pipeline) -> None:
        """Serve a plug-in kind: ingest through ``pipeline`` (whose store was opened with
        the kind), reads through the kind's queries."""
        self.kinds[pipeline.kind.name] = pipeline
        self.queries.kinds[pipeline.kind.name] = pipeline.kind


def get_ctx(request: Request) -> ApiContext:
    return request.app.state.ctx  # type: ignore[no-any-return]
