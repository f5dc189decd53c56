"""Adversarial tests of the string-view id encoding (:mod:`chargetracker.strviews`,
:func:`chargetracker.checks.dedupe`): on every shape a batch's id column can take (slices
at any offset, several chunks, nulls around a slice, ids of 12 and 13 bytes, multibyte
UTF-8, long ids that differ only after their 4-byte prefix or only in it, long ids
stored in several data buffers, Categorical/Enum cast back, columns from Arrow) the
codes are exactly those of a plain dict in order of first appearance, and the engine's
results do not depend on how the column's bytes are laid out."""

from __future__ import annotations

import gc

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from chargetracker import checks, schema
from chargetracker.checks import _view_codes, _view_codes_of, dedupe
from chargetracker.config import EngineConfig
from chargetracker.engine import core, summarize
from chargetracker.strviews import string_views

# Around the 12-byte inline limit, with multibyte UTF-8 ("é" 2 bytes, "\u3000" 3, emoji 4),
# long ids equal in their 4-byte prefix and differing after it (or only in it).
EDGE_IDS = [
    "", " ", "a", "abcd", "abcde", "x" * 11, "x" * 12, "x" * 13, "y" * 12, "y" * 13,
    "abcdefghijk", "abcdefghijkl", "abcdefghijklm", "abcdefghijkm", "abcdefghijkln",
    "\u00e9" * 6, "\u00e9" * 6 + "x", "\u00e9" * 5 + "xy", "\u3000" * 4, "\u3000" * 4 + "a",
    "\U0001f50b" * 3, "\U0001f50b" * 3 + "a", "cell-0000123", "cell-00001234",
    "cell-00001235", "xell-00001234", "a long cell identifier", "b long cell identifier",
    "a long cell identifieR", "a long cell identifier!", "z" * 300, "z" * 299 + "y",
]


def want_codes(values: list[str | None]) -> tuple[list[str | None], list[int]]:
    """The reference: distinct values in order of first appearance, and each row's index."""
    index: dict[str | None, int] = {}
    codes = [index.setdefault(v, len(index)) for v in values]
    return list(index), codes


def assert_exact(series: pl.Series) -> None:
    got = dedupe(series)
    values = series.to_list()
    if not values:
        assert got is None
        return
    assert got is not None
    distinct, codes = want_codes(values)
    assert got.distinct.to_list() == distinct
    assert got.codes.dtype == np.int64
    assert got.codes.tolist() == codes
    # The same equivalence classes as Polars' own dense rank.
    rank = series.rank("dense").to_numpy()
    if series.null_count() == 0:
        _, inv = np.unique(rank, return_inverse=True)
        _, inv2 = np.unique(got.codes, return_inverse=True)
        pairs = set(zip(inv.tolist(), inv2.tolist(), strict=True))
        assert len(pairs) == len(set(inv.tolist())) == len(set(inv2.tolist()))


def _pieces(draw: st.DrawFn, ids: list[str]) -> list[pl.Series]:
    cuts = sorted(draw(st.lists(st.integers(0, len(ids)), max_size=3)))
    bounds = [0, *cuts, len(ids)]
    return [pl.Series("cell_id", ids[a:b], dtype=pl.String) for a, b in zip(bounds, bounds[1:],
                                                                              strict=False)]


@st.composite
def id_columns(draw: st.DrawFn) -> pl.Series:
    pool = draw(st.lists(st.one_of(st.sampled_from(EDGE_IDS), st.text(max_size=20)),
                         min_size=1, max_size=12, unique=True))
    n = draw(st.integers(1, 200))
    ids = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
    if draw(st.booleans()):
        ids = sorted(ids)  # grouped by cell
    how = draw(st.sampled_from(["plain", "concat", "concat-rechunk", "extend", "append",
                                "categorical", "enum", "arrow-view", "arrow-large",
                                "arrow-view-sliced", "nulls-sliced-away"]))
    if how == "plain":
        s = pl.Series("cell_id", ids, dtype=pl.String)
    elif how in ("concat", "concat-rechunk"):
        s = pl.concat(_pieces(draw, ids), rechunk=how == "concat-rechunk")
    elif how in ("extend", "append"):
        parts = _pieces(draw, ids)
        s = parts[0].clone()
        for p in parts[1:]:
            s = s.extend(p) if how == "extend" else s.append(p)
    elif how == "categorical":
        s = pl.Series("cell_id", ids, dtype=pl.Categorical).cast(pl.String)
    elif how == "enum":
        s = pl.Series("cell_id", ids, dtype=pl.Enum(pool)).cast(pl.String)
    elif how == "arrow-view":
        s = pl.from_arrow(pa.array(ids, type=pa.string_view()))
    elif how == "arrow-large":
        s = pl.from_arrow(pa.array(ids, type=pa.large_string()))
    elif how == "arrow-view-sliced":
        a = pa.array(["pad pad pad pad", *ids, "tail tail tail x"], type=pa.string_view())
        s = pl.from_arrow(a.slice(1, len(ids)))
    else:  # nulls before and after, sliced away: a validity buffer and an offset
        s = pl.Series("cell_id", [None, "lead lead lead lead", *ids, None], dtype=pl.String)
        s = s[2:2 + len(ids)]
    assert isinstance(s, pl.Series)
    if draw(st.booleans()) and len(s) > 1:  # a slice of whatever was built
        a = draw(st.integers(0, len(s) - 1))
        b = draw(st.integers(a + 1, len(s)))
        s = draw(st.sampled_from([lambda: s[a:b], lambda: s.slice(a, b - a), lambda: s.head(b),
                                  lambda: s.tail(len(s) - a)]))()
    return s


