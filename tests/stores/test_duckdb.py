"""DuckDB-specific behaviour: URLs, file locking, bulk inserts, read-only, versions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from chargetracker.errors import ConfigError, StoreError, StoreUnavailable
from chargetracker.schema import MEASUREMENT_SCHEMA
from chargetracker.stores.base import Checkpoint, CommitBatch
from chargetracker.stores.duckdb import DuckDBStore
from chargetracker.stores.url import open_store, parse_duckdb_url, redact, store_location


@pytest.mark.parametrize(("url", "path"), [
    # A bare name after three slashes: the working directory (the documented short form).
    ("duckdb:///chargetracker.duckdb", "chargetracker.duckdb"),
    # duckdb:///abs/path is absolute (issue 10 #7: on main it was silently relative).
    ("duckdb:///data/ct.duckdb", "/data/ct.duckdb"),
    ("duckdb:///var/lib/ct/store.duckdb", "/var/lib/ct/store.duckdb"),
    ("duckdb:////abs/ct.duckdb", "/abs/ct.duckdb"),
    ("duckdb:////root.duckdb", "/root.duckdb"),
    ("duckdb://data/ct.duckdb", "data/ct.duckdb"),
    ("duckdb://ct.duckdb", "ct.duckdb"),
    ("duckdb:///:memory:", ":memory:"),
    ("duckdb://", ":memory:"),
    (":memory:", ":memory:"),
    ("./x.duckdb", "x.duckdb"),
    ("/srv/x.duckdb", "/srv/x.duckdb"),
])
def test_parse_duckdb_url(url: str, path: str) -> None:
    assert parse_duckdb_url(url)[0] == path


def test_home_folder_forms(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for url in ("duckdb://~/ct.duckdb", "duckdb:///~/ct.duckdb", "~/ct.duckdb"):
        assert parse_duckdb_url(url)[0] == str(tmp_path / "ct.duckdb"), url


def test_store_location_names_the_resolved_file(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert store_location("duckdb:///ct.duckdb") == f"DuckDB file {tmp_path / 'ct.duckdb'}"
    assert store_location("duckdb://sub/ct.duckdb") == f"DuckDB file {tmp_path / 'sub' / 'ct.duckdb'}"
    assert store_location("duckdb:///srv/ct.duckdb") == "DuckDB file /srv/ct.duckdb"
    assert store_location("duckdb:///:memory:").startswith("DuckDB in memory")
    assert store_location("postgresql://u:pw@h/db") == "PostgreSQL postgresql://u:***@h/db"
    # The store's own URL reopens the same file from any working directory.
    with open_store("duckdb://rel.duckdb") as s:
        url = s.url
    monkeypatch.chdir("/")
    assert parse_duckdb_url(url)[0] == str(tmp_path / "rel.duckdb")


def test_url_parameters() -> None:
    assert parse_duckdb_url("duckdb:///a.duckdb?read_only=true") == ("a.duckdb", {"read_only": True})
    with pytest.raises(ConfigError, match="unknown DuckDB store URL parameter"):
        parse_duckdb_url("duckdb:///a.duckdb?colour=blue")
    with pytest.raises(ConfigError, match="not a boolean"):
        parse_duckdb_url("duckdb:///a.duckdb?read_only=maybe")


def test_open_store_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("duckdb:///chargetracker.duckdb") as s:
        assert isinstance(s, DuckDBStore)
    assert (tmp_path / "chargetracker.duckdb").exists()
    with open_store(str(tmp_path / "sub" / "plain.duckdb")) as s:
        assert s.cells_count() == 0
    assert (tmp_path / "sub" / "plain.duckdb").exists()
    with open_store(f"duckdb:///{tmp_path / 'abs.duckdb'}") as s:
        assert s.path == str(tmp_path / "abs.duckdb")
    with open_store("duckdb:///:memory:") as s:
        assert s.url == "duckdb:///:memory:"


@pytest.mark.parametrize("url", ["", "mysql://x/y", "ct.sqlite", "duckdb:/x.duckdb"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        open_store(url)


def test_redact() -> None:
    assert redact("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("duckdb:///a.duckdb") == "duckdb:///a.duckdb"


def test_file_locked_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, duckdb
            con = duckdb.connect({str(path)!r})
            print("ready", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreUnavailable, match="locked.duckdb") as err:
            open_store(f"duckdb:///{path}")
        assert isinstance(err.value.__cause__, duckdb.Error)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_unwritable_location_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        open_store(f"duckdb:///{blocker / 'x.duckdb'}")


def test_bulk_insert_million_rows_dedupes(tmp_path: Path) -> None:
    """The bulk path (registered frame -> one INSERT ... SELECT) at production size; a
    replay of the same rows plus new ones inserts only the new ones. Speed is measured
    by the benchmark, not here."""
    n_cells, per_cell = 100, 10_000
    ts = np.tile(np.arange(per_cell, dtype=np.float64), n_cells)
    frame = pl.DataFrame({
        "cell_id": np.repeat(np.array([f"cell-{i:03d}" for i in range(n_cells)]), per_cell),
        "ts": ts, "voltage_v": 3.0 + ts * 1e-5, "current_a": np.ones_like(ts),
        "temperature_c": np.full_like(ts, 25.0), "cycle": np.ones(ts.size, dtype=np.int64),
        "step": np.ones(ts.size, dtype=np.int64), "step_time_s": ts,
    }, schema=MEASUREMENT_SCHEMA)
    with DuckDBStore(tmp_path / "big.duckdb") as store:
        store.commit(CommitBatch(measurements=frame))
        extra = frame.filter(pl.col("cell_id") == "cell-000").with_columns(pl.col("ts") + per_cell)
        store.commit(CommitBatch(measurements=pl.concat([frame, extra])))
        stats = store.ingest_stats()
        assert stats["measurements_stored"] == n_cells * per_cell + per_cell
        assert stats["cells"] == n_cells
        assert store.measurements("cell-000", max_points=500).height <= 500


def test_read_only_store(tmp_path: Path) -> None:
    path = tmp_path / "ro.duckdb"
    with DuckDBStore(path) as s:
        s.commit(CommitBatch(counters={"x": {"accepted": 3}}))
    with open_store(f"duckdb:///{path}?read_only=true") as ro:
        assert ro.ingest_stats()["samples_total"] == 3
        with pytest.raises(StoreError):
            ro.commit(CommitBatch(counters={"x": {"accepted": 1}}))


def test_newer_schema_version_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.duckdb"
    DuckDBStore(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE store_meta SET value = '999' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match="newer"):
        DuckDBStore(path)


def test_series_retention(tmp_path: Path) -> None:
    now = [1_000_000.0]
    with DuckDBStore(tmp_path / "s.duckdb", series_retention_s=100.0, clock=lambda: now[0]) as s:
        for _ in range(5):
            s.commit(CommitBatch(counters={"x": {"accepted": 10}}))
            now[0] += 60.0
        series = s.ingest_rate_series(0.0)
        assert series["wall"].to_list() == [1_000_180.0, 1_000_240.0]
        assert s.ingest_stats()["samples_total"] == 50


def test_crash_mid_commit_leaves_previous_state(tmp_path: Path) -> None:
    """SIGKILL a writer while it commits a big batch: on reopen the store holds either
    the previous state or the whole batch, never part of it."""
    path = tmp_path / "crash.duckdb"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import numpy as np, polars as pl
            from chargetracker.schema import MEASUREMENT_SCHEMA
            from chargetracker.stores.base import Checkpoint, CommitBatch
            from chargetracker.stores.duckdb import DuckDBStore
            s = DuckDBStore({str(path)!r})
            def meas(n, t0):
                ts = np.arange(n, dtype=np.float64) + t0
                return pl.DataFrame({{"cell_id": ["c1"] * n, "ts": ts, "voltage_v": ts,
                                     "current_a": ts}}, schema_overrides=MEASUREMENT_SCHEMA)
            s.commit(CommitBatch(measurements=meas(10, 0.0),
                                 checkpoints=[Checkpoint("p", b"old", {{"o": 1}})]))
            print("ready", flush=True)
            while True:
                s.commit(CommitBatch(measurements=meas(3_000_000, 1e6),
                                     checkpoints=[Checkpoint("p", b"new", {{"o": 2}})]))
                s.prune_measurements(1e5)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # the 3M-row commit takes longer: killed mid-transaction
    finally:
        child.kill()
        child.wait(timeout=30)
    with DuckDBStore(path) as s:
        cp = s.load_checkpoint("p")
        n = s.ingest_stats()["measurements_stored"]
        assert cp is not None
        if cp.position == {"o": 1}:
            assert n == 10
        else:
            assert cp.position == {"o": 2}
            assert n in (10 + 3_000_000, 3_000_000)  # committed; maybe pruned too


def test_cells_registered_once_and_not_by_a_failed_commit(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Cell ids are registered from data; the store remembers committed ones only, so a
    commit that fails (here: after every statement, before COMMIT) leaves its cells to be
    registered by the next one."""
    def meas(cell: str, t0: float) -> pl.DataFrame:
        return pl.DataFrame({"cell_id": [cell] * 3, "ts": [t0, t0 + 1, t0 + 2],
                             "voltage_v": [3.6] * 3, "current_a": [1.0] * 3},
                            schema_overrides=MEASUREMENT_SCHEMA)
    with DuckDBStore(tmp_path / "c.duckdb") as store:
        store.commit(CommitBatch(measurements=meas("a", 0.0)))
        store.commit(CommitBatch(measurements=meas("a", 10.0)))
        write = DuckDBStore._write

        def write_then_fail(self: DuckDBStore, cur: duckdb.DuckDBPyConnection, b: object) -> None:
            write(self, cur, b)  # type: ignore[arg-type]
            raise duckdb.IOException("disk went away")

        monkeypatch.setattr(DuckDBStore, "_write", write_then_fail)
        with pytest.raises(StoreUnavailable):
            store.commit(CommitBatch(measurements=meas("b", 0.0)))
        monkeypatch.undo()
        assert store.ingest_stats()["cells"] == 1
        store.commit(CommitBatch(measurements=meas("b", 0.0)))
        assert store.ingest_stats()["cells"] == 2
        assert store.cell("b") is not None


