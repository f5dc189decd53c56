"""Per-cycle reference figures from a cycler file's own counters, and the comparison with
``chargetracker analyze``.

The cycler's counters come in three shapes: cumulative over the test (Arbin CSV), reset each
cycle (Arbin .res, PEC, BioLogic) or reset each step (Maccor, Neware, Novonix; Maccor and
Novonix unsigned, the direction given by the current). One rule covers all three: the
per-cycle figure is the sum of the counter's increments over the cycle's rows, where a drop
(a reset) counts the new value as the increment from zero. Unsigned counters
(``capacity_ah``/``energy_wh``) are split into charge and discharge by the sign of the
current on each row.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import polars as pl

from chargetracker.readers import read_file

PAIRS = {
    "charge_ah": "charge_capacity_ah", "discharge_ah": "discharge_capacity_ah",
    "charge_wh": "charge_energy_wh", "discharge_wh": "discharge_energy_wh",
}


def _increments(col: str) -> pl.Expr:
    c = pl.col(col).fill_null(strategy="forward").fill_null(0.0)
    # The first row's counter holds what accumulated before the file began (a file that
    # starts mid-test): not part of this file's data.
    d = (c - c.shift(1)).fill_null(0.0)
    # A drop is a reset: the new value is what accumulated since it.
    return pl.when(d >= -1e-12).then(d).otherwise(c)


def reference_cycles(path: Path) -> pl.DataFrame:
    """cycle -> charge/discharge Ah and Wh from the file's counters (empty if none)."""
    if path.name.startswith("nw_regular_export"):
        return _neware_cycle_rows(path)
    frame, _, _ = read_file(path, keep_reference=True)
    if "cycle" not in frame.columns or frame.get_column("cycle").null_count() == frame.height:
        return pl.DataFrame()
    frame = frame.sort("ts", maintain_order=True)
    exprs = []
    for out, ref in PAIRS.items():
        if ref in frame.columns:
            exprs.append(_increments(ref).alias(out))
        else:
            unsigned = "capacity_ah" if out.endswith("_ah") else "energy_wh"
            if unsigned not in frame.columns:
                return pl.DataFrame()
            sign = (pl.col("current_a") > 0) if out.startswith("charge") else (pl.col("current_a") < 0)
            exprs.append(pl.when(sign).then(_increments(unsigned)).otherwise(0.0).alias(out))
    inc = frame.select("cycle", *exprs)
    return inc.group_by("cycle").agg(pl.col(list(PAIRS)).sum()).sort("cycle")


def _neware_cycle_rows(path: Path) -> pl.DataFrame:
    """The 3-level Neware export's own cycle rows."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows = [ln for ln in lines[3:] if re.match(r"^\d", ln)]
    data = "\n".join(",".join(r.split(",")[:8]) for r in rows)
    names = ["cycle", "charge_ah", "discharge_ah", "eff", "charge_wh", "discharge_wh", "tc", "td"]
    df = pl.read_csv(io.StringIO(data), has_header=False, new_columns=names)
    return df.select("cycle", *PAIRS).cast({"cycle": pl.Int64})


def compare(cycles: pl.DataFrame, ref: pl.DataFrame, *, min_share: float = 0.2) -> pl.DataFrame:
    """Per full cycle: relative differences of Ah/Wh and absolute CE/EE differences.

    A cycle is full when the cycler counted both a charge and a discharge each at least
    ``min_share`` of the file's largest cycle figure (so a few mAh of a CV tail or a pulse do
    not make a cycle "full").
    """
    if ref.height == 0:
        return pl.DataFrame()
    top = max(ref["charge_ah"].max() or 0.0, ref["discharge_ah"].max() or 0.0)  # type: ignore[operator]
    full = ref.filter((pl.col("charge_ah") > min_share * top)
                      & (pl.col("discharge_ah") > min_share * top))
    got = cycles.select("cycle", *[pl.col(c).alias(f"got_{c}") for c in PAIRS])
    j = full.join(got, on="cycle", how="left")
    out = j.select(
        "cycle",
        *[((pl.col(f"got_{c}") - pl.col(c)) / pl.col(c)).abs().alias(f"d_{c}") for c in PAIRS],
        ((pl.col("got_discharge_ah") / pl.col("got_charge_ah"))
         - (pl.col("discharge_ah") / pl.col("charge_ah"))).abs().alias("d_ce"),
        ((pl.col("got_discharge_wh") / pl.col("got_charge_wh"))
         - (pl.col("discharge_wh") / pl.col("charge_wh"))).abs().alias("d_ee"),
    )
    return out.fill_nan(None).fill_null(float("inf"))