@settings(max_examples=400, deadline=None)
@given(id_columns())
def test_codes_equal_a_dict_on_every_layout(series: pl.Series) -> None:
    assert_exact(series)


@settings(max_examples=200, deadline=None)
@given(id_columns())
def test_views_are_exactly_the_ids(series: pl.Series) -> None:
    """Where views are given, a short id is its view (length, then its bytes zero-padded)
    and a long id's view holds its length and 4-byte prefix."""
    values = series.to_list()
    with string_views(series) as views:
        if views is None:
            return
        assert views.shape == (len(values), 2) and not views.flags.writeable
        raw = views.copy()
    for (w0, w1), v in zip(raw.tolist(), values, strict=True):
        b = v.encode()
        assert w0 & 0xFFFFFFFF == len(b)
        head = (w0 >> 32).to_bytes(4, "little") + w1.to_bytes(8, "little")
        if len(b) <= 12:
            assert head[:len(b)] == b
        else:
            assert head[:4] == b[:4]


def test_dataframe_slices_head_and_tail() -> None:
    ids = [EDGE_IDS[k % len(EDGE_IDS)] for k in range(500)]
    df = pl.DataFrame({"cell_id": ids})
    for part in (df.slice(7, 300), df.head(13), df.tail(101), df[250:251], df[499:]):
        assert_exact(part.get_column("cell_id"))


def test_one_row_zero_rows_all_null_and_nulls() -> None:
    assert_exact(pl.Series("cell_id", ["x" * 13], dtype=pl.String))
    assert_exact(pl.Series("cell_id", [""], dtype=pl.String))
    assert_exact(pl.Series("cell_id", [], dtype=pl.String))
    with string_views(pl.Series("cell_id", [], dtype=pl.String)) as v:
        assert v is None
    nulls = pl.Series("cell_id", [None, None, None], dtype=pl.String)
    with string_views(nulls) as v:
        assert v is None
    assert_exact(nulls)
    assert_exact(pl.Series("cell_id", ["a", None, "a" * 20, None, "a"], dtype=pl.String))
    # The frame-level fast path: 0 rows and nulls in the ids give the full rules.
    empty = schema.conform(pl.DataFrame({"cell_id": [], "ts": [], "voltage_v": [],
                                         "current_a": []}, schema_overrides={
        "cell_id": pl.String, "ts": pl.Float64, "voltage_v": pl.Float64, "current_a": pl.Float64}))
    assert checks.all_good(empty, schema.Limits()) is None


def test_many_distinct_ids_grow_the_table() -> None:
    """Distinct short and long ids far past the first table (1,024 codes), interleaved and
    grouped, with the long ids' bytes stored once (repeated rows share a view)."""
    n_cells = 70_000  # past the cache-sized table's 8,192 codes and its 1/2-full regime
    short = [f"c{k:09d}" for k in range(n_cells)]  # 10 bytes: inline
    base = pl.Series("cell_id", short, dtype=pl.String)
    rng = np.random.default_rng(3)
    for series in (base.gather(rng.integers(0, n_cells, 300_000)),
                   base.gather(np.repeat(np.arange(n_cells), 3))):
        assert_exact(series)
    long = pl.Series("cell_id", [f"a long cell id {k:07d}" for k in range(20_000)],
                     dtype=pl.String)
    assert_exact(long.gather(rng.integers(0, 20_000, 400_000)))  # views shared by gather


