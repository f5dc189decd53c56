"""The fused fast path of a chunk (readers/fused.py) against the exact path.

The fused pass is a detector: on a clean chunk it must give the rows the exact path gives,
value for value; on anything else it must step aside, so the exact path names the bad rows.
Also: blocks cut at newlines without a copy (readers/blocks.py), the Maccor sign kernel, the
layout-by-layout date parse and the faster format detection give what they replaced.
"""

from __future__ import annotations

import io
import math
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chargetracker.readers import fused, open_reader
from chargetracker.readers.blocks import read_blocks
from chargetracker.readers.detect import _keys, _may_be_maccor_or_pec
from chargetracker.readers.fields import _AWARE_FORMATS, _NAIVE_FORMATS, _layout, datetime_to_epoch
from chargetracker.readers.fused import clean_rows
from chargetracker.schema import MEASUREMENT_SCHEMA, Limits, validate

DATA = Path(__file__).resolve().parents[1] / "data"
_REPO = Path(__file__).resolve().parents[2]
SHARED = next((p for p in (_REPO.parent / "shared" / "data" / "cycler-more",
                           _REPO.parent.parent / "shared" / "data" / "cycler-more") if p.is_dir()),
              None)

TEXT_FILES = [
    "arbin_example.csv", "2017-05-09_test-TC-contact_CH33.csv", "maccor_example.001",
    "maccor_mims_head.txt", "maccor_testtime_head.txt", "neware_3level_head.csv",
    "neware_flat_excerpt.csv", "novonix_head.csv", "pec_head.csv",
    "CALCE_CX2-33_prism_LCO_25C_0-100_0.5-0.5C_d_timeseries.csv",
]
SHARED_FILES = ["xTESLADIAG_000038.078", "neware_uio.csv", "gcpl.issue_211.mpt",
                "gcpl.pr_182.1.mpt", "pec.csv", "maccor_002.txt", "maccor_001.txt",
                "PredictionDiagnostics_000109_tztest.010",
                "20160805_test001_45_cc_01.Channel_Normal_Table.csv",
                "nw_regular_export_ife_example.csv", "test_Nova_Form-CH01-01_short.csv"]
#: Binary files: decoded into one table, then converted chunk by chunk like text.
BINARY_FILES = ["test.nda", "test.ndax", "00_test_04_MB_C01.mpr"]


def _read(path: Path, enabled: bool, **kw: object) -> tuple[pl.DataFrame, pl.DataFrame]:
    old = fused.ENABLED
    fused.ENABLED = enabled
    try:
        return open_reader(path, keep_reference=True, **kw).read_all()  # type: ignore[arg-type]
    finally:
        fused.ENABLED = old


def _same(path: Path, **kw: object) -> None:
    fast, fast_bad = _read(path, True, **kw)
    exact, exact_bad = _read(path, False, **kw)
    assert fast.height > 0
    assert_frame_equal(fast, exact)
    assert_frame_equal(fast_bad, exact_bad)


def _fused_taken(path: Path) -> bool:
    """Whether the first block of ``path`` is parsed typed and converted by the fused pass
    (so that the equality above is not just the exact path twice)."""
    from chargetracker.readers.blocks import read_blocks as blocks
    from chargetracker.readers.source import open_text, skip

    reader = open_reader(path, keep_reference=True)
    with open_text(reader.path, reader.sniff) as fh:
        skip(fh, reader._data_offset)  # type: ignore[attr-defined]
        block = reader._transform_block(next(blocks(fh, 1 << 24)))  # type: ignore[attr-defined]
    raw = reader._parse_block_typed(block)  # type: ignore[attr-defined]
    return raw is not None and fused.fused_chunk(reader, raw) is not None  # type: ignore[arg-type]


#: Files whose first block is not parsed typed, so the exact path reads it: 3-level Neware
#: (three row layouts in one column set), Maccor MIMS (a blank line after the header).
NOT_FUSED = {"neware_3level_head.csv", "nw_regular_export_ife_example.csv", "maccor_mims_head.txt",
             "maccor_002.txt"}


