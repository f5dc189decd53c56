"""The figure builders are pure: small frames in, Plotly figures out."""

from __future__ import annotations

import json
import math

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
import pytest

from chargetracker.config import StatsConfig
from chargetracker.dashboard import figures
from chargetracker.dashboard.theme import PALETTE, group_styles
from chargetracker.engine.stats import deviations
from chargetracker.engine.trend import fit_trend
from chargetracker.schema import MEASUREMENT_SCHEMA

from .frames import cycles_frame, trend_frame


def roles(fig: go.Figure) -> list[tuple[str, str | None]]:
    return [(t.meta["role"], t.meta.get("group")) for t in fig.data]


def is_empty(fig: go.Figure) -> bool:
    return bool(fig.layout.meta and fig.layout.meta.get("empty"))


# -- group trend ------------------------------------------------------------------
def test_group_trend_one_mean_line_and_band_per_group() -> None:
    closed = trend_frame([(g, c, 5, 2.5 - 0.01 * c - 0.1 * i, 0.02)
                          for i, g in enumerate(["b", "a", "c", "d"]) for c in range(1, 6)])
    fig = figures.group_trend_figure(closed, None, "discharge_ah")
    r = roles(fig)
    assert sorted(g for role, g in r if role == "mean") == ["a", "b", "c", "d"]
    assert sorted(g for role, g in r if role == "band") == ["a", "b", "c", "d"]
    assert fig.layout.xaxis.title.text == "Cycle number"
    assert fig.layout.yaxis.title.text == "Discharge capacity (Ah)"
    mean_a = next(t for t in fig.data if t.meta == {"role": "mean", "group": "a"})
    band_a = next(t for t in fig.data if t.meta == {"role": "band", "group": "a"})
    # The band is the polygon mean + std forward, mean - std backward.
    np.testing.assert_allclose(band_a.y[:5], np.asarray(mean_a.y) + 0.02)
    np.testing.assert_allclose(band_a.y[5:], (np.asarray(mean_a.y) - 0.02)[::-1])
    assert band_a.fill == "toself" and band_a.hoverinfo == "skip"
    # Colours follow the sorted group order, whatever the input order.
    assert mean_a.line.color == PALETTE[0]
    # Hover shows mean, sigma in %, cells and cycle.
    assert "%{y:.4f} Ah" in mean_a.hovertemplate and "cells" in mean_a.hovertemplate
    assert "cycle %{x}" in mean_a.hovertemplate
    assert mean_a.customdata[0][1] == "0.0200 Ah (0.84 %)"  # 0.02 / 2.39


def test_group_trend_open_cycles_are_apart_and_never_joined() -> None:
    closed = trend_frame([("a", c, 3, 2.5, 0.01) for c in range(1, 4)])
    opened = trend_frame([("a", 4, 3, 0.7, 0.1), ("b", 2, 1, 1.2, None)])
    fig = figures.group_trend_figure(closed, opened, "discharge_ah")
    r = roles(fig)
    assert ("open", "a") in r and ("open", "b") in r
    assert sum(1 for role, _ in r if role == "mean") == 1  # group b has no closed cycle yet
    mean_a = next(t for t in fig.data if t.meta == {"role": "mean", "group": "a"})
    assert 4 not in list(mean_a.x)
    open_a = next(t for t in fig.data if t.meta == {"role": "open", "group": "a"})
    assert open_a.mode == "markers" and open_a.marker.symbol == "circle-open"
    # Open cycles hold partial sums: their own strip (second y axis), same x axis.
    assert open_a.yaxis == "y2" and mean_a.yaxis in (None, "y")
    assert fig.layout.xaxis2.title.text == "Cycle number"
    assert "Ah" in fig.layout.yaxis2.title.text


def test_group_trend_units_and_scale_per_metric() -> None:
    closed = trend_frame([("a", 1, 3, 0.995, 0.001), ("a", 2, 3, 0.994, 0.001)])
    fig = figures.group_trend_figure(closed, None, "coulombic_efficiency")
    assert fig.layout.yaxis.title.text == "Coulombic efficiency (%)"
    mean = next(t for t in fig.data if t.meta["role"] == "mean")
    np.testing.assert_allclose(mean.y, [99.5, 99.4])
    fig = figures.group_trend_figure(trend_frame([("a", 1, 3, 0.031, 0.001)]), None, "internal_resistance_ohm")
    assert fig.layout.yaxis.title.text == "Internal resistance (mΩ)"
    assert next(t for t in fig.data if t.meta["role"] == "mean").y[0] == pytest.approx(31.0)


