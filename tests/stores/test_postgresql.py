"""PostgreSQL-specific behaviour: URLs, migrations (idempotent, concurrent start), the COPY
path at size, day partitions and retention, outages, rollback, concurrent writers,
bytewise ordering and bit-exact parity with DuckDB.

The contract suite (test_contract.py) runs on PostgreSQL as well; these tests add what
only this backend has. Servers come from tests/pg.py (``pg_server``, ``postgres_url``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from chargetracker.errors import ConfigError, StoreError, StoreUnavailable
from chargetracker.schema import MEASUREMENT_SCHEMA
from chargetracker.stores import sql as q
from chargetracker.stores.base import Checkpoint, CommitBatch
from chargetracker.stores.duckdb import DuckDBStore
from chargetracker.stores.migrations import LATEST_VERSION, MIGRATIONS
from chargetracker.stores.postgresql import PostgresStore, apply_migrations, partition_name
from chargetracker.stores.url import open_store
from tests.pg import PgServer, start_postgres

DAY = 86_400.0
T0 = 1_700_006_400.0  # 2023-11-15 00:00:00 UTC, a day boundary


@pytest.fixture
def pg(postgres_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(postgres_url)
    try:
        yield store
    finally:
        store.close()


def _db(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


def _raw(n_cells: int, per_cell: int, *, t0: float = T0, span_s: float = 3 * DAY,
         seed: int = 0) -> pl.DataFrame:
    """Raw rows with full-precision random values, ``per_cell`` samples per cell over
    ``span_s`` seconds."""
    rng = np.random.default_rng(seed)
    ts = np.tile(t0 + np.arange(per_cell) * (span_s / per_cell), n_cells)
    n = ts.size
    return pl.DataFrame({
        "cell_id": np.repeat(np.array([f"cell-{i:03d}" for i in range(n_cells)]), per_cell),
        "ts": ts, "voltage_v": 3.0 + rng.random(n), "current_a": rng.standard_normal(n) * 2.5,
        "temperature_c": np.where(rng.random(n) < 0.01, np.nan, 25.0 + rng.random(n)),
        "cycle": np.arange(n, dtype=np.int64) // 500, "step": np.arange(n, dtype=np.int64) // 50,
        "step_time_s": rng.random(n) * 1e3,
    }, schema=MEASUREMENT_SCHEMA).with_columns(pl.col("temperature_c").fill_nan(None))


# -- URLs and connection errors ------------------------------------------------------
def test_open_store_url_forms(postgres_url: str) -> None:
    rest = postgres_url.split("://", 1)[1]
    for url in (postgres_url, f"postgres://{rest}", f"postgresql+psycopg://{rest}",
                f"{postgres_url}?pool_max_size=2&pool_min_size=0&application_name=ct-test"
                "&migrate=false&connect_timeout=3"):
        with open_store(url) as s:
            assert isinstance(s, PostgresStore)
            assert s.cells_count() == 0 and s.schema_version() == LATEST_VERSION
    with pytest.raises(ConfigError, match="pool_max_size"):
        open_store(f"{postgres_url}?pool_max_size=lots")
    with pytest.raises(ConfigError, match="not a boolean"):
        open_store(f"{postgres_url}?migrate=perhaps")
    with pytest.raises(ConfigError, match="pool_min_size"):
        PostgresStore(postgres_url, pool_min_size=5, pool_max_size=2)


def test_closed_port_is_unavailable_and_password_is_redacted(pg_server: PgServer) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreUnavailable, match="cannot connect") as err:
        open_store(f"postgresql://ct:s3cret@127.0.0.1:{port}/ct")
    assert "s3cret" not in str(err.value) and "***" in str(err.value)
    assert isinstance(err.value.__cause__, psycopg.OperationalError)
    with pytest.raises(StoreError) as err:  # wrong database: the server says so
        open_store(pg_server.url("no_such_database"))
    assert "no_such_database" in str(err.value)


def test_server_down_is_unavailable_then_recovers() -> None:
    """Stop the server under an open store: calls raise StoreUnavailable (never a raw
    driver error, never a partial commit); after a restart the pool reconnects."""
    server = start_postgres()
    try:
        url = server.url("postgres")
        with PostgresStore(url, pool_timeout=0.5, connect_timeout=1.0) as store:
            store.commit(CommitBatch(measurements=_raw(2, 10),
                                     checkpoints=[Checkpoint("p", b"1", {"o": 1})]))
            server.stop()
            assert not server.running
            with pytest.raises(StoreUnavailable) as err:
                store.cycles()
            assert isinstance(err.value.__cause__, psycopg.OperationalError)
            with pytest.raises(StoreUnavailable):
                store.commit(CommitBatch(measurements=_raw(2, 10, t0=T0 + 9 * DAY),
                                         checkpoints=[Checkpoint("p", b"2", {"o": 2})]))
            server.start()
            # The pool reconnects in the background (with backoff): retry briefly.
            deadline = time.monotonic() + 30
            while True:
                try:
                    cp = store.load_checkpoint("p")
                    break
                except StoreUnavailable:
                    if time.monotonic() > deadline:
                        raise
            assert cp == Checkpoint("p", b"1", {"o": 1})
            assert store.ingest_stats()["measurements_stored"] == 20
            store.commit(CommitBatch(checkpoints=[Checkpoint("p", b"3", {"o": 3})]))
            assert store.load_checkpoint("p").state == b"3"
    finally:
        server.cleanup()


# -- migrations ----------------------------------------------------------------------
def test_migrations_applied_once_and_idempotent(pg_server: PgServer) -> None:
    url = pg_server.create_database(template=None)
    with _db(url) as conn:
        assert apply_migrations(conn) == [m.version for m in MIGRATIONS]
        assert apply_migrations(conn) == []
    PostgresStore(url).close()
    with PostgresStore(url) as s:
        assert s.schema_version() == LATEST_VERSION
    with _db(url) as conn:
        rows = conn.execute('SELECT "version", "name" FROM "schema_migrations" '
                            'ORDER BY "version"').fetchall()
        assert rows == [(m.version, m.name) for m in MIGRATIONS]
        assert conn.execute('SELECT "value" FROM "store_meta" WHERE "key" = %s',
                            ["schema_version"]).fetchone() == (str(q.SCHEMA_VERSION),)


def test_concurrent_start_applies_each_migration_once(pg_server: PgServer) -> None:
    """Several processes and threads open a store on an empty database at the same time:
    all succeed, each migration runs exactly once (pg_advisory_lock)."""
    url = pg_server.create_database(template=None)
    code = textwrap.dedent(f"""
        from chargetracker.stores.postgresql import PostgresStore
        PostgresStore({url!r}, pool_min_size=0).close()
        print("ok")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def opener() -> None:
        try:
            barrier.wait()
            PostgresStore(url, pool_min_size=0).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outs = [p.communicate(timeout=120) for p in procs]
    assert not errors, errors
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and out.strip() == "ok", err
    with _db(url) as conn:
        assert conn.execute('SELECT "version", count(*) FROM "schema_migrations" '
                            'GROUP BY "version" ORDER BY "version"').fetchall() == [
            (m.version, 1) for m in MIGRATIONS]


