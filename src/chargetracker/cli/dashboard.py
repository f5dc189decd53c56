"""``chargetracker dashboard``: the dashboard alone (no API), on a threaded WSGI server.

For development and benchmarks; ``chargetracker serve`` serves dashboard and API together.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import DashboardConfig, Settings

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("dashboard", help="serve the dashboard alone (no API)",
                              description=__doc__)
    p.add_argument("--store", default=Settings().store_url, help="store URL (default %(default)s)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--refresh-ms", type=int, default=DashboardConfig().refresh_ms,
                   help="live refresh period, ms (default %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..dashboard.server import run_standalone  # Dash is the 'server' extra
    from ..queries import Queries
    from ..stores.url import open_store, store_location

    settings = Settings(store_url=args.store, dashboard=DashboardConfig(refresh_ms=args.refresh_ms))
    print(f"chargetracker dashboard: store {store_location(args.store)}", file=sys.stderr, flush=True)
    store = open_store(args.store)
    try:
        run_standalone(Queries(store, settings.stats), args.host, args.port, settings)
    finally:
        store.close()
    return 0
