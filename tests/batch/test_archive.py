"""The Parquet archive: layout, round trip, idempotent replay, atomic files, filtered scans."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from chargetracker.errors import ConfigError, SchemaError
from chargetracker.schema import MEASUREMENT_SCHEMA
from chargetracker.stores.archive import (
    NULL_PARTITION,
    ParquetArchive,
    batch_id_for,
    parse_day,
)

from .conftest import StreamedFleet

DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def rows(cell: str, ts: list[float], *, v0: float = 3.6) -> pl.DataFrame:
    n = len(ts)
    return pl.DataFrame({
        "cell_id": [cell] * n, "ts": ts, "voltage_v": [v0 + 0.001 * i for i in range(n)],
        "current_a": [1.0] * n, "temperature_c": [25.0] * n,
    })


def canonical_sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(list(MEASUREMENT_SCHEMA)).sort(["cell_id", "ts"])


def test_layout_is_hive_partitioned_by_group_and_utc_day(tmp_path: Path) -> None:
    archive = ParquetArchive(tmp_path / "arch")
    frame = pl.concat([
        rows("a1", [T0 - 10.0, T0 + 5.0, T0 + DAY + 1.0]),   # 2025-12-31, 2026-01-01, 2026-01-02
        rows("b1", [T0 + 1.0]),
        rows("x9", [T0 + 2.0]),                               # no group
    ])
    written = archive.append(frame, {"a1": "alpha", "b1": "be/ta 2"}, "src@1")
    rel = sorted(str(p.relative_to(archive.root).parent) for p in written)
    assert rel == [
        f"group={NULL_PARTITION}/date=2026-01-01",
        "group=alpha/date=2025-12-31",
        "group=alpha/date=2026-01-01",
        "group=alpha/date=2026-01-02",
        "group=be%2Fta%202/date=2026-01-01",
    ]
    # One file per partition, named after the batch, same name in every partition.
    names = {p.name for p in written}
    assert len(names) == 1
    assert re.fullmatch(r"part-[0-9a-f-]{36}\.parquet", names.pop())
    # Partition columns live in the path only; files hold the canonical columns.
    for p in written:
        assert pq.read_schema(p).names == list(MEASUREMENT_SCHEMA)
    assert archive.groups() == ["alpha", "be/ta 2", None]
    back = archive.read()
    assert canonical_sorted(back).equals(canonical_sorted(frame.pipe(_canonical)))
    by_cell = back.group_by("cell_id").agg(pl.col("group").unique()).sort("cell_id")
    assert by_cell.to_dicts() == [
        {"cell_id": "a1", "group": ["alpha"]}, {"cell_id": "b1", "group": ["be/ta 2"]},
        {"cell_id": "x9", "group": [None]},
    ]
    dates = back.filter(pl.col("cell_id") == "a1").sort("ts").get_column("date").to_list()
    assert dates == ["2025-12-31", "2026-01-01", "2026-01-02"]


def _canonical(frame: pl.DataFrame) -> pl.DataFrame:
    from chargetracker.schema import conform

    return conform(frame)


def test_round_trip_of_a_streamed_fleet(streamed_fleet: StreamedFleet) -> None:
    arch = streamed_fleet.archive
    back = arch.read()
    assert back.height == streamed_fleet.accepted.height
    # Values survive bit for bit (float64, nulls in the optional columns).
    assert canonical_sorted(back).equals(canonical_sorted(streamed_fleet.accepted))
    # Each cell sits in its group's directories; dates follow ts (UTC).
    want = pl.DataFrame({"cell_id": list(streamed_fleet.groups),
                         "want": list(streamed_fleet.groups.values())})
    assert back.join(want, on="cell_id").filter(pl.col("group") != pl.col("want")).height == 0
    day = (pl.col("ts") // DAY).cast(pl.Int64)
    from_ts = pl.from_epoch(day * 86_400, time_unit="s").dt.strftime("%Y-%m-%d")
    assert back.filter(from_ts != pl.col("date")).height == 0
    # Files are sorted by (cell_id, ts) for compression and row-group pruning.
    f = arch.files()[0]
    data = pl.read_parquet(f)
    assert data.equals(data.sort(["cell_id", "ts"]))
    # The lazy scan gives the same rows.
    assert canonical_sorted(arch.scan().collect()).equals(canonical_sorted(back))


def test_replaying_a_batch_replaces_its_files(tmp_path: Path) -> None:
    archive = ParquetArchive(tmp_path)
    first = rows("c1", [T0 + i for i in range(10)])
    files = archive.append(first, {"c1": "g"}, batch_id_for("kafka", {"0": 100}))
    again = archive.append(first, {"c1": "g"}, batch_id_for("kafka", {"0": 100}))
    assert files == again
    assert archive.read().height == 10
    assert len(archive.files()) == 1
    # Another batch adds a file next to it.
    archive.append(rows("c1", [T0 + 10 + i for i in range(5)]), {"c1": "g"},
                   batch_id_for("kafka", {"0": 110}))
    assert archive.read().height == 15
    assert len(archive.files()) == 2


def test_batch_ids_are_stable_and_distinct() -> None:
    assert batch_id_for("k", {"b": 2, "a": 1}) == batch_id_for("k", {"a": 1, "b": 2})
    assert batch_id_for("k", {"a": 1}) != batch_id_for("k", {"a": 2})
    assert batch_id_for("k", 5) != batch_id_for("j", 5)
    with pytest.raises(ConfigError, match="not JSON-serializable"):
        batch_id_for("k", {"a": object()})


def test_temporary_files_are_invisible_and_none_are_left(tmp_path: Path) -> None:
    archive = ParquetArchive(tmp_path)
    (written,) = archive.append(rows("c1", [T0, T0 + 1.0]), None, "b1")
    # What a crash between write and rename leaves behind: readers must ignore it.
    stray = written.parent / f".{written.name}.123.abcd.tmp"
    stray.write_bytes(b"half a parquet file")
    assert archive.read().height == 2
    assert archive.files() == [written]
    # A normal append leaves no temporary file.
    archive.append(rows("c1", [T0 + 2.0]), None, "b2")
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [stray]


def test_filtered_scans(streamed_fleet: StreamedFleet) -> None:
    arch = streamed_fleet.archive
    accepted = streamed_fleet.accepted
    groups = streamed_fleet.groups
    some_cells = sorted(groups)[:3] + ["no-such-cell"]
    got = arch.read(ids=some_cells)
    assert canonical_sorted(got).equals(
        canonical_sorted(accepted.filter(pl.col("cell_id").is_in(some_cells))))
    assert canonical_sorted(arch.scan(ids=some_cells).collect()).equals(canonical_sorted(got))

    group = sorted(set(groups.values()))[1]
    members = [c for c, g in groups.items() if g == group]
    got = arch.read(groups=[group])
    assert set(got.get_column("cell_id").unique().to_list()) == set(members)
    assert got.height == accepted.filter(pl.col("cell_id").is_in(members)).height

    # Day window, inclusive on both ends; the fleet spans 2025-12-31 .. 2026-01-02.
    one_day = arch.read(since="2026-01-01", until="2026-01-01")
    expect = accepted.filter((pl.col("ts") >= T0) & (pl.col("ts") < T0 + DAY))
    assert canonical_sorted(one_day).equals(canonical_sorted(expect))
    assert set(one_day.get_column("date").unique()) == {"2026-01-01"}
    later = arch.scan(since=dt.date(2026, 1, 2), groups=[group]).collect()
    assert later.height == accepted.filter(
        (pl.col("ts") >= T0 + DAY) & pl.col("cell_id").is_in(members)).height
    # Every filter at once, and filters that match nothing.
    both = arch.read(ids=members[:1], groups=[group], since="2026-01-01", until="2026-01-02")
    assert both.get_column("cell_id").unique().to_list() == members[:1]
    assert arch.read(groups=["nope"]).height == 0
    assert arch.read(since="2030-01-01").height == 0


def test_empty_and_missing_archives_read_as_empty(tmp_path: Path) -> None:
    archive = ParquetArchive(tmp_path / "not-yet")
    empty = archive.read()
    assert empty.height == 0
    assert empty.columns == [*MEASUREMENT_SCHEMA, "group", "date"]
    assert archive.scan().collect().height == 0
    assert archive.append(pl.DataFrame(schema=MEASUREMENT_SCHEMA), None, "b") == []
    assert not archive.root.exists()


def test_bad_input_is_named(tmp_path: Path) -> None:
    archive = ParquetArchive(tmp_path)
    with pytest.raises(SchemaError, match="current_a"):
        archive.append(pl.DataFrame({"cell_id": ["a"], "ts": [T0], "voltage_v": [3.0]}), None, "b")
    with pytest.raises(SchemaError, match="voltage_v"):
        archive.append(pl.DataFrame({"cell_id": ["a"], "ts": [T0], "voltage_v": ["high"],
                                     "current_a": [1.0]}), None, "b")
    with pytest.raises(ConfigError, match="batch_id"):
        archive.append(rows("a", [T0]), None, "")
    with pytest.raises(ConfigError, match="cell_id and group"):
        archive.append(rows("a", [T0]), pl.DataFrame({"cell": ["a"]}), "b")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        ParquetArchive(tmp_path / "file")
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        archive.read(since="yesterday")


def test_groups_from_a_frame_and_empty_group_is_null(tmp_path: Path) -> None:
    archive = ParquetArchive(tmp_path)
    groups = pl.DataFrame({"cell_id": ["a", "b"], "group": ["g1", ""]})
    archive.append(pl.concat([rows("a", [T0]), rows("b", [T0])]), groups, "b1")
    back = archive.read().sort("cell_id")
    assert back.get_column("group").to_list() == ["g1", None]


def test_parse_day_forms() -> None:
    assert parse_day("2026-01-02") == dt.date(2026, 1, 2)
    assert parse_day("2026-01-02T23:30:00-02:00") == dt.date(2026, 1, 3)
    assert parse_day(T0 - 1.0) == dt.date(2025, 12, 31)
    assert parse_day(dt.datetime(2026, 1, 5, 12)) == dt.date(2026, 1, 5)
    assert parse_day(None) is None


def test_cell_metadata_is_archived_latest_row_per_cell_wins(tmp_path: Path) -> None:
    from chargetracker.stores.archive import ParquetArchive

    arch = ParquetArchive(tmp_path / "a")
    assert arch.cells().height == 0 and arch.engine_settings() is None
    first = pl.DataFrame({"cell_id": ["a", "b"], "group": ["g", "g"],
                          "nominal_capacity_ah": [2.5, 3.0]})
    arch.put_cells(first, archived_at=1.0)
    arch.put_cells(first, archived_at=1.5)       # same rows: the same file, replaced
    arch.put_cells(pl.DataFrame({"cell_id": ["a"], "nominal_capacity_ah": [2.4]}), archived_at=2.0)
    assert len(list((tmp_path / "a" / "_cells").glob("cells-*.parquet"))) == 2
    got = arch.cells()
    assert got.columns[:2] == ["cell_id", "group"]
    assert got.select("cell_id", "group", "nominal_capacity_ah").rows() == [
        ("a", None, 2.4), ("b", "g", 3.0)]
    # Hive readers skip the metadata directory: the sample scan sees no extra files.
    assert arch.files() == [] and arch.read().height == 0
    assert arch.put_engine_settings({"min_step_s": 3.0}) is False
    assert arch.put_engine_settings({"min_step_s": 3.0}) is False
    assert arch.put_engine_settings({"min_step_s": 5.0}) is True   # changed: said so
    assert arch.engine_settings() == {"min_step_s": 5.0}


def test_append_many_writes_every_batch_and_a_replay_replaces_its_files(tmp_path: Path) -> None:
    from chargetracker.stores.archive import ParquetArchive

    arch = ParquetArchive(tmp_path / "a")

    def rows(cell: str, t0: float) -> pl.DataFrame:
        return pl.DataFrame({"cell_id": [cell] * 3, "ts": [t0, t0 + 1, t0 + 86_400.0],
                             "voltage_v": [3.7] * 3, "current_a": [1.0] * 3})

    batches = [(rows("a", 0.0), "p0@0"), (rows("b", 10.0), "p1@0")]
    written = arch.append_many(batches, groups={"a": "g1", "b": "g2"})
    assert len(written) == 4                 # 2 batches x 2 days
    assert arch.append_many(batches, groups={"a": "g1", "b": "g2"}) == written
    assert arch.read().height == 6
    assert not list((tmp_path / "a").rglob("*.tmp"))
    with pytest.raises(ConfigError):
        arch.append_many([(rows("a", 0.0), "")])


def test_an_archive_holds_one_kind(tmp_path: Path) -> None:
    """Any kind archives through its layout (meters: by house), and an archive is never
    read as another kind's records."""
    from chargetracker.errors import ConfigError, SchemaError
    from chargetracker.stores.archive import CELL_ARCHIVE, METER_ARCHIVE

    meters = pl.DataFrame({"meter_id": ["h1/mains", "h2/mains"], "house_id": ["h1", "h2"],
                           "appliance": ["mains", "mains"], "timezone": ["UTC", "UTC"]})
    readings = pl.DataFrame({"meter_id": ["h2/mains", "h1/mains", "h1/mains"],
                             "ts": [T0 + 5, T0 + DAY + 1, T0 + 1], "power_w": [10.0, 20.0, 30.0]})
    arch = ParquetArchive(tmp_path / "m", layout=METER_ARCHIVE, fsync=False)
    arch.put_entities(meters)
    arch.append(readings, groups=meters, batch_id=batch_id_for("t", 0))
    arch.append(readings, groups=meters, batch_id=batch_id_for("t", 0))  # a replay replaces
    assert [(g, d) for g, d, _ in arch.partitions()] == [
        ("h1", "2026-01-01"), ("h1", "2026-01-02"), ("h2", "2026-01-01")]
    got = arch.read(ids=["h1/mains"]).sort("ts")
    assert got.get_column("power_w").to_list() == [30.0, 20.0]
    assert got.get_column("energy_wh").null_count() == 2  # optional column, absent -> null
    assert arch.entities().get_column("house_id").to_list() == ["h1", "h2"]
    with pytest.raises(ConfigError, match="holds meter records"):
        ParquetArchive(tmp_path / "m", layout=CELL_ARCHIVE)
    with pytest.raises(SchemaError, match="power_w"):
        arch.append(readings.drop("power_w"), batch_id=batch_id_for("t", 1))


def test_files_are_sorted_by_cell_and_ts_whatever_the_arrival_order(tmp_path: Path) -> None:
    # Interleaved, shuffled, ids whose lexical order differs from their numeric one.
    cells = ["a9", "a10", "b", "a1", "", "A2"]
    frame = pl.concat([rows(c, [T0 + 7.0 * i + k for i in range(40)]) for k, c in enumerate(cells)])
    frame = frame.sample(fraction=1.0, shuffle=True, seed=7)
    archive = ParquetArchive(tmp_path / "a", fsync=False)
    written = archive.append(frame, groups={"a9": "g", "b": "g"}, batch_id="shuffled")
    assert len(written) == 2  # group g and the null group, one day
    for path in written:
        data = pl.read_parquet(path)
        assert data.equals(data.sort(["cell_id", "ts"]))
    back = archive.read().drop("group", "date")
    assert back.sort(["cell_id", "ts"]).equals(
        frame.pipe(_canonical).sort(["cell_id", "ts"]).select(back.columns))
    assert pq.ParquetFile(written[0]).metadata.row_group(0).column(0).compression == "ZSTD"
