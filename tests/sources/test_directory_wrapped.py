"""A watched folder with compressed, re-encoded and binary exports: read whole, once."""

from __future__ import annotations

import gzip
from pathlib import Path

from chargetracker.readers import read_file
from chargetracker.sources import DirectorySource

DATA = Path(__file__).resolve().parents[1] / "data"
ARBIN = DATA / "arbin_example.csv"


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_compressed_utf16_and_binary_files_read_whole_once(tmp_path: Path) -> None:
    clock = FakeClock()
    src = DirectorySource(tmp_path, settle_s=5.0, clock=clock)
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(ARBIN.read_bytes()))
    (tmp_path / "b.csv").write_bytes(ARBIN.read_text().encode("utf-16"))
    (tmp_path / "c.nda").write_bytes((DATA / "test.nda").read_bytes())
    (tmp_path / "d.bin").write_bytes(bytes(range(256)) * 50)
    assert src.poll(10**6) is None          # not settled: may still be being written
    clock.t = 6.0
    b = src.poll(10**6)
    assert b is not None
    want = read_file(ARBIN)[0].height
    counts = b.frame.group_by("cell_id").len().sort("cell_id").rows()
    assert counts == [("a", want), ("b", want), ("c", 439)]
    assert b.rejected is not None and b.rejected.height == 1
    reason = b.rejected.get_column("reason").item()
    assert "d.bin" in reason and len(reason) < 300 and str(tmp_path) not in reason
    assert src.position["files"]["a.csv.gz"] == {"offset": (tmp_path / "a.csv.gz").stat().st_size,
                                                 "line": 0}
    assert src.poll(10**6) is None          # read once
    again = DirectorySource(tmp_path, settle_s=5.0, clock=clock)
    again.seek(src.position)
    assert again.poll(10**6) is None        # and not again after a restart


def test_file_source_replays_compressed_and_binary_files_by_row(tmp_path: Path) -> None:
    from chargetracker.sources import FileSource

    gz = tmp_path / "run.csv.gz"
    gz.write_bytes(gzip.compress(ARBIN.read_bytes()))
    for path, want in ((gz, read_file(ARBIN)[0].height), (DATA / "test.nda", 439)):
        src = FileSource(path)
        assert src.parser.by_rows
        rows, positions = 0, []
        while not src.done:
            b = src.poll(200)
            if b is None:
                break
            rows += b.frame.height
            positions.append(b.position)
        assert rows == want and positions[-1] == {"row": want}
        # A restart from a committed position reads only the rest.
        again = FileSource(path)
        again.seek(positions[0])
        rest = 0
        while not again.done and (b := again.poll(10**6)) is not None:
            rest += b.frame.height
        assert rest == want - positions[0]["row"]
