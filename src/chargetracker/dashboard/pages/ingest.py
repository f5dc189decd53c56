"""Ingest health: samples/s over time, per-source counters and lag, dead letters."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, dcc, html

from ...config import Settings
from ..data import DashboardData
from ..figures import dead_letter_figure, empty_figure, ingest_rate_figure, ingest_rates
from ..tables import dead_letters_table, sources_table
from ..theme import fmt_count, fmt_duration, fmt_rate, fmt_ts
from .common import card, control, dropdown, error_box, graph, kv, log_error

__all__ = ["layout", "register", "render", "WINDOWS"]

#: (window s, label, bucket s) of the samples/s chart.
WINDOWS: tuple[tuple[int, str, int], ...] = (
    (900, "last 15 min", 5), (3600, "last hour", 15), (6 * 3600, "last 6 h", 60),
    (24 * 3600, "last 24 h", 300),
)
#: Without new data the chart still slides forward (an idle pipeline drops to 0), but
#: at most this often, s.
IDLE_REDRAW_S = 10.0


def layout(data: DashboardData | None = None) -> html.Div:
    opts = [{"label": label, "value": w} for w, label, _ in WINDOWS]
    return html.Div([
        dcc.Store(id="in-last", data=None),
        html.H1("Ingest", className="ct-title"),
        html.Div(id="in-kv"),
        card("Samples per second",
             html.Div([control("Window", dropdown("in-window", opts, 3600, clearable=False, persistence=True))],
                      className="ct-controls"),
             graph("in-rate", 320)),
        html.Div([
            card("Sources", html.Div(id="in-sources")),
            card("Dead letters by reason", graph("in-dead-fig", 280)),
        ], className="ct-grid2"),
        card("Recent dead letters", html.Div(id="in-dead")),
    ])


def render(data: DashboardData, window_s: int) -> tuple[Any, ...]:
    """(key figures, rate figure, sources table, reasons figure, dead-letter table)."""
    now = data.clock()
    stats = data.ingest_stats()
    bucket = next((b for w, _, b in WINDOWS if w == window_s), 15)
    series = data.rate_series(now - window_s)
    rates = ingest_rates(series, bucket_s=bucket, start=now - window_s, end=now)
    dead = data.dead_letters(limit=500)
    last = stats.get("last_commit_wall")
    items = kv([
        ("samples accepted", fmt_count(stats.get("samples_total"))),
        ("rejected", fmt_count(stats.get("rejected_total"))),
        ("samples/s (last 60 s)", fmt_rate(stats.get("samples_per_s"))),
        ("measurements stored", fmt_count(stats.get("measurements_stored"))),
        ("dead letters stored", fmt_count(stats.get("dead_letters_stored"))),
        ("newest sample (UTC)", fmt_ts(stats.get("newest_ts"))),
        ("data lag", fmt_duration(stats.get("lag_s"))),
        ("last commit", "never" if last is None else f"{fmt_duration(now - last)} ago"),
    ], id="in-kv-items")
    return (items, ingest_rate_figure(rates, bucket_s=bucket), sources_table(stats, now),
            dead_letter_figure(dead), dead_letters_table(dead))


def register(app: dash.Dash, data: DashboardData, settings: Settings) -> None:
    @app.callback(Output("in-kv", "children"), Output("in-rate", "figure"), Output("in-sources", "children"),
                  Output("in-dead-fig", "figure"), Output("in-dead", "children"), Output("in-last", "data"),
                  Input("version", "data"), Input("tick", "n_intervals"), Input("in-window", "value"),
                  State("in-last", "data"))
    def _render(token: Any, _n: int | None, window: Any, last: dict[str, Any] | None) -> tuple[Any, ...]:
        now = data.clock()
        if (dash.ctx.triggered_id == "tick" and last and last.get("token") == token
                and now - float(last.get("wall") or 0) < IDLE_REDRAW_S):
            return (dash.no_update,) * 6
        try:
            out = render(data, int(window or 3600))
        except Exception as exc:
            log_error("ingest", exc)
            return (error_box(exc), empty_figure("Could not read ingest statistics.", height=320), None,
                    empty_figure("Could not read dead letters.", height=280), None, {"token": token, "wall": now})
        return (*out, {"token": token, "wall": now})
