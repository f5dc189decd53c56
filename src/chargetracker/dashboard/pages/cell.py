"""Cell page: raw voltage/current/temperature, capacity per cycle with the fitted fade,
knee and 80 % forecast, the cycle table and CSV downloads.

The raw panel shows the last N hours before the cell's newest sample, downsampled by
the store to at most ``MAX_POINTS`` real samples; zooming in re-reads the zoomed
window at full resolution (up to the same bound).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode

import dash
import polars as pl
from dash import Input, Output, State, dcc, html

from ...config import Settings
from ...schema import CYCLE_SCHEMA
from ..data import DashboardData
from ..figures import FORECAST_LIMIT, cell_capacity_figure, cell_timeseries_figure, empty_figure
from ..tables import cycle_table, data_grid
from ..theme import fmt_count, fmt_ts
from .common import card, control, dropdown, error_box, graph, kv, log_error

__all__ = ["layout", "register", "MAX_POINTS", "window_bounds", "parse_zoom", "trend_items"]

#: Upper bound on raw samples sent to the browser per refresh (store-side downsampling).
MAX_POINTS = 4000
#: Upper bound on raw rows in one CSV download.
MAX_DOWNLOAD_ROWS = 500_000
_WINDOWS = (1.0, 6.0, 24.0, 72.0, 168.0)


def _window_options(default_h: float) -> list[dict[str, Any]]:
    hours = sorted(set(_WINDOWS) | {float(default_h)})
    opts: list[dict[str, Any]] = [{"label": f"last {h:g} h", "value": h} for h in hours]
    return opts + [{"label": "all stored", "value": "all"}]


def layout(data: DashboardData | None, cell_id: str, query: dict[str, str], settings: Settings) -> html.Div:
    cell = data.cell(cell_id) if data is not None else {}
    if cell is None:
        return html.Div([
            html.H1(f"Cell {cell_id}", className="ct-title"),
            html.Div(f"No cell {cell_id!r} in the store.", className="ct-empty", id="cp-missing"),
            dcc.Link("← back to the overview", href="/"),
        ])
    group = (cell or {}).get("group")
    back = ("/group?" + urlencode({"group": group})) if group else "/group"
    return html.Div([
        dcc.Store(id="cp-cell", data=cell_id),
        dcc.Store(id="cp-zoom", data=None),
        html.Div([
            html.H1(f"Cell {cell_id}", className="ct-title", style={"marginRight": "16px"}),
            dcc.Link(f"← group {group}" if group else "← groups", href=back),
        ], style={"display": "flex", "alignItems": "baseline", "gap": "8px"}),
        html.Div(id="cp-meta", children=meta_items(cell or {})),
        card("Raw measurements",
             html.Div([
                 control("Window", dropdown("cp-window", _window_options(settings.dashboard.raw_hours),
                                            float(settings.dashboard.raw_hours), clearable=False)),
                 html.Button("Download raw CSV (window)", id="cp-dl-raw", className="ct-btn", n_clicks=0),
             ], className="ct-controls"),
             graph("cp-ts", 560),
             html.Div(id="cp-ts-note", className="ct-note"),
             dcc.Download(id="cp-download-raw")),
        card("Capacity and fade",
             html.Div(id="cp-trend"),
             graph("cp-cap", 420)),
        card("Cycles",
             html.Div([html.Button("Download cycles CSV", id="cp-dl-cycles", className="ct-btn", n_clicks=0)],
                      className="ct-controls"),
             data_grid("cp-cycles", cycle_table(_no_cycles())[1], page_size=15,
                       row_id="key",
                       row_style={"styleConditions": [{
                           "condition": "params.data.status === 'open'",
                           "style": {"fontStyle": "italic", "color": "#52606d"}}]}),
             dcc.Download(id="cp-download-cycles")),
    ])


def _no_cycles() -> pl.DataFrame:
    return pl.DataFrame(schema=CYCLE_SCHEMA)


def meta_items(cell: dict[str, Any]) -> html.Div:
    latest = cell.get("latest_cycle") or {}
    cap = cell.get("nominal_capacity_ah")
    attrs = cell.get("attributes") or {}
    items = [
        ("group", cell.get("group") or "–"),
        ("chemistry", cell.get("chemistry") or "–"),
        ("test type", cell.get("test_type") or "–"),
        ("nominal", f"{cap:g} Ah" if isinstance(cap, float) and math.isfinite(cap) else "–"),
        ("samples stored", fmt_count(cell.get("n_measurements"))),
        ("cycles (closed)", f"{cell.get('n_cycles', 0)} ({cell.get('n_closed_cycles', 0)})"),
        ("latest cycle", f"{latest.get('cycle')} ({latest.get('status')})" if latest else "–"),
        ("last sample (UTC)", fmt_ts(cell.get("last_ts"))),
    ]
    items += [(str(k), f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in list(attrs.items())[:8]]
    return kv(items)


_RANGE_KEY = re.compile(r"^xaxis\d*\.range(\[(0|1)\])?$")


def _to_epoch(value: Any) -> float | None:
    if isinstance(value, int | float):
        # Plotly reports date axes as strings; a number here is ms since the epoch.
        return float(value) / 1000.0
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace(" ", "T"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # the axis is UTC
    return dt.timestamp()


def parse_zoom(relayout: dict[str, Any] | None) -> tuple[float, float] | None | Literal[False]:
    """A Plotly relayout event -> (start_ts, end_ts) of a zoom, None for "reset the
    zoom" (autorange), or False when the event is not about the time axis."""
    if not relayout:
        return False
    if any(k.endswith(".autorange") and k.startswith("xaxis") for k in relayout):
        return None
    lo = hi = None
    for key, value in relayout.items():
        if not _RANGE_KEY.match(key):
            continue
        if key.endswith("[0]"):
            lo = _to_epoch(value)
        elif key.endswith("[1]"):
            hi = _to_epoch(value)
        elif isinstance(value, list) and len(value) == 2:
            lo, hi = _to_epoch(value[0]), _to_epoch(value[1])
    if lo is None or hi is None or not hi > lo:
        return False
    return (lo, hi)