def test_memory_limit_from_the_url(tmp_path: Path) -> None:
    with open_store(f"duckdb:///{tmp_path / 'm.duckdb'}?memory_limit=512MB") as store:
        limit = store._con.execute("SELECT current_setting('memory_limit')").fetchone()
        assert limit is not None and limit[0].startswith("488")  # 512 MB in MiB
    with pytest.raises(ConfigError, match="memory_limit"):
        open_store(f"duckdb:///{tmp_path / 'n.duckdb'}?memory_limit=plenty")


def test_raw_rows_across_the_newest_stored_time() -> None:
    """Rows at or before the newest stored ts are checked against the store, rows after it
    are appended: repeats are skipped, and new rows on both sides are kept."""
    def meas(cell: str, ts: list[float]) -> pl.DataFrame:
        return pl.DataFrame({"cell_id": [cell] * len(ts), "ts": ts, "voltage_v": [3.6] * len(ts),
                             "current_a": [1.0] * len(ts)}, schema_overrides=MEASUREMENT_SCHEMA)
    with DuckDBStore(":memory:") as store:
        store.commit(CommitBatch(measurements=meas("a", [float(t) for t in range(10)])))
        store.commit(CommitBatch(measurements=pl.concat([
            meas("a", [float(t) for t in range(5, 15)]),   # 5..9 stored already
            meas("b", [3.0, 4.0, 5.0, 6.0]),                # before the newest stored ts, new
        ])))
        assert store.measurements("a")["ts"].to_list() == [float(t) for t in range(15)]
        assert store.measurements("b")["ts"].to_list() == [3.0, 4.0, 5.0, 6.0]
        assert store.ingest_stats()["measurements_stored"] == 19


