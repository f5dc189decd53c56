"""Small layout helpers shared by the pages (Dash components only, no store access)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from dash import dcc, html

from ...errors import ChargeTrackerError
from ..figures import empty_figure

__all__ = ["GRAPH_CONFIG", "params", "control", "kv", "card", "graph", "error_box", "log_error", "dropdown"]

_log = logging.getLogger("chargetracker.dashboard")

GRAPH_CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["lasso2d", "select2d"],
    "toImageButtonOptions": {"format": "png", "scale": 2},
}


def params(search: str | None) -> dict[str, str]:
    """``?a=1&b=x`` -> {"a": "1", "b": "x"} (last value wins)."""
    if not search:
        return {}
    return {k: v[-1] for k, v in parse_qs(search.lstrip("?")).items() if v}


def control(label: str, component: Any, *, width: int | None = None) -> html.Div:
    style = {"minWidth": f"{width}px"} if width else None
    return html.Div([html.Label(label), component], className="ct-control", style=style)


def kv(items: Iterable[tuple[str, Any]], *, id: str | None = None) -> html.Div:
    """A row of key/value figures (k small caps above, v bold)."""
    kids = [html.Div([html.Span(k, className="k"), html.Span(v, className="v")]) for k, v in items]
    extra: dict[str, Any] = {"id": id} if id else {}
    return html.Div(kids, className="ct-kv", **extra)


def card(title: str | None, *children: Any, id: str | None = None) -> html.Div:
    kids = ([html.H2(title)] if title else []) + list(children)
    extra: dict[str, Any] = {"id": id} if id else {}
    return html.Div(kids, className="ct-card", **extra)


def error_box(exc: BaseException) -> html.Div:
    """A readable message for a failed read (the store is down, a bad filter...)."""
    if isinstance(exc, ChargeTrackerError):
        text = f"{type(exc).__name__}: {exc}"
    else:
        text = f"unexpected error: {type(exc).__name__}: {exc}"
    return html.Div(text, className="ct-error")


def log_error(where: str, exc: BaseException) -> None:
    """Log a callback failure once with its traceback (the page shows :func:`error_box`)."""
    if isinstance(exc, ChargeTrackerError):
        _log.warning("dashboard %s: %s", where, exc)
    else:
        _log.exception("dashboard %s failed", where, exc_info=exc)


def dropdown(id: str, options: list[Any], value: Any = None, *, multi: bool = False,
             clearable: bool = True, placeholder: str | None = None,
             persistence: bool = False) -> dcc.Dropdown:
    return dcc.Dropdown(id=id, options=options, value=value, multi=multi, clearable=clearable,
                        placeholder=placeholder, persistence=persistence or None,
                        persistence_type="session")


def graph(id: str, height: int) -> dcc.Graph:
    """A graph whose container is exactly as tall as the figures drawn into it."""
    config: Any = GRAPH_CONFIG
    return dcc.Graph(id=id, figure=empty_figure("Loading…", height=height), config=config,
                     style={"height": f"{height}px"})
