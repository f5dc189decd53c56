"""Smart-meter pages: houses (daily kWh stacked by appliance + unmetered rest), a meter
(power trace with its threshold line and spikes, daily energy), zip codes (totals and the
per-house distribution) and live alerts pushed by server-sent events.

Routes: ``/meters`` houses, ``/meters/meter?id=``, ``/meters/zips``, ``/meters/live``.
Data comes from the meter tables of the dashboard's store URL
(:class:`~chargetracker.stores.meters.MeterStore`); the live page subscribes in the
browser to ``GET /api/v1/meters/alerts/stream`` (served by the API process the dashboard
is mounted in), so new alerts appear without reloading or polling.
"""

from __future__ import annotations

import threading
from typing import Any

import plotly.graph_objects as go
import polars as pl
from dash import Input, Output, dcc, html

from ...config import Settings
from ...meters import house_breakdown, house_days, zip_days
from ...stores.meters import MeterStore
from .common import card, control, dropdown, error_box, log_error

__all__ = ["layout", "register", "validation", "SUBNAV"]

SUBNAV = (("Houses", "/meters"), ("Meter", "/meters/meter"), ("Zip codes", "/meters/zips"),
          ("Live alerts", "/meters/live"))

_STORES: dict[str, MeterStore] = {}
_LOCK = threading.Lock()


def _store(settings: Settings) -> MeterStore:
    with _LOCK:
        s = _STORES.get(settings.store_url)
        if s is None:
            s = _STORES[settings.store_url] = MeterStore(settings.store_url)
        return s


def _subnav(active: str) -> html.Div:
    return html.Div([dcc.Link(label, href=href, className="active" if href == active else "",
                              style={"marginRight": "1em"}) for label, href in SUBNAV],
                    className="ct-subnav")


def _fig(title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, margin={"l": 50, "r": 20, "t": 40, "b": 40}, height=380,
                      template="plotly_white", legend={"orientation": "h"})
    return fig


def houses_figure(store: MeterStore, house_id: str | None) -> go.Figure:
    fig = _fig(f"Daily energy of {house_id}, kWh" if house_id else "Choose a house")
    if not house_id:
        return fig
    parts = house_breakdown(store.days(house_id=house_id), store.meters(house_id=house_id))
    for app in parts["appliance"].unique().sort().to_list():
        sub = parts.filter(pl.col("appliance") == app)
        fig.add_bar(x=sub["date"].to_list(), y=sub["energy_kwh"].to_list(), name=app)
    fig.update_layout(barmode="relative", yaxis_title="kWh")
    return fig


def meter_figures(store: MeterStore, meter_id: str | None) -> tuple[go.Figure, go.Figure]:
    trace, daily = _fig(f"Power of {meter_id}" if meter_id else "Choose a meter"), _fig("Daily energy, kWh")
    if not meter_id:
        return trace, daily
    r = store.readings(meter_id, limit=50_000)
    x = pl.from_epoch((r["ts"] * 1e6).cast(pl.Int64), time_unit="us").to_list()
    trace.add_scatter(x=x, y=r["power_w"].to_list(), mode="lines", name="power (W)")
    thr = store.thresholds(meter_id=meter_id)
    if thr.height and thr["p97_w"][0] is not None:
        trace.add_hline(y=thr["p97_w"][0], line_dash="dash", line_color="#c0392b",
                        annotation_text=f"p97 threshold {thr['p97_w'][0]:.0f} W")
    al = store.alerts(meter_id=meter_id, limit=5000)
    if al.height:
        ax = pl.from_epoch((al["peak_ts"] * 1e6).cast(pl.Int64), time_unit="us").to_list()
        trace.add_scatter(x=ax, y=al["peak_w"].to_list(), mode="markers", name="spikes",
                          marker={"color": "#c0392b", "size": 10, "symbol": "x"})
    trace.update_layout(yaxis_title="W")
    d = store.days(meter_ids=[meter_id])
    daily.add_bar(x=d["date"].to_list(), y=d["energy_kwh"].to_list(), name="kWh")
    return trace, daily


def zip_figures(store: MeterStore) -> tuple[go.Figure, go.Figure]:
    hd = house_days(store.days(), store.meters())
    z = zip_days(hd)
    tot, dist = _fig("Total mains energy per zip code and day, kWh"), _fig("kWh per house and day")
    for code in z["zip"].unique().sort().to_list():
        sub = z.filter(pl.col("zip") == code)
        tot.add_scatter(x=sub["date"].to_list(), y=sub["total_kwh"].to_list(), mode="lines+markers",
                        name=code)
    for code in hd["zip"].drop_nulls().unique().sort().to_list():
        dist.add_box(y=hd.filter(pl.col("zip") == code)["mains_kwh"].to_list(), name=code)
    return tot, dist


