"""The dashboard's read side: one object per app wrapping :class:`~chargetracker.queries.Queries`.

Live refresh is driven by a cheap *version token* (:meth:`DashboardData.status`):
ingest counters, the last commit time, the newest alert id, the cell and dead-letter
counts. The browser polls it every ``refresh_ms``; pages re-query only when it
changes, and results are memoised per token so several open tabs share one query.

The group trend is refreshed incrementally: a new closed cycle of a cell can only
have a cycle number above that cell's newest closed cycle at the last refresh, so the
statistics of every (group, cycle) below the smallest such *frontier* cannot have
changed and only cycles from there on are fetched and recomputed. A full recompute
runs when the number of cells changes and every ``full_refresh_s`` (which also picks
up history rewritten by a backfill).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import polars as pl

from ..config import Settings
from ..queries import Queries, trend_stats
from ..schema import CELL_SCHEMA

__all__ = ["DashboardData", "Token", "trend_stats"]

T = TypeVar("T")
#: JSON-friendly version token (stored in the browser, compared server-side).
Token = list[Any]

#: Cells read for filter menus (the store clamps one page to 10,000).
_CELLS_PAGE = 10_000


class _Memo:
    """A small thread-safe LRU of computed results keyed by hashable tuples."""

    def __init__(self, maxsize: int = 64) -> None:
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._maxsize = maxsize

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]  # type: ignore[no-any-return]
        value = compute()  # outside the lock: a slow query must not block other tabs
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._maxsize:
                self._data.popitem(last=False)
        return value


@dataclass
class _TrendEntry:
    token: tuple[Any, ...]
    closed: pl.DataFrame
    frontier: pl.DataFrame   # cell_id, cycle = newest closed cycle with a value
    n_cells: int
    full_at: float


def _freeze(obj: Any) -> Hashable:
    return json.dumps(obj, sort_keys=True, default=str)


class DashboardData:
    """Everything the pages read, with per-token memoisation and incremental trends."""

    def __init__(self, queries: Queries, settings: Settings | None = None, *,
                 full_refresh_s: float = 30.0, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.queries = queries
        self.settings = settings or Settings()
        self.group_key = queries.stats.group_key
        self.full_refresh_s = full_refresh_s
        self.clock = clock
        self._monotonic = monotonic
        self._memo = _Memo()
        self._trend: dict[Hashable, _TrendEntry] = {}
        self._trend_lock = threading.Lock()
        #: Counters of how trends were refreshed (for tests and the benchmark).
        self.trend_refreshes = {"full": 0, "incremental": 0, "cached": 0}

    # -- version ------------------------------------------------------------------
    def status(self) -> tuple[dict[str, Any], Token]:
        """(ingest stats, version token). Two cheap reads: counters and the top alert."""
        stats = self.queries.ingest_stats()
        top = self.queries.alerts(limit=1)
        max_alert = int(top.get_column("id")[0]) if top.height else 0
        token: Token = [stats.get("samples_total"), stats.get("rejected_total"),
                        stats.get("last_commit_wall"), max_alert, stats.get("cells"),
                        stats.get("dead_letters_stored")]
        return stats, token

    def open_alerts(self, cap: int = 10_000) -> tuple[int, bool]:
        """(number of unacknowledged alerts, True when the count hit ``cap``)."""
        n = self.queries.alerts(acknowledged=False, limit=cap).height
        return n, n >= cap

    # -- cells and metadata ---------------------------------------------------------
    def _memoised(self, key: tuple[Any, ...], token: Sequence[Any] | None, compute: Callable[[], T]) -> T:
        """``compute()`` memoised per (key, token); without a token, always fresh."""
        if token is None:
            return compute()
        return self._memo.get((*key, _freeze(token)), compute)

    def cells(self, token: Sequence[Any] | None = None) -> pl.DataFrame:
        """All cells (CELL_SCHEMA) plus one column per attributes key (as text)."""
        return self._memoised(("cells",), token, self._read_cells)

    def _read_cells(self) -> pl.DataFrame:
        cells = self.queries.all_cells()
        attrs = [json.loads(a) if a else {} for a in cells.get_column("attributes").to_list()]
        keys = sorted({k for a in attrs for k in a if k not in CELL_SCHEMA})
        if keys:
            cells = cells.with_columns(
                pl.Series(f"attr:{k}", [None if a.get(k) is None else str(a.get(k)) for a in attrs],
                          dtype=pl.Utf8) for k in keys)
        return cells

    @staticmethod
    def metadata_keys(cells: pl.DataFrame) -> list[str]:
        """Keys a filter or grouping can use: cells columns and attributes keys that have
        at least one value."""
        keys = []
        for col in cells.columns:
            if col in ("cell_id", "attributes"):
                continue
            if cells.height and cells.get_column(col).null_count() < cells.height:
                keys.append(col.removeprefix("attr:"))
        return keys

    @staticmethod
    def key_values(cells: pl.DataFrame, key: str) -> list[str]:
        """Distinct values of a metadata key, sorted, as text."""
        col = key if key in cells.columns else f"attr:{key}"
        if col not in cells.columns:
            return []
        s = cells.get_column(col).drop_nulls()
        if s.dtype == pl.Float64:
            return [f"{v:g}" for v in sorted(s.unique().to_list())]
        return sorted(str(v) for v in s.unique().to_list())

    # -- group trend ----------------------------------------------------------------
    def trend(self, metric: str, *, group_key: str | None = None,
              filters: Mapping[str, Any] | None = None,
              token: Sequence[Any] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(closed-cycle trend, open-cycle trend) per (group, cycle), as
        :meth:`Queries.group_trend`, refreshed incrementally when ``token`` changes."""
        key = group_key or self.group_key
        flt = dict(filters) if filters else None
        ident = ("trend", metric, key, _freeze(flt))
        tok = tuple(token) if token is not None else (self._monotonic(),)
        closed = self._closed_trend(ident, metric, key, flt, tok)
        opened = self._memoised(
            ("open", metric, key, _freeze(flt)), token,
            lambda: self.queries.group_trend(metric, group_key=key, filters=flt, status="open"))
        return closed, opened

    def _closed_trend(self, ident: Hashable, metric: str, key: str,
                      filters: dict[str, Any] | None, tok: tuple[Any, ...]) -> pl.DataFrame:
        with self._trend_lock:
            entry = self._trend.get(ident)
            if entry is not None and entry.token == tok:
                self.trend_refreshes["cached"] += 1
                return entry.closed
            n_cells = tok[4] if len(tok) > 4 and isinstance(tok[4], int) else -1
            now = self._monotonic()
            full = (entry is None or entry.n_cells != n_cells or n_cells < 0
                    or now - entry.full_at >= self.full_refresh_s or entry.frontier.height == 0)
            if full:
                values = self.queries.metric_values(metric, group_key=key, filters=filters, status="closed")
                closed = trend_stats(values)
                frontier = values.group_by("cell_id").agg(pl.col("cycle").max())
                self._trend[ident] = _TrendEntry(tok, closed, frontier, n_cells, now)
                self.trend_refreshes["full"] += 1
                return closed
            assert entry is not None
            since = int(entry.frontier.get_column("cycle").min()) + 1  # type: ignore[arg-type]
            values = self.queries.metric_values(metric, group_key=key, filters=filters, status="closed",
                                              since_cycle=since)
            closed = entry.closed
            frontier = entry.frontier
            if values.height:
                fresh = trend_stats(values)
                closed = pl.concat([entry.closed.filter(pl.col("cycle") < since), fresh]).sort(
                    ["group", "cycle"], nulls_last=True)
                frontier = pl.concat([frontier, values.group_by("cell_id").agg(pl.col("cycle").max())]
                                     ).group_by("cell_id").agg(pl.col("cycle").max())
            self._trend[ident] = _TrendEntry(tok, closed, frontier, n_cells, entry.full_at)
            self.trend_refreshes["incremental"] += 1
            return closed

    # -- deep dive ------------------------------------------------------------------
    def groups(self, group_key: str | None = None, token: Sequence[Any] | None = None) -> list[str]:
        """Distinct group values of the cells (sorted)."""
        return self.key_values(self.cells(token), group_key or self.group_key)

    def deep_dive(self, group: str, cycle: int | None, metric: str, *, group_key: str | None = None,
                  token: Sequence[Any] | None = None) -> tuple[int | None, pl.DataFrame]:
        """:meth:`Queries.group_cycle` memoised per token."""
        key = group_key or self.group_key
        return self._memoised(
            ("deep", group, cycle, metric, key), token,
            lambda: self.queries.group_cycle(group, cycle, metric=metric, group_key=key))

    # -- cell -----------------------------------------------------------------------
    def cell(self, cell_id: str) -> dict[str, Any] | None:
        return self.queries.cell(cell_id)

    def cell_cycles(self, cell_id: str) -> pl.DataFrame:
        return self.queries.cycles(cell_id)

    def cell_trend(self, cell_id: str) -> dict[str, Any] | None:
        try:
            return self.queries.cell_trend(cell_id)
        except Exception:  # a failed fit must not blank the page: it is shown as "no fit"
            return None

    def measurements(self, cell_id: str, start_ts: float | None, end_ts: float | None,
                     max_points: int) -> pl.DataFrame:
        return self.queries.measurements(cell_id, start_ts=start_ts, end_ts=end_ts,
                                         max_points=max_points)

    # -- alerts and ingest ----------------------------------------------------------
    def alerts(self, *, since_id: int | None = None, limit: int = 200) -> pl.DataFrame:
        return self.queries.alerts(since_id=since_id, limit=limit)

    def alert_episodes(self, *, limit: int = 500) -> pl.DataFrame:
        """Alert episodes, newest start first, with their notification's acknowledgement."""
        return self.queries.alert_episodes(limit=limit)

    def episode_counts(self) -> pl.DataFrame:
        """Per rule: episodes open, resolved and suppressed by the rate limit."""
        return self.queries.episode_counts()

    def ack(self, alert_id: int, by: str | None = None) -> bool:
        return self.queries.ack_alert(alert_id, by=by)

    def ingest_stats(self) -> dict[str, Any]:
        return self.queries.ingest_stats()

    def rate_series(self, since_wall: float) -> pl.DataFrame:
        return self.queries.ingest_rate_series(since_wall)

    def dead_letters(self, limit: int = 500) -> pl.DataFrame:
        return self.queries.dead_letters(limit=limit)
