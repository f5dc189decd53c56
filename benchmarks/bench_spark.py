"""Spark batch layer: backfill samples/s from the Parquet archive, in Spark local mode.

Builds an archive of synthetic cycling data (``fleetgen``: seeded NumPy, CC-CV / CC
charge, 2C discharge, rests, 1 Hz, several cycles per cell) with
:class:`~chargetracker.stores.archive.ParquetArchive` -- written in pipeline-sized
batches, partitioned by group and UTC day -- then times

* ``backfill(engine="spark")`` (``local[N]``; read -> shuffle by cell -> engine per cell
  in the Python workers -> results streamed to the driver -> DuckDB store), and
* ``backfill(engine="local")`` (same output, one process, no Spark) for comparison,

and checks that both stores hold identical cycles. Sizes: ``--samples`` total archived
samples (default 50 M = 500 cells x 100,000 s), and 5 M with ``--samples 5e6``.

    .venv/bin/python benchmarks/bench_spark.py                     # 50 M
    .venv/bin/python benchmarks/bench_spark.py --samples 5e6       # 5 M
    .venv/bin/python benchmarks/bench_spark.py --quick             # 1 M smoke run

Generated data goes to a temporary directory (``--workdir`` to keep it), removed at the end
unless ``--keep``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, load_average, machine_info, peak_rss_mb  # noqa: E402
from fleetgen import make_fleet, to_frame  # noqa: E402

from chargetracker.batch import backfill, spark_session  # noqa: E402
from chargetracker.config import SparkConfig  # noqa: E402
from chargetracker.stores.archive import ParquetArchive, batch_id_for  # noqa: E402
from chargetracker.stores.url import open_store  # noqa: E402

SAMPLES_PER_CELL = 100_000      # s at 1 Hz: ~28 h, two UTC days, ~10-20 cycles per cell
CELLS_PER_BLOCK = 50            # generated at once (bounded memory)
BATCH_SECONDS = 3 * 3600        # archive batch = 3 h of a block of cells
GROUPS = 5


def build_archive(root: Path, cells: int, samples: int, seed: int) -> tuple[int, pl.DataFrame]:
    """Write the archive; (rows written, cells metadata with group and nominal capacity)."""
    archive = ParquetArchive(root, fsync=False)
    metas = []
    rows = 0
    for block, first in enumerate(range(0, cells, CELLS_PER_BLOCK)):
        n = min(CELLS_PER_BLOCK, cells - first)
        fleet = make_fleet(n, samples, seed=seed + block, dtype_ids=f"b{block:03d}-c{{:03d}}")
        groups = {cid: f"group-{(first + j) % GROUPS}" for j, cid in enumerate(fleet.cell_ids)}
        metas.append(pl.DataFrame({"cell_id": fleet.cell_ids, "group": list(groups.values()),
                                   "nominal_capacity_ah": fleet.nominal_ah}))
        frame = to_frame(fleet).with_columns(
            (pl.int_range(pl.len()) % samples // BATCH_SECONDS).alias("__batch"))
        for (k,), part in frame.partition_by("__batch", as_dict=True, maintain_order=True).items():
            archive.append(part.drop("__batch"), groups, batch_id_for(f"bench-{block}", {"k": k}))
            rows += part.height
        del fleet, frame
    return rows, pl.concat(metas)


def fresh_store(path: Path, cells: pl.DataFrame) -> str:
    url = f"duckdb:///{path}"
    with open_store(url) as store:
        store.upsert_cells(cells)
    return url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=float, default=50e6, help="archived samples in total (default 50e6)")
    ap.add_argument("--samples-per-cell", type=int, default=SAMPLES_PER_CELL)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--partitions", type=int, default=None,
                    help="partitions of the per-cell stage (default: 4 per 10 M samples, >= 4)")
    ap.add_argument("--driver-memory", default="3g")
    ap.add_argument("--skip-local", action="store_true", help="only the Spark backfill")
    ap.add_argument("--workdir", help="where to write the archive and stores (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the generated archive and stores")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="1 M samples (smoke run)")
    args = ap.parse_args()
    total = int(1e6 if args.quick else args.samples)
    per_cell = min(args.samples_per_cell, total)
    cells = max(1, total // per_cell)
    label = f"{total / 1e6:g}M"
    partitions = args.partitions or max(4, 4 * round(total / 10e6))

    emit("spark", "machine", None, "", **machine_info())
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ct-bench-spark-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        rows, meta = build_archive(work / "archive", cells, per_cell, args.seed)
        t_gen = time.perf_counter() - t0
        n_files = len(ParquetArchive(work / "archive").files())
        size_mb = sum(f.stat().st_size for f in (work / "archive").rglob("*.parquet")) / 2**20
        print(f"archive: {rows:,} samples, {cells} cells, {n_files} files, {size_mb:,.0f} MiB, "
              f"written in {t_gen:.1f} s ({rows / t_gen:,.0f} samples/s)", flush=True)
        emit(f"spark.archive.{label}", "append_samples_per_s", round(rows / t_gen), "samples/s",
             samples=rows, files=n_files, mib=round(size_mb, 1))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            t0 = time.perf_counter()
            spark = spark_session(SparkConfig(master=args.master),
                                  conf={"spark.driver.memory": args.driver_memory})
            t_start = time.perf_counter() - t0
            print(f"spark session ({args.master}) started in {t_start:.1f} s", flush=True)
            # Warm-up on a few cells: Python workers, imports, Numba cache loads.
            backfill(work / "archive", fresh_store(work / "warm.duckdb", meta), engine="spark",
                     spark=spark, cells=meta["cell_id"].head(2).to_list())
            url_spark = fresh_store(work / "spark.duckdb", meta)
            load0 = load_average()
            res = backfill(work / "archive", url_spark, engine="spark", spark=spark,
                           partitions=partitions)
            print(f"spark backfill: {res.as_dict()}", flush=True)
            emit(f"spark.backfill.{label}", "samples_per_s", round(res.samples_per_s), "samples/s",
                 seconds=round(res.seconds, 2), samples=res.samples, cells=res.cells,
                 cycles=res.cycles, steps=res.steps, master=args.master, partitions=partitions,
                 loadavg_before=load0, loadavg_after=load_average())
            spark.stop()

        if not args.skip_local:
            url_local = fresh_store(work / "local.duckdb", meta)
            load0 = load_average()
            loc = backfill(work / "archive", url_local, engine="local")
            print(f"local backfill: {loc.as_dict()}", flush=True)
            emit(f"spark.local.{label}", "samples_per_s", round(loc.samples_per_s), "samples/s",
                 seconds=round(loc.seconds, 2), samples=loc.samples, cycles=loc.cycles,
                 loadavg_before=load0, loadavg_after=load_average())
            with open_store(url_spark) as a, open_store(url_local) as b:
                ca = a.cycles().drop("updated_at", strict=False).sort("cell_id", "cycle")
                cb = b.cycles().drop("updated_at", strict=False).sort("cell_id", "cycle")
            same = ca.equals(cb)
            print(f"spark cycles == local cycles: {same} ({ca.height} cycles)", flush=True)
            emit(f"spark.local.{label}", "spark_equals_local", same, "bool")
        emit("spark", "peak_rss_driver_mb", round(peak_rss_mb(), 1), "MiB")
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
