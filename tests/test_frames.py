"""frames.frame_from_columns / gather: Polars' constructors called directly give the
same frames as the public API (values, NaN vs null, dtypes, names)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from chargetracker import frames

SCHEMA = {"cell_id": pl.Utf8(), "n": pl.Int64(), "x": pl.Float64(), "k": pl.Int64(), "y": pl.Float64()}


def _columns() -> dict[str, object]:
    block = np.asfortranarray(np.array([[1.5, np.nan, -0.0], [2.0, 3.0, np.inf]]).T)  # F-order
    return {
        "cell_id": frames.gather(pl.Series("ids", ["a", "b", "c", "d"]), np.array([3, 0, 3])),
        "n": np.array([1, -(2**62), 7], dtype=np.int64),
        "x": block[:, 0],                       # a column of a column-major buffer
        "k": pl.Series("k", [1, None, 3], dtype=pl.Int32),  # cast to the schema's Int64
        "y": block[::-1, 1],                    # a strided view: copied to contiguous
    }


def test_fast_path_equals_public_api(monkeypatch: pytest.MonkeyPatch) -> None:
    assert frames._FAST, "this Polars lacks the constructors: the fallback is all there is"
    fast = frames.frame_from_columns(_columns(), SCHEMA)
    monkeypatch.setattr(frames, "_FAST", False)
    public = frames.frame_from_columns(_columns(), SCHEMA)
    assert fast.schema == public.schema == pl.Schema(SCHEMA)
    assert fast.equals(public, null_equal=True)
    assert fast.get_column("cell_id").to_list() == ["d", "a", "d"]
    assert fast.get_column("x").is_nan().to_list() == [False, True, False]  # NaN stays NaN
    assert fast.get_column("x").null_count() == 0
    assert fast.get_column("y").to_list() == [np.inf, 3.0, 2.0]
    assert fast.get_column("k").to_list() == [1, None, 3]


def test_gather_checks_bounds() -> None:
    s = pl.Series("c", ["a", "b"])
    assert frames.gather(s, np.array([1, 1, 0])).to_list() == ["b", "b", "a"]
    assert frames.gather(s, np.zeros(0, dtype=np.int64)).len() == 0
    with pytest.raises(pl.exceptions.OutOfBoundsError):
        frames.gather(s, np.array([2]))


def test_unequal_lengths_refused() -> None:
    with pytest.raises(pl.exceptions.ShapeError):
        frames.frame_from_columns({"x": np.zeros(2), "y": np.zeros(3)}, {"x": pl.Float64(), "y": pl.Float64()})


def test_conform_frame_casts_only_what_differs() -> None:
    frame = pl.DataFrame({"b": pl.Series([1, 2], dtype=pl.Int32), "a": ["x", "y"], "extra": [0, 0]})
    out = frames.conform_frame(frame, {"a": pl.Utf8(), "b": pl.Int64(), "c": pl.Float64()}, table="t",
                               required=["a"])
    assert out.schema == pl.Schema({"a": pl.String(), "b": pl.Int64(), "c": pl.Float64()})
    assert out.get_column("b").to_list() == [1, 2] and out.get_column("c").null_count() == 2
    # A parametric dtype is compared in full, not by class.
    ts = pl.DataFrame({"t": pl.Series([0], dtype=pl.Datetime("ms"))})
    assert frames.conform_frame(ts, {"t": pl.Datetime("us")}, table="t").schema["t"] == pl.Datetime("us")


def test_conform_fast_path_equals_the_select() -> None:
    """Frames already in canonical dtypes skip the select: same columns, dtypes, values
    (absent optional columns null), the columns themselves when nothing is missing."""
    from chargetracker import schema

    base = pl.DataFrame({"voltage_v": [3.5, 3.6], "ts": [1.0, 2.0], "extra": ["x", "y"],
                         "cell_id": ["a", "b"], "current_a": [1.0, -1.0], "step": [1, None]})
    fast = schema.conform(base)
    monkey = schema._canonical
    try:
        schema._canonical = lambda frame: None
        slow = schema.conform(base)
    finally:
        schema._canonical = monkey
    assert fast.schema == slow.schema and fast.equals(slow)
    full = slow  # every canonical column, in order: returned as it is
    assert schema.conform(full) is full
    assert schema.conform(base.with_columns(pl.col("ts").cast(pl.Int64))).schema == slow.schema
    assert schema.conform(base.head(0)).height == 0


def test_only_small_null_columns_are_cached() -> None:
    """Live batches reuse their all-null columns; a large file's are not kept."""
    from chargetracker import frames as F

    small = F.null_column("temperature_c", pl.Float64(), 100)
    assert F.null_column("temperature_c", pl.Float64(), 100) is small
    big = F.null_column("temperature_c", pl.Float64(), F._NULLS_MAX_ROWS + 1)
    assert big.null_count() == big.len() == F._NULLS_MAX_ROWS + 1
    assert all(len(s) <= F._NULLS_MAX_ROWS for s in F._NULLS.values())