def test_view_codes_group_exactly_on_raw_views() -> None:
    """_view_codes on synthetic views: short views equal after the length's bytes even with
    garbage padding; long views apart when any of length, prefix, buffer or offset differ."""
    def short(b: bytes, pad: int = 0) -> tuple[int, int]:
        raw = b + bytes([pad]) * (12 - len(b))
        return len(b) | int.from_bytes(raw[:4], "little") << 32, int.from_bytes(raw[4:], "little")

    def long(n: int, prefix: bytes, buf: int, off: int) -> tuple[int, int]:
        return n | int.from_bytes(prefix, "little") << 32, buf | off << 32

    rows = [short(b"abc"), short(b"abc", 0xAB), short(b""), short(b"", 7), short(b"abcdefghijkl"),
            long(13, b"abcd", 0, 0), long(13, b"abcd", 0, 0), long(14, b"abcd", 0, 0),
            long(13, b"abce", 0, 0), long(13, b"abcd", 1, 0), long(13, b"abcd", 0, 1)]
    views = np.array(rows, dtype=np.uint64)
    got = _view_codes(views)
    assert got is not None
    codes, first, long_seen = got
    assert long_seen
    assert codes.tolist() == [0, 0, 1, 1, 2, 3, 3, 4, 5, 6, 7]
    assert first.tolist() == [0, 2, 4, 5, 7, 8, 9, 10]


def test_long_ids_in_several_data_buffers() -> None:
    """Equal long ids in different data buffers (a concatenation rechunked, a column from
    pieces) have different views: merged by value, in order of first appearance."""
    a = pl.Series("cell_id", ["first long cell id", "second long cell id", "x" * 13] * 50)
    b = pl.Series("cell_id", ["second long cell id", "third long cell id", "x" * 13] * 50)
    s = pl.concat([a, b, a.slice(3, 40)], rechunk=True)
    with string_views(s) as v:
        assert v is not None
        assert len({int(x) & 0xFFFFFFFF for x in v[:, 1]}) >= 1
    assert_exact(s)
    big = pl.Series("cell_id", ["L" * 5000 + str(k % 7) for k in range(2000)])  # > 1 buffer
    assert_exact(big)
    assert_exact(pl.concat([big, big.reverse()], rechunk=True).slice(1000, 2500))


def test_views_outlive_the_series_and_garbage_collection() -> None:
    """The exported array keeps the bytes alive inside the with block even when the
    caller's Series is gone; repeated use neither leaks nor double-releases."""
    def make() -> pl.Series:
        base = pl.Series("cell_id", [f"a long cell id {k:04d}" for k in range(97)]
                         + [f"s{k}" for k in range(13)])
        return base.gather(np.arange(10_000) % 110)[3:]  # long ids' views shared

    s = make()
    want = s.to_list()
    with string_views(s) as views:
        assert views is not None
        before = views.copy()
        del s
        gc.collect()
        pl.Series([f"filler {k}" * 3 for k in range(20_000)]).to_list()  # reuse freed memory
        assert np.array_equal(views, before)
        got = _view_codes(views)
    assert got is not None
    for _ in range(200):  # many exports and releases of temporaries
        assert_exact(make().slice(5, 300))
        gc.collect()
    assert make().to_list() == want


def test_body_exception_releases_and_propagates() -> None:
    s = pl.Series("cell_id", ["a", "bb", "c" * 20])
    with pytest.raises(KeyError):
        with string_views(s) as v:
            assert v is not None
            raise KeyError("body")
    assert_exact(s)


def test_a_polars_without_the_stream_export_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``__arrow_c_stream__`` (an older Polars), one that raises, or one that exports
    another format: ``None``, and dedupe takes the hashed path with the same codes."""
    s = pl.Series("cell_id", ["b", "a" * 20, "b", "", "a" * 20, "c"])

    def missing(self: pl.Series, requested_schema: object = None) -> object:
        raise AttributeError("__arrow_c_stream__")

    monkeypatch.setattr(pl.Series, "__arrow_c_stream__", missing)
    with string_views(s) as v:
        assert v is None
    assert _view_codes_of(s) is None
    assert_exact(s)

    def large(self: pl.Series, requested_schema: object = None) -> object:
        return pa.array(self.to_list(), type=pa.large_string()).__arrow_c_stream__()

    monkeypatch.setattr(pl.Series, "__arrow_c_stream__", large)
    with string_views(s) as v:
        assert v is None
    assert_exact(s)

    def capsule_of_another_kind(self: pl.Series, requested_schema: object = None) -> object:
        return pa.array([1, 2]).__arrow_c_array__()[0]  # a schema capsule, wrong name

    monkeypatch.setattr(pl.Series, "__arrow_c_stream__", capsule_of_another_kind)
    with string_views(s) as v:
        assert v is None
    assert_exact(s)


def test_fallback_does_not_chain_the_body_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error raised in the with block on the fallback path is not reported as raised
    'during handling' of the missing export's error."""
    def missing(self: pl.Series, requested_schema: object = None) -> object:
        raise AttributeError("__arrow_c_stream__")

    monkeypatch.setattr(pl.Series, "__arrow_c_stream__", missing)
    with pytest.raises(KeyError) as info:
        with string_views(pl.Series(["a"])):
            raise KeyError("body")
    assert info.value.__context__ is None


