"""The dashboard's Plotly template and the figure that says why there is nothing to plot."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import polars as pl

from .theme import FONT, PALETTE

__all__ = ["TEMPLATE", "BAD", "OK", "empty_figure", "datetimes"]

TEMPLATE = go.layout.Template(
    layout=go.Layout(
        font=dict(family=FONT, size=13, color="#1f2933"),
        colorway=list(PALETTE),
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        xaxis=dict(gridcolor="#e4e7eb", linecolor="#9aa5b1", zeroline=False, ticks="outside",
                   showline=True),
        yaxis=dict(gridcolor="#e4e7eb", linecolor="#9aa5b1", zeroline=False, ticks="outside",
                   showline=True),
        hoverlabel=dict(font=dict(family=FONT, size=12)),
        margin=dict(l=70, r=20, t=40, b=55),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
    )
)

#: Colour of bad news (knee, 80 % line) and of good fits.
BAD = "#b42318"
OK = "#0072B2"


def empty_figure(message: str, *, height: int | None = None) -> go.Figure:
    """A figure that says why there is nothing to plot (no axes, a centred message)."""
    fig = go.Figure()
    fig.update_layout(
        template=TEMPLATE,
        xaxis=dict(visible=False),
        yaxis=dict(visible=False),
        annotations=[dict(text=message, x=0.5, y=0.5, xref="paper", yref="paper",
                          showarrow=False, font=dict(size=15, color="#52606d"))],
        meta={"empty": True, "message": message},
    )
    if height:
        fig.update_layout(height=height)
    return fig


def datetimes(ts: pl.Series) -> np.ndarray:
    """s since epoch (float) -> numpy datetime64[ms] (UTC, naive)."""
    return (ts * 1000.0).round(0).cast(pl.Int64).cast(pl.Datetime("ms")).to_numpy()
