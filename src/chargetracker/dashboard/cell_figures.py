"""Figures of one cell: its raw time series and its capacity fade (PURE, like figures.py).

Split from :mod:`.figures`, which re-exports them; same conventions (units on every axis,
UTC time, :func:`~.figures.empty_figure` for empty input, ``meta`` roles on traces).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from .canvas import BAD as _BAD
from .canvas import TEMPLATE, empty_figure
from .canvas import datetimes as _datetimes

__all__ = ["FORECAST_LIMIT", "cell_timeseries_figure", "fade_fit", "cell_capacity_figure"]

#: Forecasts beyond this many cycles are "no meaningful fade" (a slope of rounding noise).
FORECAST_LIMIT = 1.0e6

def cell_timeseries_figure(meas: pl.DataFrame, *, cell_id: str = "",
                           uirevision: str | None = None) -> go.Figure:
    """Voltage, current and temperature of one cell against time, three stacked panels
    sharing the time axis (zoom one, all follow). ``meas`` is MEASUREMENT_SCHEMA."""
    if meas.height == 0:
        return empty_figure("No raw measurements in this time window.", height=560)
    meas = meas.sort("ts")
    t = _datetimes(meas.get_column("ts"))
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.035,
                        row_heights=[0.4, 0.3, 0.3])
    series = (("voltage_v", "Voltage (V)", "#0072B2", "%{y:.4f} V"),
              ("current_a", "Current (A)", "#D55E00", "%{y:.3f} A"),
              ("temperature_c", "Temperature (°C)", "#009E73", "%{y:.2f} °C"))
    for row, (col, title, colour, hover) in enumerate(series, start=1):
        y = meas.get_column(col).cast(pl.Float64)
        if y.is_null().all():
            fig.add_annotation(text=f"no {title.split(' (')[0].lower()} readings", xref="x domain",
                               yref=f"y{row if row > 1 else ''} domain", x=0.5, y=0.5,
                               showarrow=False, font=dict(color="#52606d"))
        fig.add_trace(go.Scatter(x=t, y=y.to_numpy(), mode="lines", line=dict(color=colour, width=1.3),
                                 name=title, hovertemplate=f"%{{x|%Y-%m-%d %H:%M:%S}}<br>{hover}<extra></extra>",
                                 showlegend=False, meta={"role": col, "cell": cell_id}),
                      row=row, col=1)
        fig.update_yaxes(title_text=title, row=row, col=1)
    fig.add_hline(y=0, line=dict(color="#9aa5b1", width=1), row=2, col=1)
    fig.update_xaxes(title_text="Time (UTC)", title_standoff=8, row=3, col=1)
    fig.update_layout(template=TEMPLATE, height=560, hovermode="x unified",
                      margin=dict(l=70, r=20, t=20, b=70), uirevision=uirevision or cell_id,
                      meta={"empty": False, "n": int(meas.height)})
    return fig


def fade_fit(cycles: pl.DataFrame, trend: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Capacity-space lines of a :meth:`Queries.cell_trend` fit (retention per cycle).

    Returns ``{"ref_ah", "segments": [(x0, x1, a, b)], "forecast": (x, y_ah) | None,
    "knee": cycle | None}`` where each segment is ``retention = a + b * cycle`` and
    ``ref_ah`` converts retention to Ah (median of discharge_ah / retention). None when
    the fit or the reference is missing.
    """
    if not trend or not trend.get("n_cycles") or trend.get("fade_rate_per_cycle") is None:
        return None
    closed = cycles.filter((pl.col("status") == "closed") & pl.col("retention").is_finite()
                           & (pl.col("retention") > 0) & pl.col("discharge_ah").is_finite()).sort("cycle")
    if closed.height < 2:
        return None
    x = closed.get_column("cycle").cast(pl.Float64).to_numpy()
    y = closed.get_column("retention").to_numpy()
    ref = float(np.median(closed.get_column("discharge_ah").to_numpy() / y))
    a, b = float(trend["intercept"]), float(trend["fade_rate_per_cycle"])
    knee = trend.get("knee_cycle")
    segments: list[tuple[float, float, float, float]] = []
    a2, b2 = a, b
    if knee is not None and math.isfinite(knee):
        pre, post = x < knee, x >= knee
        if pre.sum() >= 2:
            bp, ap = np.polyfit(x[pre], y[pre], 1)
            segments.append((float(x[pre][0]), float(knee), float(ap), float(bp)))
        b2 = float(trend.get("recent_fade_rate_per_cycle") or b)
        # The least-squares line of the post-knee points passes through their centroid.
        a2 = float(y[post].mean() - b2 * x[post].mean())
        segments.append((float(knee), float(x[-1]), a2, b2))
    else:
        knee = None
        segments.append((float(x[0]), float(x[-1]), a, b))
    forecast = trend.get("cycles_to_80pct")
    fc = None
    if (forecast is not None and math.isfinite(forecast) and x[-1] < forecast <= FORECAST_LIMIT
            and b2 < 0):
        fc = (float(forecast), 0.8 * ref)
    return {"ref_ah": ref, "segments": segments, "forecast": fc, "knee": knee,
            "last_cycle": float(x[-1]), "tail": (a2, b2)}