def test_newer_or_missing_schema_refused(pg_server: PgServer, postgres_url: str) -> None:
    empty = pg_server.create_database(template=None)
    with pytest.raises(StoreError, match="lacks schema migration"):
        PostgresStore(empty, migrate=False)
    PostgresStore(postgres_url, migrate=False).close()  # current: fine without migrating
    with _db(postgres_url) as conn:
        conn.execute('INSERT INTO "schema_migrations" ("version", "name") VALUES (999, %s)',
                     ["from the future"])
    with pytest.raises(StoreError, match="newer than this ChargeTracker"):
        PostgresStore(postgres_url)


def test_migrated_schema_matches_shared_layout(postgres_url: str) -> None:
    """The frozen migrations produce exactly the tables, columns, types and keys the
    shared SQL layer (stores/sql.py) expects: a layout change without a migration fails."""
    pg_types = {"text": "text", "float": "double precision", "int": "bigint",
                "bool": "boolean", "blob": "bytea"}
    json_types = {("cells", "attributes"): "json", ("checkpoints", "position"): "jsonb"}
    with _db(postgres_url) as conn:
        for t in q.TABLES:
            cols = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s "
                "ORDER BY ordinal_position", [t.name]).fetchall()
            expected = [(c, json_types[(t.name, c)] if lg == "json" else pg_types[lg])
                        for c, lg in t.columns]
            assert cols == expected, t.name
            key = conn.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = CAST(%s AS regclass) "
                "AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
                [f'"{t.name}"']).fetchall()
            assert tuple(k for (k,) in key) == (t.key or ((t.identity,) if t.identity else ())), t.name


