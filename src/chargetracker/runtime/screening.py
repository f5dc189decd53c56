"""What the step screens out around the engine: rows from a clock far in the future,
and re-sent copies of samples already stored (acknowledged, never dead letters)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from ..kinds.base import TelemetryKind
from ..schema import DEAD_LETTER_SCHEMA, Validated

if TYPE_CHECKING:  # the step module imports this one
    from .step import StepContext

__all__ = ["reject_future", "split_already_stored"]


def _time_column(kind: TelemetryKind) -> str:
    return str(getattr(kind, "time_column", "ts"))


def reject_future(checked: Validated, ctx: StepContext) -> Validated:
    """Move rows stamped beyond ``ctx.now + ctx.future_horizon_s`` to the dead letters.

    A cycler or logger with a wrong clock (year 3000, 40 days ahead) must not reach the
    engine: its newest timestamp would judge every real sample of the cell "late" and
    drive retention. Rows without a numeric time column are left alone.
    """
    col = _time_column(ctx.kind)
    good = checked.good
    if (ctx.now is None or ctx.future_horizon_s is None or good.height == 0
            or col not in good.columns):
        return checked
    if good.schema[col] == pl.Date:   # daily records (the pack kind): the day's start, s
        secs = good.get_column(col).cast(pl.Int32).cast(pl.Float64) * 86_400.0
    elif good.schema[col].is_numeric():
        secs = good.get_column(col).cast(pl.Float64)
    else:
        return checked
    limit = float(ctx.now) + float(ctx.future_horizon_s)
    ts = secs.to_numpy()
    ahead = ts > limit
    if not ahead.any():
        return checked
    rows = checked.rows if checked.rows is not None else np.arange(good.height, dtype=np.int64)
    bad = good.filter(pl.Series(ahead))
    key = getattr(ctx.kind, "entity_key", "cell_id")
    reason = (f"timestamp implausibly far ahead of the clock: more than "
              f"{ctx.future_horizon_s:g} s after {ctx.now:.0f} (future horizon; a logger "
              "clock error?)")
    letters = pl.DataFrame({
        "source": [ctx.source] * bad.height,
        "row": rows[ahead],
        "cell_id": bad.get_column(key).cast(pl.Utf8) if key in bad.columns else None,
        "ts": secs.filter(pl.Series(ahead)),
        "field": [col] * bad.height,
        "reason": [reason] * bad.height,
        "payload": bad.select(pl.struct(pl.all()).struct.json_encode().alias("p")).get_column("p"),
    }, schema=DEAD_LETTER_SCHEMA)
    keep = ~ahead
    rejected = pl.concat([checked.rejected.cast(DEAD_LETTER_SCHEMA), letters])  # type: ignore[arg-type]
    return Validated(good.filter(pl.Series(keep)), rejected.sort("row"), rows[keep])



#: Engine reasons under which a re-sent sample arrives (its cell has moved past it).
_RESENT_REASONS = ("duplicate timestamp", "late:")
_SAME = ("voltage_v", "current_a", "temperature_c")


def split_already_stored(rejected: pl.DataFrame, checked: Validated,
                          ctx: StepContext) -> tuple[pl.DataFrame, int]:
    """Take exact copies of stored raw samples out of the dead letters.

    Re-sending a batch (a client retrying after a timeout) is the normal way to be sure
    it arrived: a row equal to the stored sample of its cell at its ts (voltage, current,
    temperature) is acknowledged as already stored and counted, never a dead letter. A
    row that shares a stored ts but differs in value stays a dead letter (a conflict).
    Needs the store (``ctx.history``) and raw storage; raw samples pruned by retention
    can no longer be matched.
    """
    raw_table = ctx.kind.raw_table
    if (ctx.history is None or rejected.height == 0 or raw_table is None
            or raw_table.name != "measurements" or not ctx.store_raw):
        return rejected, 0
    resent = pl.col("reason").str.starts_with(_RESENT_REASONS[0])
    for r in _RESENT_REASONS[1:]:
        resent = resent | pl.col("reason").str.starts_with(r)
    flagged = rejected.with_row_index("_i").filter(resent & pl.col("row").is_not_null())
    if flagged.height == 0:
        return rejected, 0
    good = checked.good
    rows = flagged.get_column("row").to_numpy()
    idx = np.searchsorted(checked.rows, rows) if checked.rows is not None else rows
    cand = good[idx].select("cell_id", "ts", *_SAME).with_columns(
        flagged.get_column("_i").alias("_i"))
    matched: list[int] = []
    for (cell_id,), part in cand.group_by(["cell_id"]):
        lo, hi = part.get_column("ts").min(), part.get_column("ts").max()
        stored = ctx.history.measurements(str(cell_id), start_ts=lo, end_ts=hi)  # type: ignore[arg-type]
        if stored.height == 0:
            continue
        joined = part.join(stored.select("ts", *_SAME), on="ts", how="inner", suffix="_s")
        same = pl.lit(True)
        for c in _SAME:
            same = same & pl.col(c).cast(pl.Float64).eq_missing(pl.col(f"{c}_s").cast(pl.Float64))
        matched += joined.filter(same).get_column("_i").to_list()
    if not matched:
        return rejected, 0
    keep = ~rejected.with_row_index("_i").get_column("_i").is_in(matched)
    return rejected.filter(keep), len(set(matched))
