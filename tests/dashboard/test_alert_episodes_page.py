"""The alerts page shows episodes: the grid rows from the store's episodes (a unit test of
the row builder) and, in Chromium, an episode committed to the store appearing with its
cycles, occurrences and notification, updated when its alert is acknowledged."""

from __future__ import annotations

import time
from typing import Any

import polars as pl
import pytest

from chargetracker.episodes import ALERT_EPISODE_SCHEMA
from chargetracker.stores.base import CommitBatch
from chargetracker.stores.sql import ALERT_EPISODE_ROW_SCHEMA

from .conftest import DEFECTIVE, screenshot

pytestmark = pytest.mark.timeout(120)


def visible_rows(pg: Any, grid: str) -> list[dict[str, str]]:
    """The rows an AG Grid shows, in display order, as {col-id: text}."""
    return pg.evaluate(f"""(() => Array.from(document.querySelectorAll('#{grid} .ag-center-cols-container .ag-row'))
        .sort((a, b) => Number(a.getAttribute('row-index')) - Number(b.getAttribute('row-index')))
        .map(tr => Object.fromEntries(Array.from(tr.querySelectorAll('.ag-cell[col-id]'))
            .map(td => [td.getAttribute('col-id'), td.innerText.trim()]))))()""")


def _row(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict.fromkeys(ALERT_EPISODE_ROW_SCHEMA)
    base.update(cell_id="c1", rule="outlier_discharge_ah", start_ts=1.7e9, start_cycle=18,
                last_ts=1.7e9 + 7 * 3600, last_cycle=25, occurrences=8, state="open",
                severity="warning", worst_value=0.80123, threshold=1.0, notified=True, alert_id=7,
                acknowledged=False)
    base.update(kw)
    return base


def test_episode_rows_say_what_became_of_the_notification() -> None:
    from chargetracker.dashboard.tables import episode_table_rows

    frame = pl.DataFrame([_row(), _row(cell_id="c2", notified=False, alert_id=None, acknowledged=None),
                          _row(cell_id="c3", acknowledged=True, acknowledged_by="ops",
                               acknowledged_at=1.7e9, state="resolved", resolved_ts=1.7e9 + 9 * 3600)],
                         schema=ALERT_EPISODE_ROW_SCHEMA)
    rows = episode_table_rows(frame)
    assert [r["notice"] for r in rows][:2] == ["alert #7", "suppressed (rate limit)"]
    assert rows[2]["notice"].startswith("✓ ops") and rows[2]["resolved"] != ""
    r = rows[0]
    assert (r["start_cycle"], r["last_cycle"], r["occurrences"], r["worst_value"]) == (18, 25, 8, 0.8012)
    assert r["resolved"] == "" and r["key"] == "c1|outlier_discharge_ah|1700000000.0"
    assert len({x["key"] for x in rows}) == 3


def test_episodes_grid_in_the_browser(page: Any, server: Any, fleet_store: Any) -> None:
    pg, _ = page
    store = fleet_store.store
    start = time.time() + 86_400.0  # newest of all: the grid's first row
    ep = {c: None for c in ALERT_EPISODE_SCHEMA} | {
        "cell_id": DEFECTIVE, "rule": "over_voltage", "start_ts": start, "start_cycle": 40,
        "last_ts": start + 3600, "last_cycle": 44, "occurrences": 5, "state": "open",
        "severity": "critical", "worst_value": 4.31, "threshold": 4.2, "group": "nmc-standard",
        "message": "max voltage 4.310 V above 4.2 V in cycle 44", "notified": True}
    store.commit(CommitBatch(
        alert_episodes=pl.DataFrame([ep], schema=ALERT_EPISODE_SCHEMA),
        alerts=pl.DataFrame({"ts": [start], "cell_id": [DEFECTIVE], "group": ["nmc-standard"],
                             "rule": ["over_voltage"], "severity": ["critical"], "value": [4.25],
                             "threshold": [4.2], "cycle": [40],
                             "message": ["max voltage 4.250 V above 4.2 V in cycle 40"]})))
    alert_id = int(store.alerts(limit=1).get_column("id")[0])
    pg.goto(server.url + "/alerts")
    pg.wait_for_selector("#al-episodes .ag-center-cols-container .ag-row[row-index='0'] "
                         ".ag-cell[col-id='notice']")
    rows = visible_rows(pg, "al-episodes")
    top = rows[0]
    assert (top["cell_id"], top["rule"], top["state"], top["severity"]) == (
        DEFECTIVE, "over_voltage", "open", "critical")
    assert (top["start_cycle"], top["last_cycle"], top["occurrences"]) == ("40", "44", "5")
    assert top["notice"] == f"alert #{alert_id}"
    assert "suppressed by the rate limit" in pg.inner_text("#al-ep-note")
    screenshot(pg, "alert_episodes")
    # Acknowledging the notification in the feed shows on the episode.
    first = "#al-table .ag-center-cols-container .ag-row[row-index='0'] .ag-cell[col-id='action']"
    pg.locator(first).click()
    pg.wait_for_function(
        "() => { const c = document.querySelector(\"#al-episodes .ag-center-cols-container "
        ".ag-row[row-index='0'] .ag-cell[col-id='notice']\"); "
        "return c && c.innerText.trim().startsWith('✓ dashboard'); }", timeout=15_000)
