"""A neighbourhood of simulated houses, replaying real household profiles.

Like the original watchdog (which replayed REDD "with random spikes and scaling"), each
house replays one of the real profiles shipped in ``meters/data`` (a week of UK-DALE,
REFIT and IDEAL houses at 1 minute, CC BY 4.0) with its own scaling, time shift,
appliance mix (a dropped appliance still draws power on the mains: it becomes part of the
unmetered rest), zip code and injected spikes. Everything follows from ``seed`` and the
house number, so any range of houses or of time is reproduced exactly, in any order.

``house_readings`` is pure; ``load_profiles`` reads the package data; ``live_batches``
paces the stream with the wall clock for the demo.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from importlib import resources

import numpy as np
import polars as pl

from ..errors import ConfigError
from .readers import open_meter_file
from .schema import MAINS, METER_SCHEMA, READING_SCHEMA

__all__ = ["Profile", "SimConfig", "HouseSpec", "load_profiles", "house_specs", "house_readings",
           "simulate", "live_batches", "injected_spikes", "SPIKE_SCHEMA"]

SPIKE_SCHEMA = {"meter_id": pl.Utf8, "start_ts": pl.Float64, "n_readings": pl.Int64,
                "peak_w": pl.Float64}


@dataclass(frozen=True)
class Profile:
    name: str
    step_s: float                       # the profile's grid, s
    appliances: tuple[str, ...]         # "mains" first
    power_w: np.ndarray                 # (n_steps, n_appliances), W


@dataclass(frozen=True, slots=True)
class SimConfig:
    houses: int = 100
    days: float = 7.0
    seed: int = 0
    start_ts: float = 1767225600.0      # 2026-01-01T00:00:00Z
    interval_s: float = 60.0
    n_zips: int = 20
    timezone: str = "Europe/London"
    scale_sigma: float = 0.35           # log-normal per-house scaling
    keep_appliance_p: float = 0.75
    spikes_per_house_day: float = 0.3
    spike_factor: tuple[float, float] = (1.6, 3.0)   # x the appliance's own peak
    spike_readings: tuple[int, int] = (1, 4)

    def __post_init__(self) -> None:
        if self.houses < 1 or self.days <= 0 or self.interval_s <= 0 or self.n_zips < 1:
            raise ConfigError("houses, days, interval_s and n_zips must be positive")

    @property
    def n_steps(self) -> int:
        return int(round(self.days * 86_400.0 / self.interval_s))


@dataclass(frozen=True)
class HouseSpec:
    house_id: str
    zip_code: str
    profile: int
    scale: float
    shift: int                  # profile steps skipped at t = 0
    offset_s: float             # the house logger's clock phase, s
    meters: tuple[tuple[str, int], ...]   # (meter_id, profile column)
    spikes: np.ndarray          # (k, 4): meter index, first step, n steps, factor


def load_profiles() -> list[Profile]:
    """The real profiles shipped with the package (see ``meters/data/README.md``)."""
    out = []
    base = resources.files("chargetracker.meters") / "data"
    for entry in sorted(base.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith("-excerpt.csv.gz"):
            continue
        with resources.as_file(entry) as path:
            mf = open_meter_file(path, format="wide")
            frame = pl.concat([c.readings for c in mf.chunks])
        meta = mf.meters.sort(pl.col("appliance") != MAINS, "meter_id")
        wide = frame.pivot(on="meter_id", index="ts", values="power_w").sort("ts")
        ids = meta.get_column("meter_id").to_list()
        ts = wide.get_column("ts").to_numpy()
        step = float(np.median(np.diff(ts)))
        power = np.column_stack([wide.get_column(m).fill_null(0.0).to_numpy() for m in ids])
        out.append(Profile(entry.name.split("-excerpt")[0], step,
                           tuple(meta.get_column("appliance").to_list()), power))
    return out


def house_specs(cfg: SimConfig, profiles: list[Profile], first: int = 0,
                count: int | None = None) -> list[HouseSpec]:
    count = cfg.houses - first if count is None else count
    specs = []
    for k in range(first, first + count):
        rng = np.random.default_rng([cfg.seed, k])
        pi = int(rng.integers(len(profiles)))
        prof = profiles[pi]
        hid = f"sim-h{k:05d}"
        cols = [0] + [c for c in range(1, len(prof.appliances)) if rng.random() < cfg.keep_appliance_p]
        meters = tuple((f"{hid}/{prof.appliances[c]}", c) for c in cols)
        n_sp = int(rng.poisson(cfg.spikes_per_house_day * cfg.days))
        n = cfg.n_steps
        gap = cfg.spike_readings[1] + 3
        # Spikes on distinct, well separated steps of one meter each.
        spikes = np.zeros((0, 4))
        if n_sp and n > 2 * gap:
            slots = rng.choice(np.arange(1, n // gap - 1), size=min(n_sp, n // gap - 2), replace=False)
            m_idx = rng.integers(0, len(meters), size=len(slots))
            lens = rng.integers(cfg.spike_readings[0], cfg.spike_readings[1] + 1, size=len(slots))
            fac = rng.uniform(*cfg.spike_factor, size=len(slots))
            spikes = np.column_stack([m_idx, np.sort(slots) * gap, lens, fac]).astype(np.float64)
        specs.append(HouseSpec(
            house_id=hid, zip_code=f"Z{int(rng.integers(cfg.n_zips)):04d}", profile=pi,
            scale=float(rng.lognormal(0.0, cfg.scale_sigma)),
            shift=int(rng.integers(prof.power_w.shape[0])),
            offset_s=float(rng.integers(0, max(1, int(cfg.interval_s)))),
            meters=meters, spikes=spikes))
    return specs


def meters_frame(cfg: SimConfig, specs: list[HouseSpec], profiles: list[Profile]) -> pl.DataFrame:
    rows = [{"meter_id": mid, "house_id": s.house_id, "appliance": profiles[s.profile].appliances[c],
             "zip": s.zip_code, "timezone": cfg.timezone, "attributes": None}
            for s in specs for mid, c in s.meters]
    return pl.DataFrame(rows, schema=METER_SCHEMA)


def _peaks(profiles: list[Profile]) -> list[np.ndarray]:
    return [p.power_w.max(axis=0) for p in profiles]


def house_readings(cfg: SimConfig, spec: HouseSpec, profiles: list[Profile], i0: int = 0,
                   i1: int | None = None) -> pl.DataFrame:
    """Readings of one house for steps ``i0..i1`` (sorted by meter, then ts)."""
    i1 = cfg.n_steps if i1 is None else min(i1, cfg.n_steps)
    prof = profiles[spec.profile]
    steps = np.arange(i0, i1, dtype=np.int64)
    L = prof.power_w.shape[0]
    # The profile's row at each simulated instant (nearest on its own grid, cyclic).
    src = (spec.shift + np.round(steps * cfg.interval_s / prof.step_s).astype(np.int64)) % L
    ts = cfg.start_ts + spec.offset_s + steps * cfg.interval_s
    peak = prof.power_w.max(axis=0)
    ids, tss, pws = [], [], []
    for j, (_mid, c) in enumerate(spec.meters):
        p = prof.power_w[src, c] * spec.scale
        for m, s0, n, fac in spec.spikes:
            if int(m) != j:
                continue
            a, b = max(int(s0), i0), min(int(s0 + n), i1)
            if a < b:
                p[a - i0 : b - i0] = peak[c] * spec.scale * fac
        ids.append(np.full(len(steps), j))
        tss.append(ts)
        pws.append(p)
    names = pl.Series([m for m, _ in spec.meters], dtype=pl.Utf8)
    return pl.DataFrame({"meter_id": names.gather(np.concatenate(ids)), "ts": np.concatenate(tss),
                         "power_w": np.concatenate(pws),
                         "energy_wh": pl.Series([None] * len(steps) * len(spec.meters), dtype=pl.Float64)},
                        schema=READING_SCHEMA)


def injected_spikes(cfg: SimConfig, specs: list[HouseSpec], profiles: list[Profile]) -> pl.DataFrame:
    """Ground truth of the injected spikes (meter, first reading, readings, power)."""
    rows = []
    for s in specs:
        peak = profiles[s.profile].power_w.max(axis=0)
        for m, s0, n, fac in s.spikes:
            mid, c = s.meters[int(m)]
            n_in = min(int(n), cfg.n_steps - int(s0))
            if n_in > 0:
                rows.append({"meter_id": mid, "start_ts": cfg.start_ts + s.offset_s + s0 * cfg.interval_s,
                             "n_readings": n_in, "peak_w": peak[c] * s.scale * fac})
    return pl.DataFrame(rows, schema=SPIKE_SCHEMA)


def simulate(cfg: SimConfig, profiles: list[Profile] | None = None, *, houses_per_chunk: int = 50
             ) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """(meters, readings) per chunk of houses, readings sorted by meter then ts."""
    profiles = profiles or load_profiles()
    for first in range(0, cfg.houses, houses_per_chunk):
        specs = house_specs(cfg, profiles, first, min(houses_per_chunk, cfg.houses - first))
        yield meters_frame(cfg, specs, profiles), pl.concat(
            [house_readings(cfg, s, profiles) for s in specs])


def live_batches(cfg: SimConfig, profiles: list[Profile] | None = None, *, speed: float = 60.0,
                 batch_s: float = 1.0, sleep: Callable[[float], object] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, first_step: int = 0,
                 specs: list[HouseSpec] | None = None) -> Generator[pl.DataFrame, None, None]:
    """Readings of every house paced by the wall clock (``speed`` x real time), ts-ordered.

    Starts at step ``first_step`` (the steps before it, e.g. a history posted at full
    speed, are skipped), so a history and its live continuation are one simulation: the
    same houses, scales and spikes. ``sleep`` may return early (an interruptible wait);
    the caller stops by closing the generator.
    """
    if speed <= 0 or batch_s <= 0:
        raise ConfigError("speed and batch_s must be > 0")
    profiles = profiles or load_profiles()
    specs = house_specs(cfg, profiles) if specs is None else specs
    step = first = max(0, first_step)
    t0 = clock()
    while step < cfg.n_steps:
        target = first + int((clock() - t0 + batch_s) * speed / cfg.interval_s)
        nxt = min(max(target, step + 1), cfg.n_steps)
        frame = pl.concat([house_readings(cfg, s, profiles, step, nxt) for s in specs]).sort("ts")
        step = nxt
        yield frame
        wait = t0 + (step - first) * cfg.interval_s / speed - clock()
        if wait > 0:
            sleep(wait)
