"""Figure builders: PURE functions from Polars frames to Plotly figures.

No Dash, no store, no clock: every input arrives as an argument, so each builder is
unit-tested on small hand-made frames. Conventions shared by all of them:

* every axis has a title with its unit; time axes are UTC;
* an empty input gives :func:`empty_figure` with a sentence saying why, never a blank
  chart;
* traces carry ``meta={"role": ..., "group"/"cell": ...}`` so tests (and anyone
  scripting the page) can tell a group's mean line from its sigma band;
* ``uirevision`` keeps the user's zoom and legend choices across live refreshes.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from ..config import StatsConfig
from ..engine.stats import mark_complete
from .canvas import BAD as _BAD
from .canvas import OK as _OK
from .canvas import TEMPLATE, empty_figure
from .canvas import datetimes as _datetimes
from .cell_figures import FORECAST_LIMIT, cell_capacity_figure, cell_timeseries_figure, fade_fit
from .theme import group_styles, metric_spec, rgba

__all__ = [
    "TEMPLATE",
    "NO_GROUP",
    "FORECAST_LIMIT",
    "empty_figure",
    "group_trend_figure",
    "distribution_figure",
    "cell_timeseries_figure",
    "cell_capacity_figure",
    "fade_fit",
    "ingest_rates",
    "ingest_rate_figure",
    "dead_letter_figure",
]

#: Label for cycles of cells without a group (no metadata).
NO_GROUP = "(no group)"


def _groups(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("group").fill_null(NO_GROUP))


def _sigma_text(std: np.ndarray, pct: np.ndarray, n: np.ndarray, decimals: int, unit: str) -> list[str]:
    out = []
    for s, p, k in zip(std, pct, n, strict=True):
        if k < 2 or not math.isfinite(s):
            out.append("n/a (one cell)")
        elif math.isfinite(p):
            out.append(f"{s:.{decimals}f} {unit} ({p:.2f} %)")
        else:
            out.append(f"{s:.{decimals}f} {unit}")
    return out


def group_trend_figure(
    closed: pl.DataFrame,
    open_cycles: pl.DataFrame | None = None,
    metric: str = "discharge_ah",
    *,
    group_label: str = "group",
    uirevision: str | None = None,
    height: int = 560,
    min_cell_share: float = StatsConfig().min_cell_share,
) -> go.Figure:
    """Mean and +-1 sigma band of a cycle metric per group against cycle number.

    The line and band cover only cycles that at least ``min_cell_share`` of the group's
    cells have closed (engine ``mark_complete``); later ones, closed by the cells ahead
    only, are dotted markers (role ``ahead``) with n of N cells in the hover.

    ``closed`` and ``open_cycles`` are :meth:`Queries.group_trend` outputs (columns
    group, cycle, n, mean, std, std_pct) over closed and over open cycles. Per group:
    one band trace (role ``band``), one mean line (role ``mean``) and, when the group
    has cycles in progress, hollow markers at their mean (role ``open``), never joined
    to the closed-cycle line.
    """
    spec = metric_spec(metric)
    closed = _groups(closed)
    if closed.height and "complete" not in closed.columns:
        closed = mark_complete(closed, min_cell_share)
    opened = _groups(open_cycles) if open_cycles is not None else closed.clear()
    if closed.height == 0 and opened.height == 0:
        return empty_figure(f"No cycles with {spec.label.lower()} yet: the chart fills in as soon as "
                            "the pipeline commits the first cycle.", height=height)
    groups = sorted(set(closed.get_column("group").to_list()) | set(opened.get_column("group").to_list()))
    styles = group_styles(groups)
    has_open = opened.height > 0
    if has_open:
        # Open cycles hold partial sums (a discharge half done): on the trend's own axis
        # they would squash it, so they get a strip of their own under it, same x.
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.8, 0.2],
                            vertical_spacing=0.06)
        main: dict[str, int] = {"row": 1, "col": 1}
        low: dict[str, int] = {"row": 2, "col": 1}
    else:
        fig = go.Figure()
        main = low = {}
    many = closed.get_column("cycle").n_unique() > 80 if closed.height else False
    for g in groups:
        colour, dash = styles[g]
        part = closed.filter(pl.col("group") == g).sort("cycle")
        ahead = part.filter(~pl.col("complete")) if part.height else part
        part = part.filter(pl.col("complete")) if part.height else part
        if ahead.height:
            x = ahead.get_column("cycle").to_numpy()
            custom = np.empty((x.size, 3), dtype=object)
            custom[:, 0] = g
            custom[:, 1] = ahead.get_column("n").to_numpy()
            custom[:, 2] = ahead.get_column("group_cells").to_numpy()
            fig.add_trace(go.Scatter(
                x=x, y=ahead.get_column("mean").to_numpy() * spec.scale, mode="lines+markers",
                name=f"{g} (in progress)", legendgroup=g, showlegend=False,
                line=dict(color=colour, width=1, dash="dot"),
                marker=dict(symbol="diamond-open", size=7, color=colour), customdata=custom,
                hovertemplate=(f"<b>%{{customdata[0]}}</b><br>cycle %{{x}} in progress<br>"
                               f"mean of the cells ahead %{{y:{spec.d3}}} {spec.unit}<br>"
                               "closed by %{customdata[1]} of %{customdata[2]} cells"
                               "<extra>in progress</extra>"),
                meta={"role": "ahead", "group": g},
            ), **main)
        if part.height:
            x = part.get_column("cycle").to_numpy()
            mean = part.get_column("mean").to_numpy() * spec.scale
            std = part.get_column("std").fill_null(0.0).fill_nan(0.0).to_numpy() * abs(spec.scale)
            n = part.get_column("n").to_numpy()
            pct = part.get_column("std_pct").fill_null(float("nan")).to_numpy()
            fig.add_trace(go.Scatter(
                x=np.concatenate([x, x[::-1]]),
                y=np.concatenate([mean + std, (mean - std)[::-1]]),
                fill="toself", fillcolor=rgba(colour, 0.16), line=dict(width=0),
                mode="lines", hoverinfo="skip", showlegend=False, legendgroup=g,
                name=f"{g} ±1σ", meta={"role": "band", "group": g},
            ), **main)
            custom = np.empty((x.size, 3), dtype=object)
            custom[:, 0] = g
            custom[:, 1] = _sigma_text(std, pct, n, spec.decimals, spec.unit)
            custom[:, 2] = [f"{k} of {m}" for k, m in zip(n, part.get_column("group_cells"), strict=True)]
            fig.add_trace(go.Scatter(
                x=x, y=mean, mode="lines" if many else "lines+markers", name=g, legendgroup=g,
                line=dict(color=colour, width=2, dash=dash), marker=dict(size=5, color=colour),
                customdata=custom,
                hovertemplate=(f"<b>%{{customdata[0]}}</b><br>cycle %{{x}}<br>"
                               f"mean %{{y:{spec.d3}}} {spec.unit}<br>σ %{{customdata[1]}}<br>"
                               "cells %{customdata[2]}<extra>closed</extra>"),
                meta={"role": "mean", "group": g},
            ), **main)
        op = opened.filter(pl.col("group") == g).sort("cycle")
        if op.height:
            x = op.get_column("cycle").to_numpy()
            custom = np.empty((x.size, 2), dtype=object)
            custom[:, 0] = g
            custom[:, 1] = op.get_column("n").to_numpy()
            fig.add_trace(go.Scatter(
                x=x, y=op.get_column("mean").to_numpy() * spec.scale, mode="markers",
                name=f"{g} (open)", legendgroup=g, showlegend=False,
                marker=dict(symbol="circle-open", size=10, color=colour, line=dict(width=2, color=colour)),
                customdata=custom,
                hovertemplate=(f"<b>%{{customdata[0]}}</b><br>cycle %{{x}} in progress<br>"
                               f"mean so far %{{y:{spec.d3}}} {spec.unit}<br>"
                               "cells %{customdata[1]}<extra>open</extra>"),
                meta={"role": "open", "group": g},
            ), **low)
    if has_open:
        # One legend entry explaining the hollow markers.
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="open cycle (in progress)",
                                 marker=dict(symbol="circle-open", size=10, color="#52606d",
                                             line=dict(width=2)),
                                 hoverinfo="skip", meta={"role": "legend"}), **low)
        fig.update_yaxes(title_text=spec.axis_title, row=1, col=1)
        fig.update_yaxes(title_text=f"open: so far ({spec.unit})", title_font_size=11, row=2, col=1)
        fig.update_xaxes(title_text="Cycle number", row=2, col=1)
    else:
        fig.update_layout(xaxis_title="Cycle number", yaxis_title=spec.axis_title)
    fig.update_layout(
        template=TEMPLATE,
        height=height,
        hovermode="closest",
        uirevision=uirevision or f"{metric}|{group_label}",
        legend_title_text=f"{group_label}: ",
        meta={"empty": False, "groups": groups, "metric": metric},
    )
    return fig


def distribution_figure(dev: pl.DataFrame, metric: str = "discharge_ah", *,
                        seed: int = 0) -> go.Figure:
    """Histogram of one group's values at one cycle, with every cell as a point below it.

    ``dev`` is a :meth:`Queries.group_cycle` frame (cell_id, value, mean, std, median,
    outlier, ...). Outliers are red diamonds; the mean (solid), +-1 sigma (dashed) and
    median (dotted) are vertical lines. Points carry the cell id (click -> cell page).
    The vertical jitter of the points is seeded, so the figure is deterministic.
    """
    spec = metric_spec(metric)
    dev = dev.filter(pl.col("value").is_not_null() & pl.col("value").is_finite())
    if dev.height == 0:
        return empty_figure("No closed cycle values for this group and cycle.", height=360)
    vals = dev.get_column("value").to_numpy() * spec.scale
    ids = dev.get_column("cell_id").to_numpy()
    out = dev.get_column("outlier").fill_null(False).to_numpy()
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32],
                        vertical_spacing=0.04)
    fig.add_trace(go.Histogram(x=vals, marker=dict(color=rgba(_OK, 0.55), line=dict(color=_OK, width=1)),
                               name="cells", nbinsx=min(40, max(5, int(math.sqrt(vals.size)) * 2)),
                               hovertemplate=f"%{{x}} {spec.unit}<br>%{{y}} cells<extra></extra>",
                               showlegend=False, meta={"role": "histogram"}), row=1, col=1)
    rng = np.random.default_rng(seed)
    jitter = rng.uniform(-0.35, 0.35, vals.size)
    for flag, name, colour, symbol in ((False, "cells", _OK, "circle"), (True, "outliers", _BAD, "diamond")):
        sel = out == flag
        if not sel.any():
            continue
        fig.add_trace(go.Scatter(
            x=vals[sel], y=jitter[sel], mode="markers", name=name, customdata=ids[sel],
            marker=dict(color=colour, symbol=symbol, size=9 if flag else 7, opacity=0.85,
                        line=dict(width=1, color="#ffffff")),
            hovertemplate=f"%{{customdata}}<br>%{{x:{spec.d3}}} {spec.unit}<extra>{name}</extra>",
            showlegend=True, meta={"role": "outliers" if flag else "cells"},
        ), row=2, col=1)
    first = dev.row(0, named=True)
    mean, std, median = first.get("mean"), first.get("std"), first.get("median")
    lines: list[tuple[list[float], str, str, str]] = []
    if mean is not None and math.isfinite(mean):
        lines.append(([mean], "solid", "#1f2933", "mean"))
        if std is not None and math.isfinite(std) and std > 0:
            lines.append(([mean - std, mean + std], "dash", "#52606d", "±1σ"))
    if median is not None and math.isfinite(median):
        lines.append(([median], "dot", "#CC79A7", "median"))
    for values, dash, colour, label in lines:
        for v in values:
            # Full-height reference lines through both panels (paper y), one legend entry each.
            fig.add_shape(type="line", xref="x", yref="paper", x0=v * spec.scale, x1=v * spec.scale,
                          y0=0, y1=1, line=dict(color=colour, width=1.5, dash=dash))
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=label,
                                 line=dict(color=colour, width=1.5, dash=dash), hoverinfo="skip",
                                 meta={"role": "reference"}), row=1, col=1)
    fig.update_yaxes(title_text="cells", row=1, col=1)
    fig.update_yaxes(visible=False, range=[-0.6, 0.6], row=2, col=1)
    fig.update_xaxes(title_text=spec.axis_title, row=2, col=1)
    fig.update_layout(template=TEMPLATE, height=360, bargap=0.05, margin=dict(l=60, r=20, t=40, b=50),
                      meta={"empty": False, "n": int(vals.size), "outliers": int(out.sum())})
    return fig


def ingest_rates(series: pl.DataFrame, *, bucket_s: float, start: float, end: float) -> pl.DataFrame:
    """Per-commit counts (wall, samples, rejected) -> samples/s and rejected/s per bucket.

    Buckets of ``bucket_s`` seconds from ``start`` to ``end`` (wall clock, s), empty
    ones included as 0 so an idle pipeline shows as a drop to zero, not a straight line.
    """
    if bucket_s <= 0 or end <= start:
        return pl.DataFrame(schema={"wall": pl.Float64, "samples_per_s": pl.Float64,
                                    "rejected_per_s": pl.Float64})
    first = math.floor(start / bucket_s) * bucket_s
    n = int(math.floor((end - first) / bucket_s)) + 1
    grid = pl.DataFrame({"bucket": np.arange(n, dtype=np.int64)})
    agg = (
        series.filter((pl.col("wall") >= first) & (pl.col("wall") <= end))
        .with_columns(((pl.col("wall") - first) // bucket_s).cast(pl.Int64).alias("bucket"))
        .group_by("bucket").agg(pl.col("samples").sum(), pl.col("rejected").sum())
    )
    return (
        grid.join(agg, on="bucket", how="left").sort("bucket")
        .select(
            (pl.col("bucket").cast(pl.Float64) * bucket_s + first).alias("wall"),
            (pl.col("samples").fill_null(0).cast(pl.Float64) / bucket_s).alias("samples_per_s"),
            (pl.col("rejected").fill_null(0).cast(pl.Float64) / bucket_s).alias("rejected_per_s"),
        )
    )


def ingest_rate_figure(rates: pl.DataFrame, *, bucket_s: float) -> go.Figure:
    """Accepted and rejected samples/s over wall-clock time (from :func:`ingest_rates`)."""
    total = float(rates.get_column("samples_per_s").sum()) + float(rates.get_column("rejected_per_s").sum())
    if rates.height == 0 or total == 0:
        return empty_figure("No samples ingested in this window.", height=320)
    t = _datetimes(rates.get_column("wall"))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=t, y=rates.get_column("samples_per_s").to_numpy(), mode="lines",
                             name="accepted", line=dict(color="#0072B2", width=2, shape="hv"),
                             fill="tozeroy", fillcolor=rgba("#0072B2", 0.12),
                             hovertemplate="%{x|%H:%M:%S}<br>%{y:,.1f} samples/s<extra>accepted</extra>",
                             meta={"role": "accepted"}))
    fig.add_trace(go.Scatter(x=t, y=rates.get_column("rejected_per_s").to_numpy(), mode="lines",
                             name="rejected", line=dict(color=_BAD, width=1.5, shape="hv"),
                             hovertemplate="%{x|%H:%M:%S}<br>%{y:,.2f} samples/s<extra>rejected</extra>",
                             meta={"role": "rejected"}))
    fig.update_layout(template=TEMPLATE, height=320, xaxis_title="Wall-clock time (UTC)",
                      yaxis_title=f"Samples per second (mean over {bucket_s:g} s)",
                      hovermode="x unified", uirevision="ingest",
                      meta={"empty": False})
    return fig


def dead_letter_figure(dead: pl.DataFrame, *, top: int = 8) -> go.Figure:
    """Counts of dead letters by field and reason (the ``top`` most frequent)."""
    if dead.height == 0:
        return empty_figure("No dead letters: every row so far was accepted.", height=280)
    counts = (
        dead.with_columns(pl.concat_str([pl.col("field").fill_null("row"), pl.lit(": "),
                                         pl.col("reason").fill_null("?")]).alias("why"))
        .group_by("why").len().sort(["len", "why"], descending=[True, False]).head(top)
        .sort(["len", "why"], descending=[False, True])
    )
    fig = go.Figure(go.Bar(
        x=counts.get_column("len").to_numpy(), y=counts.get_column("why").to_list(), orientation="h",
        marker=dict(color=rgba(_BAD, 0.7)), hovertemplate="%{y}<br>%{x} rows<extra></extra>",
        meta={"role": "reasons"},
    ))
    fig.update_layout(template=TEMPLATE, height=280,
                      xaxis_title="Rejected rows (most recent dead letters)", yaxis_title=None,
                      margin=dict(l=260, r=20, t=20, b=50), meta={"empty": False})
    return fig
