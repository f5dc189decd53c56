"""Table builders: PURE functions from Polars frames to AG Grid rows/column definitions
(``dash-ag-grid``; Dash's DataTable is deprecated) or HTML, and :func:`data_grid`, the
one grid component the pages use.

Values are converted to display units here (the same :mod:`.theme` specs as the
figures) so a number reads the same in a table and on a chart; the grid formats them
with d3 (fixed decimals, explicit sign where it matters).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import dash_ag_grid as dag
import polars as pl
from dash import html

from .theme import FONT, fmt_count, fmt_duration, fmt_ts, metric_spec

__all__ = [
    "data_grid",
    "cell_href",
    "deep_dive_columns",
    "deep_dive_table",
    "deep_dive_style",
    "cycle_table",
    "alert_rows",
    "alert_table_rows",
    "alert_styles",
    "ALERT_COLUMNS",
    "EPISODE_COLUMNS",
    "episode_table_rows",
    "episode_styles",
    "ACK_LABEL",
    "sources_table",
    "dead_letters_table",
]


def cell_href(cell_id: str) -> str:
    """The cell page's path (the id is URL-encoded: ids may hold ``/`` or spaces)."""
    return "/cell/" + quote(cell_id, safe="")


def _fixed(decimals: int, *, signed: bool = False) -> dict[str, str]:
    """An AG Grid ``valueFormatter``: fixed decimals (blank for missing values)."""
    spec = f"{'+' if signed else ''}.{decimals}f"
    return {"function": f"params.value == null ? '' : d3.format('{spec}')(params.value)"}


def _num(field: str, header: str, fmt: dict[str, str] | None = None) -> dict[str, Any]:
    col: dict[str, Any] = {"field": field, "headerName": header, "type": "rightAligned",
                           "filter": "agNumberColumnFilter"}
    if fmt is not None:
        col["valueFormatter"] = fmt
    return col


def _text(field: str, header: str) -> dict[str, Any]:
    return {"field": field, "headerName": header}


_LINK = {"color": "#0072B2", "textDecoration": "underline", "cursor": "pointer"}


def data_grid(id: str, column_defs: list[dict[str, Any]], *, page_size: int,
              row_id: str = "id", filters: bool = False,
              cell_style: dict[str, Any] | None = None,
              row_style: dict[str, Any] | None = None) -> dag.AgGrid:
    """The dashboard's table: sortable, paged, rows keyed by ``row_id`` (so a click names
    the row whatever the sort order), every cell in the DOM in display order.

    ``row_id``: the field holding each row's id, a *string* (AG Grid needs one; the grid
    evaluates the getter in a sandbox without globals like ``String``)."""
    default: dict[str, Any] = {"sortable": True, "resizable": True, "filter": filters,
                               "floatingFilter": filters, "suppressMovable": True}
    if cell_style is not None:
        default["cellStyle"] = cell_style
    return dag.AgGrid(
        id=id, rowData=[], columnDefs=column_defs, defaultColDef=default,
        getRowId=f"params.data.{row_id}", getRowStyle=row_style,
        columnSize="autoSize",
        dashGridOptions={"pagination": True, "paginationPageSize": page_size,
                         "paginationPageSizeSelector": False, "domLayout": "autoHeight",
                         "suppressColumnVirtualisation": True, "ensureDomOrder": True,
                         "animateRows": False, "suppressCellFocus": True},
        style={"width": "100%", "fontFamily": FONT, "fontSize": "13px"},
    )


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def deep_dive_columns(metric: str) -> list[dict[str, Any]]:
    """AG Grid column definitions of the deep dive (value in the metric's display unit)."""
    spec = metric_spec(metric)
    outlier = "params.data.status === 'outlier'"
    return [
        _num("rank", "#"),
        {**_text("cell_id", "cell"), "cellStyle": {
            "styleConditions": [{"condition": outlier, "style": {**_OUTLIER_ROW, **_LINK}}],
            "defaultStyle": _LINK}},
        _num("value", f"{spec.label} ({spec.unit})", _fixed(spec.decimals)),
        _num("z", "z", _fixed(2, signed=True)),
        _num("robust_z", "robust z", _fixed(2, signed=True)),
        _num("pct_deviation", "deviation (%)", _fixed(2, signed=True)),
        {**_text("status", "status"), "cellStyle": {"styleConditions": [
            {"condition": outlier, "style": {"backgroundColor": "#b42318", "color": "#ffffff",
                                             "fontWeight": 600}}]}},
    ]


