"""Spike episodes on injected spikes: none missed, none doubled, one alert per episode."""

from __future__ import annotations

import numpy as np
import polars as pl

from chargetracker.meters import MeterConfig, summarize

from .helpers import incremental, readings


def test_injected_spikes_each_raise_one_alert() -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    ts = np.arange(n) * 60.0
    p = rng.uniform(100, 400, n)
    starts = np.sort(rng.choice(np.arange(10, n - 20, 40), size=60, replace=False))
    lengths = rng.integers(1, 6, size=60)
    for s, L in zip(starts, lengths, strict=True):
        p[s : s + L] = rng.uniform(1000, 3000, L)
    frame = readings("m", ts, p)
    thr = pl.DataFrame({"meter_id": ["m"], "p97_w": [500.0]})
    cfg = MeterConfig(spike_margin=0.2, spike_floor_w=100.0)
    alerts = summarize(frame, cfg, thresholds=thr).alerts
    assert alerts.height == 60
    assert alerts.get_column("start_ts").to_list() == (starts * 60.0).tolist()
    assert alerts.get_column("n_readings").to_list() == lengths.tolist()
    assert (alerts.get_column("duration_s").to_numpy() == (lengths - 1) * 60.0).all()
    peaks = [p[s : s + L].max() for s, L in zip(starts, lengths, strict=True)]
    assert alerts.get_column("peak_w").to_list() == peaks
    assert np.allclose(alerts.get_column("ratio").to_numpy(), np.array(peaks) / 500.0)
    assert (alerts.get_column("status") == "closed").all()
    # Live: the alert appears when the episode opens, is updated when it ends.
    days, inc, _ = incremental(frame, list(range(0, n, 997)), cfg, thresholds=thr)
    assert inc.equals(alerts)


def test_open_alert_is_emitted_at_the_first_spiking_reading() -> None:
    from chargetracker.meters import new_state, set_thresholds, update

    st = new_state(MeterConfig(spike_margin=0.0, spike_floor_w=0.0))
    set_thresholds(st, pl.DataFrame({"meter_id": ["m"], "p97_w": [100.0]}))
    st, out = update(st, readings("m", [0.0, 60.0], [50.0, 250.0]))
    assert out.alerts.height == 1 and out.alerts["status"][0] == "open"
    st, out = update(st, readings("m", [120.0, 180.0], [400.0, 50.0]))
    a = out.alerts.row(0, named=True)
    assert a["status"] == "closed" and a["peak_w"] == 400.0 and a["duration_s"] == 60.0


def test_no_threshold_no_alert_and_floor_applies() -> None:
    frame = readings("m", [0.0, 60.0, 120.0], [10.0, 90.0, 10.0])
    assert summarize(frame).alerts.height == 0
    thr = pl.DataFrame({"meter_id": ["m"], "p97_w": [20.0]})
    assert summarize(frame, MeterConfig(spike_floor_w=100.0), thresholds=thr).alerts.height == 0
    assert summarize(frame, MeterConfig(spike_floor_w=50.0), thresholds=thr).alerts.height == 1
