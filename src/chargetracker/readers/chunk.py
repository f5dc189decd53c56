"""One chunk of parsed rows -> canonical rows and dead letters.

Shared by the text, Parquet and binary readers: parse every planned field with
vectorized expressions, let the format finish its columns (:meth:`TextReader._finish`),
apply the one shared rule set (:func:`schema.validate`), and turn every refused row into a
dead letter naming the file, its line (or record), the column and the reason, with the row
as the file had it. Reasons are worked out only for the rows that fail, so a clean chunk
(the usual case) costs one boolean mask per checked field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from ..schema import DEAD_LETTER_SCHEMA, MEASUREMENT_SCHEMA, dead_letters, validate
from .base import REFERENCE_COLUMNS, ReadChunk
from .fields import _field_exprs
from .fused import fused_chunk

if TYPE_CHECKING:
    from .text import TextReader

__all__ = ["process_chunk"]

_NUMERIC_KINDS = ("float", "int", "epoch", "duration")


def process_chunk(reader: TextReader, raw: pl.DataFrame, lines: pl.Series | int) -> ReadChunk:
    """Parse, convert and validate one chunk of raw rows.

    ``lines``: the line (or record) number of each row, or that of the first row when the
    rows are consecutive lines.
    """
    # A clean chunk (the usual case) is converted in compiled passes; anything else, or
    # anything the fused pass does not know, takes the exact path below.
    fast = fused_chunk(reader, raw)
    if fast is not None:
        return fast
    raw_cols = list(raw.columns)
    if isinstance(lines, int):
        raw = raw.with_columns(pl.int_range(lines, lines + raw.height, dtype=pl.Int64)
                               .alias("__line"))
    else:
        raw = raw.with_columns(lines.alias("__line"))
    # Blank lines carry no data: not a measurement and not worth a dead letter.
    text_cols = [c for c in raw_cols if raw.schema[c] == pl.Utf8]
    if text_cols and len(text_cols) == len(raw_cols):
        raw = raw.filter(~pl.all_horizontal(
            [pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "") for c in raw_cols]))
    if reader.decimal_comma:
        numeric = {f.source for f in reader.fields if f.kind in _NUMERIC_KINDS}
        raw = raw.with_columns(pl.col(c).str.replace_all(",", ".", literal=True)
                               for c in numeric if raw.schema[c] == pl.Utf8)

    values: list[pl.Expr] = []
    checks: list[tuple[str, pl.Expr, pl.Expr]] = []
    flags: list[pl.Expr] = []
    fails: list[pl.Expr] = []
    for f in reader.fields:
        if f.probe_only:
            continue
        value, fail, reason = _field_exprs(f, raw.schema[f.source])
        values.append(value.alias(f.out))
        if fail is None:
            continue
        checks.append((f.source, fail.fill_null(False), reason))
        # The parsed value is null exactly where a present value failed to parse, so the
        # check reads the parsed column (the conversion, e.g. a regex, runs once).
        col = pl.col(f.source)
        present = (col.str.strip_chars() != "") if raw.schema[f.source] == pl.Utf8 else \
            col.is_not_null()
        flag = f"__present{len(flags)}"
        flags.append(present.fill_null(False).alias(flag))
        bad = pl.lit(False)
        if f.strict:
            bad = pl.col(flag) & pl.col(f.out).is_null()
        if f.required:
            bad = bad | ~pl.col(flag)
        fails.append(bad)
    bad_parse = pl.DataFrame(schema={"__line": pl.Int64, "__field": pl.Utf8, "__reason": pl.Utf8})
    parsed = raw.select(pl.col("__line"), *values, *flags)
    if fails:
        mask = parsed.select(pl.any_horizontal(fails).alias("__bad")).get_column("__bad")
        if mask.any():
            bad_parse = _first_failure(raw.filter(mask), checks)
            parsed = parsed.filter(~mask)
    ok = parsed.drop([f"__present{i}" for i in range(len(flags))])

    frame = reader._finish(ok)
    if "cell_id" not in frame.columns:
        frame = frame.with_columns(pl.lit(reader.cell_id, dtype=pl.Utf8).alias("cell_id"))
    bad_finish = bad_parse.clear()
    if "__reject_field" in frame.columns:
        rej_mask = pl.col("__reject_field").is_not_null()
        bad_finish = frame.filter(rej_mask).select(
            "__line", pl.col("__reject_field").alias("__field"),
            pl.col("__reject_reason").alias("__reason"),
        )
        frame = frame.filter(~rej_mask).drop("__reject_field", "__reject_reason")

    # Plausibility, NaN and inf checks: the one shared rule set in schema.validate.
    canon = frame.select([c for c in MEASUREMENT_SCHEMA if c in frame.columns])
    checked = validate(canon, source=reader.source)
    canonical_source = {f.canonical or f.out: f.source for f in reader.fields}
    keep_refs = [c for c in REFERENCE_COLUMNS if c in frame.columns] if reader.keep_reference else []
    bad_valid = None
    if checked.rejected.height:
        idx = checked.rejected.get_column("row")
        mask_good = ~pl.int_range(0, frame.height, eager=True).is_in(idx.implode())
        good = pl.concat([checked.good, frame.filter(mask_good).select(keep_refs)], how="horizontal")
        bad_valid = pl.DataFrame({
            "__line": frame.get_column("__line").gather(idx),
            "__field": checked.rejected.get_column("field").replace(canonical_source),
            "__reason": checked.rejected.get_column("reason"),
            "__ts": checked.rejected.get_column("ts"),
        })
    else:
        good = pl.concat([checked.good, frame.select(keep_refs)], how="horizontal") \
            if keep_refs else checked.good

    if bad_parse.height == 0 and bad_finish.height == 0 and bad_valid is None:
        return ReadChunk(good, dead_letters())
    rejected = _dead_letters(reader, raw, raw_cols, bad_parse, bad_finish, bad_valid)
    return ReadChunk(good, rejected)


def _first_failure(bad: pl.DataFrame, checks: list[tuple[str, pl.Expr, pl.Expr]]) -> pl.DataFrame:
    """(__line, __field, __reason) of the first failing field of each failing row."""
    field_expr: pl.Expr = pl.lit(None, dtype=pl.Utf8)
    reason_expr: pl.Expr = pl.lit(None, dtype=pl.Utf8)
    for source, fail, reason in reversed(checks):
        field_expr = pl.when(fail).then(pl.lit(source)).otherwise(field_expr)
        reason_expr = pl.when(fail).then(reason).otherwise(reason_expr)
    return bad.select("__line", field_expr.alias("__field"), reason_expr.alias("__reason"))


def _dead_letters(
    reader: TextReader,
    raw: pl.DataFrame,
    raw_cols: list[str],
    bad_parse: pl.DataFrame,
    bad_finish: pl.DataFrame,
    bad_valid: pl.DataFrame | None,
) -> pl.DataFrame:
    parts = [bad_parse.with_columns(pl.lit(None, dtype=pl.Float64).alias("__ts")),
             bad_finish.with_columns(pl.lit(None, dtype=pl.Float64).alias("__ts"))]
    if bad_valid is not None:
        parts.append(bad_valid)
    bad = pl.concat([p.select("__line", "__field", "__reason", "__ts") for p in parts],
                    how="vertical")
    if bad.height == 0:
        return dead_letters()
    # The rejected line as the file had it (JSON of its text fields), so nothing is lost.
    payload = raw.filter(pl.col("__line").is_in(bad.get_column("__line").implode())).select(
        "__line",
        pl.struct([pl.col(c).cast(pl.Utf8) for c in raw_cols]).struct.json_encode().alias("payload"),
    )
    cell_src = next((f.source for f in reader.fields if f.out == "cell_id"), None)
    out = bad.join(payload, on="__line", how="left")
    if cell_src is not None:
        cids = raw.select("__line", pl.col(cell_src).cast(pl.Utf8).alias("__cid"))
        out = out.join(cids, on="__line", how="left")
        cid_expr = pl.col("__cid")
    else:
        cid_expr = pl.lit(reader.cell_id, dtype=pl.Utf8)
    return out.sort("__line").select(
        pl.lit(reader.source, dtype=pl.Utf8).alias("source"),
        pl.col("__line").cast(pl.Int64).alias("row"),
        cid_expr.alias("cell_id"),
        pl.col("__ts").alias("ts"),
        pl.col("__field").alias("field"),
        pl.col("__reason").alias("reason"),
        pl.col("payload"),
    ).cast(DEAD_LETTER_SCHEMA)  # type: ignore[arg-type]
