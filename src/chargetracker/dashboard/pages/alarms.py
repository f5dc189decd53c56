"""Fleet alarms: vehicles ranked by their current consistency-alarm probability, one
vehicle's history (daily cell-voltage spread and temperature spread with the predicted
probability and the real alarms), and the model card's metrics.

Reads the pack store beside the cell store (:mod:`chargetracker.stores.packs`), opened
on first use from the cell store's URL.
"""

from __future__ import annotations

import threading
from typing import Any

import dash
import plotly.graph_objects as go
import polars as pl
from dash import Input, Output, dcc, html

from ...config import Settings
from ..data import DashboardData
from ..tables import data_grid
from ..theme import FONT
from .common import card, control, dropdown, error_box, log_error

__all__ = ["layout", "register", "history_figure", "ranking_rows"]

_lock = threading.Lock()
#: Pack stores by cell-store URL (one per dashboard store), and the model card.
_cache: dict[Any, Any] = {}


def _packs(data: DashboardData) -> Any:
    url = data.queries.store.url  # type: ignore[attr-defined]
    # Read-your-writes: predictions the API of this process still queues are committed
    # first (a no-op without one; see chargetracker.api.prediction_writer).
    from ...api.prediction_writer import flush_pending

    flush_pending(url)
    with _lock:
        store = _cache.get(("packs", url))
        if store is None:
            from ...stores.packs import open_pack_store

            store = open_pack_store(url)
            _cache[("packs", url)] = store
        return store


def _model_report() -> dict[str, Any] | None:
    with _lock:
        if "card" not in _cache:
            try:
                from ...stores.models import load_default_model

                art = load_default_model()
                _cache["card"] = {"version": art.model_version, "report": art.report,
                                  "threshold": art.threshold}
            except Exception as exc:  # a missing model must not break the page
                log_error("alarm model card", exc)
                _cache["card"] = None
        return _cache["card"]  # type: ignore[no-any-return]


def ranking_rows(latest: pl.DataFrame) -> list[dict[str, Any]]:
    """Table rows, highest probability first, probability in percent."""
    return [{"rank": i + 1, "vin": r["vin"], "date": str(r["date"]),
             "probability": round(100 * r["probability"], 1),
             "alarm": "ALARM" if r["alarm"] else "", "model": r["model_version"]}
            for i, r in enumerate(latest.sort("probability", descending=True).iter_rows(named=True))]


def history_figure(records: pl.DataFrame, preds: pl.DataFrame, vin: str) -> go.Figure:
    """Spread (mV) and temperature spread (degC) per day, predicted probability (%) on a
    second axis, real alarm days marked."""
    fig = go.Figure()
    if records.height:
        r = records.sort("date")
        spread = (r["cell_max_v"] - r["cell_min_v"]) * 1000.0
        fig.add_scatter(x=r["date"].to_list(), y=spread.to_list(), name="cell-voltage spread (mV)",
                        mode="lines+markers", connectgaps=False)
        fig.add_scatter(x=r["date"].to_list(),
                        y=(r["max_temperature_c"] - r["min_temperature_c"]).to_list(),
                        name="temperature spread (°C)", mode="lines", line={"dash": "dot"})
        alarms = r.filter(pl.col("label") == 1)
        if alarms.height:
            fig.add_scatter(x=alarms["date"].to_list(),
                            y=((alarms["cell_max_v"] - alarms["cell_min_v"]) * 1000).to_list(),
                            name="real alarm", mode="markers",
                            marker={"symbol": "x", "size": 12, "color": "#c0392b"})
    if preds.height:
        p = preds.sort("date")
        fig.add_scatter(x=p["date"].to_list(), y=(p["probability"] * 100).to_list(),
                        name="predicted probability (%)", yaxis="y2", mode="lines",
                        line={"color": "#8e44ad"})
    fig.update_layout(title=f"{vin}: daily spreads and predicted alarm probability",
                      yaxis={"title": "spread (mV / °C)"},
                      yaxis2={"title": "probability (%)", "overlaying": "y", "side": "right",
                              "range": [0, 100]},
                      legend={"orientation": "h"}, margin={"t": 50, "l": 50, "r": 50, "b": 40},
                      font={"family": FONT})
    return fig