_OUTLIER_ROW = {"backgroundColor": "#fde8e7", "color": "#912018", "fontWeight": 600}


def deep_dive_table(dev: pl.DataFrame, metric: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, columns) of the deep-dive DataTable, in the order of ``dev`` (the query
    sorts by |percent deviation|, largest first). ``status`` is ``outlier`` or ``ok``."""
    spec = metric_spec(metric)
    columns = deep_dive_columns(metric)
    if dev.height == 0:
        return [], columns
    frame = dev.select(
        pl.col("cell_id"),
        (pl.col("value") * spec.scale).alias("value"),
        pl.col("z"), pl.col("robust_z"), pl.col("pct_deviation"),
        pl.when(pl.col("outlier")).then(pl.lit("outlier")).otherwise(pl.lit("ok")).alias("status"),
    ).with_row_index("rank", offset=1)
    rows = [{k: _finite(v) for k, v in r.items()} for r in frame.to_dicts()]
    return rows, columns


def deep_dive_style() -> dict[str, Any]:
    """Cell style of every deep-dive column: outlier rows tinted red (the cell and status
    columns add their own looks in :func:`deep_dive_columns`)."""
    return {"styleConditions": [{"condition": "params.data.status === 'outlier'",
                                 "style": _OUTLIER_ROW}]}


_CYCLE_COLUMNS: tuple[tuple[str, str, str | None, int], ...] = (
    # (column, header, metric for units/scale or None, decimals)
    ("cycle", "cycle", None, 0),
    ("status", "status", None, 0),
    ("start", "start (UTC)", None, 0),
    ("duration_s", "duration (h)", "duration_s", 3),
    ("charge_ah", "charge (Ah)", "charge_ah", 4),
    ("discharge_ah", "discharge (Ah)", "discharge_ah", 4),
    ("charge_wh", "charge (Wh)", "charge_wh", 3),
    ("discharge_wh", "discharge (Wh)", "discharge_wh", 3),
    ("coulombic_efficiency", "CE (%)", "coulombic_efficiency", 3),
    ("energy_efficiency", "EE (%)", "energy_efficiency", 2),
    ("retention", "retention (%)", "retention", 2),
    ("mean_charge_v", "mean charge V", "mean_charge_v", 4),
    ("mean_discharge_v", "mean discharge V", "mean_discharge_v", 4),
    ("internal_resistance_ohm", "IR (mΩ)", "internal_resistance_ohm", 2),
    ("max_temperature_c", "max T (°C)", "max_temperature_c", 2),
    ("gap_count", "gaps", None, 0),
    ("gap_excluded_s", "gap time (s)", None, 0),
    ("gap_missing_ah", "est. missing (Ah)", None, 4),
)


def cycle_table(cycles: pl.DataFrame) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, columns) of a cell's cycle table, newest cycle first, display units."""
    columns: list[dict[str, Any]] = []
    exprs: list[pl.Expr] = []
    for col, name, metric, decimals in _CYCLE_COLUMNS:
        if col == "start":
            columns.append(_text(col, name))
            continue
        if metric is not None:
            spec = metric_spec(metric)
            exprs.append((pl.col(col) * spec.scale).alias(col))
            columns.append(_num(col, name, _fixed(decimals)))
        else:
            exprs.append(pl.col(col))
            columns.append(_text(col, name) if col == "status"
                           else _num(col, name, _fixed(decimals) if decimals else None))
    if cycles.height == 0:
        return [], columns
    frame = cycles.sort("cycle", descending=True).select(
        *exprs, pl.col("start_ts").alias("_start"))
    rows = []
    for r in frame.to_dicts():
        start = r.pop("_start")
        row = {k: _finite(v) for k, v in r.items()}
        row["start"] = fmt_ts(start)
        row["key"] = str(row.get("cycle"))
        rows.append(row)
    return rows, columns


