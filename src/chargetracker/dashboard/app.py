"""The Dash app: a shell (header counters, navigation, live refresh) and a URL router.

``create_dash_app(queries, settings)`` returns a :class:`dash.Dash` whose Flask server
(``app.server``) can be served alone (:mod:`.server`) or mounted at ``/`` under the
FastAPI server. Every callback is registered on this app object (never Dash's global
registry), so several apps can live in one process (tests, the API server).

Live refresh: one ``dcc.Interval`` (``DashboardConfig.refresh_ms``, 2 s by default)
polls :meth:`DashboardData.status`; the ``version`` store is only rewritten when the
token changes, and page callbacks take ``version`` as input, so an idle store costs one
cheap read per tick and no re-rendering.

Routes: ``/`` overview, ``/group?group=&cycle=&metric=&by=`` deep dive,
``/cell/<url-encoded id>`` cell, ``/alerts``, ``/ingest``.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote

import dash
from dash import Input, Output, State, dcc, html

from ..config import Settings
from ..queries import Queries
from .data import DashboardData
from .pages import alarms, alerts, cell, group, ingest, overview
from .pages import meters as meters_page
from .pages.common import error_box, log_error, params
from .tables import cell_href
from .theme import CSS, fmt_count, fmt_duration, fmt_rate

__all__ = ["create_dash_app", "NAV"]

#: Recount open alerts at least every this many refresh ticks.
OPEN_ALERTS_EVERY = 10

#: (nav id, label, path) of the top navigation.
NAV: tuple[tuple[str, str, str], ...] = (
    ("overview", "Overview", "/"),
    ("group", "Deep dive", "/group"),
    ("alerts", "Alerts", "/alerts"),
    ("ingest", "Ingest", "/ingest"),
    ("alarms", "Fleet alarms", "/alarms"),
    ("meters", "Meters", "/meters"),
)

_INDEX = """<!DOCTYPE html>
<html lang="en">
    <head>
        {%metas%}
        <title>{%title%}</title>
        {%favicon%}
        {%css%}
        <style>""" + CSS + """</style>
    </head>
    <body>
        {%app_entry%}
        <footer>
            {%config%}
            {%scripts%}
            {%renderer%}
        </footer>
    </body>
