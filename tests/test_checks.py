"""The fast path of validation (``chargetracker.checks``) decides exactly as the full
rules: on any batch, good or with bad values of every kind, ``validate`` gives the same
good rows and dead letters as the per-rule checks alone, and the ids it encodes map
back to the column."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from chargetracker import checks, schema
from chargetracker.checks import all_good, dedupe
from chargetracker.config import EngineConfig
from chargetracker.engine import core
from chargetracker.engine.ids import assign_slots

SPECIALS = [math.nan, math.inf, -math.inf, -1.0, 0.0, -0.0, 1e12, 2001.0, 350.0, -90.0]
IDS = ["a", "b", "cell-7", " ", "", "\t\u00a0", "x" * 300, "\u3000y", None]


def _frame(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 12))
    good_ids = st.sampled_from(["a", "b", "cell-7"])
    ids = draw(st.lists(st.one_of(good_ids, st.sampled_from(IDS)) if draw(st.booleans())
                        else good_ids, min_size=n, max_size=n))

    def col(lo: float, hi: float, bad: bool, nulls: bool) -> list[float | None]:
        vals = st.floats(lo, hi)
        if bad:
            vals = st.one_of(vals, st.sampled_from(SPECIALS))
        if nulls:
            vals = st.one_of(vals, st.none())
        return draw(st.lists(vals, min_size=n, max_size=n))

    bad = draw(st.booleans())
    data: dict[str, object] = {
        "cell_id": pl.Series(ids, dtype=pl.Utf8),
        "ts": col(1.7e9, 1.8e9, bad, bad and draw(st.booleans())),
        "voltage_v": col(2.0, 4.5, bad, False),
        "current_a": col(-5.0, 5.0, bad, bad and draw(st.booleans())),
    }
    if draw(st.booleans()):
        data["temperature_c"] = col(10.0, 40.0, bad, draw(st.booleans()))
    if draw(st.booleans()):
        data["step_time_s"] = col(0.0, 1e4, bad, draw(st.booleans()))
    frame = pl.DataFrame(data, schema_overrides={
        k: pl.Float64 for k in data if k != "cell_id"})
    if draw(st.booleans()) and n > 1:  # two chunks: the fast path must not assume one
        frame = pl.concat([frame.head(n // 2), frame.tail(n - n // 2)], rechunk=False)
    return frame


frames = st.composite(_frame)


@settings(max_examples=300, deadline=None)
@given(frames())
def test_validate_equals_the_full_rules(frame: pl.DataFrame) -> None:
    lim = schema.Limits()
    got = schema.validate(frame, source="t", row_offset=3)
    want = schema._checked(schema.conform(frame), lim, "t", 3)
    assert_frame_equal(got.good, want.good)
    assert_frame_equal(got.rejected, want.rejected)
    assert (got.rows is None) == (want.rows is None)
    if got.rows is not None:
        assert np.array_equal(got.rows, want.rows)
    # It may give up on good rows (two chunks, some nulls), never pass a bad one.
    quick = all_good(schema.conform(frame), lim)
    assert quick is None or want.rejected.height == 0
    if got.ids is not None:  # the codes name each good row's id
        assert got.ids.distinct.gather(got.ids.codes).equals(got.good.get_column("cell_id"),
                                                            check_names=False)


def test_nan_temperature_becomes_null_on_the_fast_path() -> None:
    frame = pl.DataFrame({"cell_id": ["a", "a"], "ts": [1.7e9, 1.7e9 + 1], "voltage_v": [3.0, 3.1],
                          "current_a": [1.0, 1.0], "temperature_c": [math.nan, 25.0]})
    got = schema.validate(frame)
    assert got.ids is not None and got.rejected.height == 0  # the fast path took it
    assert got.good.get_column("temperature_c").to_list() == [None, 25.0]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([f"c{k}" for k in range(40)]), min_size=1, max_size=400),
       st.booleans())
def test_dedupe_is_exact_in_first_appearance_order(ids: list[str], grouped: bool) -> None:
    series = pl.Series("cell_id", sorted(ids) if grouped else ids, dtype=pl.Utf8)
    codes = dedupe(series)
    assert codes is not None
    assert codes.distinct.to_list() == list(dict.fromkeys(series.to_list()))
    assert codes.distinct.gather(codes.codes).equals(series, check_names=False)


def test_slots_from_codes_equal_assign_slots() -> None:
    """A state that knows some cells already: new ones get slots in order of first
    appearance, as assign_slots gives them."""
    first = pl.Series("cell_id", ["k2", "k0", "k1"])
    rows = pl.Series("cell_id", ["n1", "k1", "n0", "k2", "n1", "k0", "n0"])
    a, b = core.new_state(EngineConfig()), core.new_state(EngineConfig())
    for st_ in (a, b):
        assign_slots(st_, first, {})
    want = assign_slots(a, rows, {})
    codes = dedupe(rows)
    assert codes is not None
    got = core._slots_from_codes(b, codes, {})
    assert np.array_equal(got, want) and a.cell_ids == b.cell_ids


def test_mostly_distinct_ids_are_checked_row_by_row() -> None:
    """One sample per cell of a large fleet: the ids are not encoded, every row's id is
    checked, and a bad id anywhere still sends the batch to the full rules."""
    n = 5_000
    ids = [f"cell-{k:05d}" for k in range(n)]
    frame = pl.DataFrame({"cell_id": ids, "ts": 1.7e9 + np.arange(n, dtype=np.float64),
                          "voltage_v": np.full(n, 3.7), "current_a": np.ones(n),
                          "temperature_c": np.full(n, 25.0)})
    quick = all_good(schema.conform(frame), schema.Limits())
    assert quick is not None and quick.ids is None
    bad = frame.with_columns(pl.Series("cell_id", ids[:-1] + ["  "]))
    assert all_good(schema.conform(bad), schema.Limits()) is None
    got = schema.validate(bad)
    assert got.rejected.height == 1 and got.good.height == n - 1


# Ids of every length around the 12-byte inline limit of a string view, and long ones.
VIEW_IDS = ["", "a", "abc", "abcd", "abcde", "cell-00001", "cell-000012", "cell-0000123",
            "cell-00001234", "\u3000y", "a long cell identifier", "a long cell identifier!", "x" * 300]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(VIEW_IDS), min_size=1, max_size=300), st.booleans(),
       st.integers(0, 3))
def test_dedupe_from_string_views_is_exact(ids: list[str], copies: bool, cut: int) -> None:
    """Codes from the string views: one code per distinct id in first-appearance order,
    also when a long id is stored at several places (a concatenation rechunked, each
    part with its own copy of the bytes) and on a slice (views at an offset)."""
    series = pl.Series("cell_id", ids, dtype=pl.Utf8)
    if copies:
        series = pl.concat([series, pl.Series("cell_id", ids[::-1], dtype=pl.Utf8)]).rechunk()
    series = series.slice(min(cut, len(series) - 1))
    codes = dedupe(series)
    assert codes is not None
    assert codes.distinct.to_list() == list(dict.fromkeys(series.to_list()))
    assert codes.distinct.gather(codes.codes).equals(series, check_names=False)
    assert codes.codes.dtype == np.int64


def test_dedupe_of_many_long_ids_stored_per_row_falls_back_to_hashes() -> None:
    """Long ids with their bytes stored once per row (a text reader's column) have as
    many views as rows: the view path gives up and the hashed path encodes them."""
    n = 20_000
    ids = [f"a long cell identifier {k % 50:03d}" for k in range(n)]
    series = pl.Series("cell_id", ids, dtype=pl.Utf8)  # built from Python: a copy per row
    assert checks._view_codes_of(series) is None
    codes = dedupe(series)
    assert codes is not None and codes.distinct.len() == 50
    assert codes.distinct.gather(codes.codes).equals(series, check_names=False)


def test_dedupe_without_string_views_takes_the_hashed_path(monkeypatch) -> None:
    """A column that is not exported as string views (another Polars) still encodes."""
    from contextlib import contextmanager

    @contextmanager
    def none(col):
        yield None

    monkeypatch.setattr(checks, "string_views", none)
    series = pl.Series("cell_id", ["b", "a", "b", "c", "a"])
    codes = dedupe(series)
    assert codes is not None and codes.distinct.to_list() == ["b", "a", "c"]
    assert codes.codes.tolist() == [0, 1, 0, 2, 1]
