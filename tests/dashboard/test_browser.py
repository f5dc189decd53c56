"""The dashboard in a real browser: Debian's Chromium driven by Playwright.

One standalone server (a thread, free loopback port) over a store filled from a short
simulated run through the real pipeline (4 groups, one injected defective cell). Every
test fails on any browser console error or uncaught page error (``page`` fixture), and
saves a screenshot under artifacts/screenshots/.
"""

from __future__ import annotations

import time
from typing import Any

import polars as pl
import pytest

from chargetracker.stores.base import CommitBatch

from .conftest import DEFECTIVE, GROUPS, screenshot

pytestmark = pytest.mark.timeout(120)

_GRAPH = "document.querySelector('#{id} .js-plotly-plot')"


def traces(pg: Any, graph_id: str) -> list[dict[str, Any]]:
    """The meta of every trace currently drawn in a dcc.Graph."""
    return pg.evaluate(f"(() => {{ const g = {_GRAPH.format(id=graph_id)}; "
                       "return g && g.data ? g.data.map(t => t.meta || {}) : []; })()")


def wait_roles(pg: Any, graph_id: str, role: str, n: int) -> None:
    pg.wait_for_function(
        f"() => {{ const g = {_GRAPH.format(id=graph_id)}; return !!(g && g.data && "
        f"g.data.filter(t => t.meta && t.meta.role === '{role}').length >= {n}); }}")


def layout(pg: Any, graph_id: str, path: str) -> Any:
    return pg.evaluate(f"(() => {{ const g = {_GRAPH.format(id=graph_id)}; return g.layout.{path}; }})()")


def test_overview_one_trace_per_group_with_bands(page: Any, server: Any) -> None:
    pg, _ = page
    t0 = time.perf_counter()
    pg.goto(server.url + "/")
    wait_roles(pg, "ov-graph", "mean", len(GROUPS))
    visible_s = time.perf_counter() - t0
    metas = traces(pg, "ov-graph")
    means = [m["group"] for m in metas if m.get("role") == "mean"]
    bands = [m["group"] for m in metas if m.get("role") == "band"]
    assert sorted(means) == sorted(GROUPS) and sorted(bands) == sorted(GROUPS)
    # The fleet's data ended (pipeline.finish) mid-cycle: those cycles are partial, kept out
    # of the lines, and nothing is left open.
    assert not any(m.get("role") == "open" for m in metas)
    assert layout(pg, "ov-graph", "yaxis.title.text") == "Discharge capacity (Ah)"
    assert layout(pg, "ov-graph", "xaxis.title.text") == "Cycle number"
    # Header counters and the per-group summary.
    pg.wait_for_function("() => document.querySelector('#hdr-cells').textContent === '24'")
    assert pg.locator("#ov-summary-table tbody tr").count() == len(GROUPS)
    # The header's alert count has its own callback: wait for it rather than race it.
    pg.wait_for_function("() => !['–', ''].includes("
                         "document.querySelector('#hdr-alerts').textContent.trim())")
    screenshot(pg, "overview")
    assert visible_s < 15

    # Another metric from the menu: the chart follows, with its unit.
    pg.click("#ov-metric")
    pg.get_by_role("option", name="Coulombic efficiency (%)").click()
    pg.wait_for_function(f"() => {_GRAPH.format(id='ov-graph')}.layout.yaxis.title.text === "
                         "'Coulombic efficiency (%)'")
    # Filter to two groups: two lines, two bands.
    pg.click("#ov-groups")
    pg.get_by_role("option", name="lfp-standard").click()
    pg.get_by_role("option", name="nmc-standard").click()
    pg.keyboard.press("Escape")
    pg.wait_for_function(
        f"() => {_GRAPH.format(id='ov-graph')}.data.filter(t => t.meta.role === 'mean').length === 2")
    groups = sorted(m["group"] for m in traces(pg, "ov-graph") if m.get("role") == "mean")
    assert groups == ["lfp-standard", "nmc-standard"]
    screenshot(pg, "overview_filtered")


def test_overview_click_opens_deep_dive(page: Any, server: Any) -> None:
    pg, _ = page
    pg.goto(server.url + "/")
    wait_roles(pg, "ov-graph", "mean", len(GROUPS))
    # Pixel position of group lfp-standard's mean at cycle 5, from Plotly's own axes.
    x, y = pg.evaluate(f"""(() => {{
        const g = {_GRAPH.format(id='ov-graph')};
        const t = g._fullData.find(t => t.meta.role === 'mean' && t.meta.group === 'lfp-standard');
        const k = Array.from(t.x).indexOf(5);
        const fl = g._fullLayout, xa = fl.xaxis, ya = fl.yaxis;
        const box = g.getBoundingClientRect();
        return [box.left + xa._offset + xa.l2p(5), box.top + ya._offset + ya.l2p(t.y[k])];
    }})()""")
    pg.mouse.move(x, y)
    pg.mouse.click(x, y)
    pg.wait_for_url("**/group?group=lfp-standard&cycle=5**")
    pg.wait_for_selector("#dd-table .ag-row .ag-cell[col-id='cell_id']")
    assert "lfp-standard" in pg.inner_text("#dd-title") and "cycle 5" in pg.inner_text("#dd-title")