</html>"""


def _counter(label: str, id: str, title: str) -> html.Div:
    return html.Div([html.Span("–", id=id, className="v"), html.Span(label, className="k")],
                    className="ct-counter", id=f"{id}-box", title=title)


def _header() -> html.Header:
    return html.Header([
        dcc.Link("⚡ ChargeTracker", href="/", className="ct-brand"),
        html.Nav([dcc.Link(label, href=path, id=f"nav-{name}") for name, label, path in NAV],
                 className="ct-nav"),
        dcc.Input(id="hdr-cell", type="text", placeholder="go to cell id…", debounce=True,
                  className="ct-goto"),
        html.Div([
            _counter("cells", "hdr-cells", "cells known to the store"),
            _counter("samples/s", "hdr-rate", "accepted samples per second over the last 60 s of commits"),
            _counter("open alerts", "hdr-alerts", "alerts not acknowledged yet"),
            _counter("pipeline lag", "hdr-lag",
                     "wall-clock now minus the timestamp of the newest stored sample; for "
                     "data on its own clock (simulated or replayed), the time since the "
                     "last commit"),
        ], className="ct-counters"),
        html.Div(id="hdr-status", className="ct-status"),
    ], className="ct-header")


def _shell(refresh_ms: int, token: Any = None) -> html.Div:
    return html.Div([
        dcc.Location(id="url", refresh="callback-nav"),
        dcc.Interval(id="tick", interval=max(200, int(refresh_ms)), n_intervals=0),
        dcc.Store(id="version", data=token),
        dcc.Store(id="ack-count", data=0),
        _header(),
        html.Main(id="page", className="ct-main"),
    ])


#: Data whose newest sample is further than this from the wall clock runs on its own
#: clock (a simulated fleet, a replay of old files), s.
OWN_CLOCK_S = 86400.0


def pipeline_lag(stats: dict[str, Any], now: float) -> float | None:
    """The pipeline lag in the clock the data uses, s.

    Data on the wall clock: wall now minus the newest stored sample. Data on its own
    clock (newest sample more than :data:`OWN_CLOCK_S` from the wall clock: simulated
    or replayed): comparing the two clocks says nothing about the pipeline (a
    simulated year-old fleet would read "334 d"), so the lag is the wall time since the
    store last advanced (its last commit). None when nothing is stored.
    """
    newest = stats.get("newest_ts")
    if newest is None:
        return None
    skew = now - float(newest)
    if abs(skew) <= OWN_CLOCK_S:
        return skew
    last = stats.get("last_commit_wall")
    return None if last is None else max(0.0, now - float(last))


def _header_values(data: DashboardData, stats: dict[str, Any], open_alerts: tuple[int, bool] | None,
                   now: float) -> dict[str, Any]:
    last = stats.get("last_commit_wall")
    out: dict[str, Any] = {
        "cells": fmt_count(stats.get("cells")),
        "rate": fmt_rate(stats.get("samples_per_s")),
        "lag": fmt_duration(pipeline_lag(stats, now)),
        "status": f"updated {time.strftime('%H:%M:%S', time.gmtime(now))}Z · "
                  + ("no commit yet" if last is None else f"last commit {fmt_duration(now - last)} ago"),
    }
    if open_alerts is not None:
        n, capped = open_alerts
        out["alerts"] = f"{n:,}{'+' if capped else ''}"
        out["alerts_class"] = "ct-counter alarm" if n else "ct-counter"
    return out


def create_dash_app(queries: Queries, settings: Settings | None = None, *,
                    data: DashboardData | None = None) -> dash.Dash:
    """The ChargeTracker dashboard over ``queries`` (its store and statistics settings).

    ``settings.dashboard.refresh_ms`` sets the live refresh period and
    ``settings.dashboard.raw_hours`` the default raw-data window of the cell page.
    Pass ``data`` to share a :class:`DashboardData` (and its caches) with the caller.
    """
    settings = settings or Settings()
    data = data or DashboardData(queries, settings)
    refresh_ms = settings.dashboard.refresh_ms
    app = dash.Dash(
        __name__,
        title="ChargeTracker",
        update_title=None,  # type: ignore[arg-type]  # no "Updating..." title flicker per refresh
        include_assets_files=False,  # the stylesheet is inlined in the index page
        serve_locally=True,          # no CDN: works offline and behind firewalls
        index_string=_INDEX,
    )

    def serve_layout() -> html.Div:
        # The first version token comes with the page, so page callbacks run once with it
        # instead of once without and once more when the first tick answers.
        token: Any = None
        try:
            _, store_token = data.status()
            token = [*store_token, 0]  # + this page's acknowledgements (ack-count starts at 0)
        except Exception as exc:
            log_error("layout", exc)
        return _shell(refresh_ms, token)

    app.layout = serve_layout
    app.validation_layout = html.Div([  # type: ignore[assignment]
        _shell(refresh_ms),
        overview.layout(None, {}),
        group.layout(None, {}),
        cell.layout(None, "", {}, settings),
        alerts.layout(None),
        ingest.layout(None),
        alarms.layout(None),
        meters_page.validation(),
    ])

    @app.callback(Output("page", "children"),
                  *[Output(f"nav-{name}", "className") for name, _, _ in NAV],
                  Input("url", "pathname"), Input("url", "search"), State("version", "data"))
    def _route(pathname: str | None, search: str | None, token: Any) -> tuple[Any, ...]:
        path = pathname or "/"
        query = params(search)
        active = ""
        try:
            if path in ("/", "/overview"):
                page: Any = overview.layout(data, query, token)
                active = "overview"
            elif path.rstrip("/") == "/group":
                page = group.layout(data, query, token)
                active = "group"
            elif path.startswith("/cell/"):
                page = cell.layout(data, unquote(path[len("/cell/"):]), query, settings)
            elif path.rstrip("/") == "/alerts":
                page = alerts.layout(data)
                active = "alerts"
            elif path.rstrip("/") == "/ingest":
                page = ingest.layout(data)
                active = "ingest"
            elif path.rstrip("/") == "/alarms":
                page, active = alarms.layout(data), "alarms"
            elif path.startswith("/meters"):
                page, active = meters_page.layout(settings, path, query), "meters"
            else:
                page = html.Div([html.H1("Page not found", className="ct-title"),
                                 html.P(f"Nothing at {path}."), dcc.Link("← overview", href="/")])
        except Exception as exc:
            log_error(f"page {path}", exc)
            page = html.Div([html.H1("Could not load this page", className="ct-title"), error_box(exc)])
        return (page, *["active" if name == active else "" for name, _, _ in NAV])

    @app.callback(Output("hdr-cells", "children"), Output("hdr-rate", "children"),
                  Output("hdr-alerts", "children"), Output("hdr-alerts-box", "className"),
                  Output("hdr-lag", "children"), Output("hdr-status", "children"),
                  Output("hdr-status", "className"), Output("version", "data"),
                  Input("tick", "n_intervals"), Input("ack-count", "data"), State("version", "data"))
    def _tick(n: int | None, acks: int | None, token: Any) -> tuple[Any, ...]:
        now = data.clock()
        try:
            stats, store_token = data.status()
        except Exception as exc:
            log_error("status", exc)
            nu = dash.no_update
            return nu, nu, nu, nu, nu, f"store unavailable: {exc}", "ct-status bad", nu
        # Acknowledging does not change the store's counters: this page's ack count is
        # part of the token, so a tick racing the acknowledgement still sees the change.
        new_token = [*store_token, acks or 0]
        changed = new_token != token
        # The open-alert count is a bigger read: when something changed, and every
        # OPEN_ALERTS_EVERY ticks for acknowledgements made elsewhere (API, other tabs).
        periodic = not n or n % OPEN_ALERTS_EVERY == 0
        open_alerts = data.open_alerts() if (changed or periodic or token is None) else None
        v = _header_values(data, stats, open_alerts, now)
        return (v["cells"], v["rate"], v.get("alerts", dash.no_update),
                v.get("alerts_class", dash.no_update), v["lag"], v["status"], "ct-status",
                new_token if changed else dash.no_update)

    @app.callback(Output("url", "href", allow_duplicate=True), Input("hdr-cell", "value"),
                  prevent_initial_call=True)
    def _goto_cell(value: str | None) -> Any:
        if not value or not value.strip():
            return dash.no_update
        return cell_href(value.strip())

    for module in (overview, group, cell, alerts, ingest, alarms):
        module.register(app, data, settings)
    meters_page.register(app, settings)
    return app
