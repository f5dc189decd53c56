"""The Parquet batch layer equals the engine's batch form and the threshold table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from chargetracker.errors import SchemaError
from chargetracker.meters import MeterConfig, compute_thresholds, summarize
from chargetracker.meters.batch import archive_as_of, recompute, recompute_parquet
from chargetracker.meters.thresholds import slot_thresholds

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _readings(n_meters: int, n: int, seed: int = 0) -> pl.DataFrame:
    """Meters sorted by id, irregular steps (some gaps), intermittent power with spikes."""
    rng = np.random.default_rng(seed)
    ids, ts, p = [], [], []
    for k in range(n_meters):
        dt = rng.choice([30.0, 60.0, 61.5, 900.0], size=n, p=[0.5, 0.3, 0.19, 0.01])
        t = T0 + rng.uniform(0, 3600) + np.cumsum(dt)
        w = rng.gamma(1.5, 300.0, n)
        w[rng.random(n) < 0.4] = 0.0
        w[rng.random(n) < 0.002] *= 15.0
        ids.append(np.full(n, k))
        ts.append(t)
        p.append(w)
    names = pl.Series([f"h{k // 3}/m{k:03d}" for k in range(n_meters)], dtype=pl.Utf8)
    return pl.DataFrame({"meter_id": names.gather(np.concatenate(ids)), "ts": np.concatenate(ts),
                         "power_w": np.concatenate(p)})


def _meta(frame: pl.DataFrame) -> pl.DataFrame:
    ids = frame.get_column("meter_id").unique(maintain_order=True)
    return pl.DataFrame({
        "meter_id": ids, "house_id": ids.str.split("/").list.first(),
        "appliance": ["mains" if k % 3 == 0 else "fridge" for k in range(len(ids))],
        "zip": ["02139"] * len(ids),
        "timezone": ["America/New_York" if k % 2 else "Europe/London" for k in range(len(ids))],
    })


def _collect(results: object) -> list[pl.DataFrame]:
    rs = list(results)  # type: ignore[call-overload]
    return [pl.concat([getattr(r, k) for r in rs]) for k in ("days", "thresholds", "alerts",
                                                              "rejected")]


def _expected(frame: pl.DataFrame, cfg: MeterConfig, meta: pl.DataFrame | None,
              as_of: float) -> list[pl.DataFrame]:
    thr = compute_thresholds(frame, cfg, as_of=as_of)
    s = summarize(frame, cfg, meters=meta, thresholds=thr)
    return [s.days, thr, s.alerts, s.rejected]


@pytest.mark.parametrize("row_group", [997, 5000, 100_000])
def test_parquet_batch_equals_summarize_and_thresholds(tmp_path: Path, row_group: int) -> None:
    frame = _readings(7, 3000)
    # Zero runs on a mains meter, so suspicious runs are judged in the fast path too.
    frame = frame.with_columns(pl.when((pl.col("meter_id") == "h0/m000")
                                       & (pl.int_range(pl.len()) % 3000 < 40))
                               .then(0.0).otherwise(pl.col("power_w")).alias("power_w"))
    path = tmp_path / "a.parquet"
    frame.write_parquet(path, row_group_size=row_group)
    cfg = MeterConfig(on_w=10.0, spike_margin=0.1)
    meta = _meta(frame)
    as_of = float(frame.get_column("ts").max())
    assert archive_as_of([path]) == as_of
    want = _expected(frame, cfg, meta, as_of)
    # Chunks smaller than a row group and meters spanning row groups.
    import chargetracker.meters.batch as batch

    old = batch.CHUNK_READINGS
    batch.CHUNK_READINGS = 4000
    try:
        got = _collect(batch.recompute_parquet(path, cfg, meters=meta))
    finally:
        batch.CHUNK_READINGS = old
    for g, w in zip(got[:3], want[:3], strict=True):
        assert_frame_equal(g.sort(g.columns[:2]), w.sort(w.columns[:2]))
    assert got[2].height > 0  # the spikes were seen
    assert got[3].height == 0


def test_small_chunks_and_several_files_give_the_same_table(tmp_path: Path) -> None:
    frame = _readings(6, 1500, seed=3)
    parts = [frame.filter(pl.col("meter_id") < "h1/m004"), frame.filter(pl.col("meter_id") >= "h1/m004")]
    paths = []
    for k, part in enumerate(parts):
        paths.append(tmp_path / f"p{k}.parquet")
        # Plain (not dictionary-encoded) strings in one of the files.
        pq.write_table(part.to_arrow(), paths[-1], row_group_size=700, use_dictionary=k == 0)
    cfg = MeterConfig()
    as_of = float(frame.get_column("ts").max())
    want = _expected(frame, cfg, None, as_of)
    import chargetracker.meters.batch as batch

    got = _collect(batch.recompute_parquet(paths, cfg, workers=1))
    for g, w in zip(got[:3], want[:3], strict=True):
        assert_frame_equal(g.sort(g.columns[:2]), w.sort(w.columns[:2]))
    # The DataFrame-chunk form agrees as well.
    old = _collect(recompute([parts[0], parts[1]], cfg, as_of=as_of))
    for g, w in zip(old[:3], want[:3], strict=True):
        assert_frame_equal(g.sort(g.columns[:2]), w.sort(w.columns[:2]))


def test_bad_rows_become_dead_letters_with_the_archive_row(tmp_path: Path) -> None:
    frame = _readings(3, 800, seed=5)
    bad_rows = [10, 1234, 2000]
    p = frame.get_column("power_w").to_numpy().copy()
    p[bad_rows[0]] = np.nan
    p[bad_rows[1]] = np.inf
    ids = frame.get_column("meter_id").to_list()
    ids[bad_rows[2]] = None
    bad = pl.DataFrame({"meter_id": pl.Series(ids, dtype=pl.Utf8), "ts": frame.get_column("ts"),
                        "power_w": p})
    path = tmp_path / "bad.parquet"
    bad.write_parquet(path, row_group_size=600)
    got = _collect(recompute_parquet(path, MeterConfig()))
    rej = got[3].sort("row")
    assert rej.get_column("row").to_list() == bad_rows
    assert set(rej.get_column("field").to_list()) == {"power_w", "meter_id"}
    assert rej.get_column("reason").str.len_chars().min() > 0  # type: ignore[operator]
    good = bad.filter(~pl.int_range(pl.len()).is_in(bad_rows))
    # Every good reading beside the bad ones is counted in a day.
    assert got[0].get_column("n_readings").sum() == good.height


def test_an_archive_not_grouped_by_meter_is_refused(tmp_path: Path) -> None:
    frame = _readings(3, 500).sort("ts")
    path = tmp_path / "by_time.parquet"
    frame.write_parquet(path, row_group_size=100)
    with pytest.raises(SchemaError, match="not grouped by meter"):
        list(recompute_parquet(path, MeterConfig(), workers=1))


def test_missing_column_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"meter_id": ["a"], "ts": [T0]}), path)
    with pytest.raises(SchemaError, match=r"x\.parquet.*power_w"):
        list(recompute_parquet(path))


def test_slot_thresholds_equal_numpy_percentile_in_any_order() -> None:
    rng = np.random.default_rng(9)
    n = 20_000
    slot = rng.integers(0, 5, n)
    ts = T0 + rng.uniform(0, 40 * 86_400, n)
    p = np.round(rng.gamma(1.2, 400.0, n), 1)
    p[rng.random(n) < 0.3] = 0.0
    cfg = MeterConfig(window_days=30.0, on_w=10.0, percentile=97.0)
    as_of = T0 + 35 * 86_400
    thr, counts = slot_thresholds(slot, ts, p, 6, cfg, as_of)
    for s in range(5):
        m = (slot == s) & (ts > as_of - 30 * 86_400) & (ts <= as_of) & (p > 10.0)
        assert counts[s] == m.sum()
        assert thr[s] == np.percentile(p[m], 97.0)
    assert counts[5] == 0 and np.isnan(thr[5])


@pytest.mark.parametrize("energy", ["all_null", "some_groups"])
def test_energy_column_of_nulls_reads_as_no_counter(tmp_path: Path, energy: str) -> None:
    frame = _readings(5, 2000, seed=4)
    n = frame.height
    if energy == "all_null":  # what the simulator writes: the column, no values
        e = pl.Series("energy_wh", [None] * n, dtype=pl.Float64)
    else:  # a counter in the second half only: some row groups null, others not
        wh = (pl.int_range(n, eager=True) * 0.5).cast(pl.Float64)
        e = pl.Series("energy_wh", [None] * (n // 2), dtype=pl.Float64).append(wh[n // 2 :])
    frame = frame.with_columns(e)
    path = tmp_path / "e.parquet"
    frame.write_parquet(path, row_group_size=1500, statistics=True)
    cfg = MeterConfig()
    as_of = float(frame.get_column("ts").max())
    got = _collect(recompute_parquet(path, cfg, as_of=as_of))
    want = _expected(frame, cfg, None, as_of)
    for g, w in zip(got[:3], want[:3], strict=True):
        assert_frame_equal(g.sort(g.columns[:2]), w.sort(w.columns[:2]))
    has_counter = got[0].get_column("counter_wh").is_not_null().any()
    assert has_counter == (energy == "some_groups")
