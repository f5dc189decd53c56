"""drop_repeated_keys is polars' unique(maintain_order=True), only cheaper when no key repeats."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from chargetracker.dedupe import drop_repeated_keys, may_repeat

_IDS = st.sampled_from(["a", "b", "cell-1", "", None])
_TS = st.one_of(st.sampled_from([0.0, -0.0, 1.5, math.nan, 1e9]), st.floats(allow_nan=True))
_INT = st.one_of(st.none(), st.integers(-3, 3))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_IDS, _TS, _INT), max_size=30), st.sampled_from(["first", "last"]))
def test_equals_polars_unique(rows: list[tuple[str | None, float, int | None]], keep: str) -> None:
    frame = pl.DataFrame(rows, schema={"cell_id": pl.Utf8, "ts": pl.Float64, "step": pl.Int64},
                         orient="row")
    for key in (["cell_id", "ts"], ["cell_id"], ["ts"], ["cell_id", "step"]):
        want = frame.unique(subset=key, keep=keep, maintain_order=True)  # type: ignore[arg-type]
        got = drop_repeated_keys(frame, key, keep=keep)  # type: ignore[arg-type]
        assert got.equals(want, null_equal=True), key


def test_no_repeat_returns_the_frame_itself() -> None:
    n = 100_000
    frame = pl.DataFrame({"cell_id": [f"c{i % 1000}" for i in range(n)],
                          "ts": np.arange(n, dtype=np.float64) // 1000})
    assert not may_repeat(frame, ["cell_id", "ts"])
    assert drop_repeated_keys(frame, ["cell_id", "ts"]) is frame
    again = pl.concat([frame, frame.slice(500, 1)])
    assert may_repeat(again, ["cell_id", "ts"])
    assert drop_repeated_keys(again, ["cell_id", "ts"]).equals(frame)


def test_signed_zero_and_nan_count_as_one_value() -> None:
    # polars' unique deems 0.0 == -0.0 and NaN == NaN; a hash that did not would let a
    # repeated key through.
    frame = pl.DataFrame({"k": ["x", "x", "y", "y"], "ts": [0.0, -0.0, math.nan, math.nan]})
    assert drop_repeated_keys(frame, ["k", "ts"]).height == frame.unique(
        subset=["k", "ts"], maintain_order=True).height == 2