def test_plugin_raw_records_across_the_newest_stored_time() -> None:
    """A plug-in insert-if-absent table (meter readings) takes the same path as raw cell
    samples: repeats at or before the newest stored ts skipped, new rows on both sides kept."""
    from chargetracker.kinds.meter import READINGS, meter_kind

    def readings(meter: str, ts: list[float]) -> pl.DataFrame:
        return pl.DataFrame({"meter_id": [meter] * len(ts), "ts": ts,
                             "power_w": [100.0] * len(ts)}, schema_overrides=READINGS.schema)
    with DuckDBStore(":memory:", kinds=[meter_kind()]) as store:
        store.commit(CommitBatch(tables={READINGS.name: readings("m1", [float(t) for t in range(10)])}))
        store.commit(CommitBatch(tables={READINGS.name: pl.concat([
            readings("m1", [float(t) for t in range(5, 15)]), readings("m2", [3.0, 4.0])])}))
        rows = store._con.execute(
            "SELECT meter_id, count(*), min(ts), max(ts) FROM meter_readings GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert rows == [("m1", 15, 0.0, 14.0), ("m2", 2, 3.0, 4.0)]


def test_records_replaced_while_a_reader_holds_a_transaction(tmp_path: Path, frames) -> None:
    """Steps, cycles and checkpoints are replaced by delete-then-insert: commit after
    commit of the same keys must succeed while a reader's transaction (the dashboard, the
    API) still sees an older version (DuckDB < 1.5 failed the second commit with a
    write-write conflict; pyproject asks for >= 1.5)."""
    def batch(k: int) -> CommitBatch:
        return CommitBatch(
            steps=frames.steps(frames.step("c1", 1, 1, status="open")),
            cycles=frames.cycles(frames.cycle("c1", 1, status="open", discharge_ah=0.1 * k)),
            checkpoints=[Checkpoint("pipe", b"s" * k, {"offset": k})])
    with DuckDBStore(str(tmp_path / "r.duckdb")) as store:
        store.commit(batch(1))
        reader = store._con.cursor()
        reader.execute("BEGIN TRANSACTION")
        assert reader.execute("SELECT count(*) FROM cycles").fetchone() == (1,)
        for k in range(2, 6):
            store.commit(batch(k))
        assert reader.execute('SELECT "discharge_ah" FROM cycles').fetchone() == (pytest.approx(0.1),)
        reader.execute("COMMIT")
        assert store.cycles("c1")["discharge_ah"].to_list() == [pytest.approx(0.5)]
        assert store.steps("c1").height == 1
        cp = store.load_checkpoint("pipe")
        assert cp is not None and cp.position == {"offset": 5} and cp.state == b"sssss"
