"""Chunked reading, progress, dead letters with line numbers and schema errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chargetracker.errors import ChargeTrackerError, SchemaError
from chargetracker.readers import GenericOptions, open_reader, read_file
from chargetracker.schema import DEAD_LETTER_SCHEMA

from .test_readers_formats import ARBIN, BATTERYDATA_SYNTH, CALCE, MACCOR, MACCOR_SYNTH


def _files(tmp_path: Path) -> list[Path]:
    bd = tmp_path / "bd.csv"
    bd.write_text(BATTERYDATA_SYNTH)
    mac = tmp_path / "synthetic.001"
    mac.write_bytes(MACCOR_SYNTH.encode())
    gen = tmp_path / "gen.csv"
    gen.write_text("cell_id,ts,voltage_v,current_a\n" + "".join(
        f"c{i % 3},{1.7e9 + i},{3.5 + i / 1000},{(-1) ** i}\n" for i in range(50)))
    return [ARBIN, MACCOR, CALCE, bd, mac, gen]


@pytest.mark.parametrize("chunk_rows", [1, 7, 97, 1000])
def test_chunked_equals_one_chunk(tmp_path: Path, chunk_rows: int) -> None:
    for path in _files(tmp_path):
        if path == ARBIN and chunk_rows < 50:
            continue  # 2,142 rows one by one only costs time; the small files cover it
        whole = open_reader(path, keep_reference=True, chunk_rows=10_000_000)
        frame_all, rej_all = whole.read_all()
        reader = open_reader(path, keep_reference=True, chunk_rows=chunk_rows)
        progress = []
        chunks = []
        for chunk in reader:
            # Memory is bounded by the chunk size: never more rows than chunk_rows.
            assert chunk.frame.height + chunk.rejected.height <= chunk_rows
            chunks.append(chunk)
            progress.append(reader.bytes_read)
        assert progress == sorted(progress) and progress[-1] == reader.total_bytes
        assert reader.total_bytes == path.stat().st_size
        assert_frame_equal(pl.concat([c.frame for c in chunks]), frame_all)
        assert_frame_equal(pl.concat([c.rejected for c in chunks]), rej_all)
        assert reader.rows_read == frame_all.height


def test_arbin_chunk_count() -> None:
    reader = open_reader(ARBIN, chunk_rows=500)
    heights = [c.frame.height for c in reader]
    # Memory is bounded by the chunk size: no chunk holds more than chunk_rows rows.
    assert max(heights) <= 500 and sum(heights) == 2142 and len(heights) >= 5


def _corrupt_arbin(tmp_path: Path, crlf: bool = False) -> Path:
    lines = ARBIN.read_text().splitlines()
    header = lines[0].split(",")
    vi, ci, ti, si = (header.index(c) for c in ("Voltage", "Current", "Test_Time", "Step_Index"))

    def edit(line_no: int, col: int, value: str) -> None:
        cells = lines[line_no - 1].split(",")
        cells[col] = value
        lines[line_no - 1] = ",".join(cells)

    edit(5, vi, "abc")      # not a number
    edit(10, ci, "NaN")     # NaN in a required column
    edit(20, ti, "")        # missing required field
    edit(30, vi, "inf")     # infinite
    edit(40, si, "1.5")     # a step label that is not an integer
    edit(50, vi, "250000")  # implausible voltage
    lines[59] = "61,300.1,1499006653"  # truncated line (ragged)
    lines.insert(100, "")   # a blank line: no data, not a dead letter; later lines shift by 1
    path = tmp_path / "bad_arbin.csv"
    path.write_text(("\r\n" if crlf else "\n").join(lines) + "\n")
    return path


@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("chunk_rows", [13, 250_000])
def test_bad_rows_become_dead_letters_with_line_numbers(
    tmp_path: Path, chunk_rows: int, crlf: bool
) -> None:
    path = _corrupt_arbin(tmp_path, crlf)
    frame, rejected, _ = read_file(path, chunk_rows=chunk_rows)
    assert rejected.schema == DEAD_LETTER_SCHEMA
    assert frame.height == 2142 - 7  # the good rows next to the bad ones are kept
    got = [(r["row"], r["field"], r["reason"]) for r in rejected.iter_rows(named=True)]
    assert got[0] == (5, "Voltage", "not a number: 'abc'")
    assert got[1] == (10, "Current", "NaN")
    assert got[2] == (20, "Test_Time", "missing value")
    assert got[3] == (30, "Voltage", "infinite value")
    assert got[4] == (40, "Step_Index", "not an integer: '1.5'")
    assert got[5][:2] == (50, "Voltage") and "outside plausible range" in got[5][2]
    assert got[6] == (60, "Current", "missing value")
    assert len(got) == 7
    assert set(rejected["source"]) == {str(path)}
    assert set(rejected["cell_id"]) == {"bad_arbin"}
    payload = json.loads(rejected["payload"][0])
    assert payload["Voltage"] == "abc" and payload["Data_Point"] == "4"
    # Validation-stage rejects carry ts; parse-stage ones cannot.
    assert rejected["ts"][1] is not None and rejected["ts"][0] is None
    # Line numbers after the blank line still match the file.
    lines = path.read_text().splitlines()
    dp = frame.filter(pl.col("ts") == frame["ts"].max())
    assert dp.height == 1 and lines[-1].split(",")[0] == "2142"


def test_blank_lines_at_block_start_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_text("ts,voltage_v,current_a\n\n\n1.7e9,3.7,1\n1.7e9,x,1\n\n1.7e9,3.8,1\n")
    for chunk_rows in (1, 2, 100):
        frame, rejected, _ = read_file(path, chunk_rows=chunk_rows)
        assert frame["voltage_v"].to_list() == [3.7, 3.8]
        assert rejected["row"].to_list() == [5]
        assert rejected["field"].to_list() == ["voltage_v"]


def test_quoted_fields_and_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_text('"ts","voltage_v","current_a","note"\n"1.7e9","3.7","1","a, b"\n'
                    '1.7e9,3.7,1,x,surplus\n')
    frame, rejected, _ = read_file(path)
    assert frame.height == 2 and rejected.height == 0


def test_missing_column_is_a_schema_error_naming_it(tmp_path: Path) -> None:
    lines = ARBIN.read_text().splitlines()[:5]
    path = tmp_path / "novolt.csv"
    path.write_text("\n".join(line.replace("Voltage", "Potential") for line in lines) + "\n")
    with pytest.raises(SchemaError, match="'Voltage'") as err:
        open_reader(path, format="arbin")
    assert err.value.field == "Voltage"

    mac = tmp_path / "m.001"
    mac.write_bytes(MACCOR.read_bytes().replace(b"State", b"Stat"))
    with pytest.raises(SchemaError, match="'State'"):
        open_reader(mac, format="maccor")
    with pytest.raises(SchemaError, match="Amps") as err:
        open_reader(CALCE, format="maccor")
    assert err.value.field == "Amps"


def test_header_only_and_garbage_never_crash(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(ARBIN.read_text().splitlines()[0] + "\n")
    frame, rejected, _ = read_file(path, keep_reference=True)
    assert frame.height == 0 and rejected.height == 0
    assert "charge_capacity_ah" in frame.columns

    junk = tmp_path / "junk.csv"
    junk.write_bytes(b"ts,voltage_v,current_a\n\xff\xfe,\x00,\n;;;\n1.7e9,3.7\n")
    frame, rejected, _ = read_file(junk)
    assert frame.height == 0
    assert rejected["row"].to_list() == [2, 3, 4]

    with pytest.raises(ChargeTrackerError):
        open_reader(tmp_path / "absent.csv", format="arbin")


def test_generic_unparseable_time_is_a_dead_letter(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_text("time,U,I\n2024-01-01T00:00:00Z,3.7,1\nyesterday,3.7,1\n")
    opts = GenericOptions(columns={"ts": "time", "voltage_v": "U", "current_a": "I"},
                          time_format="iso")
    frame, rejected, _ = read_file(path, options=opts)
    assert frame.height == 1
    assert rejected.select("row", "field", "reason").row(0) == (
        3, "time", "not a timestamp: 'yesterday'")
