"""The dashboard's read side against a real (in-memory DuckDB) store: version token,
memoisation and the incremental group trend, which must equal Queries.group_trend."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from chargetracker.config import Settings
from chargetracker.dashboard.data import DashboardData, trend_stats
from chargetracker.queries import Queries
from chargetracker.stores.base import CommitBatch
from chargetracker.stores.duckdb import DuckDBStore

from .frames import cells_frame, cycles_frame

GROUPS = {f"c{i}": ("g1" if i < 4 else "g2") for i in range(8)}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store() -> DuckDBStore:
    s = DuckDBStore(":memory:")
    s.upsert_cells(cells_frame(GROUPS, c0='{"rack": "B", "line": 7}'))
    yield s
    s.close()


def cap(cell: str, cycle: int) -> float:
    return 2.5 - 0.001 * cycle - 0.01 * int(cell[1:])


def commit_cycles(store: DuckDBStore, cells: list[str], cycles: range, status: str = "closed") -> None:
    store.commit(CommitBatch(cycles=cycles_frame([(c, k, cap(c, k)) for c in cells for k in cycles],
                                                 status=status)))


def test_version_token_changes_with_commits_and_alerts(store: DuckDBStore) -> None:
    data = DashboardData(Queries(store))
    _, t0 = data.status()
    assert data.status()[1] == t0  # nothing happened: same token
    commit_cycles(store, ["c0"], range(1, 3))
    _, t1 = data.status()
    assert t1 != t0
    store.commit(CommitBatch(alerts=pl.DataFrame({"ts": [1.0], "cell_id": ["c0"], "rule": ["x"]})))
    _, t2 = data.status()
    assert t2 != t1 and t2[3] == t1[3] + 1  # the newest alert id is part of it
    assert data.open_alerts() == (1, False)


def test_incremental_trend_equals_full_query(store: DuckDBStore) -> None:
    mono = Clock()
    q = Queries(store)
    data = DashboardData(q, Settings(), full_refresh_s=60.0, monotonic=mono)
    cells = list(GROUPS)
    commit_cycles(store, cells, range(1, 11))
    commit_cycles(store, cells, range(11, 12), status="open")
    closed, opened = data.trend("discharge_ah", token=data.status()[1])
    assert data.trend_refreshes == {"full": 1, "incremental": 0, "cached": 0}
    assert_frame_equal(closed, q.group_trend("discharge_ah"))
    assert_frame_equal(opened, q.group_trend("discharge_ah", status="open"))

    # Same token: served from the cache.
    data.trend("discharge_ah", token=data.status()[1])
    assert data.trend_refreshes["cached"] == 1

    # Cells close more cycles at different paces (c7 lags behind): incremental.
    commit_cycles(store, cells[:7], range(11, 15))
    commit_cycles(store, cells[7:], range(11, 12))
    closed, _ = data.trend("discharge_ah", token=data.status()[1])
    assert data.trend_refreshes["incremental"] == 1 and data.trend_refreshes["full"] == 1
    assert_frame_equal(closed, q.group_trend("discharge_ah"))

    # Then the laggard catches up: cycles below the others' frontier change, still exact.
    commit_cycles(store, cells[7:], range(12, 15))
    closed, _ = data.trend("discharge_ah", token=data.status()[1])
    assert data.trend_refreshes["incremental"] == 2
    assert_frame_equal(closed, q.group_trend("discharge_ah"))

    # A history rewrite (backfill) below every frontier is picked up by the periodic full refresh.
    store.commit(CommitBatch(cycles=cycles_frame([("c0", 1, 1.0)])))
    mono.t = 61.0
    closed, _ = data.trend("discharge_ah", token=data.status()[1])
    assert data.trend_refreshes["full"] == 2
    assert_frame_equal(closed, q.group_trend("discharge_ah"))


def test_new_cell_forces_full_refresh(store: DuckDBStore) -> None:
    q = Queries(store)
    data = DashboardData(q, full_refresh_s=1e9)
    commit_cycles(store, list(GROUPS), range(1, 6))
    data.trend("discharge_ah", token=data.status()[1])
    store.upsert_cells(cells_frame({"c9": "g1"}))
    commit_cycles(store, ["c9"], range(1, 3))
    closed, _ = data.trend("discharge_ah", token=data.status()[1])
    assert data.trend_refreshes["full"] == 2
    assert_frame_equal(closed, q.group_trend("discharge_ah"))


def test_trend_with_filters_and_other_group_key(store: DuckDBStore) -> None:
    q = Queries(store)
    data = DashboardData(q)
    commit_cycles(store, list(GROUPS), range(1, 4))
    tok = data.status()[1]
    closed, _ = data.trend("retention", group_key="rack", filters={"group": ["g1"]}, token=tok)
    assert_frame_equal(closed, q.group_trend("retention", group_key="rack", filters={"group": ["g1"]}))
    assert set(closed.get_column("group").to_list()) == {"A", "B"}


def test_trend_stats_matches_query_layer(store: DuckDBStore) -> None:
    commit_cycles(store, list(GROUPS), range(1, 4))
    values = store.metric_values("discharge_ah")
    assert_frame_equal(trend_stats(values), Queries(store).group_trend("discharge_ah"))


def test_cells_metadata_keys_and_values(store: DuckDBStore) -> None:
    data = DashboardData(Queries(store))
    cells = data.cells(data.status()[1])
    keys = data.metadata_keys(cells)
    assert {"group", "chemistry", "test_type", "nominal_capacity_ah", "rack", "line"} <= set(keys)
    assert data.key_values(cells, "rack") == ["A", "B"]
    assert data.key_values(cells, "line") == ["7"]
    assert data.key_values(cells, "nominal_capacity_ah") == ["2.5"]
    assert data.key_values(cells, "nope") == []
    assert data.groups() == ["g1", "g2"]


def test_memo_is_per_token_and_fresh_without_one(store: DuckDBStore) -> None:
    data = DashboardData(Queries(store))
    tok = data.status()[1]
    a = data.cells(tok)
    store.upsert_cells(cells_frame({"c9": "g3"}))
    assert data.cells(tok) is a               # same token: memoised
    assert data.cells(None).height == a.height + 1  # no token: always fresh
    assert data.cells(data.status()[1]).height == a.height + 1


def test_deep_dive_defaults_to_latest_complete_cycle(store: DuckDBStore) -> None:
    commit_cycles(store, list(GROUPS), range(1, 6))
    commit_cycles(store, ["c0"], range(6, 8))  # one cell ahead: not a complete cycle
    data = DashboardData(Queries(store))
    cycle, dev = data.deep_dive("g1", None, "discharge_ah", token=data.status()[1])
    assert cycle == 5 and dev.height == 4


@pytest.mark.parametrize(("share", "ahead"), [(0.8, [2]), (0.1, [])])
def test_overview_honours_the_configured_cell_share(store: DuckDBStore, share: float, ahead: list[int]) -> None:
    # Group g1 (c0-c3): all four closed cycle 1, one closed cycle 2 (25 %).
    from chargetracker.config import StatsConfig
    from chargetracker.dashboard.pages.overview import render

    commit_cycles(store, ["c0", "c1", "c2", "c3"], range(1, 2))
    commit_cycles(store, ["c0"], range(2, 3))
    data = DashboardData(Queries(store, StatsConfig(min_cell_share=share)))
    fig, _, _ = render(data, None, "discharge_ah", "group", ["g1"], None, None)
    drawn = [list(t.x) for t in fig.data if (t.meta or {}).get("role") == "ahead"]
    assert drawn == ([ahead] if ahead else [])
