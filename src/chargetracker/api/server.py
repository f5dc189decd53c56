"""Run the application with uvicorn (one process: API + dashboard)."""

from __future__ import annotations

import sys

import uvicorn

from ..config import Settings
from ..logs import configure_logging
from ..stores.base import Store
from .app import API_PREFIX, create_app

__all__ = ["serve"]


def serve(settings: Settings, *, store: Store | None = None, log_level: str = "info",
          access_log: bool = True, log_format: str = "text") -> None:
    """Build the app on ``store`` (the caller's; without one the app opens
    ``settings.store_url``) and serve until SIGINT/SIGTERM (graceful shutdown).

    The access log has method, path, query and status only (request headers, and so
    API keys, are never logged); credentials in the query (``?api_key=``), in URLs and
    in messages are redacted (:mod:`chargetracker.logs`). ``log_format``: ``text`` or
    ``json`` (one object per line, with the request id).
    """
    app = create_app(settings, store=store)
    cfg = settings.api
    config = uvicorn.Config(
        app, host=cfg.host, port=cfg.port, log_level=log_level, access_log=access_log,
        proxy_headers=False, server_header=False, timeout_graceful_shutdown=10,
        log_config=None,  # ours: one redacting handler for every logger
    )
    configure_logging(log_level, log_format)
    server = uvicorn.Server(config)
    where = f"http://{cfg.host}:{cfg.port}"
    auth = (f"{len(cfg.api_keys)} API key(s), reads {'protected' if cfg.protect_reads else 'open'}"
            if cfg.api_keys else "no API key: writes are open")
    print(f"chargetracker serve: {where}  API {where}{API_PREFIX}  docs {where}{API_PREFIX}/docs "
          f"({auth})", file=sys.stderr, flush=True)
    server.run()