def _deep_dive_rows(pg: Any) -> list[dict[str, str]]:
    # AG Grid rows in display order (row-index), cells by col-id.
    return pg.evaluate("""(() => Array.from(document.querySelectorAll('#dd-table .ag-center-cols-container .ag-row'))
        .sort((a, b) => Number(a.getAttribute('row-index')) - Number(b.getAttribute('row-index')))
        .filter(tr => tr.querySelector('.ag-cell[col-id="cell_id"]'))
        .map(tr => {
            const cell = c => tr.querySelector(`.ag-cell[col-id="${c}"]`);
            return {cell: cell('cell_id').innerText.trim(), dev: cell('pct_deviation').innerText.trim(),
                    status: cell('status').innerText.trim(),
                    bg: getComputedStyle(cell('value')).backgroundColor};
        }))()""")


def test_deep_dive_sorted_outlier_marked_and_click_opens_cell(page: Any, server: Any, fleet_store: Any) -> None:
    pg, _ = page
    pg.goto(server.url + "/group?group=nmc-standard")
    pg.wait_for_selector("#dd-table .ag-row .ag-cell[col-id='cell_id']")
    rows = _deep_dive_rows(pg)
    assert len(rows) >= 4
    devs = [abs(float(r["dev"].replace("+", "").replace("−", "-"))) for r in rows]
    assert devs == sorted(devs, reverse=True), rows
    top = rows[0]
    assert top["cell"] == DEFECTIVE and top["status"] == "outlier", rows
    assert devs[0] > 20  # 70 % of the current: ~25 % below the group mean
    assert top["bg"] == "rgb(253, 232, 231)"  # highlighted
    assert all(r["bg"] != "rgb(253, 232, 231)" for r in rows if r["status"] == "ok")
    assert "latest complete cycle" in pg.inner_text("#dd-title")
    wait_roles(pg, "dd-dist", "outliers", 1)  # the distribution plot marks the outlier too
    screenshot(pg, "deep_dive")

    pg.evaluate("window.__ctMarker = 'same page'")
    pg.locator("#dd-table .ag-cell[col-id='cell_id']", has_text=DEFECTIVE).first.click()
    pg.wait_for_url(f"**/cell/{DEFECTIVE}")
    wait_roles(pg, "cp-ts", "voltage_v", 1)
    wait_roles(pg, "cp-cap", "discharge_ah", 1)
    assert pg.evaluate("window.__ctMarker") == "same page"  # client-side navigation, no reload
    assert {m["role"] for m in traces(pg, "cp-ts")} == {"voltage_v", "current_a", "temperature_c"}
    cap_roles = {m.get("role") for m in traces(pg, "cp-cap")}
    assert {"discharge_ah", "charge_ah", "fit"} <= cap_roles
    assert layout(pg, "cp-ts", "yaxis.title.text") == "Voltage (V)"
    assert layout(pg, "cp-cap", "yaxis.title.text") == "Capacity (Ah)"
    pg.wait_for_selector("#cp-cycles .ag-row .ag-cell[col-id='cycle']")
    assert "80 % retention" in pg.inner_text("#cp-trend")
    screenshot(pg, "cell")

    with pg.expect_download() as dl:
        pg.click("#cp-dl-cycles")
    csv = pl.read_csv(dl.value.path())
    stored = fleet_store.store.cycles(DEFECTIVE)
    assert csv.height == stored.height and csv.columns == stored.columns
    assert csv.get_column("discharge_ah").to_list() == pytest.approx(stored.get_column("discharge_ah").to_list())


def _alert_rows(pg: Any) -> list[dict[str, str]]:
    return pg.evaluate("""(() => Array.from(document.querySelectorAll('#al-table .ag-center-cols-container .ag-row'))
        .sort((a, b) => Number(a.getAttribute('row-index')) - Number(b.getAttribute('row-index')))
        .filter(tr => tr.querySelector('.ag-cell[col-id="id"]'))
        .map(tr => Object.fromEntries(Array.from(tr.querySelectorAll('.ag-cell[col-id]'))
            .map(td => [td.getAttribute('col-id'), td.innerText.trim()]))))()""")