def window_bounds(last_ts: float | None, window: Any, zoom: Any) -> tuple[float | None, float | None]:
    """(start_ts, end_ts) to read: the zoom when set, else the last ``window`` hours
    before the newest sample (or everything for ``"all"``)."""
    if isinstance(zoom, list | tuple) and len(zoom) == 2:
        return float(zoom[0]), float(zoom[1])
    if window == "all" or last_ts is None:
        return None, None
    try:
        hours = float(window)
    except (TypeError, ValueError):
        hours = 24.0
    return last_ts - hours * 3600.0, None


def trend_items(trend: dict[str, Any] | None) -> html.Div:
    """Fade rate, knee and forecast as key figures."""
    if not trend or not trend.get("n_cycles"):
        return html.Div("No closed cycles yet: the fade fit appears after the first closed cycles.",
                        className="ct-note")

    def per100(v: Any) -> str:
        return "–" if v is None else f"{v * 1e4:+.3f} %/100 cycles"

    fc = trend.get("cycles_to_80pct")
    knee = trend.get("knee_cycle")
    last = trend.get("retention_last")
    return kv([
        ("closed cycles fitted", str(trend.get("n_cycles"))),
        ("retention now", "–" if last is None else f"{100 * last:.2f} %"),
        ("fade (all cycles)", per100(trend.get("fade_rate_per_cycle"))),
        ("fade (recent)", per100(trend.get("recent_fade_rate_per_cycle"))),
        ("knee", "none detected" if knee is None else f"cycle {knee:.0f}"),
        ("80 % retention", "no fade: no forecast" if fc is None
         else f"beyond cycle {FORECAST_LIMIT:,.0f}" if fc > FORECAST_LIMIT
         else f"cycle {fc:,.0f} (forecast)"),
    ], id="cp-trend-kv")


def render_timeseries(data: DashboardData, cell_id: str, window: Any, zoom: Any) -> tuple[Any, str]:
    cell = data.cell(cell_id)
    if cell is None:
        return empty_figure(f"Cell {cell_id!r} is not in the store.", height=560), ""
    start, end = window_bounds(cell.get("last_ts"), window, zoom)
    meas = data.measurements(cell_id, start, end, MAX_POINTS)
    fig = cell_timeseries_figure(meas, cell_id=cell_id, uirevision=f"{cell_id}|{window}")
    total = cell.get("n_measurements") or 0
    note = (f"{meas.height:,} samples shown of {total:,} stored for this cell"
            + (" · zoomed (double-click to reset)" if zoom else "")
            + f" · at most {MAX_POINTS:,} points per view; zoom in for full resolution")
    return fig, note


