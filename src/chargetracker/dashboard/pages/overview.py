"""Overview: every group's mean and +-1 sigma band of a cycle metric against cycle number.

Closed cycles make the lines; open (in-progress) cycles are hollow markers apart.
Filters: which groups, group by which metadata key, and any metadata key = value(s).
Clicking a point opens the group's deep dive at that cycle.
"""

from __future__ import annotations

import math
import time
from typing import Any
from urllib.parse import urlencode

import dash
import plotly.graph_objects as go
import polars as pl
from dash import Input, Output, State, dcc, html

from ...config import Settings
from ..data import DashboardData
from ..figures import NO_GROUP, empty_figure, group_trend_figure
from ..theme import OVERVIEW_METRICS, group_styles, metric_spec
from .common import card, control, dropdown, error_box, graph, log_error

__all__ = ["layout", "register", "render", "build_filters", "summary_table"]

DEFAULT_METRIC = "discharge_ah"


def _metric_options() -> list[dict[str, str]]:
    return [{"label": metric_spec(m).axis_title, "value": m} for m in OVERVIEW_METRICS]


def layout(data: DashboardData | None, query: dict[str, str], token: Any = None) -> html.Div:
    keys: list[str] = []
    group_key = data.group_key if data else "group"
    if data is not None:
        keys = data.metadata_keys(data.cells(token))
    metric = query.get("metric") if query.get("metric") in OVERVIEW_METRICS else DEFAULT_METRIC
    by = query.get("by") or group_key
    key_opts = [{"label": k, "value": k} for k in (keys or [group_key])]
    return html.Div([
        html.H1("Group trends", className="ct-title"),
        html.Div([
            control("Metric", dropdown("ov-metric", _metric_options(), metric, clearable=False,
                                       persistence=True), width=260),
            control("Group by", dropdown("ov-groupby", key_opts, by, clearable=False,
                                         persistence=True)),
            control("Groups", dropdown("ov-groups", [], None, multi=True, placeholder="all groups",
                                       persistence=True), width=260),
            control("Filter: metadata key", dropdown("ov-fkey", key_opts, None, placeholder="(none)",
                                                     persistence=True)),
            control("= value(s)", dropdown("ov-fvalue", [], None, multi=True, placeholder="any",
                                           persistence=True), width=220),
        ], className="ct-controls"),
        card(None,
             graph("ov-graph", 560),
             html.Div(id="ov-note", className="ct-note")),
        card("Groups at their latest closed cycle", html.Div(id="ov-summary")),
    ])


def build_filters(by: str, groups: list[str] | None, fkey: str | None,
                  fvalues: list[str] | None) -> dict[str, list[str]] | None:
    """Store filters from the controls (AND of the group choice and the metadata filter)."""
    filters: dict[str, list[str]] = {}
    if groups:
        filters[by] = [g for g in groups if g != NO_GROUP]
    if fkey and fvalues:
        if fkey in filters:
            filters[fkey] = [v for v in filters[fkey] if v in set(fvalues)]
        else:
            filters[fkey] = list(fvalues)
    return filters or None


def summary_table(closed: pl.DataFrame, metric: str, by: str) -> html.Div | html.Table:
    """Per group: newest closed cycle, its mean +- sigma, cells, and the change of the mean
    since the group's first cycle. Each group links to its deep dive."""
    if closed.height == 0:
        return html.Div("No closed cycles yet.", className="ct-empty")
    spec = metric_spec(metric)
    closed = closed.with_columns(pl.col("group").fill_null(NO_GROUP))
    styles = group_styles(closed.get_column("group").unique().to_list())
    first = closed.sort("cycle").group_by("group", maintain_order=True).first()
    last = closed.sort("cycle").group_by("group", maintain_order=True).last()
    rows = []
    for r in last.sort("group").to_dicts():
        g = r["group"]
        f = first.filter(pl.col("group") == g).row(0, named=True)
        change = (100.0 * (r["mean"] - f["mean"]) / abs(f["mean"])
                  if f["mean"] and r["cycle"] != f["cycle"] else None)
        href = "/group?" + urlencode({"group": g, "cycle": r["cycle"], "metric": metric, "by": by})
        rows.append(html.Tr([
            html.Td([html.Span("■ ", style={"color": styles[g][0]}),
                     dcc.Link(g, href=href) if g != NO_GROUP else g]),
            html.Td(str(r["cycle"])),
            html.Td(str(r["n"])),
            html.Td(spec.fmt(r["mean"])),
            html.Td("–" if r["std"] is None or not math.isfinite(r["std"])
                    else f"{r['std'] * abs(spec.scale):.{spec.decimals}f} {spec.unit}"),
            html.Td("–" if r["std_pct"] is None else f"{r['std_pct']:.2f}"),
            html.Td("–" if change is None else f"{change:+.2f}"),
        ]))
    head = html.Thead(html.Tr([html.Th(h) for h in ("group", "latest closed cycle", "cells", "mean",
                                                    "σ", "σ (%)", "change since first cycle (%)")]))
    return html.Table([head, html.Tbody(rows)], className="ct-table", id="ov-summary-table")


