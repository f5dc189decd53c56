"""A simulated neighbourhood of houses fed live into a running API (the demo's meter side).

The driver talks to the server only through the public meter contract: it registers the
houses' meters (``POST /api/v1/meters/meters``), posts a short history at full speed so
every meter has a p97 threshold before the live part starts
(``POST /api/v1/meters/readings`` then ``POST /api/v1/meters/thresholds/recompute``),
then streams the simulator's paced live mode (``speed`` x real time) with injected
spikes, recomputing the thresholds every ``recompute_hours`` of simulated time. Alerts
therefore reach the dashboard's live page (SSE) within seconds of the start.

History and live part are one simulation (one :class:`SimConfig`): the same houses,
scalings and spikes. It is placed so that the live part ends at the wall clock of the
start: no reading is ever stamped in the future, whatever ``speed``.
"""

from __future__ import annotations

import io
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import polars as pl

from ..errors import ConfigError
from ..meters.simulator import (
    SimConfig,
    house_readings,
    house_specs,
    live_batches,
    load_profiles,
    meters_frame,
)

__all__ = ["NeighbourhoodConfig", "NeighbourhoodStats", "Neighbourhood"]

_ARROW = {"Content-Type": "application/vnd.apache.arrow.stream"}


@dataclass(frozen=True, slots=True)
class NeighbourhoodConfig:
    """Size and pace of the simulated neighbourhood (durations in simulated time)."""

    houses: int = 30
    seed: int = 0
    #: simulated seconds per wall second of the live part
    speed: float = 600.0
    #: simulated days posted at full speed first, so thresholds exist when the live part starts
    history_days: float = 1.0
    #: simulated days of the live part (at 600x: 30 days last 72 min of wall time)
    live_days: float = 30.0
    interval_s: float = 60.0
    #: injected spikes per house and simulated day (30 houses at 600x: ~25 per wall minute)
    spikes_per_house_day: float = 2.0
    #: threshold recomputation period, simulated hours
    recompute_hours: float = 24.0
    n_zips: int = 5
    timezone: str = "Europe/London"
    #: readings per history POST (bounded request bodies)
    history_batch: int = 200_000

    def __post_init__(self) -> None:
        if self.houses < 1:
            raise ConfigError("neighbourhood houses must be >= 1")
        if not (self.speed > 0 and math.isfinite(self.speed)):
            raise ConfigError("neighbourhood speed must be a positive number")
        if self.history_days <= 0 or self.live_days <= 0 or self.recompute_hours <= 0:
            raise ConfigError("history_days, live_days and recompute_hours must be > 0")

    def sim_config(self, now: float) -> SimConfig:
        """The one simulation: history then live part, ending at ``now`` (epoch s)."""
        total = self.history_days + self.live_days
        start = math.floor(now / self.interval_s) * self.interval_s - total * 86_400.0
        return SimConfig(houses=self.houses, days=total, seed=self.seed, start_ts=start,
                         interval_s=self.interval_s, n_zips=self.n_zips, timezone=self.timezone,
                         spikes_per_house_day=self.spikes_per_house_day)


@dataclass
class NeighbourhoodStats:
    """What the driver sent and what the server answered (sums of the ingest replies)."""

    meters: int = 0
    readings: int = 0
    days: int = 0
    alerts: int = 0
    rejected: int = 0
    thresholds: int = 0
    live_started: bool = False
    finished: bool = False
    error: str | None = None
    first_alert_wall_s: float | None = field(default=None)


