"""Duration text -> seconds (readers/durations.py), hand-derived."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from chargetracker.readers.durations import parse_durations

CASES: list[tuple[str | None, float | None]] = [
    ("00:00:00", 0.0),
    ("01:02:03", 3723.0),
    ("123:04:05", 123 * 3600 + 4 * 60 + 5.0),   # Neware: hours beyond 24
    ("0d 00:00:5", 5.0),                         # Maccor: one-digit seconds
    ("1d 02:03:04", 86400 + 7384.0),
    ("1d02:03:04", 86400 + 7384.0),
    ("1-02:03:04", 86400 + 7384.0),              # BTS day separator
    ("2 01:00:00", 2 * 86400 + 3600.0),
    ("00:01:02.5", 62.5),
    ("00:00:01.123", 1.123),
    (" 02:00:00\r", 7200.0),
    ("1:2:3", 3723.0),
    # not durations
    ("", None), ("x", None), (None, None), ("01:02", None), ("01:002:03", None),
    ("01:02:03:04", None), ("-1:00:00", None), ("+1:00:00", None), ("01:02:3.4.5", None),
    ("01 :02:03", None), ("1e3:00:00", None), ("01:02:03 x", None), ("d01:02:03", None),
]


def test_hand_derived_cases() -> None:
    text = pl.Series("t", [c for c, _ in CASES], dtype=pl.Utf8)
    got = pl.DataFrame(text).select(parse_durations(pl.col("t"))).to_series().to_list()
    assert got == [w for _, w in CASES]


@pytest.mark.parametrize("frac", ["5", "25", "125", "001", "999999", "123456789"])
def test_fractions_are_the_double_a_number_parse_gives(frac: str) -> None:
    """S.fff gives exactly float("S.fff") (one rounding), so durations and numeric
    time columns agree bit for bit."""
    got = pl.DataFrame({"t": [f"00:00:17.{frac}"]}).select(parse_durations(pl.col("t"))).item()
    assert got == float(f"17.{frac}")


def test_a_long_column_in_slices_and_with_nulls() -> None:
    secs = np.arange(0, 500_000, 7)
    text = [f"{s // 3600:02d}:{(s // 60) % 60:02d}:{s % 60:02d}" for s in secs.tolist()]
    text[3] = None  # type: ignore[call-overload]
    frame = pl.DataFrame({"t": text}).slice(1)  # a sliced column: Arrow offset != 0
    got = frame.select(parse_durations(pl.col("t"))).to_series()
    assert got.null_count() == 1
    assert got.fill_null(-1.0).to_numpy()[3:].tolist() == secs[4:].astype(float).tolist()


def test_the_inline_clock_path_gives_the_general_parse_bit_for_bit() -> None:
    """The usual ``H:MM:SS[.fff]`` is read in the loop of ``_parse_flags`` with integer
    arithmetic; ``_one`` (the general parse) must give the same double, or NaN, for every
    text: random clock-like text, near misses and long digit runs included."""
    from chargetracker.readers.durations import _one, _parse_flags, string_buffers

    rng = np.random.default_rng(14)
    parts = ["0", "00", "7", "59", "123", "9" * 15, "1" * 16, "12345678901234", ""]
    seps = [":", ":", ":", ".", " ", "d ", "-", "\r", "x"]
    text: list[str] = []
    for _ in range(20_000):
        n = int(rng.integers(1, 8))
        text.append("".join(str(rng.choice(parts)) + (str(rng.choice(seps)) if k < n - 1 else "")
                            for k in range(n)))
    for _ in range(5_000):  # the usual form with fractions of every length
        h, m, s = (int(x) for x in rng.integers(0, [10**int(rng.integers(1, 16)), 100, 100]))
        frac = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(0, 16))))
        text.append(f"{h}:{m:0{int(rng.integers(1, 3))}d}:{s:02d}" + (f".{frac}" if frac or
                                                                        rng.random() < 0.2 else ""))
    chars = list("0123456789::: .d-x")
    for _ in range(20_000):  # eight characters: the fixed-place "HH:MM:SS" path and near misses
        t = list(rng.choice(chars, 8))
        if rng.random() < 0.7:
            t[2] = t[5] = ":"
        text.append("".join(t))
    offsets, data, valid = string_buffers(pl.Series("t", text))
    starts, ends = offsets[:-1], offsets[1:]
    out = np.empty(len(text))
    ok = np.empty(len(text), dtype=np.bool_)
    _parse_flags(starts, ends, data, valid, out, ok)
    want = np.array([_one(data, offsets[r], offsets[r + 1]) if offsets[r + 1] > offsets[r]
                     else np.nan for r in range(len(text))])
    assert np.isnan(out).sum() < len(text) * 0.9  # the random text holds durations too
    np.testing.assert_array_equal(out.view(np.int64)[~np.isnan(want)],
                                  want.view(np.int64)[~np.isnan(want)])
    assert np.array_equal(np.isnan(out), np.isnan(want))
    assert np.array_equal(ok, ~np.isnan(want))


def test_short_text_read_in_place_gives_the_copied_text() -> None:
    """string_spans reads text of at most 12 bytes from Polars' string views in place; the
    spans must hold exactly the values (and nulls) of the copied offsets-and-bytes form, for
    sliced columns and columns of several chunks too."""
    from chargetracker.readers.durations import string_buffers, string_spans

    short = pl.Series("t", ["C", "", None, "00:01:00", "123456789012", "R"] * 50)
    chunked = pl.concat([short, short.slice(7, 40)], rechunk=False)
    for s in (short, short.slice(5, 200), chunked, pl.Series("t", ["x" * 13, "C", None])):
        starts, ends, data, valid = string_spans(s)
        offsets, data2, valid2 = string_buffers(s)
        assert valid.tolist() == valid2.tolist() == s.is_not_null().to_list()
        got = [bytes(data[a:b]) if v else None for a, b, v in zip(starts, ends, valid, strict=True)]
        want = [bytes(data2[a:b]) if v else None
                for a, b, v in zip(offsets[:-1], offsets[1:], valid2, strict=True)]
        assert got == want == [None if x is None else x.encode() for x in s.to_list()]