def render_cycles(data: DashboardData, cell_id: str) -> tuple[Any, ...]:
    cell = data.cell(cell_id)
    cycles = data.cell_cycles(cell_id)
    trend = data.cell_trend(cell_id) if cycles.height else None
    fig = cell_capacity_figure(cycles, trend, cell_id=cell_id)
    rows, columns = cycle_table(cycles)
    items = trend_items(trend)
    warning = gap_warning(cycles)
    return fig, items if warning is None else html.Div([warning, items]), rows, columns, \
        meta_items(cell or {})


def gap_warning(cycles: pl.DataFrame) -> html.Div | None:
    """A warning naming the cycles whose data had gaps (time not integrated, estimated
    missing charge in Ah), or None when no cycle had any."""
    if cycles.height == 0 or "gap_excluded_s" not in cycles.columns:
        return None
    hit = cycles.filter(pl.col("gap_excluded_s").fill_nan(0.0).fill_null(0.0) > 0)
    if hit.height == 0:
        return None
    total_s = float(hit["gap_excluded_s"].fill_nan(0.0).sum())
    missing = float(hit["gap_missing_ah"].fill_nan(0.0).fill_null(0.0).sum())
    listed = ", ".join(str(c) for c in hit["cycle"].head(10).to_list())
    more = f" and {hit.height - 10} more" if hit.height > 10 else ""
    return html.Div(
        f"Data gaps in {hit.height} cycle(s) ({listed}{more}): {total_s:,.0f} s not integrated, "
        f"about {missing:.4g} Ah estimated missing. Their capacity and energy are low by that much.",
        className="ct-warning", id="cp-gap-warning")


def register(app: dash.Dash, data: DashboardData, settings: Settings) -> None:
    @app.callback(Output("cp-zoom", "data"), Input("cp-ts", "relayoutData"), prevent_initial_call=True)
    def _zoom(relayout: dict[str, Any] | None) -> Any:
        z = parse_zoom(relayout)
        if z is False:
            return dash.no_update
        return None if z is None else list(z)

    @app.callback(Output("cp-ts", "figure"), Output("cp-ts-note", "children"),
                  Input("version", "data"), Input("cp-window", "value"), Input("cp-zoom", "data"),
                  State("cp-cell", "data"))
    def _timeseries(token: Any, window: Any, zoom: Any, cell_id: str) -> tuple[Any, Any]:
        try:
            return render_timeseries(data, cell_id, window, zoom)
        except Exception as exc:
            log_error("cell raw", exc)
            return empty_figure("Could not read raw measurements.", height=560), error_box(exc)

    @app.callback(Output("cp-cap", "figure"), Output("cp-trend", "children"), Output("cp-cycles", "rowData"),
                  Output("cp-cycles", "columnDefs"), Output("cp-meta", "children"),
                  Input("version", "data"), State("cp-cell", "data"))
    def _cycles(token: Any, cell_id: str) -> tuple[Any, ...]:
        try:
            return render_cycles(data, cell_id)
        except Exception as exc:
            log_error("cell cycles", exc)
            return (empty_figure("Could not read cycles.", height=420), error_box(exc), [], dash.no_update,
                    dash.no_update)

    @app.callback(Output("cp-download-cycles", "data"), Input("cp-dl-cycles", "n_clicks"),
                  State("cp-cell", "data"), prevent_initial_call=True)
    def _download_cycles(n: int | None, cell_id: str) -> Any:
        if not n:
            return dash.no_update
        csv = data.cell_cycles(cell_id).write_csv()
        return dcc.send_string(csv, filename=f"{_safe_name(cell_id)}_cycles.csv", type="text/csv")

    @app.callback(Output("cp-download-raw", "data"), Input("cp-dl-raw", "n_clicks"),
                  State("cp-cell", "data"), State("cp-window", "value"), State("cp-zoom", "data"),
                  prevent_initial_call=True)
    def _download_raw(n: int | None, cell_id: str, window: Any, zoom: Any) -> Any:
        if not n:
            return dash.no_update
        cell = data.cell(cell_id) or {}
        start, end = window_bounds(cell.get("last_ts"), window, zoom)
        meas = data.measurements(cell_id, start, end, MAX_DOWNLOAD_ROWS)
        return dcc.send_string(meas.write_csv(), filename=f"{_safe_name(cell_id)}_raw.csv", type="text/csv")


def _safe_name(cell_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", cell_id) or "cell"