# -- The engine: the same results whatever the id column's layout ------------------------

def _telemetry(ids: list[str], seed: int) -> pl.DataFrame:
    """Per cell a charge, rest, discharge (1 s samples), rows interleaved by time."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, cell in enumerate(ids):
        cur = np.concatenate([np.full(40, 1.0), np.zeros(10), np.full(40, -1.0), np.zeros(10)])
        cur = np.tile(cur, 2) + rng.normal(0, 1e-4, 200)
        volt = 3.6 + 0.001 * np.cumsum(cur)
        parts.append(pl.DataFrame({"cell_id": [cell] * 200,
                                   "ts": 1.7e9 + k * 0.25 + np.arange(200, dtype=np.float64),
                                   "voltage_v": volt, "current_a": cur,
                                   "temperature_c": np.full(200, 25.0)}))
    return pl.concat(parts).sort("ts")


@pytest.mark.parametrize("codes_path", [False, True])
def test_summarize_does_not_depend_on_the_id_layout(codes_path: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if codes_path:  # every batch maps ids to slots from validation's codes
        monkeypatch.setattr(core, "_CODES_MIN_ROWS", 1)
    cells = ["x" * 12, "x" * 13, "\u00e9" * 6, "\u00e9" * 6 + "x", "a long cell identifier",
             "a long cell identifieR", "b long cell identifier", "abcd", "abce", " a"]
    frame = _telemetry(cells, seed=1)
    cfg = EngineConfig(default_epsilon_a=0.002)
    fresh = frame.with_columns(pl.Series("cell_id", [str(x) + "" for x in
                                                     frame.get_column("cell_id").to_list()]))
    n = frame.height
    a, b = n // 3, 2 * n // 3
    chunked = pl.concat([frame.slice(0, a), frame.slice(a, b - a), frame.slice(b)], rechunk=False)
    assert chunked.equals(frame)
    sliced = pl.concat([frame.head(5), frame]).slice(5)  # one chunk, views at an offset
    copies = pl.concat([frame.head(n // 2), frame.tail(n - n // 2)], rechunk=True)
    arrow = frame.with_columns(pl.from_arrow(
        pa.array(frame.get_column("cell_id").to_list(), type=pa.string_view())).alias("cell_id"))
    want = summarize(fresh, cfg)
    assert want.cycles.height >= len(cells) and want.rejected.height == 0
    for variant in (frame, frame.rechunk(), chunked, chunked.rechunk(), sliced, copies, arrow):
        got = summarize(variant, cfg)
        assert_frame_equal(got.steps, want.steps, check_exact=True)
        assert_frame_equal(got.cycles, want.cycles, check_exact=True)
        assert_frame_equal(got.rejected, want.rejected, check_exact=True)


@settings(max_examples=60, deadline=None)
@given(id_columns(), st.booleans())
def test_validate_codes_map_back_on_every_layout(series: pl.Series, codes_only: bool) -> None:
    """validate's codes name each good row's id, on any layout of the id column."""
    n = len(series)
    frame = pl.DataFrame({"cell_id": series, "ts": 1.7e9 + np.arange(n, dtype=np.float64),
                          "voltage_v": np.full(n, 3.7), "current_a": np.ones(n)})
    got = schema.validate(frame)
    if got.ids is not None:
        assert got.ids.distinct.gather(got.ids.codes).equals(got.good.get_column("cell_id"),
                                                            check_names=False)
        assert got.ids.distinct.n_unique() == got.ids.distinct.len()



@pytest.mark.parametrize("op", [
    lambda s: s.str.slice(0, 8), lambda s: s.str.slice(-8), lambda s: s.str.slice(1, 13),
    lambda s: s.str.head(12), lambda s: s.str.tail(12), lambda s: s.str.split(" ").list.last(),
    lambda s: s.str.strip_prefix("a long cell identifier "), lambda s: s.str.extract(r"(\d+-t)"),
    lambda s: (s + "  ").str.strip_chars_end(), lambda s: s.str.replace("a long cell ", ""),
])
def test_ids_cut_from_long_ones_are_exact(op) -> None:  # noqa: ANN001
    """Short ids made by string operations on long ones (which could point into the long
    ids' bytes instead of being inline) are inline views, and their codes exact."""
    base = pl.Series("cell_id", [f"a long cell identifier {k:03d}-tail" for k in range(50)] * 20)
    series = op(base)
    with string_views(series) as views:
        assert views is not None
        raw = views.copy()
    for (w0, w1), v in zip(raw.tolist(), series.to_list(), strict=True):
        b = v.encode()
        if len(b) <= 12:
            assert ((w0 >> 32).to_bytes(4, "little") + w1.to_bytes(8, "little"))[:len(b)] == b
    assert_exact(series)


def _relaid(frame: pl.DataFrame, how: str, cut: int) -> pl.DataFrame:
    """``frame`` with the same rows, its id column laid out in another way."""
    ids = frame.get_column("cell_id")
    n = frame.height
    if how == "chunks":
        return pl.concat([frame.slice(0, cut), frame.slice(cut)], rechunk=False)
    if how == "copies":  # equal long ids in two data buffers
        return pl.concat([frame.slice(0, cut), frame.slice(cut)], rechunk=True)
    if how == "offset":
        return pl.concat([frame.slice(n - cut), frame], rechunk=True).slice(cut)
    if how == "categorical":
        col = ids.cast(pl.Categorical).cast(pl.String)
    elif how == "arrow-view":
        col = pl.from_arrow(pa.array(ids.to_list(), type=pa.string_view()))
    else:  # arrow-large
        col = pl.from_arrow(pa.array(ids.to_list(), type=pa.large_string()))
    assert isinstance(col, pl.Series)
    return frame.with_columns(col.alias("cell_id"))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(EDGE_IDS), min_size=1, max_size=6, unique=True),
       st.sampled_from(["chunks", "copies", "offset", "categorical", "arrow-view", "arrow-large"]),
       st.integers(1, 199), st.booleans())
