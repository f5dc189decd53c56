"""The meter side of ``chargetracker demo``: its options and the neighbourhood driver's start.

Kept out of :mod:`chargetracker.cli.demo` so the demo command stays a few lines longer
only. The driver posts to the demo's own in-process server over loopback (the public
``POST /api/v1/meters/readings``), so it needs the web server (not ``--no-server``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import Settings
from ..errors import ConfigError
from ..sources.neighbourhood import Neighbourhood, NeighbourhoodConfig

__all__ = ["add_arguments", "start_neighbourhood"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("simulated neighbourhood (smart meters)")
    g.add_argument("--houses", type=int, default=30,
                   help="simulated houses fed live into the meter API (default 30; 0: none)")
    g.add_argument("--houses-speed", type=float, default=600.0, metavar="X",
                   help="houses' simulated s per wall s (default 600)")
    g.add_argument("--houses-days", type=float, default=30.0, metavar="DAYS",
                   help="simulated days of the live houses (default 30)")
    g.add_argument("--houses-spikes", type=float, default=2.0, metavar="N",
                   help="injected spikes per house and simulated day (default 2)")


def start_neighbourhood(args: argparse.Namespace, settings: Settings, server: Any) -> Neighbourhood | None:
    """Start the driver against ``server`` (a started web server), or None when disabled."""
    if args.houses < 0:
        raise ConfigError("--houses must be >= 0 (0: no neighbourhood)")
    if args.houses == 0:
        return None
    if server is None:
        print("neighbourhood skipped: it feeds the in-process API, which --no-server (or a "
              "missing web server) turns off", file=sys.stderr, flush=True)
        return None
    cfg = NeighbourhoodConfig(houses=args.houses, seed=args.seed, speed=args.houses_speed,
                              live_days=args.houses_days, spikes_per_house_day=args.houses_spikes)
    keys = settings.api.api_keys
    headers = {"Authorization": f"Bearer {keys[0]}"} if keys else {}
    url = server.url.replace("://0.0.0.0:", "://127.0.0.1:")
    print(f"neighbourhood: {cfg.houses} simulated houses at {cfg.speed:g}x -> {url}/meters",
          file=sys.stderr, flush=True)
    return Neighbourhood(url, cfg, headers=headers).start()
