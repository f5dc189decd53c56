"""Dashboard render times with 1,000 cells x 1,000 cycles in a DuckDB store.

    python benchmarks/bench_dashboard.py              # 1,000 cells x 1,000 cycles (1 M cycle rows)
    python benchmarks/bench_dashboard.py --quick      # 100 x 100 (smoke run, seconds)
    python benchmarks/bench_dashboard.py --no-browser # server side only

Store: a DuckDB file in a temporary folder with ``--cells`` cells in 8 groups and
``--cycles`` cycles per cell (the newest one open), made with NumPy (fade, spread, one
defective cell per group), plus 24 h of 1 Hz raw samples for the cell page's cell, 2,000
alerts, 200 dead letters and 30 commits of ingest counters.

Server side: the work each page's callbacks do -- the store reads, statistics, figure
and table building and the JSON encoding Dash does on the result -- timed in-process,
best of ``--repeat``. The overview is timed three ways: *cold* (a new dashboard, full
trend query), *incremental* (after one more closed cycle per cell: only cycles from the
oldest cell's frontier on are re-read) and *cached* (same version token, e.g. a second
browser tab).

Browser: Debian's Chromium (Playwright, never ``playwright install``) against the
standalone server: the wall time from navigation start until the page's data is drawn
(a plot trace or a table row), median of ``--browser-repeat`` navigations, and the
slowest ``_dash-update-component`` request of that navigation (server callback time as
the browser sees it). The first visit (JavaScript bundles not cached yet, full trend
query) is reported on its own; before every other navigation a commit changes the
version token, as new data would, so pages are recomputed, not served from the memo.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import plotly.io as pio
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, load_average, machine_info  # noqa: E402

from chargetracker.config import Settings  # noqa: E402
from chargetracker.dashboard.data import DashboardData  # noqa: E402
from chargetracker.dashboard.pages import alerts as alerts_page  # noqa: E402
from chargetracker.dashboard.pages import cell as cell_page  # noqa: E402
from chargetracker.dashboard.pages import group as group_page  # noqa: E402
from chargetracker.dashboard.pages import ingest as ingest_page  # noqa: E402
from chargetracker.dashboard.pages import overview as overview_page  # noqa: E402
from chargetracker.dashboard.tables import alert_rows, alert_table_rows  # noqa: E402
from chargetracker.queries import Queries  # noqa: E402
from chargetracker.schema import CELL_SCHEMA, CYCLE_SCHEMA, DEAD_LETTER_SCHEMA, MEASUREMENT_SCHEMA  # noqa: E402
from chargetracker.stores.base import CommitBatch  # noqa: E402
from chargetracker.stores.duckdb import DuckDBStore  # noqa: E402

BENCH = "dashboard"
N_GROUPS = 8
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
#: Page budgets for the browser (navigation to data drawn), s.
BROWSER_TARGET_S = 2.0
#: Budget for one page's server-side work, s.
SERVER_TARGET_S = 1.0


def cell_ids(n_cells: int) -> list[str]:
    return [f"grp-{i % N_GROUPS}-{i // N_GROUPS + 1:04d}" for i in range(n_cells)]


def make_cells(n_cells: int) -> pl.DataFrame:
    ids = cell_ids(n_cells)
    g = np.arange(n_cells) % N_GROUPS
    return pl.DataFrame({
        "cell_id": ids, "group": [f"grp-{k}" for k in g],
        "chemistry": np.where(g % 2 == 0, "NMC", "LFP"),
        "test_type": np.where(g < N_GROUPS // 2, "standard", "accelerated"),
        "nominal_capacity_ah": np.full(n_cells, 2.5), "v_min": np.full(n_cells, 2.75),
        "v_max": np.full(n_cells, 4.2),
        "attributes": [json.dumps({"rack": f"R{k % 3}", "line": int(k // 3)}) for k in range(n_cells)],
    }, schema=CELL_SCHEMA)


def make_cycles(n_cells: int, first: int, last: int, *, open_last: bool, t0: float,
                seed: int = 0) -> pl.DataFrame:
    """Cycles ``first..last`` of every cell (CYCLE_SCHEMA), vectorized; cell state is a
    function of the seed only, so later calls continue the same cells."""
    rng = np.random.default_rng(seed)
    cap0 = 2.5 * (1.0 + 0.01 * rng.standard_normal(n_cells))
    fade = 3e-4 * np.exp(0.2 * rng.standard_normal(n_cells))
    defective = np.arange(n_cells) < N_GROUPS  # one per group: the first cell of each
    cap0 = np.where(defective, cap0 * 0.8, cap0)
    fade = np.where(defective, fade * 8, fade)
    cycles = np.arange(first, last + 1)
    cid = np.repeat(np.arange(n_cells), cycles.size)
    cyc = np.tile(cycles, n_cells)
    noise = np.random.default_rng(seed + cyc[0] if cyc.size else seed).standard_normal(cid.size)
    dis = cap0[cid] * np.maximum(0.05, 1.0 - fade[cid] * cyc) + 0.002 * noise
    n = cid.size
    start = t0 + (cyc - 1) * 7200.0 + (cid % 600)
    status = np.where(open_last & (cyc == last), "open", "closed")
    ids = np.array(cell_ids(n_cells))
    cols: dict[str, Any] = {
        "cell_id": ids[cid], "cycle": cyc, "status": status, "start_ts": start, "end_ts": start + 7000.0,
        "duration_s": np.full(n, 7000.0), "n_samples": np.full(n, 7000), "n_steps": np.full(n, 4),
        "charge_ah": dis / 0.999, "discharge_ah": dis, "charge_wh": dis / 0.999 * 3.75,
        "discharge_wh": dis * 3.62, "coulombic_efficiency": np.full(n, 0.999) + 1e-4 * noise,
        "energy_efficiency": np.full(n, 0.9645) + 1e-3 * noise,
        "mean_charge_v": np.full(n, 3.75), "mean_discharge_v": np.full(n, 3.62),
        "min_v": np.full(n, 2.8), "max_v": np.full(n, 4.2), "mean_v": np.full(n, 3.7),
        "min_current_a": np.full(n, -2.5), "max_current_a": np.full(n, 2.5), "mean_current_a": np.zeros(n),
        "min_temperature_c": np.full(n, 25.0), "max_temperature_c": 30.0 + 0.5 * noise,
        "mean_temperature_c": 27.0 + 0.2 * noise, "retention": dis / cap0[cid],
        "internal_resistance_ohm": 0.03 * (1.0 + 1.5 * fade[cid] * cyc),
        "throughput_ah": 5.0 * cyc, "equivalent_full_cycles": cyc.astype(float), "gap_count": np.zeros(n, np.int64),
    }
    return pl.DataFrame(cols).select([pl.col(c).cast(t) for c, t in CYCLE_SCHEMA.items()])


def make_measurements(cell_id: str, t_end: float, hours: float = 24.0) -> pl.DataFrame:
    n = int(hours * 3600)
    t = t_end - hours * 3600 + np.arange(n, dtype=float)
    phase = (np.arange(n) % 7200) / 7200.0
    current = np.where(phase < 0.45, 2.5, np.where(phase < 0.5, 0.0, np.where(phase < 0.95, -2.5, 0.0)))
    voltage = 3.0 + 1.2 * np.where(phase < 0.5, phase * 2, 1.0 - (phase - 0.5) * 2)
    return pl.DataFrame({
        "cell_id": [cell_id] * n, "ts": t, "voltage_v": voltage, "current_a": current,
        "temperature_c": 25.0 + 3.0 * np.abs(current) / 2.5, "cycle": [None] * n, "step": [None] * n,
        "step_time_s": [None] * n,
    }, schema=MEASUREMENT_SCHEMA)


def fill(store: DuckDBStore, n_cells: int, n_cycles: int) -> dict[str, Any]:
    """Everything the pages read; returns facts about what was stored."""
    t0 = time.time() - n_cycles * 7200.0
    cells = make_cells(n_cells)
    t = time.perf_counter()
    store.commit(CommitBatch(cells=cells))
    cycles = make_cycles(n_cells, 1, n_cycles, open_last=True, t0=t0)
    store.commit(CommitBatch(cycles=cycles))
    commit_s = time.perf_counter() - t
    focus = cell_ids(n_cells)[0]
    store.commit(CommitBatch(measurements=make_measurements(focus, time.time())))
    rng = np.random.default_rng(1)
    n_alerts = 2000
    picks = rng.integers(0, n_cells, n_alerts)
    ids = np.array(cell_ids(n_cells))
    store.commit(CommitBatch(alerts=pl.DataFrame({
        "ts": t0 + np.arange(n_alerts) * 60.0, "cell_id": ids[picks],
        "group": [f"grp-{k % N_GROUPS}" for k in picks], "rule": ["outlier_discharge_ah"] * n_alerts,
        "severity": np.where(rng.random(n_alerts) < 0.1, "critical", "warning"),
        "value": rng.normal(2.4, 0.1, n_alerts), "threshold": np.full(n_alerts, 2.5),
        "cycle": rng.integers(1, n_cycles, n_alerts), "message": ["bench alert"] * n_alerts})))
    dead = pl.DataFrame({
        "source": ["bench"] * 200, "row": np.arange(200), "cell_id": ids[np.arange(200) % n_cells],
        "ts": t0 + np.arange(200.0), "field": np.where(np.arange(200) % 3 == 0, "voltage_v", "ts"),
        "reason": np.where(np.arange(200) % 3 == 0, "NaN", "missing value"),
        "payload": ['{"voltage_v": "nan"}'] * 200}, schema=DEAD_LETTER_SCHEMA)
    store.commit(CommitBatch(dead_letters=dead))
    for _ in range(30):
        store.commit(CommitBatch(counters={"bench": {"accepted": 250_000, "rejected": 7}}))
    return {"cycles_rows": cycles.height, "commit_cycles_s": commit_s, "focus_cell": focus}


def best(fn: Any, repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def encode(*objs: Any) -> int:
    """Bytes of the JSON Dash would send for these callback outputs."""
    total = 0
    for o in objs:
        total += len(pio.to_json(o) if hasattr(o, "to_plotly_json") and hasattr(o, "data")
                     else json.dumps(o, default=lambda x: x.to_plotly_json() if hasattr(x, "to_plotly_json")
                                     else str(x)))
    return total


def server_side(store: DuckDBStore, settings: Settings, facts: dict[str, Any], n_cells: int,
                n_cycles: int, repeat: int) -> dict[str, float]:
    results: dict[str, float] = {}
    queries = Queries(store, settings.stats)

    def overview(data: DashboardData, token: Any) -> int:
        fig, note, summary = overview_page.render(data, token, "discharge_ah", "group", None, None, None)
        return encode(fig, summary)

    # Cold: a fresh dashboard each time (full trend query).
    def cold() -> int:
        data = DashboardData(queries, settings)
        return overview(data, data.status()[1])

    s, size = best(cold, repeat)
    results["overview_cold"] = s
    emit(BENCH, "overview_cold_s", round(s, 4), "s", target=SERVER_TARGET_S, higher_is_better=False,
         json_bytes=size, cells=n_cells, cycles=n_cycles)

    data = DashboardData(queries, settings)
    token = data.status()[1]
    overview(data, token)
    s, _ = best(lambda: overview(data, token), repeat)
    results["overview_cached"] = s
    emit(BENCH, "overview_cached_s", round(s, 4), "s", note="same version token (another tab)")

    # Incremental: every cell closes one more cycle (and opens the next).
    t0 = time.time() - n_cycles * 7200.0
    times = []
    for k in range(repeat):
        last = n_cycles + k
        store.commit(CommitBatch(cycles=pl.concat([
            make_cycles(n_cells, last, last, open_last=False, t0=t0),
            make_cycles(n_cells, last + 1, last + 1, open_last=True, t0=t0)])))
        token = data.status()[1]
        t = time.perf_counter()
        overview(data, token)
        times.append(time.perf_counter() - t)
    results["overview_incremental"] = min(times)
    emit(BENCH, "overview_incremental_s", round(min(times), 4), "s", target=SERVER_TARGET_S,
         higher_is_better=False, refreshes=dict(data.trend_refreshes))

    def deep_dive() -> int:
        tok = [time.perf_counter()]  # a new token each time: no memo
        rows, cols, fig, summary, title, empty = group_page.render(data, settings, tok, "grp-1",
                                                                    "discharge_ah", None, "group")
        return encode(fig, rows, summary)

    s, size = best(deep_dive, repeat)
    results["deep_dive"] = s
    emit(BENCH, "deep_dive_s", round(s, 4), "s", target=SERVER_TARGET_S, higher_is_better=False,
         json_bytes=size, cells_in_group=n_cells // N_GROUPS)

    focus = facts["focus_cell"]

    def cell() -> int:
        fig_ts, note = cell_page.render_timeseries(data, focus, 24.0, None)
        fig_cap, trend, rows, cols, meta = cell_page.render_cycles(data, focus)
        return encode(fig_ts, fig_cap, rows, trend, meta)

    s, size = best(cell, repeat)
    results["cell"] = s
    emit(BENCH, "cell_s", round(s, 4), "s", target=SERVER_TARGET_S, higher_is_better=False,
         json_bytes=size, raw_rows_in_window=86_400, points_drawn=cell_page.MAX_POINTS)

    def alerts() -> int:
        rows = alert_rows(data.alerts(limit=alerts_page.MAX_ROWS))
        return encode(alert_table_rows(rows))

    s, size = best(alerts, repeat)
    results["alerts"] = s
    emit(BENCH, "alerts_s", round(s, 4), "s", target=SERVER_TARGET_S, higher_is_better=False,
         json_bytes=size, rows=alerts_page.MAX_ROWS)

    s, out = best(lambda: ingest_page.render(data, 3600), repeat)
    results["ingest"] = s
    emit(BENCH, "ingest_s", round(s, 4), "s", target=SERVER_TARGET_S, higher_is_better=False)

    def tick() -> None:
        data.status()

    s, _ = best(tick, repeat)
    results["tick"] = s
    emit(BENCH, "refresh_tick_s", round(s, 4), "s", note="version token read every refresh_ms per tab")
    return results


def browser_side(store: DuckDBStore, settings: Settings, facts: dict[str, Any], repeat: int) -> None:
    if not os.path.exists(CHROMIUM):
        print(f"  {CHROMIUM} missing (make system-deps): browser figures skipped")
        return
    from playwright.sync_api import sync_playwright

    from chargetracker.dashboard.server import start_background

    pages = {
        "overview": ("/", "() => { const g = document.querySelector('#ov-graph .js-plotly-plot'); "
                          "return !!(g && g.data && g.data.some(t => t.meta && t.meta.role === 'mean')); }"),
        "deep_dive": ("/group?group=grp-1", "() => !!document.querySelector(\"#dd-table td[data-dash-column='cell_id']\")"),
        "cell": (f"/cell/{facts['focus_cell']}",
                 "() => ['cp-ts', 'cp-cap'].every(id => { const g = document.querySelector('#' + id + ' .js-plotly-plot'); "
                 "return !!(g && g.data && g.data.length && !(g.layout.meta && g.layout.meta.empty)); })"),
        "alerts": ("/alerts", "() => !!document.querySelector(\"#al-table td[data-dash-column='action']\")"),
        "ingest": ("/ingest", "() => !!document.querySelector('#in-sources-table') && "
                              "!!document.querySelector('#in-dead-table')"),
    }
    server = start_background(Queries(store, settings.stats), settings)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
            pg = ctx.new_page()
            errors: list[str] = []
            pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.set_default_timeout(60_000)
            # First visit: JavaScript bundles into the browser cache and the full trend query.
            t = time.perf_counter()
            pg.goto(server.url + "/")
            pg.wait_for_function(pages["overview"][1], polling=20)
            emit(BENCH, "browser_first_visit_overview_s", round(time.perf_counter() - t, 3), "s",
                 note="cold: JS bundles downloaded, full trend query")
            for name, (path, ready) in pages.items():
                walls, slowest = [], []
                for _ in range(repeat):
                    pg.goto("about:blank")
                    # New data arrives between visits (as in a live fleet): a new version
                    # token, so nothing is served from the per-token memo.
                    store.commit(CommitBatch(counters={"bench-live": {"accepted": 1, "rejected": 0}}))
                    t = time.perf_counter()
                    pg.goto(server.url + path)
                    pg.wait_for_function(ready, polling=20)
                    walls.append(time.perf_counter() - t)
                    durs = pg.evaluate("performance.getEntriesByType('resource')"
                                       ".filter(e => e.name.includes('_dash-update-component'))"
                                       ".map(e => e.duration)")
                    slowest.append(max(durs) / 1000.0 if durs else 0.0)
                med = statistics.median(walls)
                emit(BENCH, f"browser_{name}_s", round(med, 3), "s", target=BROWSER_TARGET_S,
                     higher_is_better=False, runs=[round(w, 3) for w in walls],
                     slowest_callback_s=round(statistics.median(slowest), 3))
            browser.close()
            if errors:
                print(f"  browser console errors: {errors}")
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=1000)
    p.add_argument("--cycles", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--browser-repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="100 cells x 100 cycles")
    p.add_argument("--no-browser", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.cells, args.cycles = 100, 100
    info = machine_info()
    print(f"dashboard benchmark: {args.cells:,} cells x {args.cycles:,} cycles; machine {info}")
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="ct-bench-dash-") as tmp:
        store = DuckDBStore(Path(tmp) / "bench.duckdb")
        try:
            t = time.perf_counter()
            facts = fill(store, args.cells, args.cycles)
            print(f"  store filled in {time.perf_counter() - t:.1f} s ({facts['cycles_rows']:,} cycle rows, "
                  f"cycles committed in {facts['commit_cycles_s']:.1f} s)")
            server_side(store, settings, facts, args.cells, args.cycles, args.repeat)
            if not args.no_browser:
                browser_side(store, settings, facts, args.browser_repeat)
        finally:
            store.close()
    print(f"  load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