def test_group_trend_single_cell_sigma_and_null_group() -> None:
    closed = trend_frame([(None, 1, 1, 2.4, None)])
    fig = figures.group_trend_figure(closed, None)
    mean = next(t for t in fig.data if t.meta["role"] == "mean")
    assert mean.meta["group"] == figures.NO_GROUP
    assert mean.customdata[0][1] == "n/a (one cell)"


def test_group_trend_empty_says_so() -> None:
    fig = figures.group_trend_figure(trend_frame([]), trend_frame([]))
    assert is_empty(fig) and "No cycles" in fig.layout.annotations[0].text
    assert len(fig.data) == 0


def test_twelve_groups_get_distinct_colours() -> None:
    styles = group_styles([f"g{i:02d}" for i in range(14)])
    first12 = [styles[f"g{i:02d}"][0] for i in range(12)]
    assert len(set(first12)) == 12
    assert styles["g12"] != styles["g00"]  # same colour, other dash pattern
    assert "#F0E442" not in PALETTE  # Okabe-Ito yellow is unreadable on white


def test_figures_serialize_to_json() -> None:
    closed = trend_frame([(g, c, 4, 2.5, 0.01) for g in "abcd" for c in range(1, 4)])
    for fig in (figures.group_trend_figure(closed, trend_frame([("a", 4, 2, 1.0, 0.1)])),
                figures.empty_figure("nothing")):
        json.loads(pio.to_json(fig))


def test_group_trend_is_deterministic() -> None:
    closed = trend_frame([(g, c, 4, 2.5 - 0.001 * c, 0.01) for g in "ab" for c in range(1, 30)])
    a = pio.to_json(figures.group_trend_figure(closed, None))
    b = pio.to_json(figures.group_trend_figure(closed.sample(fraction=1.0, shuffle=True, seed=1), None))
    assert a == b


# -- distribution -----------------------------------------------------------------
def _deep_dive(values: list[float]) -> pl.DataFrame:
    vals = pl.DataFrame({"group": ["g"] * len(values), "cell_id": [f"c{i}" for i in range(len(values))],
                         "cycle": [5] * len(values), "value": values},
                        schema={"group": pl.Utf8, "cell_id": pl.Utf8, "cycle": pl.Int64, "value": pl.Float64})
    return deviations(vals, StatsConfig())


def test_distribution_marks_outliers_and_carries_cell_ids() -> None:
    dev = _deep_dive([2.50, 2.51, 2.49, 2.50, 2.52, 1.75])
    fig = figures.distribution_figure(dev, "discharge_ah")
    out = next(t for t in fig.data if t.meta["role"] == "outliers")
    assert list(out.customdata) == ["c5"] and out.marker.color == "#b42318"
    cells = next(t for t in fig.data if t.meta["role"] == "cells")
    assert sorted(cells.customdata) == ["c0", "c1", "c2", "c3", "c4"]
    assert any(t.meta["role"] == "histogram" for t in fig.data)
    assert fig.layout.xaxis2.title.text == "Discharge capacity (Ah)"
    assert len(fig.layout.shapes) == 4  # mean, -1 sigma, +1 sigma, median
    assert pio.to_json(fig) == pio.to_json(figures.distribution_figure(dev, "discharge_ah"))


def test_distribution_empty() -> None:
    assert is_empty(figures.distribution_figure(_deep_dive([]).head(0)))


# -- cell -------------------------------------------------------------------------
def _meas(n: int, temperature: bool = True) -> pl.DataFrame:
    t = 1.7e9 + np.arange(n) * 10.0
    return pl.DataFrame({
        "cell_id": ["c"] * n, "ts": t, "voltage_v": 3.7 + 0.1 * np.sin(np.arange(n) / 50),
        "current_a": np.where(np.arange(n) % 200 < 100, 2.5, -2.5),
        "temperature_c": 25.0 + np.arange(n) * 0.01 if temperature else [None] * n,
        "cycle": [None] * n, "step": [None] * n, "step_time_s": [None] * n,
    }, schema=MEASUREMENT_SCHEMA)


