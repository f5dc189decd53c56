"""CPU-seconds of the parts of ``summarize`` on grouped and on time-ordered rows.

    PYTHONPATH=$PWD/src python benchmarks/profile_batch_order.py --cells 1000 --samples 5000 --repeat 8

The same fleet (``fleetgen``) as ``bench_engine.py --only batch``: rows grouped by cell,
and the same rows in time order (cells interleaved). Grouped and time-ordered runs
alternate (so both see the same load), each part keeps its least CPU-s over the runs:
``time.process_time`` (all threads) for the parts called on the main thread, and
``time.thread_time`` of the thread that ran them for the kernel and the block gather
(the gather runs on a second thread for large batches). Parts are nested (``validate``
contains ``dedupe``, ``_run_kernel`` the kernel and the gather). Works against older
sources too: a part that is not there is left out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleetgen import cells_frame, make_fleet, to_frame  # noqa: E402

import chargetracker.checks as CK  # noqa: E402
import chargetracker.engine.core as C  # noqa: E402
import chargetracker.engine.order as O  # noqa: E402
import chargetracker.engine.passes as P  # noqa: E402
from chargetracker.engine import summarize  # noqa: E402

#: (module, function, label, clock) of each part timed.
PARTS = [
    (C, "validate", "schema.validate", time.process_time),
    (CK, "dedupe", "  checks.dedupe (distinct ids)", time.process_time),
    (C, "_slots_from_codes", "core._slots_from_codes", time.process_time),
    (O, "late_and_duplicates", "order.late_and_duplicates", time.process_time),
    (O, "in_cell_order", "order.in_cell_order", time.process_time),
    (C, "_run_kernel", "core._run_kernel", time.process_time),
    (C, "process_blocked", "  passes.process_blocked", time.process_time),
    (P, "process_rows", "    kernel (blocked rows)", time.thread_time),
    (O, "gather_block", "    order.gather_block", time.thread_time),
    (C, "process_rows", "  kernel (grouped rows)", time.thread_time),
    (C, "outputs", "  snapshots.outputs", time.process_time),
]


def _wrap(acc: dict[str, float], fn: Callable, label: str, clock: Callable[[], float]) -> Callable:
    def timed(*args: object, **kwargs: object) -> object:
        t0 = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[label] = acc.get(label, 0.0) + clock() - t0
    return timed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=8, help="runs of each order, alternating")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    fleet = make_fleet(args.cells, args.samples, seed=args.seed)
    frame, meta = to_frame(fleet), cells_frame(fleet)
    frames = {"grouped": frame, "time-ordered": frame.sort("ts", "cell_id")}
    summarize(frame.head(50_000), cells=meta)  # load the compiled kernels
    acc: dict[str, float] = {}
    for mod, name, label, clock in PARTS:
        if hasattr(mod, name):
            setattr(mod, name, _wrap(acc, getattr(mod, name), label, clock))
    best: dict[str, dict[str, float]] = {k: {} for k in frames}
    for _ in range(args.repeat):
        for order, rows in frames.items():
            acc.clear()
            t0 = time.process_time()
            summarize(rows, cells=meta)
            acc["total"] = time.process_time() - t0
            for k, v in acc.items():
                best[order][k] = min(best[order].get(k, float("inf")), v)
    g, t = best["grouped"], best["time-ordered"]
    n = frame.height
    print(f"{n:,} rows ({args.cells:,} cells x {args.samples:,}); least CPU-s of {args.repeat} "
          f"alternating runs; load average {os.getloadavg()[0]:.1f}")
    print(f"| {'CPU-s':30s} | grouped | time-ordered |\n|---|---|---|")
    print(f"| {'total':30s} | {g['total']:.4f} ({n / g['total'] / 1e6:.1f} M/CPU-s) | "
          f"{t['total']:.4f} ({n / t['total'] / 1e6:.1f} M/CPU-s) |")
    for _, _, label, _ in PARTS:
        if label in g or label in t:
            print(f"| {label:30s} | {g.get(label, 0.0):.4f} | {t.get(label, 0.0):.4f} |")
    print(f"time-ordered / grouped speed (CPU): {g['total'] / t['total']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
