"""Input wrappers: compression, encodings, line ends, binary files, hostile widths."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import time
import zipfile
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chargetracker.errors import ChargeTrackerError, SchemaError, UnknownFormat
from chargetracker.readers import detect_format, open_reader, read_file
from chargetracker.readers.source import sniff

DATA = Path(__file__).resolve().parents[1] / "data"
ARBIN = DATA / "arbin_example.csv"
MACCOR = DATA / "maccor_example.001"


def _same(path: Path, ref: Path) -> None:
    got, rej, _ = read_file(path, keep_reference=True)
    want, want_rej, _ = read_file(ref, keep_reference=True)
    assert rej.height == want_rej.height
    assert_frame_equal(got.drop("cell_id"), want.drop("cell_id"))


@pytest.mark.parametrize("kind", ["gz", "bz2", "xz", "zip"])
def test_compressed_files_read_transparently(kind: str, tmp_path: Path) -> None:
    raw = ARBIN.read_bytes()
    path = tmp_path / f"run.bin.{kind}"
    if kind == "gz":
        path.write_bytes(gzip.compress(raw))
    elif kind == "bz2":
        path.write_bytes(bz2.compress(raw))
    elif kind == "xz":
        path.write_bytes(lzma.compress(raw))
    else:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("arbin_example.csv", raw)
    assert sniff(path).compression == ("gzip" if kind == "gz" else kind)
    assert detect_format(path) == "arbin"
    _same(path, ARBIN)
    # Streaming in small chunks gives the same rows.
    reader = open_reader(path, chunk_rows=300)
    assert sum(c.frame.height for c in reader) == 2142
    assert reader.bytes_read == reader.total_bytes


def test_compressed_binary_vendor_file(tmp_path: Path) -> None:
    path = tmp_path / "cell.gz"
    path.write_bytes(gzip.compress((DATA / "test.nda").read_bytes()))
    frame, _, _ = read_file(path)
    assert frame.height == 439


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8-sig", "cp1252"])
def test_encodings(encoding: str, tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    text = ARBIN.read_text(encoding="utf-8")
    path.write_bytes(text.encode(encoding))  # utf-16: with BOM; -le/-be: none (NUL pattern)
    _same(path, ARBIN)


@pytest.mark.parametrize("newline", ["\r", "\r\n"])
def test_line_ends(newline: str, tmp_path: Path) -> None:
    for src in (ARBIN, MACCOR):
        path = tmp_path / src.name
        lines = src.read_bytes().replace(b"\r\n", b"\n").split(b"\n")
        path.write_bytes(newline.encode().join(lines))
        _same(path, src)


def test_utf16_cr_only_maccor(tmp_path: Path) -> None:
    path = tmp_path / "m.001"
    text = MACCOR.read_bytes().replace(b"\r\n", b"\n").decode("utf-8").replace("\n", "\r")
    path.write_bytes(text.encode("utf-16"))
    _same(path, MACCOR)


@pytest.mark.parametrize(("blob", "says"), [
    (b"\x00\x01\x00\x00Standard Jet DB\x00" + bytes(range(256)) * 40, "Access"),
    (b"SQLite format 3\x00" + bytes(range(256)) * 40, "SQLite"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(range(256)) * 40, "OLE"),
    (bytes(range(256)) * 100, "binary"),
    (gzip.compress(bytes(range(256)) * 100, mtime=0), "binary"),
])
def test_binary_files_get_short_messages(blob: bytes, says: str, tmp_path: Path) -> None:
    path = tmp_path / "upload.csv"
    path.write_bytes(blob)
    for fmt in ("auto", "arbin", "generic"):
        with pytest.raises(ChargeTrackerError) as err:
            open_reader(path, fmt)
        msg = str(err.value)
        assert len(msg) < 400, msg
        assert "upload.csv" in msg and says in msg
        assert str(tmp_path) not in msg  # never the (temporary) folder
        assert all(ch.isprintable() for ch in msg), msg


def test_damaged_gzip_is_named(tmp_path: Path) -> None:
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(gzip.compress(ARBIN.read_bytes())[:20])
    with pytest.raises(ChargeTrackerError, match="cut.csv.gz: looks gzip-compressed"):
        open_reader(path)


def test_very_wide_header_is_refused_fast(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    n = 1_000_000
    with path.open("w") as fh:
        fh.write("ts,voltage_v,current_a," + ",".join(f"c{i}" for i in range(n)) + "\n")
        fh.write("1.7e9,3.7,1.0" + ",0" * n + "\n")
    t0 = time.process_time()
    with pytest.raises(SchemaError) as err:
        open_reader(path)
    assert time.process_time() - t0 < 10  # today 17 s and 1.5 GB; bounded by one header read
    assert "1,000,003 columns" in str(err.value) and len(str(err.value)) < 300


def test_column_lists_in_messages_are_capped(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("Test_Time,Data_Point," + ",".join(f"col{i}" for i in range(1500)) + "\n1,2\n")
    with pytest.raises(SchemaError) as err:
        open_reader(path, "arbin")
    msg = str(err.value)
    assert "and 1,462 more" in msg and len(msg) < 1500


def test_wide_data_rows_do_not_blow_up(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("ts,voltage_v,current_a\n1.7e9,3.7,1.0" + ",9" * 200_000 + "\n1.7e9,3.7,1.0\n")
    frame, rejected, _ = read_file(path)
    assert frame.height + rejected.height == 2


def test_unknown_text_names_the_file_only(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello,world\n1,2\n")
    with pytest.raises(UnknownFormat) as err:
        open_reader(path)
    assert str(err.value).startswith("notes.txt: unrecognised header")


def test_empty_and_header_only(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(UnknownFormat, match="empty file"):
        open_reader(empty)
    head = tmp_path / "head.csv"
    head.write_text(ARBIN.read_text().splitlines()[0] + "\n")
    frame, rejected, _ = read_file(head)
    assert frame.height == rejected.height == 0


def test_sniff_is_content_only(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"  # a misleading name
    path.write_bytes(gzip.compress(ARBIN.read_bytes()))
    assert sniff(path).kind == "text" and sniff(path).compression == "gzip"
    pq = tmp_path / "x.csv"
    pl.DataFrame({"ts": [1.7e9], "voltage_v": [3.7], "current_a": [1.0]}).write_parquet(pq)
    assert sniff(pq).kind == "parquet"
    assert os.path.getsize(pq) > 0