def test_cell_timeseries_three_panels_with_units() -> None:
    fig = figures.cell_timeseries_figure(_meas(500), cell_id="c")
    assert [t.meta["role"] for t in fig.data] == ["voltage_v", "current_a", "temperature_c"]
    assert fig.layout.yaxis.title.text == "Voltage (V)"
    assert fig.layout.yaxis2.title.text == "Current (A)"
    assert fig.layout.yaxis3.title.text == "Temperature (°C)"
    assert fig.layout.xaxis3.title.text == "Time (UTC)"
    x = fig.data[0].x
    assert np.asarray(x).dtype.kind == "M"  # a real date axis
    assert str(np.asarray(x)[0]).startswith("2023-11-14T22:13:20")


def test_cell_timeseries_without_temperature_says_so() -> None:
    fig = figures.cell_timeseries_figure(_meas(50, temperature=False))
    assert any("no temperature" in a.text for a in fig.layout.annotations)


def test_cell_timeseries_empty() -> None:
    assert is_empty(figures.cell_timeseries_figure(_meas(0)))


def _fading_cycles(n: int = 60, knee: int | None = 40) -> pl.DataFrame:
    rows = []
    for c in range(1, n + 1):
        ret = 1.0 - 0.001 * c - (0.006 * (c - knee) if knee and c > knee else 0.0)
        rows.append(("c", c, 2.5 * ret))
    cyc = cycles_frame(rows)
    return cyc.with_columns(pl.when(pl.col("cycle") == n).then(pl.lit("open")).otherwise(pl.col("status"))
                            .alias("status"))


def _trend(cycles: pl.DataFrame) -> dict[str, object]:
    closed = cycles.filter(pl.col("status") == "closed")
    t = fit_trend(closed.get_column("cycle").cast(pl.Float64).to_numpy(),
                  closed.get_column("retention").to_numpy(), cell_id="c").as_dict()
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in t.items()}


def test_cell_capacity_fit_knee_and_forecast() -> None:
    cycles = _fading_cycles()
    trend = _trend(cycles)
    assert trend["knee_cycle"] is not None
    fig = figures.cell_capacity_figure(cycles, trend, cell_id="c")
    r = [t.meta["role"] for t in fig.data]
    assert r.count("fit") == 2 and "forecast" in r and "discharge_ah" in r and "charge_ah" in r
    assert fig.layout.xaxis.title.text == "Cycle number"
    assert fig.layout.yaxis.title.text == "Capacity (Ah)"
    # Only closed cycles are plotted; the open one is named.
    dis = next(t for t in fig.data if t.meta["role"] == "discharge_ah")
    assert max(dis.x) == 59
    assert any("cycle 60 in progress" in (a.text or "") for a in fig.layout.annotations)
    # The post-knee fit reproduces the data (exactly linear there) and the forecast
    # reaches 80 % of the reference capacity at the forecast cycle.
    fit = figures.fade_fit(cycles, trend)
    assert fit is not None
    assert fit["ref_ah"] == pytest.approx(2.5)
    x0, x1, a, b = fit["segments"][-1]
    assert b == pytest.approx(-0.007, rel=1e-6)
    assert (a + b * 50) * 2.5 == pytest.approx(2.5 * (1 - 0.05 - 0.06), rel=1e-9)
    fx, fy = fit["forecast"]
    assert fx == pytest.approx(trend["cycles_to_80pct"])
    assert fy == pytest.approx(0.8 * 2.5)
    assert any(s.type == "line" for s in fig.layout.shapes)  # knee and 80 % lines


