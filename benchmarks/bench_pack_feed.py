"""Live pack feed: bytes and CPU per commit of the feed's persisted state, at fleet scale.

The tap of the live pack feed (runtime/pack_feed.py, kafka/pack_feed.py) keeps per pack
cell its open days' running sums. Before (format 1) every commit wrote the whole
accumulator as one checkpoint blob; now (format 2) a commit upserts one row of
``pack_feed_cells`` per cell its batch touched. This benchmark runs the same
accumulator code (:class:`chargetracker.runtime.pack_days.CellDays`) on a steady live
fleet -- ``--vehicles`` packs of ``--cells-per-pack`` cells, each vehicle reporting every
``--report-s`` seconds, one commit per ``--batch-s`` seconds, starting just after
midnight with the previous day open; during one unmeasured report period every pack's
cells report in the new day, so the previous day is decided and dropped (a second one
lets the drop's commit pass), as in a live fleet's steady state (one open day per cell) -- and commits each batch's state into a
DuckDB store both ways:

    PYTHONPATH=src python benchmarks/bench_pack_feed.py --vehicles 10000 --commits 20

Reports per commit: bytes written (blob, or the rows' payload: text lengths + 8
per float; and the largest warm-up commit: the once-a-day drop of the decided day, which
rewrites its cells' rows), process CPU-s of the tap's work (fold with the decided days dropped, the per-pack
decision, encode), and of the store commit; wall s.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from chargetracker.kinds.pack import PACK_FEED_CELLS, PackKind
from chargetracker.runtime.pack_days import (
    DAY_S,
    DECIDED_SCHEMA,
    CellDays,
    Changed,
    decide,
    drop_frame,
    merge_decided,
    tap_header,
)
from chargetracker.stores.base import Checkpoint, CommitBatch
from chargetracker.stores.url import open_store

T0 = 1_735_776_000.0  # 2025-01-02 00:00 UTC


def fleet(vehicles: int, per_pack: int) -> pl.DataFrame:
    cells = vehicles * per_pack
    return pl.DataFrame({
        "cell_id": [f"VIN{v:07d}-c{c:02d}" for v in range(vehicles) for c in range(per_pack)],
        "vin": [f"VIN{v:07d}" for v in range(vehicles) for _ in range(per_pack)],
    }).with_row_index("i").with_columns(pl.col("i").cast(pl.Int64)).head(cells)


def samples(ids: pl.Series, ts: np.ndarray, rng: np.random.Generator) -> pl.DataFrame:
    n = ids.len()
    return pl.DataFrame({"cell_id": ids, "ts": ts, "voltage_v": 3.6 + 0.1 * rng.random(n),
                         "current_a": rng.normal(0, 20, n), "temperature_c": 25 + rng.random(n)})


def yesterday(pm: pl.DataFrame, rng: np.random.Generator) -> CellDays:
    """A full open day before T0 for every cell (24 samples each) and the cells' clocks."""
    ids = pm.get_column("cell_id")
    parts = [samples(ids, np.full(ids.len(), T0 - DAY_S + h * 3600.0), rng) for h in range(24)]
    acc, _ = CellDays().folded(pl.concat(parts), ids, None)
    return acc


def payload_bytes(rows: pl.DataFrame) -> int:
    """Bytes of a rows frame as written: text lengths, 8 per float."""
    text = sum(int(rows.get_column(c).str.len_bytes().sum() or 0)
               for c in ("scope", "cell_id", "part", "days"))
    return text + 8 * rows.height


