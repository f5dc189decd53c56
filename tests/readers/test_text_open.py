"""Opening a text export cheaply (issue 14) gives the calibration of the full text probe.

The reader calibrates from a typed parse of its probe and, where the format allows, from
the probe's first rows only; these tests open every real text file of ``tests/data`` both
that way and the reference way (the probe parsed as text, every row converted) and compare
the time origin, the metadata and the field plan exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from chargetracker.readers import open_reader
from chargetracker.readers.text import TextReader, _first_lines

DATA = Path(__file__).resolve().parents[1] / "data"
TEXT_FILES = ["arbin_example.csv", "2017-05-09_test-TC-contact_CH33.csv", "maccor_example.001",
              "maccor_mims_head.txt", "maccor_testtime_head.txt", "neware_3level_head.csv",
              "neware_flat_excerpt.csv", "novonix_head.csv", "pec_head.csv",
              "CALCE_CX2-33_prism_LCO_25C_0-100_0.5-0.5C_d_timeseries.csv"]


@pytest.mark.parametrize("data", [b"", b"x", b"a\nb", b"a\nb\n", b"\n\n\n", b"1,2\n3,4\n5,6"])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 1000])
def test_first_lines_equals_split_and_join(data: bytes, n: int) -> None:
    assert _first_lines(data, n) == b"\n".join(data.split(b"\n")[:n])


def _reference_open(path: Path, **kw: Any) -> TextReader:
    """The reader opened the way it was before issue 14: the probe as text, all rows."""
    reader = open_reader(path, **kw)
    cls = type(reader)

    class Reference(cls):  # type: ignore[misc, valid-type]
        calibration_head_rows = 0

        def _parse_probe(self, block: bytes) -> pl.DataFrame:
            return self._parse_block(block)

    Reference.format = cls.format
    ref = Reference(path, **kw)
    assert isinstance(ref, TextReader)
    return ref


@pytest.mark.parametrize("name", TEXT_FILES)
@pytest.mark.parametrize("kw", [{}, {"timezone": "Europe/Berlin"}, {"start_time": 1.7e9}])
def test_open_calibrates_as_the_text_probe(name: str, kw: dict[str, Any]) -> None:
    path = DATA / name
    fast = open_reader(path, **kw)
    assert isinstance(fast, TextReader)
    ref = _reference_open(path, **kw)
    assert repr(fast._origin) == repr(ref._origin)  # bit-identical, not approximately
    assert fast.metadata == ref.metadata
    assert fast.fields == ref.fields
    # The first data block starts from the layout the first data line asks for.
    with path.open("rb") as fh:
        fh.seek(ref._data_offset)
        first = ref._transform_block(fh.read(1 << 16))
    assert fast._typed_attempt == ref._data_layout(first, ref._typed_attempt)


@pytest.mark.parametrize("name", TEXT_FILES)
def test_the_first_layout_only_changes_the_speed(name: str) -> None:
    """Whichever typed layout the first block is tried with, a read gives the same chunks
    and dead letters (so :meth:`TextReader._data_layout` may pick it from the first line)."""
    want = None
    for k in (0, 1, 2):
        reader = open_reader(DATA / name, chunk_rows=500)
        reader._typed_attempt = k  # type: ignore[attr-defined]
        chunks = [(c.frame, c.rejected) for c in reader]
        if want is None:
            want = chunks
            continue
        assert len(chunks) == len(want)
        for (f, r), (wf, wr) in zip(chunks, want, strict=True):
            assert f.equals(wf, null_equal=True) and r.equals(wr, null_equal=True)


@pytest.mark.parametrize("blank", [10, 60, 1500])
def test_origin_found_after_the_head(tmp_path: Path, blank: int) -> None:
    """Date/time missing on the first ``blank`` rows: the origin comes from the first row
    having it, past the converted head (60) or past the probe (1500: none, relative)."""
    lines = (DATA / "arbin_example.csv").read_text().splitlines()
    rows = [ln.split(",") for ln in lines[1:]]
    for row in rows[:blank]:
        row[2] = ""
    path = tmp_path / "late_clock.csv"
    path.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    fast, ref = open_reader(path), _reference_open(path)
    assert repr(fast._origin) == repr(ref._origin)
    assert fast.metadata == ref.metadata
    first = rows[blank] if blank < 1000 else None
    expected = float(first[2]) - float(first[1]) if first else 0.0
    assert fast._origin == pytest.approx(expected, abs=1e-6)
