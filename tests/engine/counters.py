"""The cyclers' own per-cycle counters, from the reference columns the readers keep.

Arbin: cumulative ``charge/discharge_capacity_ah`` and ``_energy_wh`` that restart each
cycle (per cycle: last minus first row). Maccor: ``capacity_ah``/``energy_wh`` restart
each step; a step is charge or discharge by the sign of its current (per cycle: the sum
of each step's last value). BioLogic (tests/engine/mpt.py): ``ref_charge_mah`` /
``ref_discharge_mah`` restart each half cycle (per cycle: the largest value).
"""

from __future__ import annotations

import polars as pl

OURS = ["charge_ah", "discharge_ah", "charge_wh", "discharge_wh"]


def cycler_per_cycle(frame: pl.DataFrame) -> pl.DataFrame:
    """Per cycle label: charge_ah, discharge_ah, charge_wh, discharge_wh (NaN when absent)."""
    cols = frame.columns
    if "charge_capacity_ah" in cols:
        ref = ["charge_capacity_ah", "discharge_capacity_ah", "charge_energy_wh", "discharge_energy_wh"]
        return frame.group_by("cycle").agg(
            [(pl.col(c).last() - pl.col(c).first()).alias(o) for c, o in zip(ref, OURS, strict=True)]
        ).sort("cycle")
    if "capacity_ah" in cols:
        seg = (pl.col("step").ne(pl.col("step").shift(1)) | pl.col("cycle").ne(pl.col("cycle").shift(1))
               ).fill_null(True).cum_sum()
        steps = frame.with_columns(seg.alias("_seg")).group_by("_seg", maintain_order=True).agg(
            pl.col("cycle").first(), pl.col("current_a").mean().alias("i"),
            pl.col("capacity_ah").last().alias("ah"), pl.col("energy_wh").last().alias("wh"))
        chg, dis = pl.col("i") > 0, pl.col("i") < 0
        return steps.group_by("cycle").agg(
            pl.col("ah").filter(chg).sum().alias("charge_ah"),
            pl.col("ah").filter(dis).sum().alias("discharge_ah"),
            pl.col("wh").filter(chg).sum().alias("charge_wh"),
            pl.col("wh").filter(dis).sum().alias("discharge_wh"),
        ).sort("cycle")
    if "ref_charge_mah" in cols:
        return frame.group_by("cycle").agg(
            (pl.col("ref_charge_mah").max() / 1000.0).alias("charge_ah"),
            (pl.col("ref_discharge_mah").max() / 1000.0).alias("discharge_ah"),
            pl.lit(float("nan")).alias("charge_wh"),
            pl.lit(float("nan")).alias("discharge_wh"),
        ).sort("cycle")
    raise ValueError("no cycler reference columns in this frame")


def worst_difference(ours: pl.DataFrame, theirs: pl.DataFrame) -> tuple[float, float, int]:
    """Worst relative difference of Ah/Wh and worst |CE difference| over closed cycles
    that hold both a charge and a discharge; and how many such cycles were compared."""
    closed = ours.filter((pl.col("status") == "closed") & (pl.col("charge_ah") > 0)
                         & (pl.col("discharge_ah") > 0))
    j = closed.join(theirs, on="cycle", suffix="_ref")
    worst = 0.0
    for c in OURS:
        ref = j.get_column(f"{c}_ref").to_numpy()
        ok = ref == ref  # NaN: the cycler has no such counter
        if ok.any():
            err = abs(j.get_column(c).to_numpy()[ok] - ref[ok]) / abs(ref[ok])
            worst = max(worst, float(err.max()))
    ce = j.get_column("discharge_ah") / j.get_column("charge_ah")
    ce_ref = j.get_column("discharge_ah_ref") / j.get_column("charge_ah_ref")
    ce_worst = float((ce - ce_ref).abs().max()) if j.height else float("nan")
    return worst, ce_worst, j.height
