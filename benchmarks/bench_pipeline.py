"""End-to-end pipeline benchmarks: simulator -> engine -> DuckDB, through the live runner.

    python benchmarks/bench_pipeline.py                      # throughput (10 M, 100 M) + latency
    python benchmarks/bench_pipeline.py --quick              # small sizes (smoke run)
    python benchmarks/bench_pipeline.py --only throughput --samples 10000000
    python benchmarks/bench_pipeline.py --only latency --latency-s 60

Throughput: 1,000 simulated cells at full speed (the source is never the limit), the
Runner polling micro-batches through its bounded queue into ``Pipeline.ingest`` and a
DuckDB file in a temporary folder (every raw sample stored, no retention). Figures:
samples/s over the whole run and sustained (the second half of the run), peak resident
memory (getrusage) and resident memory through the run, each size in its own process so
the peaks are comparable (target >= 3 M samples/s sustained at 100 M with flat memory),
and RSS and samples/s by tenth of the run.

Latency: 100 cells simulated at real time (1 Hz sampling, acceleration 1). A sample's
latency is the wall time from the moment it exists (the end of its sampling period) to
the commit after which a query sees it: "raw" = the raw row is stored, "step" = the
cell's open step/cycle record covers it (target p95 <= 1 s). The engine keeps the
samples of the last ``lateness_s`` per cell (and, at lateness 0, the newest sample) out
of the step/cycle records until a newer one arrives, so a sample reaches them one
sampling period + lateness later; the runs at lateness 0 and the default 2 s show it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, fmt_rate, load_average, machine_info, peak_rss_mb  # noqa: E402

from chargetracker.config import AlertConfig, EngineConfig, RuntimeConfig, Settings  # noqa: E402
from chargetracker.runtime import Pipeline, Runner  # noqa: E402
from chargetracker.sim.fleet_config import default_fleet_config  # noqa: E402
from chargetracker.sources import SimulatorSource  # noqa: E402
from chargetracker.stores.base import CommitBatch  # noqa: E402
from chargetracker.stores.duckdb import DuckDBStore  # noqa: E402

THROUGHPUT_TARGET = 3_000_000     # samples/s sustained at 100 M samples (issue 14)
LATENCY_TARGET_S = 1.0            # p95, s


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _thread_cpu(seen: dict[str, tuple[str, float]]) -> None:
    """Record every thread's CPU seconds (user + system, /proc/self/task) under a name:
    the Python thread's name, else ``native`` (DuckDB's workers, OpenMP, OpenBLAS) or the
    kernel's comm (``polars-0``, ``jemalloc_bg_thd``). Kept per thread id, so a thread that
    ends keeps its last reading."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {str(t.native_id): t.name for t in threading.enumerate()}
    names[str(os.getpid())] = "main"
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/self/task/{tid}/comm") as fh:
                comm = fh.read().strip()
        except OSError:
            continue
        old = seen.get(tid)
        name = old[0] if old else names.get(tid, "native" if comm == "python" else comm)
        seen[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)


