"""The meter kind through the one micro-batch step: what the kind protocol, the step and
the alert episodes cost on top of the meter engine, and the embedded path into DuckDB.

    .venv/bin/python benchmarks/bench_meter_kind.py [--readings 10e6] [--batch-rows 200000]
        [--store-readings 2e6]

Same live stream for every run: 20,000 meters interleaved in time (one reading per 90 s
each), micro-batches of ``--batch-rows``, p97 thresholds installed, rare spikes.

* ``engine``: ``meters.update`` per batch (validation inside; the real-time layer of
  bench_meters.py);
* ``step``: ``runtime.step.advance`` + ``raise_alerts`` with the meter kind (validation
  once, engine, spike episodes kept in memory as a Kafka partition keeps them), no store;
* ``pipeline``: ``Pipeline.ingest`` of the meter kind into a DuckDB file (raw readings,
  days, episodes, notifications and checkpoint in one commit per batch), on
  ``--store-readings`` of the stream.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, fmt_rate, machine_info  # noqa: E402

from chargetracker.config import Settings  # noqa: E402
from chargetracker.episodes import EpisodeState  # noqa: E402
from chargetracker.kinds.meter import meter_kind  # noqa: E402
from chargetracker.meters import MeterConfig, new_state, set_thresholds, update  # noqa: E402
from chargetracker.runtime import Pipeline  # noqa: E402
from chargetracker.runtime.step import StepContext, advance, raise_alerts  # noqa: E402
from chargetracker.stores.url import open_store  # noqa: E402

START = 1767225600.0
STEP = 90.0
N_METERS = 20_000


def live_frames(n_target: float, batch_rows: int) -> tuple[list[pl.DataFrame], pl.DataFrame]:
    rng = np.random.default_rng(1)
    ids = pl.Series("meter_id", [f"m{k:06d}" for k in range(N_METERS)])
    thr = pl.DataFrame({"meter_id": ids, "p97_w": rng.uniform(1500, 2500, N_METERS)})
    steps = max(1, int(n_target // N_METERS))
    per_batch = max(1, batch_rows // N_METERS)
    frames = []
    for s0 in range(0, steps, per_batch):
        k = min(per_batch, steps - s0)
        ts = (START + (s0 + np.arange(k)) * STEP)[:, None] + np.zeros(N_METERS)[None, :]
        p = rng.gamma(1.5, 200.0, (k, N_METERS))
        p[rng.random((k, N_METERS)) < 2e-4] = 4000.0
        frames.append(pl.DataFrame({"meter_id": ids.gather(np.tile(np.arange(N_METERS), k)),
                                    "ts": ts.ravel(), "power_w": p.ravel()}))
    return frames, thr


def _report(name: str, n: int, wall: float, cpu: float, lat: list[float], extra: str = "") -> None:
    print(f"{name:9s} {n:>11,} readings: {wall:6.2f} s wall, {cpu:6.2f} CPU-s = "
          f"{fmt_rate(n / wall)} readings/s, {fmt_rate(n / cpu)} per CPU-s, batch p95 "
          f"{np.percentile(lat, 95) * 1000:.0f} ms{extra}")
    emit("meter_kind", f"{name}_readings_per_s", n / wall, "readings/s", wall_s=wall, cpu_s=cpu,
         batch_p95_ms=float(np.percentile(lat, 95) * 1000))


def bench_engine(frames: list[pl.DataFrame], thr: pl.DataFrame) -> None:
    st = new_state(MeterConfig())
    set_thresholds(st, thr)
    lat, events = [], 0
    w0, c0 = time.perf_counter(), time.process_time()
    for f in frames:
        b0 = time.perf_counter()
        st, out = update(st, f)
        lat.append(time.perf_counter() - b0)
        events += out.alerts.height
    _report("engine", sum(f.height for f in frames), time.perf_counter() - w0,
            time.process_time() - c0, lat, f", {events} spike events")


def bench_step(frames: list[pl.DataFrame], thr: pl.DataFrame) -> None:
    kind = meter_kind(Settings())
    state = kind.new_state()
    kind.register(state, thr)
    episodes = EpisodeState()
    lat, notes = [], 0
    w0, c0 = time.perf_counter(), time.process_time()
    for f in frames:
        b0 = time.perf_counter()
        ctx = StepContext(kind, "bench", episodes=episodes)
        state, s = advance(state, f, ctx)
        raise_alerts(s, ctx)
        episodes = s.episode_state or episodes
        lat.append(time.perf_counter() - b0)
        notes += 0 if s.commit.alerts is None else s.commit.alerts.height
    _report("step", sum(f.height for f in frames), time.perf_counter() - w0,
            time.process_time() - c0, lat, f", {notes} notifications")


def bench_pipeline(frames: list[pl.DataFrame], thr: pl.DataFrame) -> None:
    kind = meter_kind(Settings())
    with tempfile.TemporaryDirectory() as tmp, \
            open_store(f"duckdb:///{tmp}/bench.duckdb", kinds=[kind]) as store:
        p = Pipeline(store, Settings(), name="bench-meters", kind=kind)
        p.amend(lambda state: kind.register(state, thr))
        lat = []
        w0, c0 = time.perf_counter(), time.process_time()
        for f in frames:
            b0 = time.perf_counter()
            p.ingest(f, source="bench")
            lat.append(time.perf_counter() - b0)
        _report("pipeline", sum(f.height for f in frames), time.perf_counter() - w0,
                time.process_time() - c0, lat, " (DuckDB, one commit per batch)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--readings", type=float, default=10e6)
    ap.add_argument("--batch-rows", type=int, default=200_000)
    ap.add_argument("--store-readings", type=float, default=2e6)
    args = ap.parse_args()
    print(machine_info())
    frames, thr = live_frames(args.readings, args.batch_rows)
    bench_engine(frames[:1], thr)  # compile / warm caches outside the timings
    bench_engine(frames, thr)
    bench_step(frames, thr)
    n_store = max(1, int(args.store_readings // frames[0].height))
    bench_pipeline(frames[:n_store], thr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
