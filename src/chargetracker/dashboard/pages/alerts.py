"""Alerts: the episodes of each condition, and the live feed of notifications, newest
first, with an acknowledge action per open alert.

An episode (docs/alerts.md) is one row per (cell, rule) condition while it lasts: first
and last cycle, cycles hit, worst value, open or resolved, and what became of its
notification (the alert below, its acknowledgement, or suppressed by the rate limit).

The page keeps the rows it has shown in the browser and, on each data change, asks the
store only for alerts with an id above the newest one it has (``since_id``). The feed
is a paged AG Grid (hundreds of rows stay fast); clicking an open alert's
"Acknowledge" cell acknowledges it (``store.ack_alert``), clicking a cell id opens the
cell's page.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, dcc, html

from ...config import Settings
from ..data import DashboardData
from ..tables import (
    ACK_LABEL,
    ALERT_COLUMNS,
    EPISODE_COLUMNS,
    alert_rows,
    alert_styles,
    alert_table_rows,
    cell_href,
    data_grid,
    episode_styles,
    episode_table_rows,
)
from .common import card, control, dropdown, error_box, log_error

__all__ = ["layout", "register", "merge_alerts", "filter_alerts", "MAX_ROWS"]

#: Rows kept in the feed (older ones drop off the bottom).
MAX_ROWS = 500
#: Episodes shown (newest start first).
MAX_EPISODES = 500


def layout(data: DashboardData | None = None) -> html.Div:
    return html.Div([
        dcc.Store(id="al-data", data=None),
        html.H1("Alerts", className="ct-title"),
        html.Div([
            control("Show", dcc.Checklist(id="al-open-only",
                                          options=[{"label": " unacknowledged only", "value": "open"}],
                                          value=[], persistence=True, persistence_type="session")),
            control("Severity", dropdown("al-severity", ["critical", "warning", "info"], None, multi=True,
                                         placeholder="all severities", persistence=True), width=240),
            control("Acknowledge as", dcc.Input(id="al-by", type="text", value="dashboard", debounce=True,
                                                persistence=True, persistence_type="local",
                                                style={"height": "36px"})),
        ], className="ct-controls"),
        card("Episodes",
             html.Div(id="al-ep-note", className="ct-note"),
             html.Div("Loading…", className="ct-empty", id="al-ep-empty"),
             html.Div(data_grid("al-episodes", EPISODE_COLUMNS, page_size=10, filters=True,
                                row_id="key", row_style=episode_styles()),
                      id="al-ep-box", style={"display": "none"})),
        html.H2("Notifications", className="ct-title"),
        html.Div(id="al-note", className="ct-note"),
        card(None,
             html.Div("Loading…", className="ct-empty", id="al-empty"),
             html.Div(data_grid("al-table", ALERT_COLUMNS, page_size=25, filters=True, row_id="key",
                                row_style=alert_styles()),
                      id="al-table-box", style={"display": "none"})),
    ])


def merge_alerts(old: list[dict[str, Any]] | None, new: list[dict[str, Any]],
                 limit: int = MAX_ROWS) -> list[dict[str, Any]]:
    """New rows (any order) on top of the old ones, newest id first, no duplicates."""
    seen: dict[int, dict[str, Any]] = {int(r["id"]): r for r in (old or [])}
    for r in new:
        seen[int(r["id"])] = r
    return [seen[k] for k in sorted(seen, reverse=True)[:limit]]


def filter_alerts(rows: list[dict[str, Any]], open_only: bool, severities: list[str] | None) -> list[dict[str, Any]]:
    out = rows
    if open_only:
        out = [r for r in out if not r.get("acknowledged")]
    if severities:
        wanted = set(severities)
        out = [r for r in out if (r.get("severity") or "warning") in wanted]
    return out


def register(app: dash.Dash, data: DashboardData, settings: Settings) -> None:
    @app.callback(Output("al-data", "data"), Input("version", "data"), State("al-data", "data"))
    def _fetch(token: Any, current: dict[str, Any] | None) -> Any:
        try:
            if not current:
                rows = alert_rows(data.alerts(limit=MAX_ROWS))
                return {"rows": rows, "max_id": max((r["id"] for r in rows), default=0), "error": None}
            new = data.alerts(since_id=int(current.get("max_id") or 0), limit=MAX_ROWS)
            if new.height == 0:
                return dash.no_update
            rows = merge_alerts(current.get("rows"), alert_rows(new))
            return {"rows": rows, "max_id": max(r["id"] for r in rows), "error": None}
        except Exception as exc:
            log_error("alerts", exc)
            return {**(current or {"rows": [], "max_id": 0}), "error": str(exc)}

    @app.callback(Output("al-episodes", "rowData"), Output("al-ep-box", "style"),
                  Output("al-ep-empty", "children"), Output("al-ep-empty", "style"),
                  Output("al-ep-note", "children"),
                  Input("version", "data"), Input("ack-count", "data"))
    def _episodes(token: Any, acks: Any) -> tuple[Any, ...]:
        try:
            rows = episode_table_rows(data.alert_episodes(limit=MAX_EPISODES))
            counts = data.episode_counts()
        except Exception as exc:
            log_error("alert episodes", exc)
            return [], {"display": "none"}, None, {"display": "none"}, error_box(exc)
        n_open = int(counts.get_column("open").sum()) if counts.height else 0
        n_res = int(counts.get_column("resolved").sum()) if counts.height else 0
        n_sup = int(counts.get_column("suppressed").sum()) if counts.height else 0
        note = (f"{n_open:,} open · {n_res:,} resolved · {n_sup:,} suppressed by the rate limit "
                "· one row per condition while it lasts, one notification each")
        if not rows:
            return [], {"display": "none"}, "No episodes yet.", None, note
        return rows, None, None, {"display": "none"}, note

    @app.callback(Output("url", "href", allow_duplicate=True), Output("al-episodes", "cellClicked"),
                  Input("al-episodes", "cellClicked"), prevent_initial_call=True)
    def _episode_click(active: dict[str, Any] | None) -> Any:
        if not active or active.get("colId") != "cell_id" or not active.get("value"):
            return dash.no_update, dash.no_update
        return cell_href(str(active["value"])), None

    @app.callback(Output("al-data", "data", allow_duplicate=True), Output("ack-count", "data"),
                  Output("al-table", "cellClicked"), Output("url", "href", allow_duplicate=True),
                  Input("al-table", "cellClicked"),
                  State("al-data", "data"), State("al-by", "value"), State("ack-count", "data"),
                  prevent_initial_call=True)
    def _click(active: dict[str, Any] | None, current: dict[str, Any] | None, by: str | None,
               count: int | None) -> Any:
        nu = dash.no_update
        if not active or not current or active.get("rowId") is None:
            return nu, nu, nu, nu
        alert_id = int(active["rowId"])
        row = next((r for r in current.get("rows", []) if int(r["id"]) == alert_id), None)
        if row is None:
            return nu, nu, None, nu
        if active.get("colId") == "cell_id" and row.get("cell_id"):
            return nu, nu, None, cell_href(str(row["cell_id"]))
        if active.get("colId") != "action" or row.get("acknowledged"):
            return nu, nu, nu, nu
        who = (by or "").strip() or "dashboard"
        try:
            ok = data.ack(alert_id, by=who)
        except Exception as exc:
            log_error("acknowledge", exc)
            return {**current, "error": f"could not acknowledge alert {alert_id}: {exc}"}, nu, None, nu
        rows = [({**r, "acknowledged": True, "acknowledged_by": who, "acknowledged_at": data.clock()}
                 if int(r["id"]) == alert_id and ok else r) for r in current.get("rows", [])]
        # Clear the click so a later click on the same cell registers again.
        return {**current, "rows": rows, "error": None}, (count or 0) + 1, None, nu

    @app.callback(Output("al-table", "rowData"), Output("al-table-box", "style"), Output("al-empty", "children"),
                  Output("al-empty", "style"), Output("al-note", "children"),
                  Input("al-data", "data"), Input("al-open-only", "value"), Input("al-severity", "value"))
    def _render(current: dict[str, Any] | None, open_only: list[str] | None,
                severities: list[str] | None) -> tuple[Any, ...]:
        if current is None:
            return [], {"display": "none"}, "Loading…", None, None
        rows = current.get("rows") or []
        shown = filter_alerts(rows, bool(open_only), severities)
        n_open = sum(1 for r in rows if not r.get("acknowledged"))
        empty = "No alerts yet." if not rows else "No alerts match these filters."
        note: list[Any] = [f"{len(shown)} shown · {n_open} unacknowledged of the {len(rows)} newest · "
                           f"updates live, newest first · click “{ACK_LABEL}” to acknowledge, a cell id to "
                           "open the cell"]
        if current.get("error"):
            note = [error_box(RuntimeError(current["error"]))] + note
        visible = bool(shown)
        return (alert_table_rows(shown), None if visible else {"display": "none"}, empty,
                {"display": "none"} if visible else None, note)
