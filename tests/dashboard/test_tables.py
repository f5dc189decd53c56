"""Table builders and the small pure helpers of the pages."""

from __future__ import annotations

import polars as pl

from chargetracker.config import StatsConfig
from chargetracker.dashboard import tables
from chargetracker.dashboard.pages.alerts import filter_alerts, merge_alerts
from chargetracker.dashboard.pages.cell import parse_zoom, window_bounds
from chargetracker.dashboard.pages.overview import build_filters
from chargetracker.dashboard.theme import fmt_count, fmt_duration, fmt_rate, fmt_ts, metric_spec
from chargetracker.engine.stats import deviations

from .frames import cycles_frame


def test_deep_dive_rows_sorted_by_abs_deviation_with_status() -> None:
    vals = pl.DataFrame({"group": ["g"] * 6, "cell_id": [f"c{i}" for i in range(6)], "cycle": [3] * 6,
                         "value": [2.50, 2.51, 2.49, 2.50, 2.52, 1.75]})
    dev = deviations(vals, StatsConfig())
    dev = dev.sort(pl.col("pct_deviation").abs(), descending=True)
    rows, cols = tables.deep_dive_table(dev, "discharge_ah")
    assert [c["field"] for c in cols] == ["rank", "cell_id", "value", "z", "robust_z", "pct_deviation", "status"]
    assert cols[2]["headerName"] == "Discharge capacity (Ah)"
    assert "d3.format('.4f')" in cols[2]["valueFormatter"]["function"]
    assert "d3.format('+.2f')" in cols[5]["valueFormatter"]["function"]
    assert rows[0]["cell_id"] == "c5" and rows[0]["status"] == "outlier" and rows[0]["rank"] == 1
    assert all(r["status"] == "ok" for r in rows[1:])
    devs = [abs(r["pct_deviation"]) for r in rows]
    assert devs == sorted(devs, reverse=True)
    assert any("'outlier'" in c["condition"] for c in tables.deep_dive_style()["styleConditions"])


def test_deep_dive_units_scale() -> None:
    vals = pl.DataFrame({"group": ["g"] * 3, "cell_id": ["a", "b", "c"], "cycle": [1] * 3,
                         "value": [0.995, 0.996, 0.997]})
    rows, cols = tables.deep_dive_table(deviations(vals), "coulombic_efficiency")
    assert cols[2]["headerName"] == "Coulombic efficiency (%)"
    assert sorted(round(r["value"], 6) for r in rows) == [99.5, 99.6, 99.7]


def test_cycle_table_newest_first_display_units() -> None:
    cyc = cycles_frame([("c", 1, 2.5), ("c", 2, 2.49)])
    rows, cols = tables.cycle_table(cyc)
    assert [r["cycle"] for r in rows] == [2, 1]
    assert rows[0]["retention"] == 2.49 / 2.5 * 100
    assert rows[0]["duration_s"] == 7000.0 / 3600.0
    assert rows[0]["start"].endswith("Z")
    assert {c["field"] for c in cols} >= {"cycle", "status", "discharge_ah", "coulombic_efficiency"}
    assert tables.cycle_table(cyc.head(0))[0] == []


def test_alert_table_rows_action_only_for_open_alerts() -> None:
    rows = [{"id": 2, "ts": 1.7e9, "cell_id": "a/b", "group": "g", "rule": "over_temperature",
             "severity": "critical", "value": 61.04321, "threshold": 60.0, "cycle": 3, "message": "hot",
             "acknowledged": False},
            {"id": 1, "ts": 1.7e9, "cell_id": None, "group": "g", "rule": "outlier", "severity": None,
             "value": float("nan"), "threshold": None, "cycle": None, "message": None, "acknowledged": True,
             "acknowledged_by": "ann", "acknowledged_at": 1.7e9}]
    out = tables.alert_table_rows(rows)
    assert [r["id"] for r in out] == [2, 1]
    assert out[0]["action"] == tables.ACK_LABEL and out[0]["state"] == "open"
    assert out[0]["value"] == 61.04 and out[0]["time"] == "2023-11-14 22:13:20Z"
    assert out[1]["action"].startswith("✓ ann") and out[1]["state"] == "acknowledged"
    assert out[1]["severity"] == "warning" and out[1]["value"] is None and out[1]["cell_id"] == ""
    cols = {c["field"] for c in tables.ALERT_COLUMNS}
    assert {"time", "severity", "cell_id", "rule", "value", "action"} <= cols and "state" not in cols
    severity = next(c for c in tables.ALERT_COLUMNS if c["field"] == "severity")
    assert any("'critical'" in c["condition"] for c in severity["cellStyle"]["styleConditions"])
    assert "acknowledged" in tables.alert_styles()["styleConditions"][0]["condition"]


