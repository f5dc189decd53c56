"""Group statistics, deviations and outlier rules on hand-derived numbers."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from chargetracker.config import StatsConfig
from chargetracker.engine.stats import RunningStats, deviations, group_stats, outliers


def values(xs: list[float], group: str = "g", cycle: int = 1) -> pl.DataFrame:
    return pl.DataFrame({"group": [group] * len(xs), "cell_id": [f"c{k}" for k in range(len(xs))],
                         "cycle": [cycle] * len(xs), "value": xs})


def test_group_stats_hand_values() -> None:
    s = group_stats(values([1.0, 2.0, 3.0, 4.0, 100.0])).row(0, named=True)
    assert s["n"] == 5
    assert s["mean"] == pytest.approx(22.0)
    assert s["std"] == pytest.approx(math.sqrt(((21**2 + 20**2 + 19**2 + 18**2 + 78**2)) / 4))
    assert s["median"] == 3.0
    assert s["mad"] == 1.0  # |x - 3| = 2,1,0,1,97 -> median 1
    assert (s["min"], s["max"]) == (1.0, 100.0)


def test_nan_and_null_are_ignored() -> None:
    s = group_stats(values([1.0, float("nan"), 3.0])).row(0, named=True)
    assert s["n"] == 2 and s["mean"] == 2.0


def test_robust_rule_flags_the_defective_cell_only() -> None:
    xs = [1.00, 1.01, 0.99, 1.02, 0.98, 1.00, 0.70]
    dev = deviations(values(xs))
    flagged = dev.filter(pl.col("outlier")).get_column("cell_id").to_list()
    assert flagged == ["c6"]
    row = dev.filter(pl.col("cell_id") == "c6").row(0, named=True)
    med, mad = 1.0, 0.01
    assert row["robust_z"] == pytest.approx(0.6745 * (0.70 - med) / mad)
    assert row["pct_deviation"] == pytest.approx(100 * (0.70 - np.mean(xs)) / np.mean(xs))


def test_sigma_rule_matches_original_two_sigma() -> None:
    xs = [1.0] * 9 + [0.5]
    cfg = StatsConfig(outlier_rule="sigma", sigma_k=2.0)
    assert outliers(values(xs), cfg).get_column("cell_id").to_list() == ["c9"]


def test_small_groups_never_flag() -> None:
    assert outliers(values([1.0, 5.0])).height == 0


def test_groups_and_cycles_are_separate() -> None:
    v = pl.concat([values([1.0, 1.0, 1.0], "a", 1), values([2.0, 2.0, 2.0], "a", 2),
                   values([5.0, 5.0, 5.0], "b", 1)])
    s = group_stats(v)
    assert s.select("group", "cycle", "mean").rows() == [("a", 1, 1.0), ("a", 2, 2.0), ("b", 1, 5.0)]


def test_running_stats_merge_equals_batch() -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(3.0, 0.2, 1000)
    a = RunningStats().update(data[:300])
    b = RunningStats().update(data[300:700])
    c = RunningStats().update(data[700:])
    a += b
    a += c
    assert a.n == 1000
    assert a.mean == pytest.approx(data.mean(), rel=1e-12)
    assert a.std == pytest.approx(data.std(ddof=1), rel=1e-10)
    assert (a.min, a.max) == (data.min(), data.max())
    assert math.isnan(RunningStats().update([1.0]).std)


def test_min_deviation_floor() -> None:
    xs = [1.000, 1.0001, 0.9999, 1.0002, 0.9998, 1.000, 0.997]  # 0.3 % low, robust z huge
    assert outliers(values(xs)).height == 0
    assert outliers(values(xs), StatsConfig(min_deviation_pct=0.0)).get_column("cell_id").to_list() == ["c6"]


def test_group_mean_is_complete_only_where_enough_cells_closed_the_cycle() -> None:
    from chargetracker.engine.stats import mark_complete

    # Group A: 5 cells; all closed cycles 1-2, four closed 3, one is ahead at cycle 4.
    rows = [("A", f"c{k}", cyc, 2.0 - 0.01 * cyc) for k in range(5) for cyc in (1, 2)]
    rows += [("A", f"c{k}", 3, 1.97) for k in range(4)] + [("A", "c0", 4, 1.96)]
    rows += [("B", "b0", 1, 2.1), ("B", "b1", 1, 2.1)]
    values = pl.DataFrame(rows, schema={"group": pl.Utf8, "cell_id": pl.Utf8, "cycle": pl.Int64,
                                        "value": pl.Float64}, orient="row")
    stats = mark_complete(group_stats(values), 0.8)
    a = stats.filter(pl.col("group") == "A").sort("cycle")
    assert a.get_column("n").to_list() == [5, 5, 4, 1]
    assert a.get_column("group_cells").to_list() == [5] * 4
    assert a.get_column("complete").to_list() == [True, True, True, False]  # 4/5 >= 0.8
    assert mark_complete(group_stats(values), 1.0).filter(pl.col("group") == "A").get_column(
        "complete").to_list() == [True, True, False, False]
    # Stats assembled from pieces (the dashboard's incremental refresh) mark the same.
    pieces = pl.concat([group_stats(values.filter(pl.col("cycle") <= 2)),
                        group_stats(values.filter(pl.col("cycle") > 2))])
    assert mark_complete(pieces, 0.8).sort(["group", "cycle"]).equals(stats)
    with pytest.raises(ValueError):
        mark_complete(stats, 1.5)