def run(vehicles: int, per_pack: int, report_s: float, batch_s: float, commits: int,
        seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    pm = fleet(vehicles, per_pack)
    ids = pm.get_column("cell_id")
    phase = rng.random(vehicles) * report_s          # each vehicle's report offset in s
    cell_phase = np.repeat(phase, per_pack)
    start = yesterday(pm, rng)
    out: dict[str, object] = {"vehicles": vehicles, "cells": ids.len(), "report_s": report_s,
                              "batch_s": batch_s, "commits": commits}
    tmp = Path(tempfile.mkdtemp(prefix="bench-pack-feed-"))
    for mode in ("blob", "rows"):
        store = open_store(f"duckdb:///{tmp / (mode + '.duckdb')}", kinds=[PackKind()])
        acc = start
        decided = pl.DataFrame(schema=DECIDED_SCHEMA)
        if mode == "rows":   # the first commit of a fleet writes every cell's row once
            store.commit(CommitBatch(tables={PACK_FEED_CELLS.name: acc.rows("bench", Changed.every(ids))}))
        nbytes, touched_n, cpu_fold, cpu_commit = [], [], 0.0, 0.0
        rollover = 0.0
        # Unmeasured warm-up of two report periods: every cell has rolled into today,
        # yesterday is decided, then dropped (its cells' rows rewritten once, measured
        # apart as the day's drop).
        warm = 2 * int(np.ceil(report_s / batch_s)) + 1
        wall0 = time.perf_counter()
        for k in range(warm + commits):
            if k == warm:
                rollover = max(nbytes)   # the warm-up's largest commit: the day's drop
                nbytes, touched_n, cpu_fold, cpu_commit = [], [], 0.0, 0.0
                wall0 = time.perf_counter()
            lo, hi = k * batch_s, (k + 1) * batch_s
            # Cells whose vehicle reports in [lo, hi): every report_s from its phase.
            t_first = cell_phase + np.ceil((lo - cell_phase) / report_s) * report_s
            due = t_first < hi
            batch = samples(ids.filter(pl.Series(due)), T0 + t_first[due], rng)
            c0 = time.process_time()
            # What the tap does per commit: fold with the decided days dropped, judge
            # which pack-days are now decided (yesterday's, in the warm-up, once each
            # pack's cells have all reported today; none in the steady state after).
            acc, changed = acc.folded(batch, ids, drop_frame(pm, decided))
            new, _ = decide(acc, pm, decided)
            decided = merge_decided(decided, new)
            if mode == "blob":
                blob = acc.to_bytes()
                commit = CommitBatch(checkpoints=[Checkpoint("pack-days/bench", blob, {})])
                size = len(blob)
            else:
                rows = acc.rows("bench", changed)
                commit = CommitBatch(tables={PACK_FEED_CELLS.name: rows}, checkpoints=[
                    Checkpoint("pack-days/bench", tap_header(2), {})])
                size = payload_bytes(rows) + len(tap_header(2))
            c1 = time.process_time()
            store.commit(commit)
            c2 = time.process_time()
            cpu_fold += c1 - c0
            cpu_commit += c2 - c1
            nbytes.append(size)
            touched_n.append(int(due.sum()))
        wall = time.perf_counter() - wall0
        store.close()
        out[mode] = {"bytes_per_commit": float(np.mean(nbytes)),
                     "rollover_commit_bytes": float(rollover),
                     "cells_per_commit": float(np.mean(touched_n)),
                     "cpu_s_per_commit_fold_encode": cpu_fold / commits,
                     "cpu_s_per_commit_store": cpu_commit / commits,
                     "wall_s_per_commit": wall / commits}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vehicles", type=int, default=10_000)
    ap.add_argument("--cells-per-pack", type=int, default=13)
    ap.add_argument("--report-s", type=float, default=10.0)
    ap.add_argument("--batch-s", type=float, nargs="+", default=[1.0, 10.0],
                    help="seconds per commit (one run each; report-s or more: every cell)")
    ap.add_argument("--commits", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    load = os.getloadavg()
    print(json.dumps({"cores": os.cpu_count(), "loadavg_start": [round(x, 2) for x in load]}))
    for b in args.batch_s:
        res = run(args.vehicles, args.cells_per_pack, args.report_s, b, args.commits, args.seed)
        print(json.dumps(res))
        blob, rows = res["blob"], res["rows"]
        assert isinstance(blob, dict) and isinstance(rows, dict)
        print(f"# batch {b:g} s: {rows['cells_per_commit']:,.0f} cells/commit; bytes/commit "
              f"{blob['bytes_per_commit'] / 1e6:.2f} MB -> {rows['bytes_per_commit'] / 1e6:.2f} MB "
              f"({blob['bytes_per_commit'] / rows['bytes_per_commit']:.1f}x); CPU-s/commit "
              f"{blob['cpu_s_per_commit_fold_encode'] + blob['cpu_s_per_commit_store']:.3f} -> "
              f"{rows['cpu_s_per_commit_fold_encode'] + rows['cpu_s_per_commit_store']:.3f}")
    print(json.dumps({"loadavg_end": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
