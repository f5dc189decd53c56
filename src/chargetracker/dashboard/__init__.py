"""The live dashboard (Plotly Dash).

``create_dash_app(queries, settings) -> dash.Dash`` builds the app; its Flask server
(``app.server``) is mounted at ``/`` by ``chargetracker serve`` or served alone by
`chargetracker dashboard` (:func:`chargetracker.dashboard.server.run_standalone`). Figure builders are pure
functions in :mod:`chargetracker.dashboard.figures`. See docs/dashboard.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["create_dash_app"]

if TYPE_CHECKING:  # pragma: no cover
    import dash

    from ..config import Settings
    from ..queries import Queries


def create_dash_app(queries: Queries, settings: Settings | None = None, **kwargs: Any) -> dash.Dash:
    """Build the dashboard app (see :func:`chargetracker.dashboard.app.create_dash_app`).

    Imported lazily so that ``import chargetracker.dashboard`` does not need Dash
    installed until an app is actually built.
    """
    from .app import create_dash_app as _create

    return _create(queries, settings, **kwargs)
