"""Meter watchdog benchmarks: batch layer (daily energy + p97 thresholds from a Parquet
archive) and real-time layer (micro-batches with spike detection).

    .venv/bin/python benchmarks/bench_meters.py --readings 60e6 [--realtime 20e6]
        [--archive /tmp/readings.parquet] [--compression zstd|lz4|none] [--workers 2]
    .venv/bin/python benchmarks/bench_meters.py --houses 5500 --archive /tmp/sim600m.parquet

The archive is meters x days at one reading per 90 s (30 days: 28,800 readings per meter),
sorted by meter in row groups; gamma-distributed power with intermittent zeros and spikes.
With ``--houses N`` it is the house simulator's instead (``chargetracker meters simulate
--houses N --days 30 --interval 90``: real household profiles, about 3.75 meters per
house, so 5,500 houses give about 600 M readings) and its meter metadata is used.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, fmt_rate, machine_info, peak_rss_mb  # noqa: E402

from chargetracker.meters import MeterConfig, new_state, set_thresholds, update  # noqa: E402
from chargetracker.meters.batch import archive_as_of, recompute_parquet  # noqa: E402
from chargetracker.meters.schema import validate_meters  # noqa: E402

START = 1767225600.0
STEP = 90.0


def _meter_block(first: int, count: int, n: int, rng: np.random.Generator) -> pa.Table:
    ids = np.repeat(np.arange(first, first + count), n)
    ts = np.tile(START + np.arange(n) * STEP, count) + np.repeat(rng.integers(0, 90, count), n)
    p = rng.gamma(1.5, 200.0, count * n)
    p[rng.random(count * n) < 0.5] = 0.0
    p[rng.random(count * n) < 1e-4] *= 20.0
    dict_ids = pa.DictionaryArray.from_arrays(
        pa.array(ids - first, type=pa.int32()),
        pa.array([f"m{k:06d}" for k in range(first, first + count)]))
    return pa.table({"meter_id": dict_ids, "ts": ts, "power_w": p})


def write_archive(path: Path, n_readings: float, days: float, meters_per_group: int,
                  compression: str = "zstd") -> int:
    n = int(days * 86400 / STEP)
    n_meters = max(1, int(n_readings // n))
    rng = np.random.default_rng(0)
    writer = None
    for first in range(0, n_meters, meters_per_group):
        t = _meter_block(first, min(meters_per_group, n_meters - first), n, rng)
        if writer is None:
            writer = pq.ParquetWriter(path, t.schema, compression=compression)
        writer.write_table(t, row_group_size=t.num_rows)
    assert writer is not None
    writer.close()
    return n_meters * n


def simulate_archive(path: Path, houses: int, days: float) -> int:
    """The simulator's archive at ``path`` (made unless it exists), its reading count."""
    if not path.exists():
        from chargetracker.cli import main as cli

        w0 = time.perf_counter()
        cli(["meters", "simulate", "--houses", str(houses), "--days", f"{days:g}",
             "--interval", str(STEP), "--out", str(path)])
        print(f"archive: simulator, {houses:,} houses, {os.path.getsize(path) / 1e6:.0f} MB, "
              f"written in {time.perf_counter() - w0:.1f} s")
    return int(pq.ParquetFile(path).metadata.num_rows)


def bench_batch(path: Path, n: int, workers: int, meters: pl.DataFrame | None = None) -> None:
    import resource

    cfg = MeterConfig()
    as_of = archive_as_of([path])
    load0 = os.getloadavg()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    w0, c0 = time.perf_counter(), time.process_time()
    n_days = n_thr = n_rej = n_al = 0
    for res in recompute_parquet(path, cfg, meters=meters, as_of=as_of, workers=workers):
        n_days += res.days.height
        n_thr += res.thresholds.height
        n_rej += res.rejected.height
        n_al += res.alerts.height
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    load1 = os.getloadavg()
    user, sys_s = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    print(f"batch: {n:,} readings -> {n_days:,} meter days, {n_thr:,} thresholds, {n_al:,} alert "
          f"events, {n_rej} dead letters in {wall:.1f} s wall, {cpu:.1f} CPU-s (user {user:.1f}, "
          f"sys {sys_s:.1f}, {r1.ru_minflt - r0.ru_minflt:,} minor faults) = "
          f"{fmt_rate(n / wall)} readings/s wall, {fmt_rate(n / cpu)} readings per CPU-s, "
          f"CPU/wall {cpu / wall:.2f} cores; load {load0[0]:.1f}->{load1[0]:.1f} "
          f"(5-min {load0[1]:.1f}->{load1[1]:.1f}); peak RSS {peak_rss_mb():.0f} MB")
    emit("meters", f"batch_{n / 1e6:g}M_readings_per_s", n / wall, "readings/s", target=10e6,
         wall_s=wall, cpu_s=cpu, readings_per_cpu_s=n / cpu, workers=workers,
         loadavg=list(load0), loadavg_end=list(load1), peak_rss_mb=peak_rss_mb())