@pytest.mark.parametrize("slope", [0.0, 1e-4])
def test_cell_capacity_without_fade_has_no_forecast(slope: float) -> None:
    # Flat capacity fits a slope of rounding noise (a forecast of ~1e17 cycles); a rising
    # one none at all: neither draws a forecast.
    cycles = cycles_frame([("c", c, 2.5 * (1 + slope * c)) for c in range(1, 20)])
    trend = _trend(cycles)
    assert trend["cycles_to_80pct"] is None or trend["cycles_to_80pct"] > figures.FORECAST_LIMIT
    fig = figures.cell_capacity_figure(cycles, trend)
    assert "forecast" not in [t.meta["role"] for t in fig.data]
    assert figures.fade_fit(cycles, trend)["forecast"] is None


def test_cell_capacity_empty_and_open_only() -> None:
    assert is_empty(figures.cell_capacity_figure(cycles_frame([])))
    fig = figures.cell_capacity_figure(cycles_frame([("c", 1, 0.5)], status="open"))
    assert not is_empty(fig)
    assert any("No closed cycle" in (a.text or "") for a in fig.layout.annotations)


# -- ingest -----------------------------------------------------------------------
def test_ingest_rates_buckets_and_zero_fill() -> None:
    series = pl.DataFrame({"wall": [100.0, 104.0, 112.0], "samples": [50, 50, 20], "rejected": [0, 5, 0]},
                          schema={"wall": pl.Float64, "samples": pl.Int64, "rejected": pl.Int64})
    rates = figures.ingest_rates(series, bucket_s=10.0, start=100.0, end=135.0)
    assert rates.get_column("wall").to_list() == [100.0, 110.0, 120.0, 130.0]
    assert rates.get_column("samples_per_s").to_list() == [10.0, 2.0, 0.0, 0.0]
    assert rates.get_column("rejected_per_s").to_list() == [0.5, 0.0, 0.0, 0.0]
    fig = figures.ingest_rate_figure(rates, bucket_s=10.0)
    assert [t.meta["role"] for t in fig.data] == ["accepted", "rejected"]
    assert "Samples per second" in fig.layout.yaxis.title.text
    assert "UTC" in fig.layout.xaxis.title.text


def test_ingest_rates_idle_is_empty_figure() -> None:
    series = pl.DataFrame(schema={"wall": pl.Float64, "samples": pl.Int64, "rejected": pl.Int64})
    rates = figures.ingest_rates(series, bucket_s=5.0, start=0.0, end=60.0)
    assert rates.height == 13 and rates.get_column("samples_per_s").sum() == 0
    assert is_empty(figures.ingest_rate_figure(rates, bucket_s=5.0))


def test_dead_letter_reasons() -> None:
    dead = pl.DataFrame({"field": ["voltage_v", "voltage_v", "ts", None],
                         "reason": ["NaN", "NaN", "missing value", "bad"]})
    fig = figures.dead_letter_figure(dead)
    bar = fig.data[0]
    assert list(bar.y)[-1] == "voltage_v: NaN" and list(bar.x)[-1] == 2  # most frequent on top
    assert "row: bad" in list(bar.y)
    assert is_empty(figures.dead_letter_figure(dead.head(0)))


def test_group_trend_draws_the_mean_only_where_enough_cells_closed_the_cycle() -> None:
    # 5 cells closed cycles 1-3, 2 of them cycle 4, 1 cycle 5: the line stops at 3, the
    # rest is dotted "in progress" with n of N cells in the hover.
    closed = trend_frame([("a", c, n, 2.5 - 0.01 * c, 0.01) for c, n in ((1, 5), (2, 5), (3, 5), (4, 2), (5, 1))])
    fig = figures.group_trend_figure(closed, None, "discharge_ah", min_cell_share=0.8)
    mean = next(t for t in fig.data if t.meta == {"role": "mean", "group": "a"})
    ahead = next(t for t in fig.data if t.meta == {"role": "ahead", "group": "a"})
    assert list(mean.x) == [1, 2, 3] and list(ahead.x) == [4, 5]
    assert mean.customdata[0][2] == "5 of 5"
    assert [list(r[1:]) for r in ahead.customdata] == [[2, 5], [1, 5]]
    assert "of %{customdata[2]} cells" in ahead.hovertemplate and ahead.line.dash == "dot"
    everything = figures.group_trend_figure(closed, None, "discharge_ah", min_cell_share=0.0)
    assert not any(t.meta["role"] == "ahead" for t in everything.data)