def _by_thread(seen: dict[str, tuple[str, float]], samples: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, cpu in seen.values():
        key = name.split(" (")[0].rstrip("-_0123456789") or name
        out[key] = out.get(key, 0.0) + cpu
    return {k: round(v / (samples / 1e6), 3) for k, v in sorted(out.items(), key=lambda kv: -kv[1])
            if v / (samples / 1e6) >= 0.002}


# -- throughput ------------------------------------------------------------------------
def throughput_child(samples: int, cells: int, batch_rows: int, queue: int,
                     memory_limit: str | None = None, outliers: bool = True) -> dict[str, Any]:
    periods = max(1, samples // cells)
    fleet = default_fleet_config(cells=cells, seed=0, duration_s=float(periods))
    with tempfile.TemporaryDirectory(prefix="ct-bench-") as tmp:
        db = Path(tmp) / "bench.duckdb"
        settings = Settings(store_url=f"duckdb:///{db}", raw_retention_days=None,
                            alerts=AlertConfig(outliers=outliers),
                            runtime=RuntimeConfig(max_batch_rows=batch_rows, max_queue_batches=queue))
        # DuckDB keeps written blocks in its buffer pool up to memory_limit (default 80 %
        # of RAM), so resident memory grows with the file unless it is capped.
        store = DuckDBStore(db, memory_limit=memory_limit)
        pipeline = Pipeline(store, settings)
        src = SimulatorSource(fleet, acceleration=math.inf)
        # CPU seconds spent in each stage's own thread (independent of other load on the
        # machine): simulator polls, engine (prepare), store commits (write).
        cpu = {"source": 0.0, "engine": 0.0, "store": 0.0}

        writes: list[tuple[float, int]] = []   # (store CPU s, samples) per commit

        def timed(stage: str, fn: Any) -> Any:
            def wrapper(*a: Any, **kw: Any) -> Any:
                c0 = time.thread_time()
                try:
                    return fn(*a, **kw)
                finally:
                    used = time.thread_time() - c0
                    cpu[stage] += used
                    if stage == "store" and a:
                        writes.append((used, a[0].accepted))
            return wrapper

        src.poll = timed("source", src.poll)  # type: ignore[method-assign]
        pipeline.prepare = timed("engine", pipeline.prepare)  # type: ignore[method-assign]
        pipeline.write = timed("store", pipeline.write)  # type: ignore[method-assign]
        marks: list[tuple[float, int]] = []
        rss: list[tuple[float, float]] = []
        stop = threading.Event()

        threads_cpu: dict[str, tuple[str, float]] = {}

        def sample_rss() -> None:
            while not stop.wait(0.25):
                rss.append((time.perf_counter(), _rss_mb()))
                _thread_cpu(threads_cpu)

        total = 0

        def on_commit(_n: str, _b: Any, r: Any) -> None:
            nonlocal total
            total += r.accepted
            marks.append((time.perf_counter(), total))

        sampler = threading.Thread(target=sample_rss, daemon=True)
        rss_start = _rss_mb()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        sampler.start()
        stats = Runner(pipeline, [src], on_commit=on_commit).run(install_signals=False)
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        stop.set()
        sampler.join()
        _thread_cpu(threads_cpu)
        store.close()
        size_mb = db.stat().st_size / 2**20
    half = next(i for i, (_, n) in enumerate(marks) if n >= total / 2)
    sustained = (marks[-1][1] - marks[half][1]) / (marks[-1][0] - marks[half][0])
    quarters = {}
    for q in (0.25, 0.5, 0.75, 1.0):
        t_q = t0 + q * wall
        vals = [m for t, m in rss if t <= t_q]
        quarters[f"rss_mb_at_{int(q * 100)}pct"] = round(max(vals) if vals else rss_start, 1)
    # Resident memory over the run, one point per tenth (flat = no growth with the input).
    tenths = [round(next((m for t, m in rss if t >= t0 + q / 10 * wall), rss[-1][1] if rss else rss_start), 1)
              for q in range(1, 11)]
    # Samples/s in each tenth of the run (sustained rate over time).
    rate_tenths = []
    for q in range(10):
        lo_t, hi_t = t0 + q / 10 * wall, t0 + (q + 1) / 10 * wall
        inside = [(t, m) for t, m in marks if lo_t <= t <= hi_t]
        before = [m for t, m in marks if t < lo_t]
        n0 = before[-1] if before else 0
        rate_tenths.append(round((inside[-1][1] - n0) / (wall / 10)) if inside else 0)
    quarters["rss_mb_by_tenth"] = tenths  # type: ignore[assignment]
    quarters["samples_per_s_by_tenth"] = rate_tenths  # type: ignore[assignment]
    return {
        "samples": stats.accepted, "cells": cells, "batches": stats.batches, "wall_s": round(wall, 2),
        "samples_per_s": round(stats.accepted / wall), "sustained_samples_per_s": round(sustained),
        "peak_rss_mb": round(peak_rss_mb(), 1), "rss_start_mb": round(rss_start, 1), **quarters,
        "duckdb_file_mb": round(size_mb, 1), "max_queue": stats.max_queue,
        "batch_rows": batch_rows, "queue": queue, "duckdb_memory_limit": memory_limit,
        "outlier_alerts": outliers,
        "cpu_s": round(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, 2),
        "cpu_s_per_m_samples": {k: round(v / (stats.accepted / 1e6), 3) for k, v in cpu.items()},
        # Every thread's CPU per 1 M samples (read every 0.25 s; a thread keeps its last
        # reading): the stage threads above plus DuckDB's, polars' and OpenMP's own;
        # ``main`` includes the process start (imports, loading the compiled kernels).
        "cpu_s_per_m_by_thread": _by_thread(threads_cpu, stats.accepted),
        # Store commit CPU per 1 M samples in the first and the last tenth of the commits:
        # how the commit cost changes as the tables grow (independent of machine load).
        "store_cpu_s_per_m_first_tenth": _per_m(writes[: max(1, len(writes) // 10)]),
        "store_cpu_s_per_m_last_tenth": _per_m(writes[-max(1, len(writes) // 10):]),
        "loadavg_end": load_average(),
    }


def _per_m(part: list[tuple[float, int]]) -> float:
    n = sum(k for _, k in part)
    return round(sum(c for c, _ in part) / (n / 1e6), 3) if n else float("nan")


def bench_throughput(args: argparse.Namespace) -> None:
    for n in args.samples:
        cap = f", DuckDB memory_limit {args.duckdb_memory_limit}" if args.duckdb_memory_limit else ""
        print(f"\n== throughput: {args.cells:,} cells, {n:,} samples, full speed -> DuckDB file{cap} ==",
              flush=True)
        cmd = [sys.executable, __file__, "--child-throughput", str(n), "--cells", str(args.cells),
               "--batch-rows", str(args.batch_rows), "--queue", str(args.queue)]
        if args.duckdb_memory_limit:
            cmd += ["--duckdb-memory-limit", args.duckdb_memory_limit]
        if not args.outlier_alerts:
            cmd.append("--no-outlier-alerts")
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            raise SystemExit(f"throughput child failed ({out.returncode})")
        res = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {res['samples']:,} samples in {res['wall_s']} s: "
              f"{fmt_rate(res['samples_per_s'])}samples/s overall, "
              f"{fmt_rate(res['sustained_samples_per_s'])}samples/s sustained (2nd half); "
              f"peak RSS {res['peak_rss_mb']} MiB (start {res['rss_start_mb']}, at 25/50/75/100 %: "
              f"{res['rss_mb_at_25pct']}/{res['rss_mb_at_50pct']}/{res['rss_mb_at_75pct']}/"
              f"{res['rss_mb_at_100pct']}); DuckDB file {res['duckdb_file_mb']} MiB", flush=True)
        print(f"  RSS by tenth of the run, MiB: {res['rss_mb_by_tenth']}", flush=True)
        print(f"  samples/s by tenth of the run: {[fmt_rate(x) for x in res['samples_per_s_by_tenth']]}",
              flush=True)
        per = res["cpu_s_per_m_samples"]
        print(f"  CPU: {res['cpu_s']} s for the process ({res['samples'] / res['cpu_s'] / 1e6:.2f} M "
              f"samples per CPU-s); per 1 M samples, in-thread: simulator {per['source']} s, engine "
              f"{per['engine']} s, store commit {per['store']} s (DuckDB's own worker threads extra; "
              f"first/last tenth of the commits {res['store_cpu_s_per_m_first_tenth']}/"
              f"{res['store_cpu_s_per_m_last_tenth']} s); load average at end {res['loadavg_end']}",
              flush=True)
        print(f"  CPU per 1 M samples by thread: {res['cpu_s_per_m_by_thread']}", flush=True)
        emit("pipeline.throughput", "samples_per_s", res["sustained_samples_per_s"], "samples/s",
             target=THROUGHPUT_TARGET, **{k: v for k, v in res.items() if k != "sustained_samples_per_s"})
        emit("pipeline.throughput", "peak_rss_mb", res["peak_rss_mb"], "MiB", samples=res["samples"])


# -- latency ---------------------------------------------------------------------------
class _ObservedStore(DuckDBStore):
    """Records, after each commit returns, its wall time and what became queryable."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.records: list[tuple[float, pl.DataFrame | None, np.ndarray | None, np.ndarray | None]] = []

    def commit(self, batch: CommitBatch) -> None:
        super().commit(batch)
        now = time.monotonic()
        steps = None
        if batch.steps is not None and batch.steps.height:
            steps = batch.steps.group_by("cell_id").agg(pl.col("end_ts").max())
        raw_ts = raw_cell = None
        if batch.measurements is not None and batch.measurements.height:
            raw_ts = batch.measurements.get_column("ts").to_numpy()
            raw_cell = batch.measurements.get_column("cell_id").to_numpy()
        self.records.append((now, steps, raw_ts, raw_cell))


def latency_run(seconds: float, lateness: float, cells: int, poll: float,
                period: float = 1.0) -> dict[str, Any]:
    fleet = default_fleet_config(cells=cells, seed=0, duration_s=None, sample_period_s=period)
    dt = fleet.sample_period_s
    with tempfile.TemporaryDirectory(prefix="ct-bench-") as tmp:
        settings = Settings(engine=EngineConfig(lateness_s=lateness),
                            runtime=RuntimeConfig(poll_interval_s=poll))
        store = _ObservedStore(Path(tmp) / "lat.duckdb")
        pipeline = Pipeline(store, settings)
        src = SimulatorSource(fleet, acceleration=1.0)
        runner = Runner(pipeline, [src])
        timer = threading.Timer(seconds, runner.stop)
        timer.start()
        runner.run(install_signals=False)
        timer.cancel()
        store.close()
    origin = src.pacing_origin
    assert origin is not None
    wall0, k0 = origin
    start = fleet.start_epoch

    def born(k: np.ndarray) -> np.ndarray:      # wall time sample k exists
        return wall0 + (k + 1 - k0) * dt

    step_lat: list[np.ndarray] = []
    raw_lat: list[np.ndarray] = []
    covered: dict[str, int] = {}
    for wall, steps, raw_ts, _ in store.records:
        if raw_ts is not None:
            raw_lat.append(wall - born(np.rint((raw_ts - start) / dt)))
        if steps is None:
            continue
        for cid, end_ts in steps.iter_rows():
            k_end = int(round((end_ts - start) / dt))
            k_prev = covered.get(cid, -1)
            if k_end > k_prev:
                ks = np.arange(k_prev + 1, k_end + 1)
                step_lat.append(wall - born(ks))
                covered[cid] = k_end
    def stats(parts: list[np.ndarray]) -> dict[str, float]:
        a = np.concatenate(parts) if parts else np.zeros(0)
        return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
                "max": float(a.max()), "n": int(a.size)}
    return {"step": stats(step_lat), "raw": stats(raw_lat), "commits": len(store.records)}


def bench_latency(args: argparse.Namespace) -> None:
    # (lateness s, sampling period s): the target case, the default lateness, and 10 Hz
    # sampling (the engine's one-sample hold shrinks to 0.1 s: the pipeline's own latency).
    for lateness, period in ((0.0, 1.0), (2.0, 1.0), (0.0, 0.1)):
        print(f"\n== latency: {args.latency_cells} cells at real time ({1 / period:g} Hz), lateness "
              f"{lateness:g} s, poll {args.poll_interval:g} s, {args.latency_s:g} s ==", flush=True)
        res = latency_run(args.latency_s, lateness, args.latency_cells, args.poll_interval, period)
        s, r = res["step"], res["raw"]
        print(f"  step/cycle update queryable: p50 {s['p50']:.3f} s, p95 {s['p95']:.3f} s, max "
              f"{s['max']:.3f} s ({s['n']:,} samples); raw sample queryable: p50 {r['p50']:.3f} s, "
              f"p95 {r['p95']:.3f} s, max {r['max']:.3f} s; {res['commits']} commits", flush=True)
        tag = f"lateness_{lateness:g}" + ("" if period == 1.0 else f"_{1 / period:g}hz")
        emit("pipeline.latency", f"step_update_p95_{tag}", round(s["p95"], 3), "s",
             target=LATENCY_TARGET_S if (lateness == 0 and period == 1.0) else None,
             higher_is_better=False,
             p50=round(s["p50"], 3), max=round(s["max"], 3), samples=s["n"],
             cells=args.latency_cells, poll_interval_s=args.poll_interval)
        emit("pipeline.latency", f"raw_p95_{tag}", round(r["p95"], 3), "s",
             p50=round(r["p50"], 3), max=round(r["max"], 3), samples=r["n"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["throughput", "latency"])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--samples", type=int, nargs="+", default=[10_000_000, 100_000_000])
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--batch-rows", type=int, default=500_000)
    ap.add_argument("--queue", type=int, default=4)
    ap.add_argument("--latency-s", type=float, default=60.0)
    ap.add_argument("--latency-cells", type=int, default=100)
    ap.add_argument("--poll-interval", type=float, default=0.2)
    ap.add_argument("--duckdb-memory-limit", metavar="SIZE",
                    help="cap DuckDB's buffer pool (e.g. 1GB) in the throughput runs")
    ap.add_argument("--no-outlier-alerts", dest="outlier_alerts", action="store_false",
                    help="throughput runs without the group-outlier alert rule (it reads the "
                    "store's cycle history every batch: its cost grows with the run)")
    ap.add_argument("--child-throughput", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_throughput:
        print(json.dumps(throughput_child(args.child_throughput, args.cells, args.batch_rows,
                                          args.queue, args.duckdb_memory_limit,
                                          args.outlier_alerts)))
        return
    if args.quick:
        args.samples, args.latency_s = [2_000_000], 10.0
    emit("pipeline", "machine", None, "", **machine_info())
    if args.only in (None, "throughput"):
        bench_throughput(args)
    if args.only in (None, "latency"):
        bench_latency(args)
    print(f"\nload average after: {load_average()}", flush=True)


if __name__ == "__main__":
    main()
