"""The ASGI application: API under ``/api/v1``, operations at the root, dashboard at ``/``.

``create_app(settings)`` opens the store named by ``settings.store_url`` (or uses the
store / pipeline it is given, so a runner in the same process shares one engine state),
wires authentication, the body limit, CORS, metrics and error mapping, and mounts the
Dash dashboard last so that every API route wins over it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema
from starlette.routing import compile_path

from .. import __version__ as _version
from ..config import Settings
from ..logs import RequestIdMiddleware
from ..queries import Queries
from ..runtime.pipeline import Pipeline
from ..stores.base import Store
from .context import API_PREFIX, ApiContext
from .errors import ApiError, install_handlers
from .limits import BodyLimitMiddleware
from .metrics import Metrics, MetricsMiddleware
from .models import IngestEnvelope, MeasurementIn
from .routes_alarms import router as alarms_router
from .routes_ingest import router as ingest_router
from .routes_meters import router as meters_router
from .routes_ops import router as ops_router
from .routes_read import router as read_router
from .security import Guard

__all__ = ["API_PREFIX", "create_app", "mount_dashboard"]

log = logging.getLogger("chargetracker.api")

_DESCRIPTION = """\
Near-real-time battery telemetry analytics: ingest raw measurements (time, voltage,
current, temperature) and read per-cycle capacity, energy, efficiency, fade, group
statistics, outliers and alerts.

Units: ts in s since the Unix epoch (UTC); V, A (**current > 0 = charging**), degC,
Ah, Wh, ohm. Every error has the body `{"error": {"code", "message", "field", "details"}}`.
Writes need `Authorization: Bearer <key>` when the server has API keys; reads too when it
protects reads.
"""


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    pipeline: Pipeline | None = None,
    queries: Queries | None = None,
    dashboard: bool | None = None,
) -> FastAPI:
    """Build the application.

    ``store``: use this store (the caller closes it); by default the app opens
    ``settings.store_url`` and closes it at shutdown. ``pipeline``: share an existing
    pipeline (its store is used); by default one named ``"embedded"`` is created.
    ``dashboard``: mount the Dash dashboard (default ``settings.api.dashboard``).
    Raises :class:`~chargetracker.errors.StoreUnavailable` / ``ConfigError`` when the
    store cannot be opened, before any request is served.
    """
    settings = settings or Settings()
    owns = False
    if pipeline is not None:
        store = pipeline.store
    if store is None:
        from ..stores.url import open_store

        store = open_store(settings.store_url)
        owns = True
    try:
        if pipeline is None:
            pipeline = Pipeline(store, settings)
        queries = queries or Queries(store, settings.stats)
    except BaseException:
        if owns:
            store.close()
        raise
    cfg = settings.api
    ctx = ApiContext(settings=settings, store=store, pipeline=pipeline, queries=queries,
                     guard=Guard.from_keys(cfg.api_keys, cfg.protect_reads), metrics=Metrics(),
                     owns_store=owns)

    if cfg.publish_kafka:
        from ..kafka.sink import KafkaSink  # the 'scale' extra

        ctx.sink = KafkaSink(settings.kafka)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        writer = getattr(app.state, "alarm_writer", None)
        if writer is not None:  # drain queued alarm predictions before the store closes
            await run_in_threadpool(writer.close)
        if ctx.sink is not None:
            ctx.sink.close()
        if ctx.owns_store:
            ctx.store.close()

    app = FastAPI(
        title="ChargeTracker API",
        version=_version,
        description=_DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    install_handlers(app)
    app.include_router(ingest_router)
    app.include_router(read_router)
    app.include_router(ops_router)
    app.include_router(alarms_router)
    app.include_router(meters_router)
    _api_fallback(app)
    app.openapi = _openapi_factory(app)  # type: ignore[method-assign]

    # Middleware: the last added runs first. Metrics see every request (also 413s);
    # the body limit wraps everything below it, CORS answers preflights.
    if cfg.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(cfg.cors_origins),
            allow_methods=["GET", "POST", "PUT", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID"], max_age=600,
        )
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=cfg.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=ctx.metrics)
    app.add_middleware(RequestIdMiddleware)  # outermost: every log line has the id

    if cfg.dashboard if dashboard is None else dashboard:
        mount_dashboard(app, queries, settings)
    return app


def _api_fallback(app: FastAPI) -> None:
    """Unknown paths under the API prefix get a JSON 404 (405 for a wrong method), not
    the dashboard's HTML page."""

    known = [(compile_path(r.path)[0], r.methods or set())
             for router in (ingest_router, read_router, alarms_router) for r in router.routes
             if isinstance(r, APIRoute)]

    async def fallback(request: Request, rest: str) -> None:
        path = request.url.path
        allowed = sorted({m for regex, methods in known if regex.match(path) for m in methods})
        if allowed:
            raise ApiError(405, f"method {request.method} not allowed on {path}; allowed: "
                           f"{', '.join(allowed)}", headers={"Allow": ", ".join(allowed)})
        raise ApiError(404, f"no such endpoint: {path}")

    app.add_api_route(f"{API_PREFIX}/{{rest:path}}", fallback, include_in_schema=False,
                      methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])


def _openapi_factory(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)
        # Models only referenced from hand-written request bodies (ingest formats).
        _, defs = models_json_schema([(MeasurementIn, "validation"), (IngestEnvelope, "validation")],
                                     ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, d in defs.get("$defs", {}).items():
            components.setdefault(name, d)
        app.openapi_schema = schema
        return schema

    return openapi


def mount_dashboard(app: FastAPI, queries: Queries, settings: Settings, *,
                    factory: Callable[[Queries, Settings], Any] | None = None) -> bool:
    """Mount the Dash dashboard's Flask server at ``/`` (after every API route).

    ``factory`` defaults to :func:`chargetracker.dashboard.create_dash_app` (a
    ``dash.Dash`` whose ``server`` is a WSGI app). Returns False, with a log line, when
    no dashboard is installed, so the API works on its own.
    """
    if factory is None:
        try:
            from ..dashboard import create_dash_app  # type: ignore[attr-defined]
        except ImportError as exc:
            log.warning("dashboard not mounted: chargetracker.dashboard.create_dash_app is not "
                        "available (%s); serving the API only", exc)
            return False
        factory = create_dash_app
    dash_app = factory(queries, settings)
    with warnings.catch_warnings():
        # Starlette marks its WSGI adapter deprecated in favour of a2wsgi; it works and
        # needs no further dependency.
        warnings.simplefilter("ignore")
        from starlette.middleware.wsgi import WSGIMiddleware
    app.mount("/", WSGIMiddleware(dash_app.server), name="dashboard")
    return True
