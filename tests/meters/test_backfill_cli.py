"""``chargetracker meters backfill`` (local engine) on a simulated archive."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chargetracker.cli import main
from chargetracker.meters import MeterConfig, compute_thresholds, summarize
from chargetracker.stores.archive import METER_ARCHIVE, ParquetArchive, batch_id_for


def test_backfill_local_equals_the_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    r = tmp_path / "readings.parquet"
    assert main(["meters", "simulate", "--houses", "3", "--days", "2", "--seed", "5",
                 "--out", str(r)]) == 0
    meters = tmp_path / "readings.meters.parquet"
    out, thr = tmp_path / "daily.parquet", tmp_path / "thr.csv"
    assert main(["meters", "backfill", str(r), "--meters", str(meters), "--out", str(out),
                 "--thresholds", str(thr)]) == 0
    assert "meter days" in capsys.readouterr().err
    readings = pl.read_parquet(r)
    meta = pl.read_parquet(meters)
    cfg = MeterConfig()
    want_thr = compute_thresholds(readings, cfg)
    want = summarize(readings, cfg, meters=meta, thresholds=want_thr).days
    assert_frame_equal(pl.read_parquet(out), want)
    got_thr = pl.read_csv(thr)
    assert got_thr.get_column("meter_id").to_list() == want_thr.get_column("meter_id").to_list()
    assert got_thr.get_column("n_readings").to_list() == want_thr.get_column("n_readings").to_list()
    assert (got_thr.get_column("p97_w") - want_thr.get_column("p97_w")).abs().max() < 1e-9  # type: ignore[operator]


def test_backfill_names_a_missing_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["meters", "backfill", str(tmp_path / "nope"), "--out", str(tmp_path / "d.csv"),
               "--thresholds", str(tmp_path / "t.csv")])
    assert rc != 0
    assert "nope" in capsys.readouterr().err


def test_backfill_of_a_meter_archive_equals_the_engine(tmp_path: Path) -> None:
    """A kind-generic archive of meter readings (what a meter worker keeps, split by house
    and day, in batches out of time order) backfills to the engine's numbers, with the
    meter metadata kept beside the data (no --meters)."""
    r = tmp_path / "readings.parquet"
    assert main(["meters", "simulate", "--houses", "3", "--days", "2", "--seed", "7",
                 "--out", str(r)]) == 0
    readings = pl.read_parquet(r)
    meta = pl.read_parquet(tmp_path / "readings.meters.parquet")
    arch = ParquetArchive(tmp_path / "archive", layout=METER_ARCHIVE, fsync=False)
    arch.put_entities(meta)
    shuffled = readings.sample(fraction=1.0, shuffle=True, seed=3)
    for k, part in enumerate(shuffled.iter_slices(readings.height // 5 + 1)):
        arch.append(part, groups=meta, batch_id=batch_id_for("meter-test", k))
    assert {g for g in arch.groups()} == set(meta.get_column("house_id").to_list())
    out, thr = tmp_path / "daily.parquet", tmp_path / "thr.parquet"
    assert main(["meters", "backfill", str(tmp_path / "archive"), "--out", str(out),
                 "--thresholds", str(thr)]) == 0
    cfg = MeterConfig()
    want_thr = compute_thresholds(readings, cfg)
    want = summarize(readings, cfg, meters=meta, thresholds=want_thr).days
    assert_frame_equal(pl.read_parquet(out), want)
    got_thr = pl.read_parquet(thr)
    assert got_thr.get_column("n_readings").to_list() == want_thr.get_column("n_readings").to_list()
    assert (got_thr.get_column("p97_w") - want_thr.get_column("p97_w")).abs().max() < 1e-9  # type: ignore[operator]