def test_merge_and_filter_alerts() -> None:
    old = [{"id": 3, "acknowledged": False, "severity": "warning"},
           {"id": 1, "acknowledged": True, "severity": "critical"}]
    new = [{"id": 4, "acknowledged": False, "severity": "critical"},
           {"id": 5, "acknowledged": False, "severity": None}]
    merged = merge_alerts(old, new)
    assert [r["id"] for r in merged] == [5, 4, 3, 1]
    assert [r["id"] for r in merge_alerts(old, new, limit=2)] == [5, 4]
    assert [r["id"] for r in filter_alerts(merged, True, None)] == [5, 4, 3]
    assert [r["id"] for r in filter_alerts(merged, False, ["critical"])] == [4, 1]
    assert [r["id"] for r in filter_alerts(merged, False, ["warning"])] == [5, 3]


def test_build_filters() -> None:
    assert build_filters("group", None, None, None) is None
    assert build_filters("group", ["a", "b"], "chemistry", ["NMC"]) == {"group": ["a", "b"], "chemistry": ["NMC"]}
    assert build_filters("group", ["a", "b"], "group", ["b"]) == {"group": ["b"]}
    assert build_filters("group", None, "rack", []) is None


def test_parse_zoom_and_window() -> None:
    z = parse_zoom({"xaxis.range[0]": "2026-01-01 00:00:00", "xaxis.range[1]": "2026-01-01 01:00:00.5"})
    assert z == (1767225600.0, 1767229200.5)
    assert parse_zoom({"xaxis3.range": ["2026-01-01", "2026-01-02"]}) == (1767225600.0, 1767312000.0)
    assert parse_zoom({"xaxis.autorange": True}) is None
    assert parse_zoom({"autosize": True}) is False
    assert parse_zoom({"yaxis.range[0]": 1, "yaxis.range[1]": 2}) is False
    assert parse_zoom(None) is False
    assert window_bounds(10_000.0, 1.0, None) == (10_000.0 - 3600.0, None)
    assert window_bounds(10_000.0, "all", None) == (None, None)
    assert window_bounds(10_000.0, 24.0, [5.0, 6.0]) == (5.0, 6.0)
    assert window_bounds(None, 24.0, None) == (None, None)


def test_formatters() -> None:
    assert fmt_duration(0.42) == "0.4 s" and fmt_duration(75) == "75 s" and fmt_duration(600) == "10.0 min"
    assert fmt_duration(3 * 3600) == "3.0 h" and fmt_duration(5 * 86400) == "5.0 d"
    assert fmt_duration(None) == "–" and fmt_duration(-30) == "-30 s"
    assert fmt_count(1234567) == "1,234,567" and fmt_count(None) == "–"
    assert fmt_rate(2500.4) == "2,500" and fmt_rate(12.34) == "12.3" and fmt_rate(3.2e6) == "3.20 M"
    assert fmt_ts(0.0) == "1970-01-01 00:00:00Z"
    assert metric_spec("retention").fmt(0.9876) == "98.76 %"
    assert metric_spec("duration_s").axis_title == "Cycle duration (h)"


def test_tables_are_ag_grids_not_the_deprecated_datatable() -> None:
    import dash_ag_grid as dag

    grid = tables.data_grid("g", tables.ALERT_COLUMNS, page_size=25, filters=True, row_id="key")
    assert isinstance(grid, dag.AgGrid)
    assert grid.getRowId == "params.data.key"
    # Row ids are strings (AG Grid needs them so).
    rows = tables.alert_table_rows([{"id": 7, "ts": 1.7e9, "severity": "critical"}])
    assert rows[0]["key"] == "7" and rows[0]["id"] == 7
    assert grid.dashGridOptions["pagination"] and grid.dashGridOptions["paginationPageSize"] == 25
    from pathlib import Path

    pages = Path(tables.__file__).parent
    for path in [*pages.glob("*.py"), *(pages / "pages").glob("*.py")]:
        assert "DataTable(" not in path.read_text(), path


def test_header_lag_is_in_the_clock_the_data_uses() -> None:
    from chargetracker.dashboard.app import pipeline_lag

    now = 1.8e9
    # Live data on the wall clock: wall now minus the newest sample.
    assert pipeline_lag({"newest_ts": now - 2.5, "last_commit_wall": now - 1.0}, now) == 2.5
    # A simulated fleet 334 days behind the wall clock: not "334 d" but the time since
    # the store last advanced.
    sim = {"newest_ts": now - 334 * 86400, "last_commit_wall": now - 3.0}
    assert pipeline_lag(sim, now) == 3.0
    assert fmt_duration(pipeline_lag(sim, now)) == "3.0 s"
    # A clock error far ahead (year 3000) does not give a negative lag of centuries.
    assert pipeline_lag({"newest_ts": 3.25e10, "last_commit_wall": now - 4.0}, now) == 4.0
    assert pipeline_lag({"newest_ts": None, "last_commit_wall": None}, now) is None