#: The first displayed row's cell of a column in the alert grid.
_FIRST = "#al-table .ag-center-cols-container .ag-row[row-index='0'] .ag-cell[col-id='{}']"
_FIRST_JS = "document.querySelector(\"" + _FIRST + "\")"


def test_new_alert_appears_live_and_can_be_acknowledged(page: Any, server: Any, fleet_store: Any) -> None:
    pg, _ = page
    store = fleet_store.store
    pg.goto(server.url + "/alerts")
    pg.wait_for_selector(_FIRST.format("action"))
    before = store.alerts(limit=10_000).height
    assert f"of the {before} newest" in pg.inner_text("#al-note")
    pg.evaluate("window.__ctMarker = 'same page'")
    store.commit(CommitBatch(alerts=pl.DataFrame({
        "ts": [time.time()], "cell_id": [DEFECTIVE], "group": ["nmc-standard"], "rule": ["over_temperature"],
        "severity": ["critical"], "value": [71.5], "threshold": [60.0], "cycle": [9],
        "message": ["injected by the browser test"]})))
    new_id = int(store.alerts(limit=1).get_column("id")[0])
    first_id = _FIRST_JS.format("id")
    pg.wait_for_function(f"() => {first_id} && {first_id}.innerText.trim() === '{new_id}'",
                         timeout=10_000)
    assert pg.evaluate("window.__ctMarker") == "same page"  # no reload
    rows = _alert_rows(pg)
    top = rows[0]  # newest first
    assert top["id"] == str(new_id) and top["severity"] == "critical" and top["cell_id"] == DEFECTIVE
    assert top["rule"] == "over_temperature" and top["value"] == "71.5" and top["threshold"] == "60"
    assert top["message"] == "injected by the browser test" and "Acknowledge" in top["action"]
    assert f"of the {before + 1} newest" in pg.inner_text("#al-note")
    sev_bg = pg.evaluate(f"getComputedStyle({_FIRST_JS.format('severity')}).backgroundColor")
    assert sev_bg == "rgb(254, 228, 226)"  # critical is tinted red
    screenshot(pg, "alerts")

    open_before = int(pg.inner_text("#hdr-alerts").replace(",", "").rstrip("+"))
    pg.locator(_FIRST.format("action")).click()
    pg.wait_for_function(f"() => {_FIRST_JS.format('action')}.innerText.trim().startsWith('✓ dashboard')")
    acked = store.alerts(acknowledged=True, limit=10_000)
    assert new_id in acked.get_column("id").to_list()
    assert acked.filter(pl.col("id") == new_id).get_column("acknowledged_by")[0] == "dashboard"
    pg.wait_for_function(f"() => document.querySelector('#hdr-alerts').textContent === '{open_before - 1:,}'")

    # The cell id opens the cell's page.
    pg.locator(_FIRST.format("cell_id")).click()
    pg.wait_for_url(f"**/cell/{DEFECTIVE}")
    wait_roles(pg, "cp-ts", "voltage_v", 1)


def test_ingest_page(page: Any, server: Any) -> None:
    pg, _ = page
    pg.goto(server.url + "/ingest")
    wait_roles(pg, "in-rate", "accepted", 1)
    assert "simulator" in pg.inner_text("#in-sources-table")
    assert pg.locator("#in-dead-table tbody tr").count() == 3
    assert "NaN" in pg.inner_text("#in-dead-table")
    wait_roles(pg, "in-dead-fig", "reasons", 1)
    assert "Samples per second" in layout(pg, "in-rate", "yaxis.title.text")
    screenshot(pg, "ingest")


def test_every_page_of_an_empty_store_says_so(page: Any, empty_server: Any) -> None:
    pg, _ = page
    pg.goto(empty_server.url + "/")
    pg.wait_for_function(f"() => {{ const g = {_GRAPH.format(id='ov-graph')}; return g && g.layout.meta "
                         "&& g.layout.meta.message && g.layout.meta.message.startsWith('No cycles'); }")
    assert "No closed cycles yet" in pg.inner_text("#ov-summary")
    assert pg.inner_text("#hdr-cells") == "0"
    screenshot(pg, "empty_overview")
    pg.goto(empty_server.url + "/group")
    pg.wait_for_selector("text=No groups yet")
    pg.goto(empty_server.url + "/alerts")
    pg.wait_for_selector("#al-empty >> text=No alerts yet.")
    pg.goto(empty_server.url + "/ingest")
    pg.wait_for_selector("text=No source has committed yet")
    pg.wait_for_selector("text=No dead letters.")
    pg.goto(empty_server.url + "/cell/nope")
    pg.wait_for_selector("#cp-missing")
    pg.goto(empty_server.url + "/no/such/page")
    pg.wait_for_selector("text=Page not found")