class Neighbourhood:
    """Drive a neighbourhood into the API at ``url`` in a background thread."""

    def __init__(self, url: str, config: NeighbourhoodConfig | None = None, *,
                 headers: dict[str, str] | None = None, clock: Callable[[], float] = time.time,
                 log: Callable[[str], None] | None = None) -> None:
        self.url = url
        self.config = config or NeighbourhoodConfig()
        self.headers = headers or {}
        self.clock = clock
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        self.stats = NeighbourhoodStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Neighbourhood:
        self._thread = threading.Thread(target=self._run_logged, name="neighbourhood", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> NeighbourhoodStats:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        return self.stats

    def join(self, timeout_s: float | None = None) -> NeighbourhoodStats:
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        return self.stats

    def _run_logged(self) -> None:
        try:
            self.run()
        except (ConfigError, httpx.HTTPError) as exc:
            # The battery side of the demo keeps running; the reason is printed once.
            self.stats.error = str(exc)
            self.log(f"neighbourhood stopped: {exc}")

    # -- the work ----------------------------------------------------------------------------
    def _post(self, c: httpx.Client, frame: pl.DataFrame, source: str) -> None:
        buf = io.BytesIO()
        frame.write_ipc_stream(buf)
        r = c.post("/api/v1/meters/readings", content=buf.getvalue(), params={"source": source},
                   headers=_ARROW)
        if r.status_code != 200:
            raise ConfigError(f"{self.url}: meter ingest answered {r.status_code}: {r.text[:300]}")
        out = r.json()
        st = self.stats
        st.readings += int(out["accepted"])
        st.rejected += int(out["rejected"])
        st.days += int(out["days"])
        if out["alerts"] and st.first_alert_wall_s is None:
            st.first_alert_wall_s = self.clock()
        st.alerts += int(out["alerts"])

    def _recompute(self, c: httpx.Client, as_of: float) -> None:
        r = c.post("/api/v1/meters/thresholds/recompute", params={"as_of": as_of})
        if r.status_code != 200:
            raise ConfigError(f"{self.url}: threshold recompute answered {r.status_code}: {r.text[:300]}")
        self.stats.thresholds = int(r.json()["with_threshold"])

    def run(self) -> NeighbourhoodStats:
        """Register, post the history, recompute thresholds, then stream live until done or stopped."""
        cfg = self.config
        sim = cfg.sim_config(self.clock())
        profiles = load_profiles()
        specs = house_specs(sim, profiles)
        meters = meters_frame(sim, specs, profiles)
        n_hist = int(round(cfg.history_days * 86_400.0 / sim.interval_s))
        with httpx.Client(base_url=self.url, timeout=120.0, headers=self.headers) as c:
            r = c.post("/api/v1/meters/meters", json=meters.drop("attributes").to_dicts())
            if r.status_code != 200:
                raise ConfigError(f"{self.url}: registering meters answered {r.status_code}: {r.text[:300]}")
            self.stats.meters = meters.height
            # History in time slices (all houses per slice) so a POST stays bounded.
            per_slice = max(1, cfg.history_batch // max(1, meters.height))
            for i0 in range(0, n_hist, per_slice):
                if self._stop.is_set():
                    return self.stats
                i1 = min(n_hist, i0 + per_slice)
                self._post(c, pl.concat([house_readings(sim, s, profiles, i0, i1) for s in specs])
                           .sort("ts"), "neighbourhood-history")
            as_of = sim.start_ts + n_hist * sim.interval_s
            self._recompute(c, as_of)
            self.log(f"neighbourhood: {cfg.houses} houses, {meters.height} meters, "
                     f"{self.stats.readings:,} history readings, {self.stats.thresholds} thresholds; "
                     f"live at {cfg.speed:g}x real time")
            self.stats.live_started = True
            next_recompute = as_of + cfg.recompute_hours * 3600.0
            batches = live_batches(sim, profiles, speed=cfg.speed, first_step=n_hist, specs=specs,
                                   sleep=self._stop.wait)
            try:
                for frame in batches:
                    if self._stop.is_set():
                        return self.stats
                    self._post(c, frame, "neighbourhood")
                    newest = float(frame["ts"].max())  # type: ignore[arg-type]
                    if newest >= next_recompute:
                        self._recompute(c, newest)
                        next_recompute = newest + cfg.recompute_hours * 3600.0
            finally:
                batches.close()
        self.stats.finished = True
        return self.stats
