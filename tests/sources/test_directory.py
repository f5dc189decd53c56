"""A watched folder of cycler exports: new files, rows appended in pieces, restarts."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from chargetracker.config import RuntimeConfig, Settings
from chargetracker.engine import new_state, update
from chargetracker.readers import read_file
from chargetracker.runtime import Pipeline, Runner
from chargetracker.sources import Batch, DirectorySource
from chargetracker.stores.duckdb import DuckDBStore

from ..runtime.fleets import _nan_to_null

DATA = Path(__file__).resolve().parents[1] / "data"
ARBIN = (DATA / "arbin_example.csv").read_bytes()


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def _with_bad_line(data: bytes, line_no: int) -> bytes:
    lines = data.split(b"\n")
    lines[line_no - 1] = lines[line_no - 1].replace(b",", b",?", 1)
    return b"\n".join(lines)


def test_growing_file_every_complete_line_once(tmp_path: Path) -> None:
    data = _with_bad_line(ARBIN, 300)
    # Cuts inside the header, in the middle of lines, and right after newlines.
    nl = [i + 1 for i, c in enumerate(data) if c == 10]
    cuts = [40, nl[0] + 25, nl[5], nl[5] + 3, nl[100] - 1, nl[700] + 60, nl[1800]]
    final = tmp_path / "watched" / "cell-7.csv"
    final.parent.mkdir()
    src = DirectorySource(final.parent, pattern="*.csv")
    batches: list[Batch] = []
    for piece in _pieces(data, cuts):
        with final.open("ab") as fh:
            fh.write(piece)
        while (b := src.poll(500)) is not None:
            batches.append(b)
    expected, expected_rej, meta = read_file(final)
    assert expected_rej.get_column("row").to_list() == [300]
    assert_frame_equal(pl.concat([b.frame for b in batches]), expected)
    assert_frame_equal(pl.concat([b.rejected for b in batches if b.rejected is not None]),
                       expected_rej)
    assert src.position["files"]["cell-7.csv"] == {"offset": len(data), "line": 2144}
    cells = [b.cells for b in batches if b.cells is not None]
    assert len(cells) == 1 and cells[0].get_column("cell_id").to_list() == ["cell-7"]


def test_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    lines = ARBIN.split(b"\n")
    path = tmp_path / "a.csv"
    path.write_bytes(b"\n".join(lines[:4]) + b"\n" + lines[4][:10])
    src = DirectorySource(tmp_path)
    b = src.poll(100)
    assert b is not None and b.frame.height == 3
    assert src.poll(100) is None                       # half a line: not yet
    with path.open("ab") as fh:
        fh.write(lines[4][10:] + b"\n")
    b = src.poll(100)
    assert b is not None and b.frame.height == 1
    assert b.position["files"]["a.csv"]["line"] == 6


def test_new_files_unreadable_files_and_shrunk_files(tmp_path: Path) -> None:
    clock = FakeClock()
    src = DirectorySource(tmp_path, settle_s=5.0, clock=clock)
    (tmp_path / "notes.txt").write_text("operator notes\nchannel 3 restarted\n")
    (tmp_path / ".hidden.csv").write_bytes(ARBIN)
    (tmp_path / "b.csv.tmp").write_bytes(ARBIN)
    assert src.poll(10_000) is None                    # unreadable, but maybe still being written
    clock.t = 6.0
    b = src.poll(10_000)
    assert b is not None and b.frame.height == 0 and b.rejected is not None
    dead = b.rejected.to_dicts()
    assert len(dead) == 1 and dead[0]["source"].endswith("notes.txt") and dead[0]["field"] == "file"
    assert "unrecognised header" in dead[0]["reason"]
    assert src.position["failed"] == {"notes.txt": dead[0]["reason"]}
    assert src.poll(10_000) is None                    # reported once, not every poll
    (tmp_path / "c1.csv").write_bytes(ARBIN)
    b = src.poll(10**6)
    assert b is not None and b.frame.height == 2142
    assert b.cells is not None and b.cells.get_column("cell_id").to_list() == ["c1"]
    # A file cut shorter than what was committed is not re-read (that would double count).
    (tmp_path / "c1.csv").write_bytes(ARBIN[:5000])
    b = src.poll(10**6)
    assert b is not None and b.frame.height == 0 and b.rejected is not None
    assert "shrank" in b.rejected.get_column("reason").item()
    # After a restart, failed files stay failed and finished files are not re-read.
    again = DirectorySource(tmp_path, settle_s=5.0, clock=clock)
    again.seek(src.position)
    assert again.poll(10**6) is None


def test_watched_directory_through_the_runtime_with_a_restart(tmp_path: Path) -> None:
    watched = tmp_path / "cycler"
    watched.mkdir()
    data = {"cell-a.csv": _with_bad_line(ARBIN, 1000), "cell-b.csv": ARBIN}
    nl = [i + 1 for i, c in enumerate(ARBIN) if c == 10]
    cuts = [nl[3] + 7, nl[500] + 11, nl[1200], nl[2000] + 30]
    settings = Settings(runtime=RuntimeConfig(poll_interval_s=0.01, max_batch_rows=400))
    db = tmp_path / "ct.duckdb"

    def wait_for(runner: Runner, rows: int) -> None:
        deadline = time.monotonic() + 30
        while runner.stats.accepted + runner.stats.rejected < rows and time.monotonic() < deadline:
            time.sleep(0.01)

    done = 0
    first_run_rows = 0
    for run_no, pieces in enumerate((range(0, 2), range(2, 5))):  # run 1 ends mid-line
        with DuckDBStore(db) as store:
            runner = Runner(Pipeline(store, settings), [DirectorySource(watched, name="lab")])
            runner.start()
            for k in pieces:
                for name, blob in data.items():
                    part = _pieces(blob, cuts)[k]
                    with (watched / name).open("ab") as fh:
                        fh.write(part)
                    done += part.count(b"\n") - (1 if k == 0 else 0)
                # Lines complete so far, both files, minus what earlier runs committed.
                wait_for(runner, done - (0 if run_no == 0 else first_run_rows))
            runner.stop()
            stats = runner.join(timeout=30)
            assert stats.stopped and not stats.finished
            if run_no == 0:
                first_run_rows = stats.accepted + stats.rejected
                assert 0 < first_run_rows < 2 * 2142
    with DuckDBStore(db) as store:
        frames = []
        for name in data:
            expected, rej, _ = read_file(watched / name)
            stored = store.measurements(name[:-4])
            assert_frame_equal(stored, expected.sort("ts"))
            frames.append(expected)
        dead = store.dead_letters()
        assert dead.height == 1 and dead.get_column("row").item() == 1000
        assert dead.get_column("source").item() == str(watched / "cell-a.csv")
        # The steps and cycles are exactly the engine's for the same rows in one batch.
        _, out = update(new_state(settings.engine), pl.concat(frames))
        exp = _nan_to_null(out.cycles.unique(["cell_id", "cycle"], keep="last").sort("cell_id", "cycle"))
        assert_frame_equal(store.cycles().sort("cell_id", "cycle"), exp, check_exact=True)
