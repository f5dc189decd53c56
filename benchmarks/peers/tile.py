"""Make a large Arbin-format CSV by tiling a real export in time.

    python benchmarks/peers/tile.py [--rows 1000000] [--src tests/data/arbin_example.csv]
                                     [--out benchmarks/data/arbin_tiled.csv]

Copy ``k`` of the source (0-based) is shifted so that every column a reader relies on
stays consistent:

- ``Test_Time`` and ``DateTime`` (s) move by ``k * period``, an integer number of seconds
  (the source's span plus a 5 s rest), so both stay monotonic and agree with each other;
- ``Data_Point`` moves by ``k * rows``; ``Cycle_Index`` by ``k * cycles``;
- ``Step_Index``, ``Step_Time``, current, voltage, temperature and the rest are copied.

The cumulative ``Charge_Capacity``, ``Discharge_Capacity``, ``Charge_Energy`` and
``Discharge_Energy`` columns restart at every cycle in this export, except that the
export's first cycle was cut from a longer test and starts at a nonzero value. Every
cycle of the tiled file (copy 0 included) is made to start from its own first value
minus that offset, i.e. the first cycle of each copy also restarts at 0. The per-cycle
amount (last - first of each cycle) is unchanged, so the cycler's own per-cycle figures
stay what they were; tools that take a per-cycle maximum of these columns see the same
amount as tools that take differences.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SRC = ROOT / "tests" / "data" / "arbin_example.csv"
DEFAULT_OUT = ROOT / "benchmarks" / "data" / "arbin_tiled.csv"
CUMULATIVE = ("Charge_Capacity", "Discharge_Capacity", "Charge_Energy", "Discharge_Energy")
GAP_S = 5.0  # rest between copies, s


def tile(src: Path, out: Path, rows: int) -> dict[str, float | int | str]:
    """Write the tiled file; returns a description (copies, rows, cycles, bytes)."""
    raw = src.read_bytes()
    df = pl.read_csv(src, infer_schema_length=None)
    n = df.height
    copies = max(1, math.ceil(rows / n))
    cyc = df.get_column("Cycle_Index").to_numpy()
    n_cycles = int(cyc.max() - cyc.min() + 1)
    t = df.get_column("Test_Time").to_numpy()
    period = float(math.ceil(t.max() - t.min() + GAP_S))  # whole seconds: DateTime stays integral

    # Each cycle restarts at zero: subtract the value of the cycle's first row.
    first_of_cycle = df.select(
        # Rounded to 12 decimals: keeps the export's own digits, drops subtraction noise.
        [(pl.col(c) - pl.col(c).first().over("Cycle_Index")).round(12).alias(c) for c in CUMULATIVE]
    )
    base = df.with_columns(first_of_cycle)
    k = np.repeat(np.arange(copies, dtype=np.int64), n)
    big = pl.concat([base] * copies, rechunk=True).with_columns(
        pl.Series("__k", k),
    ).with_columns(
        (pl.col("Data_Point") + pl.col("__k") * n).alias("Data_Point"),
        (pl.col("Test_Time") + pl.col("__k") * period).round(4).alias("Test_Time"),
        (pl.col("DateTime") + pl.col("__k") * int(period)).alias("DateTime"),
        (pl.col("Cycle_Index") + pl.col("__k") * n_cycles).alias("Cycle_Index"),
    ).drop("__k")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    big.write_csv(tmp)
    tmp.replace(out)
    return {"src": str(src), "src_bytes": len(raw), "out": str(out), "copies": copies,
            "rows": big.height, "cycles": copies * n_cycles, "period_s": period,
            "bytes": out.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    info = tile(args.src, args.out, args.rows)
    print(f"wrote {info['rows']:,} rows ({info['copies']} copies, {info['cycles']} cycles, "
          f"{int(info['bytes']) / 2**20:.0f} MiB) to {info['out']} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
