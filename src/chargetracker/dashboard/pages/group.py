"""Group deep dive: one group's cells at one cycle, ordered by |deviation|, outliers marked.

The cycle defaults to the group's latest *complete* cycle (closed by at least half of
its cells). Clicking a row (or a point of the distribution) opens the cell's page.
"""

from __future__ import annotations

import math
from typing import Any

import dash
from dash import Input, Output, State, dcc, html

from ...config import Settings
from ...stores.base import TREND_METRICS
from ..data import DashboardData
from ..figures import distribution_figure, empty_figure
from ..tables import cell_href, data_grid, deep_dive_columns, deep_dive_style, deep_dive_table
from ..theme import OVERVIEW_METRICS, metric_spec
from .common import card, control, dropdown, error_box, graph, kv, log_error

__all__ = ["layout", "register", "render"]

DEFAULT_METRIC = "discharge_ah"


def _int(value: Any) -> int | None:
    try:
        v = int(str(value))
    except (TypeError, ValueError):
        return None
    return v if v >= 0 else None


def layout(data: DashboardData | None, query: dict[str, str], token: Any = None) -> html.Div:
    by = query.get("by") or (data.group_key if data else "group")
    groups = data.groups(by, token) if data is not None else []
    group = query.get("group") if query.get("group") in groups else (groups[0] if groups else None)
    metric = query.get("metric") or DEFAULT_METRIC
    if metric not in TREND_METRICS:
        metric = DEFAULT_METRIC
    cycle = _int(query.get("cycle"))
    metric_opts = [{"label": metric_spec(m).axis_title, "value": m} for m in OVERVIEW_METRICS]
    return html.Div([
        dcc.Store(id="dd-by", data=by),
        html.H1(id="dd-title", className="ct-title", children="Group deep dive"),
        html.Div([
            control(f"Group ({by})", dropdown("dd-group", groups, group, clearable=False), width=240),
            control("Metric", dropdown("dd-metric", metric_opts, metric, clearable=False), width=260),
            control("Cycle (empty = latest complete)",
                    dcc.Input(id="dd-cycle", type="number", min=0, step=1, value=cycle, debounce=True,
                              placeholder="latest complete", style={"height": "36px"})),
        ], className="ct-controls"),
        html.Div(id="dd-summary"),
        html.Div([
            card("Cells by |deviation| (click a row to open the cell)",
                 data_grid("dd-table", deep_dive_columns(metric), page_size=25,
                           cell_style=deep_dive_style()),
                 html.Div(id="dd-empty")),
            card("Distribution at this cycle",
                 graph("dd-dist", 360),
                 html.Div("Red diamonds: outliers by the configured rule. Click a point to open the cell.",
                          className="ct-note")),
        ], className="ct-grid"),
    ])


def render(data: DashboardData, settings: Settings, token: Any, group: str | None, metric: str,
           cycle: int | None, by: str) -> tuple[Any, ...]:
    """(rows, columns, figure, summary, title, empty note) of the deep dive."""
    metric = metric or DEFAULT_METRIC
    spec = metric_spec(metric)
    if not group:
        msg = "No groups yet: cells appear here once their metadata or first data is stored."
        return [], deep_dive_columns(metric), empty_figure(msg, height=360), None, \
            "Group deep dive", html.Div(msg, className="ct-empty")
    resolved, dev = data.deep_dive(group, cycle, metric, group_key=by, token=token)
    rows, columns = deep_dive_table(dev, metric)
    for r in rows:
        r["id"] = r["cell_id"]  # the grid's row id: a click names the cell whatever the sort
    fig = distribution_figure(dev, metric)
    which = "latest complete cycle" if cycle is None else "cycle"
    title = f"{group} · {which} {resolved if resolved is not None else '–'}"
    rule = settings.stats
    rule_text = (f"robust |z| > {rule.robust_k:g}" if rule.outlier_rule == "robust"
                 else f"|z| > {rule.sigma_k:g}σ")
    if dev.height:
        first = dev.row(0, named=True)
        n_out = int(dev.get_column("outlier").sum())
        std = first["std"]
        summary = kv([
            ("cells", f"{first['n']}"),
            ("mean", spec.fmt(first["mean"])),
            ("σ", "–" if std is None or not math.isfinite(std)
             else f"{std * abs(spec.scale):.{spec.decimals}f} {spec.unit}"),
            ("σ (%)", "–" if not first["mean"] or std is None
             else f"{100 * std / abs(first['mean']):.2f}"),
            ("median", spec.fmt(first["median"])),
            ("min … max", f"{spec.fmt(first['min'])} … {spec.fmt(first['max'])}"),
            ("outliers", f"{n_out} ({rule_text})"),
        ], id="dd-kv")
        empty = None
    else:
        summary = None
        empty = html.Div(f"No closed {spec.label.lower()} values for {group!r} at "
                         f"{which} {resolved if resolved is not None else '(none yet)'}.",
                         className="ct-empty")
    return rows, columns, fig, summary, title, empty


def register(app: dash.Dash, data: DashboardData, settings: Settings) -> None:
    @app.callback(Output("dd-table", "rowData"), Output("dd-table", "columnDefs"), Output("dd-dist", "figure"),
                  Output("dd-summary", "children"), Output("dd-title", "children"),
                  Output("dd-empty", "children"),
                  Input("version", "data"), Input("dd-group", "value"), Input("dd-metric", "value"),
                  Input("dd-cycle", "value"), State("dd-by", "data"))
    def _render(token: Any, group: str | None, metric: str, cycle: Any, by: str) -> tuple[Any, ...]:
        try:
            return render(data, settings, token, group, metric, _int(cycle), by or data.group_key)
        except Exception as exc:
            log_error("deep dive", exc)
            return ([], dash.no_update, empty_figure("Could not read this group.", height=360), None,
                    "Group deep dive", error_box(exc))

    @app.callback(Output("dd-group", "options"), Input("version", "data"), State("dd-by", "data"))
    def _groups(token: Any, by: str | None) -> list[str]:
        try:
            return data.groups(by or data.group_key, token)
        except Exception as exc:
            log_error("deep dive groups", exc)
            return dash.no_update  # type: ignore[return-value]

    @app.callback(Output("url", "href", allow_duplicate=True),
                  Input("dd-table", "cellClicked"), Input("dd-dist", "clickData"),
                  prevent_initial_call=True)
    def _open_cell(active: dict[str, Any] | None, click: dict[str, Any] | None) -> Any:
        trig = dash.ctx.triggered_id
        if trig == "dd-table" and active and active.get("rowId"):
            return cell_href(str(active["rowId"]))
        if trig == "dd-dist" and click and click.get("points"):
            cid = click["points"][0].get("customdata")
            if isinstance(cid, str):
                return cell_href(cid)
        return dash.no_update
