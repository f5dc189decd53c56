"""``chargetracker demo``: a simulated fleet, the live pipeline and the dashboard, in one process.

Simulates ``--cells`` cells (default 104, in four groups: NMC and LFP x standard and
accelerated cycling) at ``--accel`` times real time (default 3600: one simulated hour per
second), runs them through the engine into a DuckDB file (default ./chargetracker.duckdb)
and serves the dashboard and API on http://127.0.0.1:8050 when the web server is
installed (``--no-server`` for the terminal summary only). Ctrl-C stops it; running it
again with the same settings resumes the simulation where it stopped (``--fresh`` starts
over with an empty store). Beside the fleet, ``--houses`` simulated houses (default 30;
0: none) stream smart-meter readings with spikes into the meter API, live (cli/demo_meters.py).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import ConfigError
from ..runtime import Runner, print_summary
from ..sim.fleet_config import default_fleet_config
from ..sim.measurement import FAULT_NAMES, FaultConfig
from ..sources import SimulatorSource, parse_acceleration
from .demo_meters import add_arguments as add_meter_arguments
from .demo_meters import start_neighbourhood
from .web import start_server

__all__ = ["register", "run", "store_url_of"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo", help="simulated fleet + live pipeline + dashboard on http://127.0.0.1:8050",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cells", type=int, default=104, help="simulated cells (default 104, 4 groups)")
    p.add_argument("--hours", type=float, default=0.0,
                   help="simulated hours, then stop simulating (default 0: until Ctrl-C)")
    p.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    p.add_argument("--accel", default="3600", metavar="X|max",
                   help="time acceleration, simulated s per wall s (default 3600; max = full speed)")
    p.add_argument("--faults", default="none",
                   help=f"sensor faults to simulate: {','.join(FAULT_NAMES)}, all or none (default)")
    p.add_argument("--store", default="chargetracker.duckdb",
                   help="DuckDB file or store URL (default ./chargetracker.duckdb)")
    p.add_argument("--fresh", action="store_true", help="delete the demo store first and start over")
    p.add_argument("--no-server", action="store_true", help="terminal summary only, no web server")
    p.add_argument("--host", default=None, help="web server address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="web server port (default 8050)")
    p.add_argument("--raw-days", type=float, default=2.0, metavar="DAYS",
                   help="keep raw samples of the last DAYS of simulated time (default 2; "
                   "cycles and steps are kept forever)")
    p.add_argument("--future-horizon", type=float, default=86400.0, metavar="S",
                   help="samples stamped more than S s ahead of the clock (the later of the "
                   "wall clock and the simulated one) are dead letters (default 86400)")
    p.add_argument("--summary-interval", type=float, default=5.0, metavar="S")
    add_meter_arguments(p)
    p.set_defaults(func=run)


def store_url_of(value: str) -> str:
    """A store URL from a URL or a plain DuckDB file path."""
    if "://" in value or value == ":memory:":
        return value
    return f"duckdb:///{Path(value).expanduser()}"


def _fresh(url: str) -> None:
    from ..stores.url import parse_duckdb_url

    path_text = parse_duckdb_url(url)[0] if url.startswith("duckdb:") else ""
    if not path_text or path_text == ":memory:":
        raise ConfigError("--fresh only deletes a DuckDB file store")
    path = Path(path_text)
    for p in (path, path.with_name(path.name + ".wal")):
        if p.exists():
            p.unlink()


def run(args: argparse.Namespace) -> int:
    from ..stores.url import open_store, store_location

    if args.cells < 1:
        raise ConfigError("--cells must be >= 1")
    if args.hours < 0:
        raise ConfigError("--hours must be >= 0 (0: until Ctrl-C)")
    accel = parse_acceleration(args.accel)
    names = [n.strip() for n in args.faults.split(",") if n.strip()]
    names = list(FAULT_NAMES) if names == ["all"] else ([] if names == ["none"] else names)
    unknown = sorted(set(names) - set(FAULT_NAMES))
    if unknown:
        raise ConfigError(f"--faults: unknown {unknown}; one of {list(FAULT_NAMES)}")
    fleet = default_fleet_config(
        cells=args.cells, seed=args.seed,
        duration_s=args.hours * 3600.0 if args.hours > 0 else None,
        faults=FaultConfig.from_names(names),
    )
    url = store_url_of(args.store)
    api = Settings().api
    if args.host or args.port:
        from dataclasses import replace
        api = replace(api, host=args.host or api.host, port=args.port or api.port)
    if not args.raw_days > 0:
        raise ConfigError("--raw-days must be > 0")
    from ..config import RuntimeConfig
    settings = Settings(store_url=url, api=api, raw_retention_days=args.raw_days,
                        runtime=RuntimeConfig(future_horizon_s=args.future_horizon))
    speed = "full speed" if not math.isfinite(accel) else f"{accel:g}x real time"
    print(f"chargetracker demo: {fleet.n_cells} simulated cells in {len(fleet.groups)} groups "
          f"({', '.join(g.name for g in fleet.groups)}), {speed}, seed {args.seed} -> "
          f"{store_location(url)}",
          file=sys.stderr, flush=True)
    if args.fresh:
        _fresh(url)
    source = SimulatorSource(fleet, name="demo-fleet", acceleration=accel)
    from ..kinds.pack import PackKind
    from ..runtime.pack_feed import pack_feed_pipeline

    store = open_store(url, kinds=[PackKind()])
    server = houses = None
    try:
        # Cells in packs: daily pack records and alarm predictions (Fleet alarms page).
        pipeline = pack_feed_pipeline(store, settings, cells=source.cells, synthetic_packs=True,
                                      seed_start_ts=fleet.start_epoch, seed=args.seed)
        if not args.no_server:
            server = start_server(settings, store, pipeline)
            if server is not None:
                print(f"dashboard on {server.url}  API on {server.url}/api/v1", file=sys.stderr, flush=True)
        houses = start_neighbourhood(args, settings, server)
        runner = Runner(pipeline, [source], settings.runtime, summary=print_summary(),
                        summary_interval_s=args.summary_interval, retention_interval_s=10.0)
        stats = runner.run()
        print(f"chargetracker demo: {'finished' if stats.finished else 'stopped'}: "
              f"{stats.accepted:,} samples, {stats.closed_cycles:,} cycles closed, "
              f"{stats.alerts:,} alerts in {stats.wall_s:.1f} s (store {url})",
              file=sys.stderr, flush=True)
        if server is not None and stats.finished:
            server.wait_for_interrupt()
    finally:
        if houses is not None:
            houses.stop()
        if server is not None:
            server.stop()
        source.close()
        store.close()
    return 0
