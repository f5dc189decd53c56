"""HTTP API (FastAPI): ingest and query, validated, authenticated, documented.

Usage::

    from chargetracker.api import create_app
    app = create_app(settings)                 # opens settings.store_url
    app = create_app(settings, pipeline=p)     # share a runner's pipeline (one engine state)

    # or from the command line (API + dashboard in one process):
    #   chargetracker serve --store duckdb:///ct.duckdb --api-key "$KEY"

Endpoints live under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``, interactive docs at
``/api/v1/docs``); ``/healthz``, ``/readyz`` and ``/metrics`` at the root; the dashboard at
``/``. See docs/api.md.
"""

from __future__ import annotations

from .app import API_PREFIX, create_app, mount_dashboard
from .server import serve

__all__ = ["API_PREFIX", "create_app", "mount_dashboard", "serve"]