def render(data: DashboardData, token: Any, metric: str, by: str, groups: list[str] | None,
           fkey: str | None, fvalues: list[str] | None) -> tuple[go.Figure, Any, Any]:
    """(figure, note, summary) of the overview; the callback's whole work."""
    metric = metric or DEFAULT_METRIC
    by = by or data.group_key
    filters = build_filters(by, groups, fkey, fvalues)
    t0 = time.perf_counter()
    closed, opened = data.trend(metric, group_key=by, filters=filters, token=token)
    fig = group_trend_figure(closed, opened, metric, group_label=by,
                             min_cell_share=data.queries.stats.min_cell_share)
    if closed.height == 0 and opened.height == 0:
        return fig, None, summary_table(closed, metric, by)
    n_groups = closed.get_column("group").n_unique() if closed.height else 0
    note = (f"{n_groups} group(s) · {closed.height:,} (group, cycle) points over closed cycles · "
            f"{opened.height} open (in-progress) point(s) drawn as hollow markers, never averaged "
            f"with closed ones · band = ±1σ · grouped by {by!r} · "
            f"query {1000 * (time.perf_counter() - t0):.0f} ms")
    if filters:
        note += " · filters " + ", ".join(f"{k} ∈ {v}" for k, v in filters.items())
    return fig, note, summary_table(closed, metric, by)


def register(app: dash.Dash, data: DashboardData, settings: Settings) -> None:
    @app.callback(Output("ov-groups", "options"),
                  Input("ov-groupby", "value"), Input("version", "data"))
    def _group_options(by: str | None, token: Any) -> list[str]:
        try:
            return data.key_values(data.cells(token), by or data.group_key)
        except Exception as exc:
            log_error("overview groups", exc)
            return []

    @app.callback(Output("ov-fvalue", "options"),
                  Input("ov-fkey", "value"), Input("version", "data"))
    def _filter_options(key: str | None, token: Any) -> list[str]:
        if not key:
            return []
        try:
            return data.key_values(data.cells(token), key)
        except Exception as exc:
            log_error("overview filter values", exc)
            return []

    @app.callback(Output("ov-graph", "figure"), Output("ov-note", "children"),
                  Output("ov-summary", "children"),
                  Input("version", "data"), Input("ov-metric", "value"), Input("ov-groupby", "value"),
                  Input("ov-groups", "value"), Input("ov-fkey", "value"), Input("ov-fvalue", "value"))
    def _render(token: Any, metric: str, by: str, groups: list[str] | None, fkey: str | None,
                fvalues: list[str] | None) -> tuple[Any, Any, Any]:
        try:
            return render(data, token, metric, by, groups, fkey, fvalues)
        except Exception as exc:
            log_error("overview", exc)
            return empty_figure("Could not read the group trend (see the message below).", height=560), error_box(exc), None

    @app.callback(Output("url", "href", allow_duplicate=True),
                  Input("ov-graph", "clickData"),
                  State("ov-metric", "value"), State("ov-groupby", "value"),
                  prevent_initial_call=True)
    def _open_group(click: dict[str, Any] | None, metric: str, by: str) -> Any:
        if not click or not click.get("points"):
            return dash.no_update
        point = click["points"][0]
        custom = point.get("customdata")
        # Mean-line points carry [group, sigma text, cells]; open-cycle markers are not links.
        if not isinstance(custom, list) or len(custom) != 3 or custom[0] == NO_GROUP:
            return dash.no_update
        q = {"group": custom[0], "cycle": int(point["x"]), "metric": metric or DEFAULT_METRIC,
             "by": by or data.group_key}
        return "/group?" + urlencode(q)