def cell_capacity_figure(cycles: pl.DataFrame, trend: Mapping[str, Any] | None = None, *,
                         cell_id: str = "", horizon_factor: float = 3.0) -> go.Figure:
    """Charge and discharge capacity per cycle with the fitted fade, the knee and the
    forecast of the cycle where retention reaches 80 %.

    ``cycles`` is CYCLE_SCHEMA. Only closed cycles are plotted and fitted: an open
    cycle's capacity is a partial sum, so it is named in the annotation instead;
    ``trend`` is :meth:`Queries.cell_trend` output. The forecast line is drawn up to
    ``horizon_factor`` x the last cycle; a forecast further out is written in the
    annotation instead of squashing the data to the left edge.
    """
    if cycles.height == 0:
        return empty_figure("No cycles for this cell yet.", height=420)
    cycles = cycles.sort("cycle")
    closed = cycles.filter(pl.col("status") == "closed")
    opened = cycles.filter(pl.col("status") != "closed")
    fig = go.Figure()
    for col, name, colour, symbol in (("discharge_ah", "discharge", "#0072B2", "circle"),
                                      ("charge_ah", "charge", "#E69F00", "square")):
        if closed.height:
            fig.add_trace(go.Scatter(
                x=closed.get_column("cycle").to_numpy(), y=closed.get_column(col).to_numpy(),
                mode="lines+markers" if closed.height <= 200 else "lines", name=f"{name} capacity",
                line=dict(color=colour, width=1.5), marker=dict(symbol=symbol, size=6),
                hovertemplate=f"cycle %{{x}}<br>{name} %{{y:.4f}} Ah<extra></extra>",
                meta={"role": col, "cell": cell_id},
            ))
    fit = fade_fit(cycles, trend)
    annotations: list[str] = []
    if opened.height:
        annotations.append(f"cycle {int(opened.get_column('cycle').max())} in progress (not plotted)")  # type: ignore[arg-type]
    if closed.height == 0:
        fig.add_annotation(text="No closed cycle yet.", xref="paper", yref="paper", x=0.5, y=0.5,
                           showarrow=False, font=dict(size=15, color="#52606d"))
    if fit is not None:
        ref = fit["ref_ah"]
        for i, (x0, x1, a, b) in enumerate(fit["segments"]):
            xs = np.array([x0, x1])
            fig.add_trace(go.Scatter(
                x=xs, y=(a + b * xs) * ref, mode="lines", name="fitted fade",
                line=dict(color="#1f2933", width=2), showlegend=i == 0,
                hovertemplate=f"fit: %{{y:.4f}} Ah ({b * 100 * 100:.3f} %/100 cycles)<extra></extra>",
                meta={"role": "fit"},
            ))
        if fit["knee"] is not None:
            fig.add_vline(x=fit["knee"], line=dict(color="#CC79A7", width=2, dash="dot"),
                          annotation_text=f"knee @ {fit['knee']:.0f}", annotation_position="top left")
        last = fit["last_cycle"]
        a2, b2 = fit["tail"]
        if fit["forecast"] is not None:
            fx, fy = fit["forecast"]
            end = min(fx, max(last * horizon_factor, last + 10))
            xs = np.array([last, end])
            fig.add_trace(go.Scatter(
                x=xs, y=(a2 + b2 * xs) * ref, mode="lines", name="forecast",
                line=dict(color="#1f2933", width=2, dash="dash"),
                hovertemplate="forecast %{y:.4f} Ah at cycle %{x:.0f}<extra></extra>",
                meta={"role": "forecast"},
            ))
            if fx <= end:
                fig.add_trace(go.Scatter(x=[fx], y=[fy], mode="markers", name="80 % reached",
                                         marker=dict(symbol="x", size=12, color=_BAD),
                                         hovertemplate="80 % retention at cycle %{x:.0f}<extra></extra>",
                                         meta={"role": "forecast_point"}))
            annotations.append(f"80 % retention forecast at cycle {fx:,.0f}")
        fig.add_hline(y=0.8 * ref, line=dict(color=_BAD, width=1, dash="dot"),
                      annotation_text="80 % of reference", annotation_position="bottom right",
                      annotation_font_size=11)
    fig.update_layout(
        template=TEMPLATE, height=420, xaxis_title="Cycle number", yaxis_title="Capacity (Ah)",
        hovermode="closest", uirevision=cell_id or "capacity",
        meta={"empty": False, "fit": fit is not None},
    )
    if annotations:
        fig.add_annotation(text=" · ".join(annotations), xref="paper", yref="paper", x=1, y=1.0,
                           xanchor="right", yanchor="bottom", showarrow=False, font=dict(size=12))
        fig.update_layout(legend=dict(y=1.1))
    return fig