@pytest.mark.parametrize("name", TEXT_FILES)
def test_fused_equals_exact_on_test_files(name: str) -> None:
    assert (DATA / name).is_file(), f"{name} is listed but not in tests/data"
    _same(DATA / name, chunk_rows=700)  # small chunks: several of them, each decided alone
    assert _fused_taken(DATA / name) == (name not in NOT_FUSED)


@pytest.mark.parametrize("name", SHARED_FILES)
def test_fused_equals_exact_on_real_files(name: str) -> None:
    if SHARED is None or not (SHARED / name).is_file():
        pytest.skip("../shared/data/cycler-more is absent")
    _same(SHARED / name)
    assert _fused_taken(SHARED / name) == (name not in NOT_FUSED)


@pytest.mark.parametrize("name", BINARY_FILES)
def test_fused_equals_exact_on_binary_files(name: str) -> None:
    assert (DATA / name).is_file(), f"{name} is listed but not in tests/data"
    _same(DATA / name, chunk_rows=500)


def test_fused_equals_exact_on_a_res_file() -> None:
    res = SHARED / "20160805_test001_45_cc_01.res" if SHARED is not None else None
    if res is None or not res.is_file():
        pytest.skip("../shared/data/cycler-more is absent")
    _same(res)


def test_a_chunk_with_one_bad_row_takes_the_exact_path(tmp_path: Path) -> None:
    src = (DATA / "arbin_example.csv").read_text().splitlines()
    head = src[0].split(",")
    volt = next(i for i, c in enumerate(head) if c.strip().lower().startswith("voltage"))
    row = src[5].split(",")
    row[volt] = "nan"
    lines = src[:5] + [",".join(row)] + src[6:]
    p = tmp_path / "run.csv"
    p.write_text("\n".join(lines) + "\n")
    frame, bad = _read(p, True)
    exact, exact_bad = _read(p, False)
    assert_frame_equal(frame, exact)
    assert_frame_equal(bad, exact_bad)
    assert bad.height == 1 and bad["row"][0] == 6 and bad["reason"][0] == "NaN"


# -- the validation kernel refuses every row schema.validate refuses ---------------------
def _frame(**cols: list[object]) -> pl.DataFrame:
    n = len(next(iter(cols.values())))
    base: dict[str, list[object]] = {"cell_id": ["c"] * n, "ts": [1.7e9] * n,
                                     "voltage_v": [3.7] * n, "current_a": [1.0] * n}
    base.update(cols)
    schema = {k: v for k, v in MEASUREMENT_SCHEMA.items() if k in base}
    return pl.DataFrame(base, schema=schema)


def _edge_values(lo: float, hi: float) -> list[float | None]:
    eps = max(abs(lo), abs(hi), 1.0) * 1e-12
    return [lo, hi, lo - eps, hi + eps, math.nan, math.inf, -math.inf, None,
            (lo + hi) / 2, 0.0, -0.0]


@pytest.mark.parametrize("column", ["ts", "voltage_v", "current_a", "temperature_c",
                                    "step_time_s"])
def test_clean_rows_agrees_with_validate(column: str) -> None:
    lim = Limits()
    lo, hi = getattr(lim, column) if column != "step_time_s" else (0.0, 1e9)
    for v in _edge_values(lo, hi):
        frame = _frame(**{column: [v]})
        if v is None and column in ("ts", "voltage_v", "current_a"):
            continue  # a null required value: the fused pass steps aside before the kernel
        ok, nan_t = clean_rows(frame, True)
        refused = validate(frame).rejected.height
        assert ok == (refused == 0), (column, v)
        if ok and column == "temperature_c":
            assert nan_t == (1 if v is not None and math.isnan(v) else 0)


