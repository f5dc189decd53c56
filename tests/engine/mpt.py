"""Test-only loader for BioLogic EC-Lab ``.mpt`` text exports (read from ../shared only).

The project's reader lives in chargetracker.readers (written separately); the engine tests
need the samples and the cycler's own per-cycle counters now, so this parses just enough:
line 2 says how many header lines there are, the last of them holds the tab-separated
column names, the decimal mark may be a comma. Currents are mA (positive = charging,
BioLogic's own convention matches ours), charge counters mA.h, energies W.h.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import polars as pl

_HEADER = re.compile(r"Nb header lines\s*:\s*(\d+)")


def read_mpt(path: Path, cell_id: str = "mpt") -> pl.DataFrame:
    """Canonical measurements plus the cycler's counters (``ref_*`` columns)."""
    raw = path.read_bytes().decode("latin-1")
    lines = raw.splitlines()
    m = _HEADER.search(lines[1])
    if m is None:
        raise ValueError(f"{path.name}: line 2 does not say 'Nb header lines : N'")
    n_header = int(m.group(1))
    names = [c.strip() for c in lines[n_header - 1].rstrip("\t").split("\t")]
    body = "\n".join(line.rstrip("\t") for line in lines[n_header:]).replace(",", ".")
    frame = pl.read_csv(io.StringIO(body), separator="\t", has_header=False,
                        infer_schema_length=0, truncate_ragged_lines=True)
    frame = frame.select(frame.columns[: len(names)]).rename(
        dict(zip(frame.columns[: len(names)], names, strict=True))
    ).with_columns(pl.all().cast(pl.Float64, strict=False))
    current = "<I>/mA" if "<I>/mA" in frame.columns else "I/mA"
    cycle = pl.col("cycle number").cast(pl.Int64) if "cycle number" in frame.columns else pl.lit(None, pl.Int64)
    out = frame.select(
        pl.lit(cell_id).alias("cell_id"),
        (pl.col("time/s") + 1.6e9).alias("ts"),
        pl.col("Ewe/V").alias("voltage_v"),
        (pl.col(current) / 1000.0).alias("current_a"),
        cycle.alias("cycle"),
        (pl.col("Ns").cast(pl.Int64) if "Ns" in frame.columns else pl.lit(None, pl.Int64)).alias("step"),
        pl.col("Q charge/mA.h").alias("ref_charge_mah") if "Q charge/mA.h" in frame.columns
        else pl.lit(None, pl.Float64).alias("ref_charge_mah"),
        pl.col("Q discharge/mA.h").alias("ref_discharge_mah") if "Q discharge/mA.h" in frame.columns
        else pl.lit(None, pl.Float64).alias("ref_discharge_mah"),
    )
    return out


def reference_per_cycle(frame: pl.DataFrame) -> pl.DataFrame:
    """The cycler's charge/discharge mAh per cycle label (its counters reset each half cycle,
    so the per-cycle total is the sum of each half's last value)."""
    return frame.group_by("cycle").agg(
        pl.col("ref_charge_mah").max().alias("ref_charge_mah"),
        pl.col("ref_discharge_mah").max().alias("ref_discharge_mah"),
    ).sort("cycle")
