"""Fixtures for the dashboard tests: a store filled from a short simulated run, a
standalone dashboard server on a free loopback port, and Debian's Chromium driven by
Playwright (never ``playwright install``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from chargetracker.config import DashboardConfig, Settings
from chargetracker.dashboard.server import StandaloneServer, start_background
from chargetracker.queries import Queries
from chargetracker.runtime.pipeline import Pipeline
from chargetracker.sim import Fleet, default_fleet_config
from chargetracker.stores.duckdb import DuckDBStore

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
#: The injected defective cell: its measured current is scaled by DEFECT_FACTOR, so its
#: capacity per cycle is 30 % below its group's.
DEFECTIVE = "nmc-standard-002"
DEFECT_FACTOR = 0.7
GROUPS = ("lfp-accelerated", "lfp-standard", "nmc-accelerated", "nmc-standard")


@dataclass
class Fleetdata:
    store: DuckDBStore
    cells: pl.DataFrame
    start_epoch: float


def fill_store(store: DuckDBStore, *, cells: int = 24, hours: float = 36.0, period_s: float = 10.0,
               seed: int = 3) -> Fleetdata:
    """Simulate a 4-group fleet, run it through the real pipeline into ``store``.

    One cell (:data:`DEFECTIVE`) gets 70 % of its current (much lower capacity) and one
    chunk gets three malformed rows (dead letters).
    """
    start = math.floor(time.time() / 3600.0) * 3600.0 - hours * 3600.0
    fleet = Fleet(default_fleet_config(cells=cells, seed=seed, duration_s=hours * 3600.0,
                                       sample_period_s=period_s, start_epoch=start))
    pipeline = Pipeline(store, Settings())
    pipeline.register_cells(fleet.cells)
    for i, frame in enumerate(fleet.chunks(seconds=6 * 3600.0)):
        frame = frame.with_columns(
            pl.when(pl.col("cell_id") == DEFECTIVE).then(pl.col("current_a") * DEFECT_FACTOR)
            .otherwise(pl.col("current_a")).alias("current_a"))
        if i == 1:
            bad = frame.head(3).with_columns(pl.lit(float("nan")).alias("voltage_v"))
            frame = pl.concat([frame, bad])
        pipeline.ingest(frame, source="simulator", position={"chunk": i})
    pipeline.finish(source="simulator")
    return Fleetdata(store, fleet.cells, start)


@pytest.fixture(scope="session")
def fleet_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleetdata]:
    store = DuckDBStore(tmp_path_factory.mktemp("dash") / "fleet.duckdb")
    try:
        yield fill_store(store)
    finally:
        store.close()


TEST_SETTINGS = Settings(dashboard=DashboardConfig(refresh_ms=500))


@pytest.fixture(scope="session")
def server(fleet_store: Fleetdata) -> Iterator[StandaloneServer]:
    srv = start_background(Queries(fleet_store.store, TEST_SETTINGS.stats), TEST_SETTINGS)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def empty_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneServer]:
    store = DuckDBStore(tmp_path_factory.mktemp("dash-empty") / "empty.duckdb")
    srv = start_background(Queries(store, TEST_SETTINGS.stats), TEST_SETTINGS)
    srv.store = store
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        reason = (f"{CHROMIUM} is missing: run `make system-deps` (scripts/system-deps.sh "
                  "installs Debian's chromium with apt when root)")
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run the browser tests)")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class ConsoleLog:
    """Console errors and uncaught page errors of one page."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def attach(self, page: object) -> None:
        page.on("console", lambda msg: self.errors.append(f"console.{msg.type}: {msg.text}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))


@pytest.fixture
def page(browser: object) -> Iterator[tuple[object, ConsoleLog]]:
    """A fresh browser page; the test fails if the page logged any console error."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    pg = ctx.new_page()
    log = ConsoleLog()
    log.attach(pg)
    pg.set_default_timeout(15_000)
    try:
        yield pg, log
        assert log.errors == [], f"browser console errors: {log.errors}"
    finally:
        ctx.close()


def screenshot(page: object, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