def alert_rows(alerts: pl.DataFrame) -> list[dict[str, Any]]:
    """Alert frame (ALERT_ROW_SCHEMA) -> JSON-safe records, newest (highest id) first."""
    if alerts.height == 0:
        return []
    return [{k: _finite(v) for k, v in r.items()} for r in alerts.sort("id", descending=True).to_dicts()]


#: Columns of the alert feed (AG Grid); ``state`` (open | acknowledged) is in the rows
#: for styling but not shown.
ALERT_COLUMNS: list[dict[str, Any]] = [
    _num("id", "#"),
    _text("time", "time (UTC)"),
    {**_text("severity", "severity"), "cellStyle": {"styleConditions": [
        {"condition": f"params.value === '{sev}'",
         "style": {"backgroundColor": bg, "color": fg, "fontWeight": 600}}
        for sev, bg, fg in (("critical", "#fee4e2", "#b42318"), ("warning", "#fef0c7", "#b54708"),
                            ("info", "#e0f2fe", "#026aa2"))]}},
    {**_text("cell_id", "cell"), "cellStyle": _LINK},
    _text("group", "group"),
    _text("rule", "rule"),
    _num("value", "value"),
    _num("threshold", "threshold"),
    _num("cycle", "cycle"),
    {**_text("message", "message"), "wrapText": True, "autoHeight": True, "minWidth": 280},
    {**_text("action", "acknowledge"), "sortable": False, "filter": False, "cellStyle": {
        "styleConditions": [{"condition": "params.data.state === 'open'", "style": {
            "color": "#0072B2", "fontWeight": 600, "cursor": "pointer",
            "backgroundColor": "#eef6fc"}}]}},
]
ACK_LABEL = "✓ Acknowledge"


def _sig(v: Any, digits: int = 4) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return float(f"{v:.{digits}g}")


