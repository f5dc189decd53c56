"""The house simulator: deterministic, replays real profiles, injected spikes all detected once."""

from __future__ import annotations

import numpy as np
import polars as pl

from chargetracker.meters import MeterConfig, compute_thresholds, summarize
from chargetracker.meters.simulator import (
    SimConfig,
    house_readings,
    house_specs,
    injected_spikes,
    live_batches,
    load_profiles,
    simulate,
)

PROFILES = load_profiles()


def _all(cfg: SimConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    parts = list(simulate(cfg, PROFILES, houses_per_chunk=7))
    return pl.concat([m for m, _ in parts]), pl.concat([r for _, r in parts])


def test_deterministic_by_seed_and_independent_of_chunking() -> None:
    cfg = SimConfig(houses=12, days=2, seed=5)
    m1, r1 = _all(cfg)
    parts = list(simulate(cfg, PROFILES, houses_per_chunk=5))
    assert pl.concat([r for _, r in parts]).equals(r1)
    assert pl.concat([m for m, _ in parts]).equals(m1)
    _, r3 = _all(SimConfig(houses=12, days=2, seed=6))
    assert not r3.equals(r1)
    # Any time range of a house is the same slice of the whole.
    spec = house_specs(cfg, PROFILES, 3, 1)[0]
    whole = house_readings(cfg, spec, PROFILES)
    part = house_readings(cfg, spec, PROFILES, 100, 900)
    assert part.equals(whole.filter(pl.col("ts").is_in(part["ts"].implode())))
    assert m1.get_column("appliance").is_in(["mains"]).sum() == 12
    assert r1.height == m1.height * 2 * 1440


def test_injected_spikes_are_each_detected_once() -> None:
    cfg = SimConfig(houses=25, days=6, seed=1, spikes_per_house_day=0.5)
    meters, readings = _all(cfg)
    truth = injected_spikes(cfg, house_specs(cfg, PROFILES), PROFILES)
    mc = MeterConfig()
    thr = compute_thresholds(readings, mc)
    t = truth.join(thr, on="meter_id").filter(
        pl.col("p97_w").is_not_null()
        & (pl.col("peak_w") > pl.max_horizontal(pl.col("p97_w") * (1 + mc.spike_margin),
                                                pl.lit(mc.spike_floor_w))))
    assert t.height >= 30
    alerts = summarize(readings, mc, meters=meters, thresholds=thr).alerts
    for row in t.iter_rows(named=True):
        end = row["start_ts"] + (row["n_readings"] - 1) * cfg.interval_s
        hit = alerts.filter((pl.col("meter_id") == row["meter_id"]) & (pl.col("start_ts") <= end)
                            & (pl.col("end_ts") >= row["start_ts"]))
        assert hit.height == 1, row  # none missed, none doubled
        assert hit["peak_w"][0] == row["peak_w"]
        assert hit["house_id"][0] == row["meter_id"].split("/")[0]
        assert hit["zip"][0] is not None


def test_live_batches_cover_the_stream_in_time_order() -> None:
    cfg = SimConfig(houses=3, days=0.05, seed=2)
    now = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    batches = list(live_batches(cfg, PROFILES, speed=600.0, batch_s=1.0, sleep=sleep,
                                clock=lambda: now[0]))
    allr = pl.concat(batches)
    _, whole = _all(cfg)
    assert allr.sort("meter_id", "ts").equals(whole.sort("meter_id", "ts"))
    assert all(b["ts"].is_sorted() for b in batches)
    assert len(batches) > 3 and np.all(np.array(waits) > 0)


def test_live_batches_from_a_step_continue_the_same_simulation() -> None:
    cfg = SimConfig(houses=3, days=0.05, seed=2)
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    first = 30
    specs = house_specs(cfg, PROFILES)
    tail = pl.concat(list(live_batches(cfg, PROFILES, speed=600.0, sleep=sleep, clock=lambda: now[0],
                                       first_step=first, specs=specs)))
    _, whole = _all(cfg)
    t_first = cfg.start_ts + first * cfg.interval_s
    # The steps before first_step (a history posted separately) are skipped, the rest equal.
    expect = whole.filter(pl.col("ts") >= t_first).sort("meter_id", "ts")
    assert tail.height == expect.height > 0
    assert tail.sort("meter_id", "ts").equals(expect)
    assert tail["ts"].min() >= t_first
