"""File replay: any batching and any restart give exactly the rows of a whole-file read."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chargetracker.readers import read_file
from chargetracker.sources import Batch, FileSource

DATA = Path(__file__).resolve().parents[1] / "data"


def _replay(src: FileSource, max_rows: int) -> list[Batch]:
    out = []
    while not src.done:
        b = src.poll(max_rows)
        if b is not None:
            out.append(b)
    return out


def _frames(batches: list[Batch]) -> tuple[pl.DataFrame, pl.DataFrame]:
    frame = pl.concat([b.frame for b in batches])
    rej = pl.concat([b.rejected for b in batches if b.rejected is not None])
    return frame, rej


@pytest.mark.parametrize("name", ["arbin_example.csv", "maccor_example.001"])
@pytest.mark.parametrize("max_rows", [13, 1000, 10**6])
def test_replay_equals_a_whole_file_read(name: str, max_rows: int) -> None:
    path = DATA / name
    expected, expected_rej, meta = read_file(path)
    src = FileSource(path)
    batches = _replay(src, max_rows)
    frame, rej = _frames(batches)
    assert_frame_equal(frame, expected)
    assert_frame_equal(rej, expected_rej)
    assert batches[0].cells is not None and batches[0].cells.get_column("cell_id").item() == meta["cell_id"]
    assert all(b.cells is None for b in batches[1:])
    assert src.poll(10) is None


def test_resume_from_a_position_continues_with_true_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "cell.csv"
    lines = (DATA / "arbin_example.csv").read_text().splitlines()
    lines[1500] = lines[1500].replace(",", ",x", 1)   # line 1501: bad Test_Time
    path.write_text("\r\n".join(lines))                 # CRLF, no newline at the end
    expected, expected_rej, _ = read_file(path)
    assert expected_rej.get_column("row").to_list() == [1501]
    first = FileSource(path, name="f")
    head = [first.poll(600), first.poll(600)]
    pos = head[-1].position  # type: ignore[union-attr]
    assert pos["line"] == 1202
    second = FileSource(path, name="f")
    second.seek(pos)
    tail = _replay(second, 600)
    frame, rej = _frames([b for b in head if b is not None] + tail)
    assert_frame_equal(frame, expected)
    assert_frame_equal(rej, expected_rej)
    # Seeking to the end of a replayed file: done at once, nothing re-read.
    third = FileSource(path, name="f")
    third.seek(tail[-1].position)
    assert third.done and third.poll(100) is None


def test_parquet_replay_and_resume_by_row(tmp_path: Path) -> None:
    frame, _, _ = read_file(DATA / "arbin_example.csv")
    path = tmp_path / "cell.parquet"
    frame.with_columns(pl.col("voltage_v").cast(pl.Utf8)).with_columns(
        pl.when(pl.int_range(pl.len()) == 10).then(pl.lit("bad")).otherwise(pl.col("voltage_v"))
        .alias("voltage_v")).write_parquet(path)
    expected, expected_rej, _ = read_file(path)
    assert expected_rej.get_column("row").to_list() == [10]
    src = FileSource(path)
    b1 = src.poll(700)
    assert b1 is not None and b1.position == {"row": 700}
    rest = FileSource(path)
    rest.seek(b1.position)
    got, rej = _frames([b1, *_replay(rest, 700)])
    assert_frame_equal(got, expected)
    assert_frame_equal(rej, expected_rej)


def test_follow_waits_for_appended_rows(tmp_path: Path) -> None:
    path = tmp_path / "live.csv"
    lines = (DATA / "arbin_example.csv").read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:11]) + lines[11][:9])    # 10 rows + half a line
    src = FileSource(path, follow=True)
    b = src.poll(1000)
    assert b is not None and b.frame.height == 10
    assert src.poll(1000) is None and not src.done
    with path.open("a") as fh:
        fh.write(lines[11][9:] + "".join(lines[12:]))
    got = [b]
    while (nb := src.poll(1000)) is not None:
        got.append(nb)
    expected, _, _ = read_file(DATA / "arbin_example.csv", cell_id="live")
    assert_frame_equal(pl.concat([x.frame for x in got]), expected)
    assert not src.done