def test_clean_rows_on_random_rows_agrees_with_validate() -> None:
    rng = np.random.default_rng(7)
    picks = [1.0, -1.0, 0.0, math.nan, math.inf, -1e6, 1e6, 3.0, 400.0, -90.0, 25.0, None]
    rows = 400
    cols = {c: [picks[int(rng.integers(len(picks)))] for _ in range(rows)]
            for c in ("voltage_v", "current_a", "temperature_c", "step_time_s")}
    cols["voltage_v"] = [3.7 if v is None else v for v in cols["voltage_v"]]
    cols["current_a"] = [1.0 if v is None else v for v in cols["current_a"]]
    frame = _frame(**cols)
    for r in range(rows):
        one = frame.slice(r, 1)
        assert clean_rows(one, True)[0] == (validate(one).rejected.height == 0), one.row(0)


# -- blocks --------------------------------------------------------------------------------
class _Stream(io.RawIOBase):
    """A non-seekable stream (a decompressor, a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._b = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        return self._b.readinto(b)


@pytest.mark.parametrize("size", [1 << 16, 70_000, 1 << 17])
def test_blocks_cut_at_newlines_on_files_and_streams(tmp_path: Path, size: int) -> None:
    rnd = random.Random(size)
    lines = [b"x" * rnd.randrange(0, 300) for _ in range(3000)]
    lines[100] = b"y" * 150_000  # a line longer than a block
    data = b"\n".join(lines) + b"\nlast line without newline"
    p = tmp_path / "f.txt"
    p.write_bytes(data)
    with p.open("rb") as fh:
        fh.seek(7)
        from_file = list(read_blocks(fh, size))
    from_stream = list(read_blocks(io.BufferedReader(_Stream(data[7:])), size))
    for blocks in (from_file, from_stream):
        assert b"".join(blocks) == data[7:]
        assert all(b.endswith(b"\n") for b in blocks[:-1])
        assert len(blocks) > 3


# -- Maccor sign from State -----------------------------------------------------------------
def test_maccor_sign_by_state() -> None:
    from chargetracker.readers.maccor import MaccorReader

    reader = MaccorReader.__new__(MaccorReader)
    reader._origin = 100.0
    reader._state_source = "State"
    states = ["C", "c", "D", "d", "R", "r", "O", "O", None, "CC", "D"]
    amps = [-2.0, 2.0, 2.0, -2.0, -0.5, 0.5, 0.0, 3.0, 1.0, 1.0, None]
    parsed = pl.DataFrame({"__test_time": [float(i) for i in range(len(states))],
                           "__amps": amps, "__state": states},
                          schema={"__test_time": pl.Float64, "__amps": pl.Float64,
                                  "__state": pl.Utf8})
    out = reader._finish(parsed)
    assert out["ts"].to_list() == [100.0 + i for i in range(len(states))]
    assert out["current_a"].to_list() == [2.0, 2.0, -2.0, -2.0, -0.5, 0.5, 0.0, None, None,
                                          None, None]
    rejected = out["__reject_field"].to_list()
    assert rejected == [None] * 7 + ["State", None, "State", None]
    assert out["__reject_reason"][7] == ("unknown State 'O' with non-zero current: cannot tell "
                                         "charge from discharge")


# -- dates, layout by layout ------------------------------------------------------------------
def test_dates_layout_by_layout_equal_the_coalesce_of_every_layout() -> None:
    values = ["2024-05-01 12:00:00", "05/01/2024 01:02:03 PM", "2024-05-01T12:00:00.25",
              "2024/05/01 12:00:00", "2024-05-01 12:00", "2024-05-01T12:00:00+02:00",
              "2024-05-01 12:00:00Z", " 05/01/2024 13:00 ", "1714564800", "not a date", None,
              "2024-05-01 12:00:00.5+0100"]
    frame = pl.DataFrame({"t": values}, schema={"t": pl.Utf8})
    for tz in ("UTC", "Europe/Berlin"):
        got = frame.select(datetime_to_epoch(pl.col("t"), timezone=tz)).to_series()
        s = pl.col("t").str.strip_chars().str.replace(r"Z$", "+00:00")
        want = frame.select(pl.coalesce(
            [_layout(s, f, tz) for f in (*_NAIVE_FORMATS, *_AWARE_FORMATS)])).to_series()
        assert got.to_list() == want.to_list()
        assert got.null_count() == 3  # the number, the word, the null
    one = pl.DataFrame({"t": ["2024-05-01 12:00:00"] * 3})
    assert one.select(datetime_to_epoch(pl.col("t"))).to_series().to_list() == [1714564800.0] * 3


# -- detection ---------------------------------------------------------------------------------
def test_detection_prefilter_never_hides_a_maccor_or_pec_header() -> None:
    for line in ["Rec#\tCyc#\tStep\tTest (Sec)\tAmps\tVolts\tState", "Cur rent;Volt age;M D",
                 "Total Time,Current (mA),Voltage (mV),Step,Cycle,Real Time",
                 '"Amps","Voltage","Md"', "Test_Time,Current,Voltage,Data_Point"]:
        k = _keys(line)
        maccor = ({"amps", "volts"} <= k or {"amps", "voltage"} <= k or
                  {"current", "voltage"} <= k) and ("state" in k or "md" in k)
        pec = {"totaltime", "current", "voltage", "step", "cycle"} <= k and "realtime" in k
        if maccor or pec:
            assert _may_be_maccor_or_pec(line), line


# -- generic: a cell_id column, epoch ms and s, blanks in optional columns, Parquet -------------
def _generic_frame(n: int, ms: bool) -> pl.DataFrame:
    rng = np.random.default_rng(3)
    ts = 1.7e9 + np.arange(n) * 0.5
    temp: list[float | None] = list(25.0 + rng.normal(0, 1, n))
    temp[5] = None
    return pl.DataFrame({
        "cell_id": [f"cell-{i % 3}" for i in range(n)],
        "ts": ts * 1000.0 if ms else ts,
        "voltage_v": 3.6 + 0.1 * np.sin(ts / 900), "current_a": np.where(np.arange(n) % 40 < 20, 1.5, -1.5),
        "temperature_c": temp, "cycle": (np.arange(n) // 40).astype(np.int64),
        "step_time_s": (np.arange(n) % 20) * 0.5,
    })


@pytest.mark.parametrize("ms", [False, True])
def test_fused_equals_exact_on_generic_text_and_parquet(tmp_path: Path, ms: bool) -> None:
    frame = _generic_frame(3000, ms)
    csv, pq = tmp_path / "g.csv", tmp_path / "g.parquet"
    frame.write_csv(csv)
    frame.write_parquet(pq)
    for p in (csv, pq):
        _same(p, chunk_rows=1000)
        fast, _ = _read(p, True)
        assert fast["cell_id"].n_unique() == 3 and fast["temperature_c"].null_count() == 1
    assert _fused_taken(csv)


def test_generic_blank_cell_id_takes_the_exact_path(tmp_path: Path) -> None:
    frame = _generic_frame(50, False).with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(pl.lit(" ")).otherwise(pl.col("cell_id"))
        .alias("cell_id"))
    p = tmp_path / "g.csv"
    frame.write_csv(p)
    fast, bad = _read(p, True)
    exact, exact_bad = _read(p, False)
    assert_frame_equal(fast, exact)
    assert_frame_equal(bad, exact_bad)
    assert fast.height == 49 and bad.height == 1 and bad["field"][0] == "cell_id"


@pytest.mark.parametrize("values", [["12.5", "00:01:00", None, "x", "1d 00:00:01", "3"],
                                    ["12.5", "7", None, "0.25"]])
def test_number_or_duration_is_the_coalesce_of_both(values: list[str | None]) -> None:
    from chargetracker.readers.durations import parse_durations
    from chargetracker.readers.fields import _number_or_duration

    text = pl.Series("t", values, dtype=pl.Utf8)
    frame = text.to_frame()
    want = frame.select(pl.coalesce(pl.col("t").cast(pl.Float64, strict=False) * 60.0,
                                    parse_durations(pl.col("t")))).to_series()
    assert _number_or_duration(text, 60.0).to_list() == want.to_list()