def bench_realtime(n_target: float, batch_rows: int) -> None:
    """Live stream: every meter's readings interleaved in time, micro-batches of ``batch_rows``."""
    n_meters = 20_000
    steps = max(1, int(n_target // n_meters))
    rng = np.random.default_rng(1)
    ids = pl.Series("meter_id", [f"m{k:06d}" for k in range(n_meters)])
    thr = pl.DataFrame({"meter_id": ids, "p97_w": rng.uniform(1500, 2500, n_meters)})
    st = new_state(MeterConfig())
    set_thresholds(st, thr)
    per_batch = max(1, batch_rows // n_meters)
    frames = []
    for s0 in range(0, steps, per_batch):
        k = min(per_batch, steps - s0)
        ts = (START + (s0 + np.arange(k)) * STEP)[:, None] + np.zeros(n_meters)[None, :]
        p = rng.gamma(1.5, 200.0, (k, n_meters))
        p[rng.random((k, n_meters)) < 2e-4] = 4000.0
        frames.append(pl.DataFrame({"meter_id": ids.gather(np.tile(np.arange(n_meters), k)),
                                    "ts": ts.ravel(), "power_w": p.ravel()}))
    n = sum(f.height for f in frames)
    w0, c0 = time.perf_counter(), time.process_time()
    alerts = 0
    lat = []
    for f in frames:
        b0 = time.perf_counter()
        st, out = update(st, f)
        lat.append(time.perf_counter() - b0)
        alerts += out.alerts.height
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(f"real-time: {n:,} readings of {n_meters:,} meters in batches of {frames[0].height:,}: "
          f"{wall:.1f} s wall, {cpu:.1f} CPU-s = {fmt_rate(n / wall)} readings/s, {alerts} alert "
          f"events, per-batch p95 {np.percentile(lat, 95) * 1000:.0f} ms")
    emit("meters", "realtime_readings_per_s", n / wall, "readings/s", target=2e6, wall_s=wall,
         cpu_s=cpu, batch_rows=frames[0].height, batch_p95_ms=float(np.percentile(lat, 95) * 1000))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--readings", type=float, default=60e6)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--meters-per-group", type=int, default=200)
    ap.add_argument("--realtime", type=float, default=20e6, help="readings for the real-time run (0: skip)")
    ap.add_argument("--batch-rows", type=int, default=200_000)
    ap.add_argument("--archive", help="reuse/keep this Parquet archive")
    ap.add_argument("--compression", default="zstd", help="Parquet codec of a new archive")
    ap.add_argument("--workers", type=int, default=2, help="chunks processed at once")
    ap.add_argument("--houses", type=int, default=0, help="archive from the house simulator "
                    "(N houses x --days at 90 s) instead of the gamma generator")
    ap.add_argument("--quick", action="store_true", help="small sizes (6 M batch, 2 M real-time)")
    args = ap.parse_args()
    if args.quick:
        args.readings, args.realtime = min(args.readings, 6e6), min(args.realtime, 2e6)
    print(machine_info())
    if args.readings > 0:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(args.archive) if args.archive else Path(tmp) / "readings.parquet"
            meters = None
            if args.houses:
                n = simulate_archive(path, args.houses, args.days)
                meters = validate_meters(pl.read_parquet(path.with_suffix(".meters.parquet")))
            elif not path.exists():
                w0 = time.perf_counter()
                n = write_archive(path, args.readings, args.days, args.meters_per_group,
                                  args.compression)
                print(f"archive: {n:,} readings, {os.path.getsize(path) / 1e6:.0f} MB, written in "
                      f"{time.perf_counter() - w0:.1f} s")
            else:
                n = pq.ParquetFile(path).metadata.num_rows
            bench_batch(path, n, args.workers, meters)
    if args.realtime > 0:
        bench_realtime(args.realtime, args.batch_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