def _metrics(card_data: dict[str, Any] | None) -> html.Div:
    if not card_data or not card_data.get("report"):
        return html.Div("No model card available.", className="ct-empty")
    rows = []
    for name, e in card_data["report"]["models"].items():
        g = e["grouped_cv"]["pooled"]
        rows.append({"model": name, "ROC-AUC": _f(g["roc_auc"]["mean"]),
                     "PR-AUC": _f(g["pr_auc"]["mean"]), "Brier": _f(g["brier"]["mean"]),
                     "precision": _f(g["precision"]["mean"]), "recall": _f(g["recall"]["mean"]),
                     "F1": _f(g["f1"]["mean"])})
    plan = card_data["report"]["plan"]
    return html.Div([
        html.P(f"Model {card_data['version']}, alarm threshold {card_data['threshold']:.3f}. "
               f"Grouped CV by VIN: {plan['folds']} folds × {plan['repeats']} repeat(s), "
               "pooled out-of-fold.", className="ct-note"),
        _grid("fa-metrics", rows, [{"field": k, "headerName": k} for k in rows[0]],
              row_id="model", page_size=10),
    ])


def _grid(id: str, rows: list[dict[str, Any]], columns: list[dict[str, Any]], *,
          row_id: str, page_size: int, row_style: dict[str, Any] | None = None) -> Any:
    """The dashboard's AG Grid (``tables.data_grid``) holding ``rows``."""
    grid = data_grid(id, columns, page_size=page_size, row_id=row_id, row_style=row_style)
    grid.rowData = rows
    return grid


def _f(v: float | None) -> str:
    return "n/a" if v is None or v != v else f"{v:.3f}"


def layout(data: DashboardData | None = None) -> html.Div:
    rows: list[dict[str, Any]] = []
    error: Any = None
    if data is not None:
        try:
            rows = ranking_rows(_packs(data).latest_predictions(limit=500))
        except Exception as exc:
            log_error("fleet alarms", exc)
            error = error_box(exc)
    vins = [r["vin"] for r in rows]
    return html.Div([
        html.H1("Fleet alarms", className="ct-title"),
        html.P("Probability of a 'cell consistency poor' alarm within the next 14 days, from "
               "each vehicle's daily pack records.", className="ct-note"),
        error or html.Div(),
        card("Vehicles by current alarm probability",
             html.Div("No predictions yet: score daily records (alarm predict/inbox, "
                      "POST /api/v1/alarms/predict/batch).", className="ct-empty",
                      id="fa-empty", style={"display": "none" if rows else "block"}),
             _grid("fa-ranking", rows, [{"field": i, "headerName": n} for n, i in (
                 ("#", "rank"), ("VIN", "vin"), ("day", "date"),
                 ("probability %", "probability"), ("alarm", "alarm"), ("model", "model"))],
                 row_id="vin", page_size=20,
                 row_style={"styleConditions": [{"condition": "params.data.alarm === 'ALARM'",
                                                 "style": {"backgroundColor": "#fdecea"}}]})),
        card("Vehicle history",
             html.Div([control("VIN", dropdown("fa-vin", vins, vins[0] if vins else None),
                               width=320)], className="ct-controls"),
             dcc.Graph(id="fa-history", figure=go.Figure())),
        card("Model card", _metrics(_model_report())),
    ])


def register(app: dash.Dash, data: DashboardData, settings: Settings) -> None:
    @app.callback(Output("fa-history", "figure"), Input("fa-vin", "value"))
    def _history(vin: str | None) -> Any:
        if not vin:
            return go.Figure()
        try:
            packs = _packs(data)
            recs = packs.records(vin=vin, limit=5000)
            preds = packs.predictions(vin=vin, limit=5000)
            return history_figure(recs, preds, vin)
        except Exception as exc:
            log_error("fleet alarm history", exc)
            return dash.no_update