def test_summarize_on_random_id_layouts(cells: list[str], how: str, cut: int,
                                        codes_path: bool) -> None:
    """summarize on a relaid id column (and on it rechunked) equals summarize on the same
    frame with its ids made again as fresh Python strings; bad ids (empty, blank) are
    dead letters alike."""
    frame = _telemetry(cells, seed=len(cells))
    fresh = frame.with_columns(pl.Series("cell_id", list(frame.get_column("cell_id").to_list())))
    variant = _relaid(frame, how, cut)
    assert variant.equals(frame)
    cfg = EngineConfig(default_epsilon_a=0.002)
    old = core._CODES_MIN_ROWS
    core._CODES_MIN_ROWS = 1 if codes_path else old
    try:
        want = summarize(fresh, cfg)
        for got in (summarize(variant, cfg), summarize(variant.rechunk(), cfg)):
            assert_frame_equal(got.steps, want.steps, check_exact=True)
            assert_frame_equal(got.cycles, want.cycles, check_exact=True)
            assert_frame_equal(got.rejected, want.rejected, check_exact=True)
    finally:
        core._CODES_MIN_ROWS = old


def _export_of(views: np.ndarray) -> object:
    base = views
    while not hasattr(base, "_export"):
        base = base.obj if isinstance(base, memoryview) else base.base
    return base._export


def test_an_escaped_view_keeps_its_export_alive() -> None:
    """A view kept past the with block, its Series gone, still reads the ids' views (the
    export is released with the last view, not at the block's end: before, this read
    freed memory)."""
    import weakref

    def make() -> pl.Series:
        return pl.Series("cell_id", [f"c{k:08d}" for k in range(200_000)])

    with string_views(make()) as views:
        assert views is not None
        kept = views[5:]
        want = views.copy()
    gc.collect()
    junk = [pl.Series([f"z{k:09d}" for k in range(200_000)]) for _ in range(5)]
    assert np.array_equal(kept, want[5:]) and len(junk) == 5
    ref = weakref.ref(_export_of(kept))
    del views, kept
    assert ref() is None  # released as soon as the last view is gone


def test_the_export_is_released_on_leaving_the_block() -> None:
    import weakref

    s = pl.Series("cell_id", ["a", "b" * 20, "a"])
    with string_views(s) as views:
        assert views is not None
        ref = weakref.ref(_export_of(views))
        assert ref() is not None
        codes = _view_codes(views)
    del views
    assert ref() is None and codes is not None
