"""The "Fleet alarms" page in Chromium: ranking, per-VIN history, model card."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chargetracker.dashboard.server import StandaloneServer, start_background
from chargetracker.ml import Predictor, parse_records_csv, require_valid
from chargetracker.queries import Queries
from chargetracker.stores.duckdb import DuckDBStore
from chargetracker.stores.models import load_default_model
from chargetracker.stores.packs import open_pack_store
from tests.dashboard.conftest import TEST_SETTINGS, screenshot

pytestmark = pytest.mark.timeout(180)
SERIES = Path(__file__).resolve().parents[1] / "data" / "bms-series_samples.csv"


@pytest.fixture(scope="module")
def alarm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneServer]:
    path = tmp_path_factory.mktemp("alarms") / "fleet.duckdb"
    store = DuckDBStore(path)
    packs = open_pack_store(store.url)
    recs = require_valid(parse_records_csv(SERIES.read_bytes()))
    packs.upsert_records(recs, source="batch")
    packs.upsert_predictions(Predictor(load_default_model()).predict_records(recs),
                             source="batch")
    srv = start_background(Queries(store, TEST_SETTINGS.stats), TEST_SETTINGS)
    try:
        yield srv
    finally:
        srv.stop()
        packs.close()
        store.close()


def test_fleet_alarms_page(page: Any, alarm_server: StandaloneServer) -> None:
    pg, _ = page
    pg.goto(alarm_server.url + "/alarms")
    pg.wait_for_selector("#fa-ranking .ag-row .ag-cell[col-id='vin']")
    first = pg.locator("#fa-ranking .ag-center-cols-container .ag-row[row-index='0']").inner_text()
    assert "1" in first
    probs = pg.evaluate("""() => Array.from(document.querySelectorAll(
        '#fa-ranking .ag-center-cols-container .ag-cell[col-id="probability"]')).map(td => parseFloat(td.innerText))""")
    assert len(probs) >= 10 and probs == sorted(probs, reverse=True)
    # The history graph of the top vehicle: spreads, probability, and its real alarms.
    pg.wait_for_function("() => { const g = document.querySelector('#fa-history .js-plotly-plot');"
                         " return g && g.data && g.data.length >= 3; }")
    names = pg.evaluate("() => document.querySelector('#fa-history .js-plotly-plot')"
                        ".data.map(t => t.name)")
    assert "cell-voltage spread (mV)" in names and "predicted probability (%)" in names
    assert pg.locator("#fa-metrics").count() == 1
    assert "reference-xgboost" in pg.inner_text("#fa-metrics")
    screenshot(pg, "fleet_alarms")
    # Another VIN with real alarms.
    pg.click("#fa-vin")
    pg.keyboard.type("JH4PC6DU5")
    pg.get_by_role("option", name="JH4PC6DU52KF7SVMZ").click()
    pg.wait_for_function("() => { const g = document.querySelector('#fa-history .js-plotly-plot');"
                         " const t = g && g.layout && g.layout.title;"
                         " return !!t && String(t.text || t).startsWith('JH4PC6DU52KF7SVMZ') &&"
                         " g.data.some(t => t.name === 'real alarm'); }")
