"""Engine throughput: batch ``summarize`` and incremental ``update`` on a synthetic fleet.

    python benchmarks/bench_engine.py                 # both cases, default sizes
    python benchmarks/bench_engine.py --only batch    # one case
    python benchmarks/bench_engine.py --quick         # small sizes (smoke run, seconds)

Batch: ``cells`` x ``samples`` at 1 Hz (default 1,000 x 20,000 = 20 M samples) in one
frame grouped by cell, nominal capacity per cell passed in the ``cells`` frame, timed
``summarize`` (best of ``--repeat``), and the same samples in time order (cells
interleaved, as a fleet dump or a replayed topic comes), in the same run: wall and CPU
seconds of each and their ratio. Targets (issue 14): >= 15 M samples per CPU-s for both,
time-ordered >= 0.8x grouped.

Incremental: ``--inc-cells`` cells (default 10,000 and 100,000) fed one second at a
time, each batch one sample per cell with the rows in a fresh random order (as a live
fleet's messages arrive), once per ``--snapshot-intervals`` value (the engine's
``snapshot_interval_s``: 0 = open snapshots of every moved cell every batch); rate over
the batches after ``--warmup``, latency per batch (p50/p99/max), serialized state size.
Target >= 5 M samples/s at 10,000 cells. Also a check that the incremental output equals
``summarize`` of the same samples. When the rate misses the target (or ``--profile
always``) a cProfile (CPU timer) of further batches shows where the time goes per batch.
``--validated`` times ``update_checked`` on batches validated outside the timing (the
engine alone, as the drivers call it after validating once).

Input comes from ``benchmarks/fleetgen.py`` (NumPy, vectorized, seeded); ``--source sim``
uses ``chargetracker.sim`` instead when it is installed.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import best_of, emit, fmt_rate, load_average, machine_info, peak_rss_mb  # noqa: E402
from fleetgen import batch_frame, cells_frame, make_fleet, to_frame  # noqa: E402

from chargetracker.config import EngineConfig  # noqa: E402
from chargetracker.engine import flush, new_state, summarize, update, update_checked  # noqa: E402
from chargetracker.schema import validate  # noqa: E402

BATCH_TARGET = 15e6        # samples per CPU-s, grouped and time-ordered
ORDER_RATIO_TARGET = 0.8   # time-ordered speed / grouped speed (CPU), same run
INCREMENTAL_TARGET = 5e6   # samples/s at 10,000 cells


def _sim_frame(cells: int, samples: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """The fleet from chargetracker.sim, if that package is there and works; else None."""
    try:
        from chargetracker.sim import Fleet, default_fleet_config
    except ImportError as exc:
        print(f"  chargetracker.sim not available ({exc}); using the NumPy generator")
        return None
    try:
        fleet = Fleet(default_fleet_config(cells=cells, seed=seed, duration_s=float(samples)))
        frame = pl.concat(list(fleet.chunks(seconds=float(samples))))
        return frame, fleet.cells.select("cell_id", "nominal_capacity_ah")
    except Exception as exc:  # the simulator is optional here: fall back, say why
        print(f"  chargetracker.sim failed ({type(exc).__name__}: {exc}); using the NumPy generator")
        return None


def bench_batch(args: argparse.Namespace) -> None:
    cells, samples = args.cells, args.samples
    print(f"\n== engine batch: summarize() on {cells:,} cells x {samples:,} samples (1 Hz) ==")
    t0 = time.perf_counter()
    got = _sim_frame(cells, samples, args.seed) if args.source == "sim" else None
    source = "sim" if got is not None else "numpy"
    if got is None:
        fleet = make_fleet(cells, samples, seed=args.seed)
        frame, meta = to_frame(fleet), cells_frame(fleet)
        del fleet
    else:
        frame, meta = got
    print(f"  input: {frame.height:,} rows from {source} generator in {time.perf_counter() - t0:.1f} s")
    # Load the compiled kernels (Numba cache) outside the timed runs.
    summarize(frame.head(50_000), cells=meta)
    cpu_by_order: dict[str, float] = {}
    wall_by_order: dict[str, float] = {}
    for order in args.orders.split(","):
        if order == "grouped":
            # Rows grouped by cell, each cell in time order (a file per cell, a sorted archive).
            rows = frame.sort("cell_id", "ts", maintain_order=True) if source == "sim" else frame
            label = "grouped by cell"
            wall_by_order[order], cpu_by_order[order] = _time_summarize(
                args, rows, meta, "engine.batch", label, source)
        elif order == "time":
            # Rows in time order, cells interleaved (a fleet dump, a topic replayed).
            wall_by_order[order], cpu_by_order[order] = _time_summarize(
                args, frame.sort("ts", "cell_id"), meta, "engine.batch.time_ordered",
                "time-ordered, cells interleaved", source)
        else:
            raise SystemExit(f"unknown --orders entry {order!r}: use grouped and/or time")
    if len(cpu_by_order) == 2:
        ratio_cpu = cpu_by_order["grouped"] / cpu_by_order["time"]
        ratio_wall = wall_by_order["grouped"] / wall_by_order["time"]
        print(f"  time-ordered vs grouped, same run: {ratio_cpu:.2f}x by CPU-s, {ratio_wall:.2f}x by"
              f" wall (target >= {ORDER_RATIO_TARGET}x)")
        emit("engine.batch.order_ratio", "time_vs_grouped_cpu", round(ratio_cpu, 3), "x",
             target=ORDER_RATIO_TARGET, wall_ratio=round(ratio_wall, 3),
             cpu_s=cpu_by_order, wall_s=wall_by_order)


def _time_summarize(args: argparse.Namespace, frame: pl.DataFrame, meta: pl.DataFrame, bench: str,
                    label: str, source: str) -> tuple[float, float]:
    """Best wall and least CPU seconds of ``summarize(frame)``."""
    n = frame.height
    load0 = load_average()
    cpu: list[float] = []

    def run() -> object:
        c0 = time.process_time()
        out = summarize(frame, cells=meta)
        cpu.append(time.process_time() - c0)
        return out

    best, times, res = best_of(run, args.repeat)
    rate = n / best
    cpu_best = min(cpu)
    closed = res.cycles.filter(pl.col("status") == "closed")
    # Each cell's first cycle starts wherever the cell happened to be: leave it out.
    ce = closed.filter(pl.col("cycle") >= 2).get_column("coulombic_efficiency").median()
    print(f"  [{label}] summarize: best {best:.3f} s of {', '.join(f'{t:.3f}' for t in times)} s"
          f"  ->  {fmt_rate(rate)}samples/s")
    print(f"    CPU time (all threads): least {cpu_best:.3f} s  ->  {fmt_rate(n / cpu_best)}samples per CPU-s"
          f"  (target >= {fmt_rate(BATCH_TARGET)}samples per CPU-s)")
    print(f"    output: {res.steps.height:,} steps, {res.cycles.height:,} cycles "
          f"({closed.height:,} closed, median CE {'n/a' if ce is None else f'{ce:.4f}'}), "
          f"{res.rejected.height:,} rejected; peak RSS {peak_rss_mb():,.0f} MiB; "
          f"load avg {load0} -> {load_average()}")
    emit(bench, "samples_per_cpu_s", round(n / cpu_best), "samples/CPU-s", target=BATCH_TARGET,
         order=label, samples_per_s=round(rate), seconds=round(best, 4), runs_s=[round(t, 4) for t in times],
         cpu_s=round(cpu_best, 4), rows=n,
         cells=args.cells, samples_per_cell=args.samples, source=source, steps=res.steps.height,
         cycles=res.cycles.height, rejected=res.rejected.height,
         peak_rss_mib=round(peak_rss_mb()), loadavg_before=load0, loadavg_after=load_average())
    return best, cpu_best


def _profile(state, batches: list[pl.DataFrame], n_cells: int) -> None:
    """cProfile of ``update`` over ``batches``; prints per-batch ms of the top functions."""
    # CPU time, not wall: on a shared machine wall time is mostly waiting for a core.
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    for b in batches:
        state, _ = update(state, b)
    prof.disable()
    nb = len(batches)
    st = pstats.Stats(prof)
    total = st.total_tt
    print(f"\n  cProfile (CPU time) over {nb} batches of {n_cells:,} rows: {1e3 * total / nb:.2f}"
          f" CPU-ms/batch under the profiler")
    rows = []
    for (fname, line, func), (_cc, ncalls, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append((ct, tt, ncalls, f"{Path(fname).name}:{line}({func})"))
    top_cum = sorted(rows, key=lambda r: -r[0])
    chargetracker = [r for r in top_cum if "core.py" in r[3] or "schema.py" in r[3]
                     or "state.py" in r[3] or "kernel.py" in r[3] or "records.py" in r[3]
                     or "order.py" in r[3] or "ids.py" in r[3]]
    print("  by cumulative time (ChargeTracker functions), ms per batch:")
    for ct, tt, ncalls, name in chargetracker[:18]:
        print(f"    {1e3 * ct / nb:8.3f} cum {1e3 * tt / nb:8.3f} own  {ncalls / nb:7.1f} calls  {name}")
    print("  by own time (all functions), ms per batch:")
    top_own = sorted(rows, key=lambda r: -r[1])[:18]
    for ct, tt, ncalls, name in top_own:
        print(f"    {1e3 * tt / nb:8.3f} own {1e3 * ct / nb:8.3f} cum  {ncalls / nb:7.1f} calls  {name}")
    emit("engine.incremental.profile", "ms_per_batch_profiled", round(1e3 * total / nb, 3), "ms",
         batches=nb,
         cumulative=[{"fn": name, "ms": round(1e3 * ct / nb, 3)} for ct, _t, _n, name in chargetracker[:18]],
         own=[{"fn": name, "ms": round(1e3 * tt / nb, 3)} for _c, tt, _n, name in top_own])


def bench_incremental(args: argparse.Namespace) -> None:
    for cells in (int(c) for c in str(args.inc_cells).split(",")):
        # Bounded input per run: 100,000 cells get fewer batches than 10,000.
        seconds = max(args.warmup + 10, min(args.inc_seconds, int(args.inc_max_samples // cells)))
        extra = args.profile_batches
        t0 = time.perf_counter()
        fleet = make_fleet(cells, seconds + extra, seed=args.seed + 1)
        meta = cells_frame(fleet)
        ids = pl.Series("cell_id", fleet.cell_ids, dtype=pl.Utf8)
        rng = np.random.default_rng(args.seed + 2)
        batches = [batch_frame(fleet, k, rng.permutation(cells), ids) for k in range(seconds + extra)]
        del fleet
        print(f"\n  input: {seconds + extra} batches of {cells:,} rows built in "
              f"{time.perf_counter() - t0:.1f} s")
        for interval in (float(x) for x in str(args.snapshot_intervals).split(",")):
            _incremental_run(args, cells, seconds, batches, meta, interval)


def _incremental_run(args: argparse.Namespace, cells: int, seconds: int, batches: list[pl.DataFrame],
                     meta: pl.DataFrame, interval: float) -> None:
    warm = args.warmup
    cfg = EngineConfig(snapshot_interval_s=interval)
    entry = "update_checked()" if args.validated else "update()"
    print(f"\n== engine incremental: {entry} on {cells:,} cells, 1-second batches (one sample per "
          f"cell, arrival order shuffled), {seconds} batches, snapshot_interval_s {interval:g} ==")
    # Kernel load (Numba cache) outside the timing: a throwaway state on a few batches.
    s0 = new_state(cfg)
    for b in batches[:3]:
        s0, _ = update(s0, b, cells=meta)
    del s0

    # --validated: the batches validated outside the timing (as a driver does once per
    # micro-batch before update_checked), so the figure is the engine's own.
    checked = [validate(b) for b in batches[:seconds]] if args.validated else None
    state = new_state(cfg)
    times: list[float] = []
    closed_steps: list[pl.DataFrame] = []
    closed_cycles: list[pl.DataFrame] = []
    cpu_times: list[float] = []
    snapshots = 0
    load0 = load_average()
    for k, b in enumerate(batches[:seconds]):
        c, t = time.process_time(), time.perf_counter()
        if checked is None:
            state, out = update(state, b, cells=meta if k == 0 else None)
        else:
            state, out = update_checked(state, checked[k], cells=meta if k == 0 else None)
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
        # Kept for the incremental == batch check (outside the timing).
        closed_steps.append(out.steps.filter(pl.col("status") == "closed"))
        closed_cycles.append(out.cycles.filter(pl.col("status") == "closed"))
        if k >= warm:
            snapshots += out.steps.height - closed_steps[-1].height
    load1 = load_average()
    timed = np.array(times[warm:])
    rate = cells * len(timed) / timed.sum()
    p50, p99 = np.percentile(timed, [50, 99]) * 1e3
    cpu_s = float(np.sum(cpu_times[warm:]))
    cpu_rate = cells * len(timed) / cpu_s
    t = time.perf_counter()
    blob = state.to_bytes()
    ser_s = time.perf_counter() - t
    per_cell = len(blob) / cells
    pending = sum(v.nbytes for v in state.pending.values())
    goal = f" (target >= {fmt_rate(INCREMENTAL_TARGET)}samples/s)" if cells == 10_000 else ""
    print(f"  update: {rate / 1e6:.3f} M samples/s over {len(timed)} batches after {warm} warm-up"
          f"{goal}; per batch p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {timed.max() * 1e3:.2f} ms"
          f" (at p50: {cells / p50 / 1e3:.3f} M samples/s)")
    print(f"  CPU time (all threads): {cpu_s:.3f} s = {cpu_rate / 1e6:.3f} M samples per CPU-s; "
          f"open step snapshots per batch {snapshots / len(timed):,.0f}")
    print(f"  state: {len(blob):,} bytes serialized = {per_cell:,.0f} bytes/cell "
          f"(of which pending samples {pending / cells:,.0f} bytes/cell); to_bytes {ser_s * 1e3:.1f} ms")
    tags = {"cells": cells, "snapshot_interval_s": interval,
            "path": "update_checked (validated outside)" if args.validated else "update"}
    emit("engine.incremental", "samples_per_s", round(rate), "samples/s",
         target=INCREMENTAL_TARGET if cells == 10_000 else None, batches=len(timed),
         warmup_batches=warm, batch_ms_p50=round(p50, 3), batch_ms_p99=round(p99, 3),
         batch_ms_max=round(float(timed.max()) * 1e3, 3), cpu_s=round(cpu_s, 3),
         # Less sensitive to other work on the machine than the mean rate.
         samples_per_s_at_p50=round(cells / (p50 / 1e3)), samples_per_cpu_s=round(cpu_rate),
         snapshots_per_batch=round(snapshots / len(timed)), loadavg_before=load0,
         loadavg_after=load1, **tags)
    emit("engine.incremental", "state_bytes_per_cell", round(per_cell, 1), "bytes",
         state_bytes=len(blob), pending_bytes_per_cell=round(pending / cells, 1),
         to_bytes_ms=round(ser_s * 1e3, 2), **tags)

    if not args.no_check:
        # Incremental = batch on the same samples (the contract; cheap to confirm here).
        state, out = flush(state)
        inc_steps = pl.concat([*closed_steps, out.steps]).unique(
            subset=["cell_id", "step"], keep="last", maintain_order=True).sort("cell_id", "step")
        inc_cycles = pl.concat([*closed_cycles, out.cycles]).unique(
            subset=["cell_id", "cycle"], keep="last", maintain_order=True).sort("cell_id", "cycle")
        ref = summarize(pl.concat(batches[:seconds]), cfg, cells=meta)
        same = inc_steps.equals(ref.steps) and inc_cycles.equals(ref.cycles)
        print(f"  incremental == summarize on the same {cells * seconds:,} samples: {same} "
              f"({inc_steps.height:,} steps, {inc_cycles.height:,} cycles)")
        emit("engine.incremental", "equals_batch", same, "bool", **tags)

    extra = len(batches) - seconds
    if extra and (args.profile == "always" or (args.profile == "auto" and rate < INCREMENTAL_TARGET)):
        state = new_state(cfg)
        for k, b in enumerate(batches[:seconds]):  # same state as the timed run had
            state, _ = update(state, b, cells=meta if k == 0 else None)
        _profile(state, batches[seconds:], cells)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["batch", "incremental"], help="run one case")
    ap.add_argument("--cells", type=int, default=1000, help="batch: cells (default 1000)")
    ap.add_argument("--samples", type=int, default=20000, help="batch: samples per cell (default 20000)")
    ap.add_argument("--inc-cells", default="10000,100000",
                    help="incremental: cell counts, comma-separated (default 10000,100000)")
    ap.add_argument("--inc-max-samples", type=float, default=6e6,
                    help="incremental: at most this many samples per cell count (default 6e6)")
    ap.add_argument("--snapshot-intervals", default="0,10",
                    help="incremental: EngineConfig.snapshot_interval_s values, s (default 0,10)")
    ap.add_argument("--inc-seconds", type=int, default=300, help="incremental: timed 1-s batches (default 300)")
    ap.add_argument("--warmup", type=int, default=5, help="incremental: untimed first batches (default 5)")
    ap.add_argument("--repeat", type=int, default=3, help="batch: timed runs, best reported (default 3)")
    ap.add_argument("--orders", default="grouped,time",
                    help="batch: row orders to time, comma-separated: grouped (by cell, the "
                         "target figure) and/or time (cells interleaved) (default both)")
    ap.add_argument("--profile", choices=["auto", "always", "never"], default="auto",
                    help="cProfile the incremental case when it misses its target (auto)")
    ap.add_argument("--profile-batches", type=int, default=40, help="batches profiled (default 40)")
    ap.add_argument("--no-check", action="store_true", help="skip the incremental == batch check")
    ap.add_argument("--validated", action="store_true",
                    help="incremental: validate the batches outside the timing and time "
                         "update_checked (the engine alone, as the drivers call it)")
    ap.add_argument("--source", choices=["numpy", "sim"], default="numpy",
                    help="input generator (default numpy; sim = chargetracker.sim when present)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.cells, args.samples, args.repeat = 50, 4000, 1
        args.inc_cells, args.inc_seconds, args.profile_batches = "500,5000", 30, 10
    info = machine_info()
    print(f"machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']}, {info['date']}")
    emit("engine", "machine", None, "", **info)
    if args.only in (None, "batch"):
        bench_batch(args)
    if args.only in (None, "incremental"):
        bench_incremental(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
