"""p97 thresholds against numpy.percentile, over "on" readings in the trailing window."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from chargetracker.meters import MeterConfig, compute_thresholds
from chargetracker.meters.thresholds import percentile_sorted


@pytest.mark.parametrize("n", [1, 2, 3, 7, 33, 1000, 12345])
@pytest.mark.parametrize("q", [0.0, 50.0, 97.0, 99.5, 100.0])
def test_percentile_matches_numpy_bit_for_bit(n: int, q: float) -> None:
    rng = np.random.default_rng(n)
    x = np.sort(rng.lognormal(5, 2, n))
    got = percentile_sorted(x, np.array([0]), np.array([n]), q)[0]
    assert got == np.percentile(x, q)


def test_threshold_table_uses_on_readings_in_the_window() -> None:
    rng = np.random.default_rng(1)
    n = 50_000
    ts = np.sort(rng.uniform(0, 40 * 86400, n))
    # An intermittent appliance: off (0-2 W) 95 % of the time.
    p = np.where(rng.random(n) < 0.05, rng.uniform(1500, 2200, n), rng.uniform(0, 2, n))
    frame = pl.DataFrame({"meter_id": ["kettle"] * n + ["idle"] * 3, "ts": np.r_[ts, 1.0, 2.0, 3.0],
                          "power_w": np.r_[p, 0.0, 0.0, 0.0]})
    as_of = 40 * 86400.0
    thr = compute_thresholds(frame, MeterConfig(), as_of=as_of)
    on = p[(ts > as_of - 30 * 86400) & (ts <= as_of) & (p > 10.0)]
    k = thr.filter(pl.col("meter_id") == "kettle").row(0, named=True)
    assert k["p97_w"] == np.percentile(on, 97) and k["n_readings"] == len(on)
    assert np.percentile(p, 97) < k["p97_w"]
    idle = thr.filter(pl.col("meter_id") == "idle").row(0, named=True)
    assert idle["p97_w"] is None and idle["n_readings"] == 0


def test_interleaved_rows_give_the_same_table() -> None:
    rng = np.random.default_rng(4)
    n = 30_000
    frame = pl.DataFrame({"meter_id": rng.choice(["a", "b", "c", "d"], n),
                          "ts": rng.uniform(0, 86400, n), "power_w": rng.gamma(1.2, 300, n)})
    mixed = compute_thresholds(frame, as_of=86400.0)
    grouped = compute_thresholds(frame.sort("meter_id"), as_of=86400.0)
    assert mixed.equals(grouped)
    for m in "abcd":
        on = frame.filter((pl.col("meter_id") == m) & (pl.col("power_w") > 10))["power_w"].to_numpy()
        assert mixed.filter(pl.col("meter_id") == m)["p97_w"][0] == np.percentile(on, 97)
