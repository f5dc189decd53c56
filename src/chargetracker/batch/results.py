"""The per-cell analysis both backfill engines share, and its tagged-union result frame.

Each cell's archived samples are sorted by ``ts`` (exact duplicates of replayed batches
dropped) and run through the cell kind's batch form (:meth:`CellKind.summarize
<chargetracker.kinds.cell.CellKind.summarize>`, i.e. the engine's ``summarize``) with the
cell's nominal capacity, so the results equal the streaming path's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa

from ..config import EngineConfig, Settings
from ..errors import ChargeTrackerError
from ..kinds.base import KindOutput
from ..kinds.cell import CellKind
from ..schema import CYCLE_SCHEMA, DEAD_LETTER_SCHEMA, MEASUREMENT_SCHEMA, STEP_SCHEMA, conform

__all__ = ["RESULT_ARROW_SCHEMA", "RESULT_SCHEMA", "BackfillError", "BackfillOutput",
           "analyze_frame", "split_results", "to_union"]


class BackfillError(ChargeTrackerError):
    """The backfill job failed (Spark job error, unreadable archive)."""


def _union_schema() -> dict[str, pl.DataType]:
    out: dict[str, pl.DataType] = {
        "record": pl.Utf8(),       # cell | step | cycle | dead_letter
        "group": pl.Utf8(),        # cell records: the cell's archive group (latest)
        "duplicates": pl.Int64(),  # cell records: exact duplicate rows dropped
    }
    for schema in (STEP_SCHEMA, CYCLE_SCHEMA, DEAD_LETTER_SCHEMA):
        for name, dtype in schema.items():
            if name in out and out[name] != dtype:  # pragma: no cover - schema invariant
                raise AssertionError(f"column {name} differs between result schemas")
            out.setdefault(name, dtype)
    return out


#: One frame for every result of a backfill (tagged union; unused columns null).
#: ``cell`` records carry ``cell_id``, ``group``, ``n_samples`` (rows analysed) and
#: ``duplicates``; the others the columns of STEP_SCHEMA / CYCLE_SCHEMA / DEAD_LETTER_SCHEMA.
RESULT_SCHEMA: dict[str, pl.DataType] = _union_schema()
_MEASUREMENT_COLUMNS = list(MEASUREMENT_SCHEMA)
_ARROW_TYPES = {pl.Utf8(): pa.string(), pl.Int64(): pa.int64(), pl.Float64(): pa.float64()}
RESULT_ARROW_SCHEMA = pa.schema([(c, _ARROW_TYPES[t]) for c, t in RESULT_SCHEMA.items()])
_BACKFILL_SOURCE = "backfill"


@dataclass(frozen=True, slots=True)
class BackfillOutput:
    """Results split by record type (for inspection and tests)."""

    steps: pl.DataFrame
    cycles: pl.DataFrame
    dead_letters: pl.DataFrame
    cells: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(
        schema={"cell_id": pl.Utf8, "group": pl.Utf8, "n_samples": pl.Int64,
                "duplicates": pl.Int64}))


def _prepare(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Canonical rows sorted by (cell_id, ts) without exact duplicates, and per-cell info.

    Exact duplicate rows only arise when a batch was archived twice under different
    ids; they are the same sample, so dropping them is what the live engine saw.
    Rows with the same ts but different values are left for the engine, which keeps
    the first (in a deterministic order here) and dead-letters the others.
    """
    group = (frame.get_column("group").cast(pl.Utf8) if "group" in frame.columns
             else pl.Series("group", [None] * frame.height, dtype=pl.Utf8))
    data = conform(frame, source="archive").with_columns(group.alias("group"))
    data = data.sort(["cell_id", "ts"], maintain_order=True)
    same = (pl.col("ts").diff() == 0) & (pl.col("cell_id") == pl.col("cell_id").shift())
    counts = data.group_by("cell_id", maintain_order=True).agg(
        pl.len().cast(pl.Int64).alias("__rows"), pl.col("group").last())
    if data.height > 1 and bool(data.select(same.fill_null(False).any()).item()):
        data = data.sort([*_MEASUREMENT_COLUMNS, "group"], nulls_last=True, maintain_order=True)
        data = data.unique(subset=_MEASUREMENT_COLUMNS, keep="first", maintain_order=True)
    kept = data.group_by("cell_id", maintain_order=True).agg(pl.len().cast(pl.Int64).alias("n_samples"))
    info = counts.join(kept, on="cell_id", how="left").select(
        "cell_id", "group", "n_samples",
        (pl.col("__rows") - pl.col("n_samples")).alias("duplicates"))
    return data.select(_MEASUREMENT_COLUMNS), info


def analyze_frame(frame: pl.DataFrame, config: EngineConfig,
                  nominal: Mapping[str, float]) -> pl.DataFrame:
    """Run the engine over the archived samples of some cells; a RESULT_SCHEMA frame.

    ``frame`` has the canonical columns (plus optionally ``group``), any order.
    ``nominal`` maps cell_id -> nominal capacity, Ah (sets the rest threshold).
    """
    data, info = _prepare(frame)
    ids = info.get_column("cell_id").to_list()
    caps = {c: nominal[c] for c in ids if c in nominal}
    cells = pl.DataFrame({"cell_id": list(caps), "nominal_capacity_ah": list(caps.values())},
                         schema={"cell_id": pl.Utf8, "nominal_capacity_ah": pl.Float64})
    kind = CellKind(Settings(engine=config))
    out = kind.summarize(data, entities=cells if caps else None, source=_BACKFILL_SOURCE)
    return to_union(out, info)


def to_union(out: KindOutput, info: pl.DataFrame) -> pl.DataFrame:
    """The cell kind's batch output (+ per-cell info) as one RESULT_SCHEMA frame."""
    parts = [
        info.with_columns(pl.lit("cell").alias("record")),
        out.tables["steps"].with_columns(pl.lit("step").alias("record")),
        out.tables["cycles"].with_columns(pl.lit("cycle").alias("record")),
        out.rejected.with_columns(pl.lit("dead_letter").alias("record")),
    ]
    cols = []
    for part in parts:
        cols.append(part.select(
            pl.col(c).cast(t) if c in part.columns else pl.lit(None, dtype=t).alias(c)
            for c, t in RESULT_SCHEMA.items()))
    return pl.concat(cols)


def split_results(frames: Iterable[pl.DataFrame]) -> BackfillOutput:
    """Gather RESULT_SCHEMA frames into steps, cycles, dead letters and cell info."""
    parts = [f for f in frames if f.height]
    union = pl.concat(parts) if parts else pl.DataFrame(schema=RESULT_SCHEMA)
    return _split(union)


def _split(union: pl.DataFrame) -> BackfillOutput:
    def take(kind: str, schema: Mapping[str, pl.DataType], keys: list[str]) -> pl.DataFrame:
        sub = union.filter(pl.col("record") == kind).select(list(schema))
        return sub.sort(keys) if keys else sub

    return BackfillOutput(
        steps=take("step", STEP_SCHEMA, ["cell_id", "step"]),
        cycles=take("cycle", CYCLE_SCHEMA, ["cell_id", "cycle"]),
        dead_letters=take("dead_letter", DEAD_LETTER_SCHEMA, []),
        cells=union.filter(pl.col("record") == "cell").select(
            "cell_id", "group", "n_samples", "duplicates").sort("cell_id"),
    )
