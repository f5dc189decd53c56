"""Incremental == batch, bit for bit, for any split of the stream (and a state round trip)."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from chargetracker.meters import MeterConfig, summarize

from .helpers import incremental

CFG = MeterConfig(gap_limit_s=900.0, zero_run_limit_s=240.0, spike_margin=0.1, spike_floor_w=50.0)


def _stream(seed: int, n: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Three meters across DST and midnights: zeros runs, spikes, gaps, counters."""
    rng = np.random.default_rng(seed)
    start = 1711756800.0 - 3 * 3600  # 2024-03-30 21:00 UTC: the London spring-forward night
    frames = []
    for k, mid in enumerate(["h/mains", "h/kettle", "g/mains"]):
        dt = rng.choice([30.0, 60.0, 60.0, 120.0, 1200.0], size=n, p=[.2, .4, .2, .15, .05])
        ts = start + np.cumsum(dt) + k
        p = rng.gamma(2.0, 150.0, size=n)
        zero = rng.random(n) < 0.05
        for z in np.flatnonzero(zero)[:3]:
            p[z : z + rng.integers(1, 12)] = 0.0
        p[rng.random(n) < 0.03] *= 8.0
        frames.append(pl.DataFrame({"meter_id": mid, "ts": ts, "power_w": p,
                                    "energy_wh": np.cumsum(p * dt / 3600.0)}))
    # Interleave meters the way a live stream arrives.
    frame = pl.concat(frames).sort("ts")
    meta = pl.DataFrame({"meter_id": ["h/mains", "h/kettle", "g/mains"], "house_id": ["h", "h", "g"],
                         "appliance": ["mains", "kettle", "mains"], "zip": ["Z1", "Z1", "Z2"],
                         "timezone": ["Europe/London", "Europe/London", "America/New_York"]})
    thr = pl.DataFrame({"meter_id": ["h/mains", "h/kettle"], "p97_w": [900.0, 700.0]})
    return frame, meta, thr


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(0, 1200), max_size=8),
       roundtrip=st.booleans())
def test_any_split_equals_batch(seed: int, cuts: list[int], roundtrip: bool) -> None:
    frame, meta, thr = _stream(seed, 400)
    batch = summarize(frame, CFG, meters=meta, thresholds=thr)
    days, alerts, rejected = incremental(frame, cuts, CFG, meters=meta, thresholds=thr,
                                         roundtrip=roundtrip)
    assert batch.days.height >= 6 and batch.alerts.height > 0
    assert_frame_equal(days, batch.days, check_exact=True)
    assert_frame_equal(alerts, batch.alerts, check_exact=True)
    assert rejected.height == batch.rejected.height == 0


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(0, 1200), max_size=6))
def test_disorder_inside_the_lateness_window_equals_batch(seed: int, cuts: list[int]) -> None:
    frame, meta, thr = _stream(seed, 400)
    rng = np.random.default_rng(seed)
    # Jitter arrival order by up to ~90 s of stream time; lateness 300 s covers it.
    key = frame.get_column("ts").to_numpy() + rng.uniform(0, 90, frame.height)
    shuffled = frame.with_columns(pl.Series("__k", key)).sort("__k").drop("__k")
    cfg = MeterConfig(gap_limit_s=900.0, zero_run_limit_s=240.0, lateness_s=300.0,
                      spike_margin=0.1, spike_floor_w=50.0)
    batch = summarize(frame, cfg, meters=meta, thresholds=thr)
    days, alerts, rejected = incremental(shuffled, cuts, cfg, meters=meta, thresholds=thr)
    assert_frame_equal(days, batch.days, check_exact=True)
    assert_frame_equal(alerts, batch.alerts, check_exact=True)
    assert rejected.height == 0


def test_late_reading_across_batches_is_a_dead_letter() -> None:
    frame = pl.DataFrame({"meter_id": ["m"] * 4, "ts": [0.0, 60.0, 120.0, 30.0],
                          "power_w": [1.0, 2.0, 3.0, 4.0]})
    _, _, rejected = incremental(frame, [3])
    assert rejected.height == 1
    r = rejected.row(0, named=True)
    assert r["row"] == 0 and r["ts"] == 30.0 and r["reason"].startswith("late")
