"""Hand-derived daily energy cases: constant power, ramps, midnight split, DST, gaps."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from chargetracker.meters import MeterConfig, summarize

from .helpers import readings

DAY = 86_400.0


def _meta(meter: str, appliance: str = "kettle", tz: str = "UTC") -> pl.DataFrame:
    return pl.DataFrame({"meter_id": [meter], "house_id": ["h"], "appliance": [appliance],
                         "timezone": [tz]})


def test_constant_power_full_day_is_24_kwh() -> None:
    ts = np.arange(0, 2 * DAY + 1, 60.0)
    days = summarize(readings("m", ts, np.full(len(ts), 1000.0))).days
    first = days.row(0, named=True)
    assert first["date"] == dt.date(1970, 1, 1)
    assert first["energy_kwh"] == pytest.approx(24.0, rel=1e-12)
    assert first["coverage"] == 1.0 and first["status"] == "closed"
    assert first["n_readings"] == 1440 and first["mean_power_w"] == pytest.approx(1000.0)
    assert days.get_column("energy_kwh").to_list()[:2] == pytest.approx([24.0, 24.0])


def test_ramp_is_a_trapezoid_and_uneven_timestamps_count() -> None:
    # 0 -> 1000 W linearly over one hour, sampled unevenly: trapezoid is exact for a ramp.
    ts = np.array([0.0, 7.0, 100.0, 1000.0, 2500.0, 3600.0]) + 3600.0
    p = ts - 3600.0
    p = p / 3600.0 * 1000.0
    d = summarize(readings("m", ts, p), MeterConfig(gap_limit_s=3600.0)).days.row(0, named=True)
    assert d["energy_wh"] == pytest.approx(500.0, rel=1e-12)
    assert d["covered_s"] == 3600.0
    assert d["min_power_w"] == 0.0 and d["max_power_w"] == 1000.0 and d["peak_ts"] == 7200.0


def test_midnight_split_interpolates_power_at_the_boundary() -> None:
    # 23:30 at 0 W, 00:30 at 1000 W: 500 W at midnight, 125 Wh before, 375 Wh after.
    days = summarize(readings("m", [DAY - 1800, DAY + 1800], [0.0, 1000.0]),
                     MeterConfig(gap_limit_s=3600.0)).days
    assert days.get_column("energy_wh").to_list() == pytest.approx([125.0, 375.0], rel=1e-12)
    assert days.get_column("covered_s").to_list() == [1800.0, 1800.0]
    assert days.get_column("n_readings").to_list() == [1, 1]


def test_reading_exactly_at_midnight_belongs_to_the_new_day() -> None:
    days = summarize(readings("m", [DAY - 60, DAY, DAY + 60], [100.0, 100.0, 100.0])).days
    assert days.get_column("n_readings").to_list() == [1, 2]
    assert days.get_column("energy_wh").to_list() == pytest.approx([100 / 60, 100 / 60])


@pytest.mark.parametrize(("day", "hours"), [(dt.date(2024, 3, 31), 23), (dt.date(2024, 10, 27), 25),
                                            (dt.date(2024, 6, 1), 24)])
def test_dst_days_in_london_last_23_or_25_hours(day: dt.date, hours: int) -> None:
    tz = ZoneInfo("Europe/London")
    start = dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
    ts = np.arange(start - 3600, start + 50 * 3600, 60.0)
    frame = readings("m", ts, np.full(len(ts), 600.0))
    days = summarize(frame, meters=_meta("m", tz="Europe/London")).days
    row = days.filter(pl.col("date") == day).row(0, named=True)
    assert row["day_length_s"] == hours * 3600
    assert row["day_start_ts"] == start
    assert row["energy_kwh"] == pytest.approx(0.6 * hours, rel=1e-12)
    assert row["coverage"] == pytest.approx(1.0)
    assert row["n_readings"] == hours * 60


def test_local_midnight_not_utc_midnight() -> None:
    # New York is UTC-5 in January: the local day starts at 05:00 UTC.
    start = dt.datetime(2024, 1, 10, tzinfo=ZoneInfo("America/New_York")).timestamp()
    frame = readings("m", [start - 60, start + 60], [0.0, 120.0])
    days = summarize(frame, meters=_meta("m", tz="America/New_York")).days
    assert days.get_column("date").to_list() == [dt.date(2024, 1, 9), dt.date(2024, 1, 10)]
    assert days.get_column("energy_wh").to_list() == pytest.approx([30 / 60, 90 / 60])


def test_gap_longer_than_limit_is_not_integrated_and_counted() -> None:
    ts = [0.0, 60.0, 120.0, 120.0 + 3600.0, 3780.0]
    d = summarize(readings("m", ts, [600.0] * 5), MeterConfig(gap_limit_s=600.0)).days.row(0, named=True)
    assert d["covered_s"] == 180.0
    assert d["energy_wh"] == pytest.approx(600.0 * 180 / 3600)
    assert d["gap_count"] == 1
    assert d["coverage"] == pytest.approx(180.0 / DAY)


def test_duplicates_and_out_of_order_rows() -> None:
    ts = [0.0, 120.0, 60.0, 60.0, 180.0]
    p = [100.0, 300.0, 200.0, 999.0, 400.0]
    s = summarize(readings("m", ts, p))
    d = s.days.row(0, named=True)
    # Sorted: 0:100, 60:200 (first arrival wins), 120:300, 180:400.
    assert d["energy_wh"] == pytest.approx((150 + 250 + 350) * 60 / 3600)
    assert s.rejected.height == 1
    bad = s.rejected.row(0, named=True)
    assert bad["row"] == 3 and bad["field"] == "ts" and "duplicate" in bad["reason"]


def test_counter_is_integrated_over_the_same_intervals() -> None:
    ts = np.arange(0.0, 3601.0, 60.0)
    e = 1000.0 + ts / 3600.0 * 500.0
    d = summarize(readings("m", ts, np.full(len(ts), 500.0), e)).days.row(0, named=True)
    assert d["counter_wh"] == pytest.approx(500.0)
    assert d["energy_wh"] == pytest.approx(500.0)


def _zero_run(n_zero: int, appliance: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    p = [200.0] * 10 + [0.0] * n_zero + [200.0] * 10
    ts = np.arange(len(p)) * 60.0
    return readings("m", ts, p), _meta("m", appliance)


def test_long_exact_zero_run_on_mains_is_a_gap() -> None:
    frame, meta = _zero_run(10, "mains")  # zeros span 9 minutes > 5 minute limit
    d = summarize(frame, meters=meta).days.row(0, named=True)
    # 9 intervals before, 9 after integrated; 11 intervals around the zero run excluded.
    assert d["zero_run_count"] == 1
    assert d["zero_run_s"] == 11 * 60.0
    assert d["covered_s"] == 18 * 60.0
    assert d["energy_wh"] == pytest.approx(200.0 * 18 / 60)
    assert d["min_power_w"] == 200.0
    assert d["n_readings"] == 30


def test_short_zero_run_and_appliance_zeros_are_real() -> None:
    frame, meta = _zero_run(3, "mains")
    d = summarize(frame, meters=meta).days.row(0, named=True)
    assert d["zero_run_count"] == 0 and d["covered_s"] == 22 * 60.0 and d["min_power_w"] == 0.0
    frame, meta = _zero_run(10, "washingmachine")
    d = summarize(frame, meters=meta).days.row(0, named=True)
    assert d["zero_run_count"] == 0 and d["covered_s"] == 29 * 60.0


def test_zero_run_at_end_of_stream_is_judged_at_flush() -> None:
    p = [200.0] * 5 + [0.0] * 10
    frame = readings("m", np.arange(len(p)) * 60.0, p)
    d = summarize(frame, meters=_meta("m", "mains")).days.row(0, named=True)
    assert d["zero_run_count"] == 1 and d["covered_s"] == 4 * 60.0