def alert_table_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Alert records -> grid rows (``id`` is the alert id and the grid's row id, so a
    click names the alert whatever the sort order). Open alerts get an acknowledge action."""
    out = []
    for r in rows:
        acked = bool(r.get("acknowledged"))
        if acked:
            action = f"✓ {r.get('acknowledged_by') or 'someone'} {fmt_ts(r.get('acknowledged_at'))}"
        else:
            action = ACK_LABEL
        out.append({
            "id": int(r["id"]), "time": fmt_ts(r.get("ts")), "severity": r.get("severity") or "warning",
            "cell_id": r.get("cell_id") or "", "group": r.get("group") or "", "rule": r.get("rule") or "",
            "value": _sig(r.get("value")), "threshold": _sig(r.get("threshold")), "cycle": r.get("cycle"),
            "message": r.get("message") or "", "action": action, "key": str(int(r["id"])),
            "state": "acknowledged" if acked else "open",
        })
    return out


#: Columns of the episodes grid: one row per (cell, rule) condition while it lasts.
EPISODE_COLUMNS: list[dict[str, Any]] = [
    _text("state", "state"),
    ALERT_COLUMNS[2],  # severity, coloured
    {**_text("cell_id", "cell"), "cellStyle": _LINK},
    _text("group", "group"),
    _text("rule", "rule"),
    _num("start_cycle", "first cycle"),
    _num("last_cycle", "last cycle"),
    _num("occurrences", "cycles hit"),
    _num("worst_value", "worst value"),
    _num("threshold", "threshold"),
    _text("first", "first seen (UTC)"),
    _text("last", "last seen (UTC)"),
    _text("resolved", "resolved (UTC)"),
    _text("notice", "notification"),
]


def episode_table_rows(episodes: pl.DataFrame) -> list[dict[str, Any]]:
    """Episode frame (ALERT_EPISODE_ROW_SCHEMA) -> grid rows, newest start first."""
    out = []
    for r in episodes.to_dicts():
        if not r.get("notified"):
            notice = "suppressed (rate limit)"
        elif r.get("acknowledged"):
            notice = f"✓ {r.get('acknowledged_by') or 'someone'} {fmt_ts(r.get('acknowledged_at'))}"
        else:
            notice = f"alert #{r['alert_id']}" if r.get("alert_id") is not None else "sent"
        out.append({
            "key": f"{r['cell_id']}|{r['rule']}|{r['start_ts']!r}", "state": r.get("state") or "",
            "severity": r.get("severity") or "warning", "cell_id": r.get("cell_id") or "",
            "group": r.get("group") or "", "rule": r.get("rule") or "",
            "start_cycle": r.get("start_cycle"), "last_cycle": r.get("last_cycle"),
            "occurrences": r.get("occurrences"), "worst_value": _sig(r.get("worst_value")),
            "threshold": _sig(r.get("threshold")), "first": fmt_ts(r.get("start_ts")),
            "last": fmt_ts(r.get("last_ts")),
            "resolved": fmt_ts(r.get("resolved_ts")) if r.get("resolved_ts") is not None else "",
            "notice": notice,
        })
    return out


def episode_styles() -> dict[str, Any]:
    """Row style of the episodes grid: resolved episodes greyed out."""
    return {"styleConditions": [{"condition": "params.data.state === 'resolved'",
                                 "style": {"color": "#9aa5b1"}}]}


def alert_styles() -> dict[str, Any]:
    """Row style of the alert feed: acknowledged alerts greyed out (severity colours and
    the button-like acknowledge cell are column styles of :data:`ALERT_COLUMNS`)."""
    return {"styleConditions": [{"condition": "params.data.state === 'acknowledged'",
                                 "style": {"color": "#9aa5b1"}}]}


def sources_table(stats: Mapping[str, Any], now: float) -> html.Div:
    """Per-source counters and the age of each source's last commit (its lag)."""
    by_source: Mapping[str, Mapping[str, Any]] = stats.get("by_source") or {}
    if not by_source:
        return html.Div("No source has committed yet.", className="ct-empty")
    head = html.Thead(html.Tr([html.Th(h) for h in ("source", "accepted", "rejected", "rejected (%)",
                                                    "last commit", "lag (since last commit)")]))
    body = []
    for src in sorted(by_source):
        v = by_source[src]
        acc, rej = int(v.get("accepted") or 0), int(v.get("rejected") or 0)
        total = acc + rej
        upd = v.get("updated_at")
        body.append(html.Tr([
            html.Td(src), html.Td(fmt_count(acc)), html.Td(fmt_count(rej)),
            html.Td(f"{100.0 * rej / total:.2f}" if total else "–"),
            html.Td(fmt_ts(upd)),
            html.Td(fmt_duration(now - upd) if upd is not None else "–"),
        ]))
    return html.Div(html.Table([head, html.Tbody(body)], className="ct-table", id="in-sources-table"))


def dead_letters_table(dead: pl.DataFrame, *, limit: int = 50, payload_chars: int = 120) -> html.Div:
    """The most recent dead letters with their reasons (payload shortened)."""
    if dead.height == 0:
        return html.Div("No dead letters.", className="ct-empty")
    head = html.Thead(html.Tr([html.Th(h) for h in ("received (UTC)", "source", "row", "cell", "field",
                                                    "reason", "payload")]))
    body = []
    for r in dead.head(limit).to_dicts():
        payload = r.get("payload") or ""
        if len(payload) > payload_chars:
            payload = payload[:payload_chars - 1] + "…"
        body.append(html.Tr([
            html.Td(fmt_ts(r.get("received_at"))), html.Td(r.get("source") or "–"),
            html.Td("–" if r.get("row") is None else str(r["row"])), html.Td(r.get("cell_id") or "–"),
            html.Td(r.get("field") or "–"), html.Td(r.get("reason") or "–"),
            html.Td(html.Code(payload, style={"fontSize": "12px"})),
        ]))
    return html.Div(html.Table([head, html.Tbody(body)], className="ct-table", id="in-dead-table"))
