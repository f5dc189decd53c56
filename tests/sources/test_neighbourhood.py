"""The demo's neighbourhood driver: a short demo-like run through the in-process server
(the same composition as ``chargetracker demo``) gives meter days, thresholds and alerts."""

from __future__ import annotations

import argparse
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from chargetracker.cli.demo_meters import start_neighbourhood
from chargetracker.cli.web import start_server
from chargetracker.config import Settings
from chargetracker.runtime import Pipeline
from chargetracker.sources.neighbourhood import Neighbourhood, NeighbourhoodConfig
from chargetracker.stores.url import open_store


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    url = f"duckdb:///{tmp_path_factory.mktemp('hood') / 'demo.duckdb'}"
    base = Settings()
    settings = Settings(store_url=url, api=replace(base.api, host="127.0.0.1", port=_free_port()))
    store = open_store(url)
    server = start_server(settings, store, Pipeline(store, settings))
    assert server is not None
    try:
        yield server
    finally:
        server.stop()
        store.close()


def test_short_run_gives_days_thresholds_and_live_alerts(demo_server: Any) -> None:
    cfg = NeighbourhoodConfig(houses=4, seed=3, speed=20_000.0, history_days=0.5, live_days=0.05,
                              spikes_per_house_day=100.0, recompute_hours=0.5)
    t_start = time.time()
    hood = Neighbourhood(demo_server.url, cfg, log=lambda _m: None)
    st = hood.run()
    assert st.finished and st.error is None and st.live_started
    assert st.meters >= 4 and st.thresholds >= 4 and st.rejected == 0
    # Every simulated step of every meter was accepted once: history plus live part.
    steps = round((cfg.history_days + cfg.live_days) * 86_400 / cfg.interval_s)
    assert st.readings == steps * st.meters
    assert st.alerts >= 1 and st.first_alert_wall_s is not None
    with httpx.Client(base_url=demo_server.url, timeout=30) as c:
        days = c.get("/api/v1/meters/days").json()
        alerts = c.get("/api/v1/meters/alerts", params={"limit": 10_000}).json()
        houses = c.get("/api/v1/meters/houses").json()
    assert len(houses) == 4 and days and sum(d["energy_kwh"] for d in days) > 0
    live_from = cfg.sim_config(t_start).start_ts + cfg.history_days * 86_400
    # Alerts need thresholds: none in the history (posted before the recompute), some live.
    assert alerts and all(a["start_ts"] >= live_from - cfg.interval_s for a in alerts)
    # The live part ends at the wall clock of the start: no reading stamped in the future.
    assert max(d["last_ts"] for d in days) <= t_start + 1


def test_cli_options_disable_or_skip_without_server(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(houses=0, seed=0, houses_speed=600.0, houses_days=1.0, houses_spikes=2.0)
    assert start_neighbourhood(args, Settings(), server=object()) is None
    args.houses = 3
    assert start_neighbourhood(args, Settings(), server=None) is None
    assert "neighbourhood skipped" in capsys.readouterr().err


def test_stop_interrupts_the_paced_live_part(demo_server: Any) -> None:
    cfg = NeighbourhoodConfig(houses=2, seed=1, speed=60.0, history_days=0.1, live_days=5.0)
    hood = Neighbourhood(demo_server.url, cfg, log=lambda _m: None).start()
    deadline = time.monotonic() + 60
    while not hood.stats.live_started and time.monotonic() < deadline and hood.stats.error is None:
        time.sleep(0.05)
    assert hood.stats.live_started
    # Five simulated days at 60x would take two hours: stop ends the paced wait at once.
    st = hood.stop(timeout_s=30)
    assert hood._thread is not None and not hood._thread.is_alive()
    assert not st.finished and st.error is None