def _live() -> html.Div:
    return html.Div([
        html.H1("Live spike alerts", className="ct-title"), _subnav("/meters/live"),
        card("New alerts (pushed by the server as they happen)",
             html.Div("connecting…", id="mt-live-status"),
             html.Ul(id="mt-live-list", className="ct-live-list")),
        dcc.Interval(id="mt-live-start", interval=100, max_intervals=1),
        html.Div(id="mt-live-dummy", style={"display": "none"}),
    ])


def layout(settings: Settings | None, path: str, query: dict[str, str]) -> html.Div:
    """The page at ``path`` (``/meters...``)."""
    page = path.rstrip("/") or "/meters"
    if page == "/meters/live":
        return _live()
    if settings is None:
        return html.Div()
    try:
        store = _store(settings)
        if page == "/meters/meter":
            ids = store.meters()["meter_id"].to_list()
            chosen = query.get("id") or (ids[0] if ids else None)
            tr, daily = meter_figures(store, chosen)
            return html.Div([
                html.H1("Meter", className="ct-title"), _subnav(page),
                control("Meter", dropdown("mt-meter", ids, chosen, clearable=False), width=360),
                card(None, dcc.Graph(id="mt-trace", figure=tr)),
                card(None, dcc.Graph(id="mt-daily", figure=daily))])
        if page == "/meters/zips":
            tot, dist = zip_figures(store)
            return html.Div([html.H1("Zip codes", className="ct-title"), _subnav(page),
                             card(None, dcc.Graph(id="mt-zip-total", figure=tot)),
                             card(None, dcc.Graph(id="mt-zip-dist", figure=dist))])
        houses = store.houses()["house_id"].to_list()
        chosen = query.get("house") or (houses[0] if houses else None)
        return html.Div([
            html.H1("Houses", className="ct-title"), _subnav("/meters"),
            control("House", dropdown("mt-house", houses, chosen, clearable=False), width=320),
            card(None, dcc.Graph(id="mt-house-fig", figure=houses_figure(store, chosen)))])
    except Exception as exc:
        log_error(f"page {path}", exc)
        return html.Div([html.H1("Could not load this page", className="ct-title"), error_box(exc)])


def validation() -> html.Div:
    return html.Div([
        dropdown("mt-house", [], None), dcc.Graph(id="mt-house-fig"),
        dropdown("mt-meter", [], None), dcc.Graph(id="mt-trace"), dcc.Graph(id="mt-daily"),
        _live()])


_SSE_JS = """
function(n) {
    if (window.__ctMeterSSE) { return window.dash_clientside.no_update; }
    const es = new EventSource('/api/v1/meters/alerts/stream');
    window.__ctMeterSSE = es;
    const fmt = (t) => new Date(t * 1000).toISOString().replace('.000', '');
    es.onopen = () => {
        const s = document.getElementById('mt-live-status');
        if (s) { s.textContent = 'connected'; s.setAttribute('data-state', 'connected'); }
    };
    es.addEventListener('alert', (ev) => {
        const a = JSON.parse(ev.data);
        const ul = document.getElementById('mt-live-list');
        if (!ul) { return; }
        const li = document.createElement('li');
        li.className = 'mt-alert ' + a.status;
        li.setAttribute('data-meter', a.meter_id);
        li.setAttribute('data-status', a.status);
        li.setAttribute('data-received', String(Date.now()));
        const where = [a.house_id, a.zip].filter(x => x).join(' · ');
        li.textContent = (a.status === 'open' ? 'SPIKE ' : 'ended ') + a.meter_id +
            (where ? ' (' + where + ')' : '') + ': ' + Math.round(a.peak_w) + ' W = ' +
            a.ratio.toFixed(2) + ' x threshold ' + Math.round(a.threshold_w) + ' W at ' +
            fmt(a.start_ts) + (a.status === 'closed' ? ', lasted ' + a.duration_s + ' s' : '');
        ul.prepend(li);
        while (ul.children.length > 200) { ul.removeChild(ul.lastChild); }
    });
    return '';
}
"""


def register(app: Any, settings: Settings) -> None:
    @app.callback(Output("mt-house-fig", "figure"), Input("mt-house", "value"),
                  prevent_initial_call=True)
    def _house(value: str | None) -> go.Figure:
        return houses_figure(_store(settings), value)

    @app.callback(Output("mt-trace", "figure"), Output("mt-daily", "figure"),
                  Input("mt-meter", "value"), prevent_initial_call=True)
    def _meter(value: str | None) -> tuple[go.Figure, go.Figure]:
        return meter_figures(_store(settings), value)

    app.clientside_callback(_SSE_JS, Output("mt-live-dummy", "children"),
                            Input("mt-live-start", "n_intervals"))

