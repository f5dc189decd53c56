"""Serve the dashboard on its own (without the API server): a threaded WSGI server.

>>> server = start_background(queries, settings, port=0)   # tests: a free port
>>> server.url
'http://127.0.0.1:40123'
>>> server.stop()

or from a shell: ``chargetracker dashboard --store duckdb:///ct.duckdb`` (the CLI opens the
store and hands this module the queries; ``python -m chargetracker.dashboard.server`` is
the same command). The production entry point is ``chargetracker serve`` (dashboard at
``/``, API under ``/api/v1``); this runner exists for development, tests and benchmarks.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, field

from werkzeug.serving import BaseWSGIServer, make_server

from ..config import Settings
from ..queries import Queries
from ..stores.base import Store
from .app import create_dash_app
from .data import DashboardData

__all__ = ["StandaloneServer", "start_background", "run_standalone"]


@dataclass
class StandaloneServer:
    """A running dashboard server (thread); :meth:`stop` shuts it down."""

    server: BaseWSGIServer
    thread: threading.Thread
    data: DashboardData
    store: Store | None = None   # closed by stop() when the runner opened it
    _stopped: bool = field(default=False, repr=False)

    @property
    def host(self) -> str:
        return str(self.server.host)

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> StandaloneServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _quiet_werkzeug() -> None:
    # One access-log line per callback every 2 s would drown everything else.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def start_background(queries: Queries, settings: Settings | None = None, *, host: str = "127.0.0.1",
                     port: int = 0, data: DashboardData | None = None) -> StandaloneServer:
    """Serve the dashboard of ``queries`` from a daemon thread (``port=0``: a free port)."""
    settings = settings or Settings()
    data = data or DashboardData(queries, settings)
    app = create_dash_app(queries, settings, data=data)
    _quiet_werkzeug()
    server = make_server(host, port, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="chargetracker-dashboard", daemon=True)
    thread.start()
    return StandaloneServer(server, thread, data)


def run_standalone(queries: Queries, host: str = "127.0.0.1", port: int = 8050,
                   settings: Settings | None = None) -> None:
    """Serve the dashboard of ``queries`` until interrupted (the caller owns the store)."""
    settings = settings or Settings()
    app = create_dash_app(queries, settings)
    _quiet_werkzeug()
    server = make_server(host, port, app.server, threaded=True)
    print(f"ChargeTracker dashboard on http://{host}:{server.server_port}/ "
          f"(store {type(queries.store).__name__})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["dashboard", *sys.argv[1:]]))