# -- the COPY path, partitions, retention --------------------------------------------
def _covering_steps(frame: pl.DataFrame, end_ts: float) -> pl.DataFrame:
    """One closed step per cell covering its raw rows (retention only deletes covered ones)."""
    from chargetracker.schema import STEP_SCHEMA

    ids = frame.get_column("cell_id").unique().sort().to_list()
    rows = [{"cell_id": c, "step": 1, "cycle": 1, "kind": "rest", "mode": "rest",
             "status": "closed", "start_ts": T0, "end_ts": end_ts} for c in ids]
    return pl.DataFrame([{k: r.get(k) for k in STEP_SCHEMA} for r in rows], schema=STEP_SCHEMA)


def test_copy_200k_rows_partitions_replay_and_prune(pg: PostgresStore, postgres_url: str) -> None:
    frame = _raw(50, 4_000)  # 200k rows over 3 UTC days
    pg.commit(CommitBatch(measurements=frame, counters={"bulk": {"accepted": frame.height}},
                          steps=_covering_steps(frame, T0 + 100 * DAY)))
    days = [partition_name(int(T0 // DAY) + i) for i in range(3)]
    assert pg.partitions() == ["measurements_default", *days]
    assert days[0] == "measurements_p20231115"
    # A replay of everything plus 1000 new rows inserts only the new rows.
    extra = _raw(1, 1_000, t0=T0 + 3 * DAY, span_s=DAY, seed=1)
    pg.commit(CommitBatch(measurements=pl.concat([frame, extra])))
    stats = pg.ingest_stats()
    assert stats["measurements_stored"] == 201_000
    assert stats["newest_ts"] == extra["ts"].max()
    assert stats["cells"] == 50
    assert len(pg.partitions()) == 5
    # Values arrive bit-exact through the CSV text form.
    one = frame.filter(pl.col("cell_id") == "cell-007")
    assert_frame_equal(pg.measurements("cell-007"), one)
    with _db(postgres_url) as conn:
        per_day = conn.execute(
            f'SELECT count(*) FROM "{days[1]}"').fetchone()[0]  # noqa: S608 - test constant
        assert per_day == frame.filter((pl.col("ts") >= T0 + DAY) & (pl.col("ts") < T0 + 2 * DAY)).height
    # Retention: the first day is dropped whole, part of the second deleted.
    horizon = T0 + 1.5 * DAY
    expect = frame.filter(pl.col("ts") < horizon).height
    assert pg.prune_measurements(horizon) == expect
    assert days[0] not in pg.partitions()
    stats = pg.ingest_stats()
    assert stats["measurements_stored"] == 201_000 - expect
    with _db(postgres_url) as conn:
        assert conn.execute('SELECT count(*), max("ts") FROM "measurements"').fetchone() == (
            201_000 - expect, stats["newest_ts"])
    assert pg.prune_measurements(T0 + 100 * DAY) == 201_000 - expect
    assert pg.ingest_stats()["measurements_stored"] == 0
    assert pg.ingest_stats()["newest_ts"] is None
    assert pg.partitions() == ["measurements_default"]


def test_timestamps_outside_day_partitions(pg: PostgresStore) -> None:
    """ts before 1970, after 9999 or non-finite land in the default partition."""
    ts = [-86_400.5, -1.0, 0.0, 1e12, math.inf]
    frame = pl.DataFrame({"cell_id": ["c"] * 5, "ts": ts, "voltage_v": [3.0] * 5,
                          "current_a": [0.0] * 5}, schema_overrides=MEASUREMENT_SCHEMA)
    pg.commit(CommitBatch(measurements=frame, steps=_covering_steps(frame, math.inf)))
    assert pg.measurements("c")["ts"].to_list() == ts
    assert pg.partitions() == ["measurements_default", "measurements_p19700101"]
    assert pg.prune_measurements(0.0) == 2


def test_partitions_with_uncovered_samples_are_not_dropped(pg: PostgresStore) -> None:
    """Whole-partition drops obey the same rule as the row deletes: a day holding a
    sample no step covers yet (a cell still pending in the engine) stays."""
    frame = _raw(2, 300, span_s=3 * DAY)
    pg.commit(CommitBatch(measurements=frame))           # no results yet
    assert pg.prune_measurements(T0 + 100 * DAY) == 0
    assert pg.ingest_stats()["measurements_stored"] == frame.height
    pg.commit(CommitBatch(steps=_covering_steps(frame, T0 + 1.5 * DAY)))
    expect = frame.filter(pl.col("ts") < T0 + 1.5 * DAY).height
    assert pg.prune_measurements(T0 + 100 * DAY) == expect
    assert pg.ingest_stats()["measurements_stored"] == frame.height - expect


# -- atomicity -----------------------------------------------------------------------
def test_failure_at_end_of_commit_leaves_no_partial_data(pg: PostgresStore, frames) -> None:
    """The very last statements of a commit (shared counters) fail after raw rows (in a
    new day partition), steps, cycles, alerts, dead letters and checkpoints were written
    in the transaction: none of it is kept."""
    pg.commit(CommitBatch(measurements=_raw(1, 10), checkpoints=[Checkpoint("p", b"old", {"o": 1})],
                          cycles=frames.cycles(frames.cycle("c1", 1, discharge_ah=2.0)),
                          counters={"s": {"accepted": 10}}))
    before = (pg.ingest_stats(), pg.cycles(), pg.cells())
    with pytest.raises(StoreError) as err:
        pg.commit(CommitBatch(
            measurements=_raw(3, 1000, t0=T0 + 30 * DAY),
            steps=frames.steps(frames.step("c1", 1, 1)),
            cycles=frames.cycles(frames.cycle("c1", 1, discharge_ah=9.0), frames.cycle("c1", 2)),
            alerts=frames.alerts({"ts": 1.0, "cell_id": "c1", "rule": "r"}),
            dead_letters=frames.dead_letters({"source": "x", "reason": "bad"}),
            checkpoints=[Checkpoint("p", b"new", {"o": 2}), Checkpoint("q", b"q", {})],
            counters={"s": {"accepted": 2**63}},  # bigint overflow, in the last statements
        ))
    assert not isinstance(err.value, StoreUnavailable)
    assert isinstance(err.value.__cause__, psycopg.Error)
    after = (pg.ingest_stats(), pg.cycles(), pg.cells())
    assert after[0]["measurements_stored"] == before[0]["measurements_stored"] == 10
    assert after[0]["samples_total"] == 10 and after[0]["dead_letters_stored"] == 0
    assert_frame_equal(after[1], before[1])
    assert_frame_equal(after[2], before[2])
    assert pg.steps("c1").height == 0 and pg.alerts().height == 0
    assert pg.load_checkpoints("") == [Checkpoint("p", b"old", {"o": 1})]
    assert pg.measurements("cell-001").height == 0
    # The day partition the failed batch asked for may exist, but holds nothing.
    assert partition_name(int((T0 + 30 * DAY) // DAY)) in pg.partitions()


# -- many writers --------------------------------------------------------------------
def test_concurrent_workers_commit_with_partition_checkpoints(postgres_url: str) -> None:
    """Kafka-style workers: separate stores (pools) committing their own cells, one
    checkpoint per partition and a shared counter source, concurrently, without
    deadlocks or lost updates."""
    n_workers, n_batches, per_batch = 3, 15, 200
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            with PostgresStore(postgres_url, pool_max_size=2) as s:
                for b in range(n_batches):
                    frame = _raw(2, per_batch, t0=T0 + b * DAY / 2, span_s=DAY / 2, seed=b)
                    frame = frame.with_columns(pl.format("w{}-{}", pl.lit(w), pl.col("cell_id"))
                                               .alias("cell_id"))
                    s.commit(CommitBatch(
                        measurements=frame,
                        checkpoints=[Checkpoint(f"worker:measurements:{w * 2 + p}",
                                                f"state-{b}".encode(), {"offset": b})
                                     for p in range(2)],
                        counters={"kafka": {"accepted": frame.height}},
                    ))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with PostgresStore(postgres_url) as s:
        total = n_workers * n_batches * 2 * per_batch
        stats = s.ingest_stats()
        assert stats["samples_total"] == total == stats["measurements_stored"]
        cps = s.load_checkpoints("worker:measurements:")
        assert [c.name for c in cps] == [f"worker:measurements:{p}" for p in range(2 * n_workers)]
        assert all(c.position == {"offset": n_batches - 1} for c in cps)
        assert s.cells_count() == 2 * n_workers


# -- ordering and parity -------------------------------------------------------------
def test_ordering_is_bytewise_whatever_the_database_locale(pg_server: PgServer,
                                                           tmp_path: Path) -> None:
    """On a database whose default collation is ICU en-US (where "a" < "B" < "b"),
    every listing is still in DuckDB's (bytewise) order."""
    name = "ct_icu_locale"
    pg_server.admin(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
                    "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
    try:
        ids = ["b", "B", "a", "_x", "A-1", "a1", "Z"]
        batch = CommitBatch(
            cells=pl.DataFrame({"cell_id": ids, "group": ids,
                                "attributes": [json.dumps({"site": i}) for i in ids]}),
            cycles=pl.DataFrame({"cell_id": ids, "cycle": [1] * len(ids), "status": ["closed"] * len(ids),
                                 "discharge_ah": [1.0] * len(ids)}),
        )
        with PostgresStore(pg_server.url(name)) as pg, DuckDBStore(tmp_path / "d.duckdb") as dk:
            with _db(pg_server.url(name)) as conn:
                assert conn.execute("SELECT 'a' < 'B'").fetchone() == (True,)  # not bytewise
            pg.commit(batch)
            dk.commit(batch)
            assert pg.cells()["cell_id"].to_list() == sorted(ids)
            assert_frame_equal(pg.cells(), dk.cells())
            assert_frame_equal(pg.cycles(), dk.cycles())
            for key in ("group", "site"):
                assert_frame_equal(pg.metric_values("discharge_ah", group_key=key),
                                   dk.metric_values("discharge_ah", group_key=key))
    finally:
        pg_server.drop_database(name)


HOSTILE = ["", "a,b", 'q"uote', "line\nbreak\r\n", "\\.", "a\n\\.\nb", "\\N", "NULL",
           "tab\there", "ünïcødé ✓", " padded ", "x'; DROP TABLE cells; --"]


def test_bit_exact_parity_with_duckdb(pg: PostgresStore, tmp_path: Path, frames) -> None:
    """The same batches give identical frames on both stores: extreme floats, NaN-as-null,
    hostile text (CSV specials, COPY's end marker, NULL look-alikes, empty vs null)."""
    rng = np.random.default_rng(42)
    n = 5_000
    extreme = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)
    meas = _raw(5, n // 5, seed=3).with_columns(pl.Series("voltage_v", extreme))
    meas = meas.with_columns(pl.Series("current_a", np.concatenate(
        [[0.0, -0.0, 5e-324, 1.7976931348623157e308, -2.2250738585072014e-308],
         rng.standard_normal(n - 5)])))
    cycles = frames.cycles(*[frames.cycle(f"cell-{i:03d}", c, discharge_ah=float(v),
                                          retention=float(v) / 3.0, coulombic_efficiency=math.nan)
                             for i in range(5) for c, v in enumerate(rng.random(4) * 3, 1)])
    dead = frames.dead_letters(*[{"source": h, "row": i, "field": h or None, "reason": h,
                                  "payload": h, "cell_id": None if i % 2 else h}
                                 for i, h in enumerate(HOSTILE)])
    cells = frames.cells(*[{"cell_id": f"cell-{i:03d}", "group": HOSTILE[i], "chemistry": None,
                            "attributes": json.dumps({"k": HOSTILE[i], "z": 1, "a": [1.5]})}
                           for i in range(5)])
    alerts = frames.alerts(*[{"ts": float(i), "cell_id": h, "rule": "r", "message": h,
                              "value": float(extreme[i])} for i, h in enumerate(HOSTILE)])
    batch = CommitBatch(measurements=meas, cycles=cycles, dead_letters=dead, cells=cells,
                        alerts=alerts)
    with DuckDBStore(tmp_path / "parity.duckdb") as dk:
        for s in (pg, dk):
            s.commit(batch)
            s.commit(batch)  # idempotent on both
        for cid in meas["cell_id"].unique().sort():
            assert_frame_equal(pg.measurements(cid), dk.measurements(cid))
        assert_frame_equal(pg.cycles(), dk.cycles())
        assert_frame_equal(pg.cells(), dk.cells())
        assert_frame_equal(pg.alerts().drop("id"), dk.alerts().drop("id"))
        assert_frame_equal(pg.dead_letters().drop("id", "received_at"),
                           dk.dead_letters().drop("id", "received_at"))
        for metric in ("discharge_ah", "retention", "coulombic_efficiency"):
            assert_frame_equal(pg.metric_values(metric), dk.metric_values(metric))
        assert pg.dead_letters(limit=len(HOSTILE))["payload"].to_list()[::-1] == HOSTILE


def test_nul_characters_do_not_fail_the_batch(pg: PostgresStore, frames) -> None:
    """PostgreSQL text cannot hold NUL: it is stored as U+FFFD, the batch goes through."""
    pg.commit(CommitBatch(dead_letters=frames.dead_letters(
        {"source": "bin.csv", "row": 3, "reason": "undecodable", "payload": "a\x00b"})))
    assert pg.dead_letters()["payload"].to_list() == ["a\ufffdb"]
