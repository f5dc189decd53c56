"""Read queries of the relational stores, each built as ``(sql, params)`` with the
dialect's placeholder. Values are **always** bound parameters; identifiers that come from
callers (metric names, filter and group keys) are checked against allow-lists
(:data:`~chargetracker.vocabulary.TREND_METRICS`, the cells columns, a plug-in table's
columns) or, for user attribute keys, a strict pattern, and even then the attribute key
travels as a bound parameter (the JSON path / ``->>`` operand)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from ...errors import ValidationError
from ...schema import CELL_SCHEMA, CYCLE_SCHEMA, MEASUREMENT_SCHEMA, STEP_SCHEMA
from ...vocabulary import check_metric
from .ddl import (
    ALERT_EPISODES,
    ALERT_ROW_SCHEMA,
    ATTRIBUTE_KEY,
    CELL_FILTER_COLUMNS,
    DEAD_LETTER_ROW_SCHEMA,
    MAX_PAGE,
    RATE_WINDOW_S,
    STATUSES,
    Dialect,
    Table,
    column_list,
    quote,
)

Query = tuple[str, list[Any]]


def _check_attribute_key(key: str, what: str) -> str:
    if not isinstance(key, str) or not ATTRIBUTE_KEY.match(key):
        raise ValidationError(
            f"unknown {what} {key!r}: use one of {list(CELL_FILTER_COLUMNS)} or an attributes "
            "key of letters, digits, '_' or '-'", field=what,
        )
    return key


def _cell_column(d: Dialect, key: str, alias: str, what: str) -> tuple[str, list[Any]]:
    """SQL for a cells column or attributes key (with its bound key parameter)."""
    if key in CELL_FILTER_COLUMNS:
        return f"{alias}.{quote(key)}", []
    _check_attribute_key(key, what)
    return d.json_text(f"{alias}.{quote('attributes')}"), [d.json_key_param(key)]


def cell_filters(d: Dialect, filters: Mapping[str, Any] | None, alias: str = "c") -> Query:
    """``AND``-ed conditions on cells; a value may be a string or a list of strings (IN)."""
    if not filters:
        return "TRUE", []
    parts: list[str] = []
    params: list[Any] = []
    for key, value in filters.items():
        col, kparams = _cell_column(d, key, alias, "filter")
        values = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
        if not values:
            parts.append("FALSE")
            continue
        if CELL_SCHEMA.get(key) == pl.Float64:
            try:
                values = [float(v) for v in values]
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"filter value {value!r} is not a number", field=key) from exc
        elif any(v is None for v in values):
            raise ValidationError("filter value must not be null", field=key)
        else:
            values = [str(v) for v in values]
        ors = " OR ".join(f"{col} = {d.ph}" for _ in values)
        for v in values:
            params.extend(kparams)
            params.append(v)
        parts.append(f"({ors})")
    return " AND ".join(parts), params


def page(limit: int | None, offset: int, *, default_cap: int | None = MAX_PAGE) -> tuple[int | None, int]:
    """Validate limit/offset; a limit above ``default_cap`` is clamped to it."""
    if offset is None:
        offset = 0
    if not isinstance(offset, int) or offset < 0:
        raise ValidationError("offset must be an integer >= 0", field="offset")
    if limit is None:
        return default_cap, offset
    if not isinstance(limit, int) or limit < 0:
        raise ValidationError("limit must be an integer >= 0", field="limit")
    if default_cap is not None:
        limit = min(limit, default_cap)
    return limit, offset


def _limit_clause(d: Dialect, limit: int | None, offset: int, params: list[Any]) -> str:
    out = ""
    if limit is not None:
        out += f" LIMIT {d.ph}"
        params.append(limit)
    if offset:
        out += f" OFFSET {d.ph}"
        params.append(offset)
    return out


def _cell_select(d: Dialect, alias: str = "c") -> str:
    return ", ".join(
        d.json_to_text(f"{alias}.{quote(c)}") + f" AS {quote(c)}" if c == "attributes"
        else f"{alias}.{quote(c)}"
        for c in CELL_SCHEMA
    )


def cells_query(d: Dialect, filters: Mapping[str, Any] | None, limit: int, offset: int) -> Query:
    where, params = cell_filters(d, filters)
    sql = (f"SELECT {_cell_select(d)} FROM {quote('cells')} AS c WHERE {where} "  # noqa: S608
           f"ORDER BY c.{quote('cell_id')}")
    return sql + _limit_clause(d, limit, offset, params), params


def cells_count_query(d: Dialect, filters: Mapping[str, Any] | None = None) -> Query:
    where, params = cell_filters(d, filters)
    return f'SELECT count(*) FROM "cells" AS c WHERE {where}', params  # noqa: S608


def cell_row_query(d: Dialect) -> str:
    return f'SELECT {_cell_select(d)} FROM "cells" AS c WHERE c."cell_id" = {d.ph}'  # noqa: S608


def cell_measurement_stats_query(d: Dialect) -> str:
    return (f'SELECT count(*), min("ts"), max("ts") FROM "measurements" '  # noqa: S608 - placeholder only
            f'WHERE "cell_id" = {d.ph}')


def cell_step_count_query(d: Dialect) -> str:
    return f'SELECT count(*) FROM "steps" WHERE "cell_id" = {d.ph}'  # noqa: S608 - placeholder only


def cell_cycle_stats_query(d: Dialect) -> str:
    return ("SELECT count(*), coalesce(sum(CASE WHEN \"status\" = 'closed' THEN 1 ELSE 0 END), 0) "  # noqa: S608 - placeholder only
            f'FROM "cycles" WHERE "cell_id" = {d.ph}')


def latest_cycle_query(d: Dialect) -> str:
    return (f'SELECT {column_list(CYCLE_SCHEMA)} FROM "cycles" WHERE "cell_id" = {d.ph} '  # noqa: S608
            'ORDER BY "cycle" DESC LIMIT 1')


def _check_status(status: str | None) -> str | None:
    if status is None or status == "all":
        return None
    if status not in STATUSES:
        raise ValidationError(f"status must be one of {(*STATUSES, 'all')}, got {status!r}",
                              field="status")
    return status


def cycles_query(d: Dialect, cell_id: str | None, status: str | None, limit: int | None,
                 offset: int) -> Query:
    status = _check_status(status)
    conds, params = ["TRUE"], []
    if cell_id is not None:
        conds.append(f'"cell_id" = {d.ph}')
        params.append(cell_id)
    if status is not None:
        conds.append(f'"status" = {d.ph}')
        params.append(status)
    sql = (f'SELECT {column_list(CYCLE_SCHEMA)} FROM "cycles" WHERE {" AND ".join(conds)} '  # noqa: S608
           'ORDER BY "cell_id", "cycle"')
    return sql + _limit_clause(d, limit, offset, params), params


def cycle_starts_query(d: Dialect, keys: list[tuple[str, int]]) -> Query:
    """(cell_id, cycle, start_ts) of the closed cycles with these (cell_id, cycle) keys:
    one parameterized row-value list, answered through the (cell_id, cycle) key."""
    rows = ", ".join(f"({d.ph}, {d.ph})" for _ in keys)
    params: list[Any] = [x for cid, cyc in keys for x in (cid, int(cyc))]
    sql = ('SELECT y."cell_id", y."cycle", y."start_ts" FROM "cycles" AS y '  # noqa: S608
           f'JOIN (VALUES {rows}) AS k("cell_id", "cycle") '
           'ON y."cell_id" = k."cell_id" AND y."cycle" = k."cycle" '
           'WHERE y."status" = \'closed\' ORDER BY y."cell_id", y."cycle"')
    return sql, params


def steps_query(d: Dialect, cell_id: str, cycle: int | None, limit: int | None,
                offset: int) -> Query:
    conds: list[str] = [f'"cell_id" = {d.ph}']
    params: list[Any] = [cell_id]
    if cycle is not None:
        conds.append(f'"cycle" = {d.ph}')
        params.append(int(cycle))
    sql = (f'SELECT {column_list(STEP_SCHEMA)} FROM "steps" WHERE {" AND ".join(conds)} '  # noqa: S608
           'ORDER BY "step"')
    return sql + _limit_clause(d, limit, offset, params), params


def measurements_query(d: Dialect, cell_id: str, start_ts: float | None, end_ts: float | None,
                       max_points: int | None) -> Query:
    """Raw rows of one cell in [start_ts, end_ts], ordered by ts.

    With ``max_points`` and more rows than that, every k-th row is kept with
    k = ceil(n / max_points), computed in the same statement (one snapshot), so the
    result has at most ``max_points`` real samples (no averaging across step edges).
    """
    conds: list[str] = [f'"cell_id" = {d.ph}']
    params: list[Any] = [cell_id]
    if start_ts is not None:
        conds.append(f'"ts" >= {d.ph}')
        params.append(float(start_ts))
    if end_ts is not None:
        conds.append(f'"ts" <= {d.ph}')
        params.append(float(end_ts))
    where = " AND ".join(conds)
    cols = column_list(MEASUREMENT_SCHEMA)
    if max_points is None:
        return f'SELECT {cols} FROM "measurements" WHERE {where} ORDER BY "ts"', params  # noqa: S608
    if not isinstance(max_points, int) or max_points < 1:
        raise ValidationError("max_points must be an integer >= 1", field="max_points")
    params.append(max_points)
    sql = (
        f"SELECT {cols} FROM (SELECT {cols}, "  # noqa: S608 - constant identifiers
        'row_number() OVER (ORDER BY "ts") AS rn, count(*) OVER () AS n '
        f'FROM "measurements" WHERE {where}) AS sub '
        f"WHERE mod(rn - 1, CAST(ceil(n / CAST({d.ph} AS DOUBLE PRECISION)) AS BIGINT)) = 0 "
        'ORDER BY "ts"'
    )
    return sql, params


def metric_values_query(d: Dialect, metric: str, group_key: str,
                        filters: Mapping[str, Any] | None, status: str | None,
                        since_cycle: int | None) -> Query:
    """(group, cell_id, cycle, value) of one cycle metric; cycles of cells without
    metadata come with a null group. Rows whose value is null are left out."""
    check_metric(metric)
    status = _check_status(status)
    gcol, params = _cell_column(d, group_key, "c", "group_key")
    where, fparams = cell_filters(d, filters)
    params = params + fparams
    conds = [where, f"y.{quote(metric)} IS NOT NULL"]
    if status is not None:
        conds.append(f'y."status" = {d.ph}')
        params.append(status)
    if since_cycle is not None:
        conds.append(f'y."cycle" >= {d.ph}')
        params.append(int(since_cycle))
    sql = (
        f'SELECT CAST({gcol} AS {d.types["text"]}){d.text_collate} AS "group", y."cell_id", y."cycle", '  # noqa: S608
        f'CAST(y.{quote(metric)} AS {d.types["float"]}) AS "value" '
        'FROM "cycles" AS y LEFT JOIN "cells" AS c ON c."cell_id" = y."cell_id" '
        f'WHERE {" AND ".join(conds)} ORDER BY "group", y."cell_id", y."cycle"'
    )
    return sql, params


def alerts_query(d: Dialect, since_id: int | None, acknowledged: bool | None,
                 limit: int) -> Query:
    conds, params = ["TRUE"], []
    if since_id is not None:
        conds.append(f'"id" > {d.ph}')
        params.append(int(since_id))
    if acknowledged is not None:
        conds.append(f'"acknowledged" = {d.ph}')
        params.append(bool(acknowledged))
    sql = (f'SELECT {column_list(ALERT_ROW_SCHEMA)} FROM "alerts" WHERE {" AND ".join(conds)} '  # noqa: S608
           'ORDER BY "id" DESC')
    return sql + _limit_clause(d, limit, 0, params), params


EPISODE_STATES = ("open", "resolved")


def alert_episodes_query(d: Dialect, state: str | None, cell_id: str | None, rule: str | None,
                         notified: bool | None, limit: int, offset: int) -> Query:
    """Episodes newest start first, each joined to its notification (the alert with the
    episode's identity: ts = start_ts, cell_id, rule, cycle = start_cycle) for its id and
    acknowledgement."""
    conds: list[str] = ["TRUE"]
    params: list[Any] = []
    if state is not None and state != "all":
        if state not in EPISODE_STATES:
            raise ValidationError(f"state must be one of {(*EPISODE_STATES, 'all')}, got {state!r}",
                                  field="state")
        conds.append(f'e."state" = {d.ph}')
        params.append(state)
    for name, value in (("cell_id", cell_id), ("rule", rule)):
        if value is not None:
            conds.append(f"e.{quote(name)} = {d.ph}")
            params.append(str(value))
    if notified is not None:
        conds.append(f'e."notified" = {d.ph}')
        params.append(bool(notified))
    cols = column_list(ALERT_EPISODES.column_names, "e.")
    sql = (f'SELECT {cols}, a."id" AS "alert_id", a."acknowledged", a."acknowledged_by", '  # noqa: S608 - constant identifiers
           'a."acknowledged_at" FROM "alert_episodes" AS e LEFT JOIN "alerts" AS a '
           'ON a."ts" = e."start_ts" AND a."cell_id" = e."cell_id" AND a."rule" = e."rule" '
           'AND a."cycle" IS NOT DISTINCT FROM e."start_cycle" '
           f'WHERE {" AND ".join(conds)} ORDER BY e."start_ts" DESC, e."cell_id", e."rule"')
    return sql + _limit_clause(d, limit, offset, params), params


#: Episodes per rule: open, resolved, suppressed (never notified).
EPISODE_COUNTS_QUERY = (
    'SELECT "rule", '
    "CAST(coalesce(sum(CASE WHEN \"state\" = 'open' THEN 1 ELSE 0 END), 0) AS BIGINT) AS \"open\", "
    "CAST(coalesce(sum(CASE WHEN \"state\" = 'resolved' THEN 1 ELSE 0 END), 0) AS BIGINT) AS \"resolved\", "
    'CAST(coalesce(sum(CASE WHEN "notified" THEN 0 ELSE 1 END), 0) AS BIGINT) AS "suppressed" '
    'FROM "alert_episodes" GROUP BY "rule" ORDER BY "rule"'
)


def dead_letters_query(d: Dialect, limit: int) -> Query:
    params: list[Any] = []
    sql = f'SELECT {column_list(DEAD_LETTER_ROW_SCHEMA)} FROM "dead_letters" ORDER BY "id" DESC'  # noqa: S608
    return sql + _limit_clause(d, limit, 0, params), params


COUNTERS_QUERY = 'SELECT "source", "accepted", "rejected", "updated_at" FROM "ingest_counters" ORDER BY "source"'
NEWEST_TS_QUERY = 'SELECT max("ts"), count(*) FROM "measurements"'
DEAD_LETTER_COUNT_QUERY = 'SELECT count(*) FROM "dead_letters"'


def series_query(d: Dialect) -> str:
    return ('SELECT "wall", CAST(sum("accepted") AS BIGINT) AS "samples", '  # noqa: S608 - placeholder only
            'CAST(sum("rejected") AS BIGINT) AS "rejected" FROM "ingest_series" '
            f'WHERE "wall" >= {d.ph} GROUP BY "wall" ORDER BY "wall"')


def series_window_query(d: Dialect) -> str:
    return (f'SELECT coalesce(sum("accepted"), 0), min("wall") FROM "ingest_series" '  # noqa: S608 - placeholder only
            f'WHERE "wall" > {d.ph}')


def first_series_wall_query() -> str:
    return 'SELECT min("wall") FROM "ingest_series"'


def rate(accepted_in_window: int, first_wall: float | None, now: float,
         window_s: float = RATE_WINDOW_S) -> float:
    """Samples/s over the last ``window_s`` (shorter when the series is younger)."""
    if first_wall is None or accepted_in_window <= 0:
        return 0.0
    span = min(window_s, max(now - first_wall, 1.0))
    return float(accepted_in_window) / span


def finite_or_none(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def ingest_stats_dict(counters: list[tuple[Any, ...]], *, newest_ts: Any, n_measurements: Any,
                      n_dead: Any, n_cells: Any, accepted_in_window: Any, first_wall: Any,
                      last_commit: Any, now: float) -> dict[str, Any]:
    """The ``Store.ingest_stats`` result from the raw query results (shared by stores)."""
    by_source = {
        src: {"accepted": int(a), "rejected": int(r), "updated_at": u}
        for src, a, r, u in counters
    }
    newest = finite_or_none(newest_ts)
    return {
        "samples_total": sum(v["accepted"] for v in by_source.values()),
        "rejected_total": sum(v["rejected"] for v in by_source.values()),
        "by_source": by_source,
        "samples_per_s": rate(int(accepted_in_window), first_wall, now),
        "last_commit_wall": float(last_commit) if last_commit is not None else None,
        "newest_ts": newest,
        # Data stamped ahead of the wall clock (within the future horizon: samples
        # beyond it are dead letters) is not negative lag.
        "lag_s": max(0.0, now - newest) if newest is not None else None,
        "measurements_stored": int(n_measurements),
        "dead_letters_stored": int(n_dead),
        "cells": int(n_cells),
    }


def cell_dict(cell_id: str, meta: tuple[Any, ...] | None, *, n_measurements: Any, first_ts: Any,
              last_ts: Any, n_steps: Any, n_cycles: Any, n_closed: Any,
              latest: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``Store.cell`` result from the raw query results (shared by stores); None for
    a cell the store knows nothing about."""
    if not meta and not n_measurements and not n_steps and not n_cycles:
        return None
    out: dict[str, Any] = dict.fromkeys(CELL_SCHEMA)
    out["cell_id"] = cell_id
    if meta:
        out.update(zip(CELL_SCHEMA, meta, strict=True))
    out["attributes"] = json.loads(out["attributes"]) if out["attributes"] else {}
    out.update(
        n_measurements=int(n_measurements), first_ts=first_ts, last_ts=last_ts,
        n_steps=int(n_steps), n_cycles=int(n_cycles), n_closed_cycles=int(n_closed),
        latest_cycle=latest,
    )
    return out


def rows_query(d: Dialect, t: Table, filters: Mapping[str, Any] | None, limit: int | None,
               offset: int, *, ranges: Mapping[str, tuple[Any, Any]] | None = None,
               order: Sequence[str] | None = None, descending: bool = False) -> Query:
    """Rows of a plug-in table ordered by its key (or ``order``); ``filters`` are
    equalities on its columns (a list / tuple value: IN), ``ranges`` inclusive bounds
    (None: open). Names are checked against the layout, values bound."""
    known = set(t.column_names)

    def check(name: str, what: str) -> str:
        if name not in known:
            raise ValidationError(f"unknown {what} {name!r} on {t.name}; one of {sorted(known)}",
                                  field=name)
        return quote(name)

    conds: list[str] = ["TRUE"]
    params: list[Any] = []
    for name, value in (filters or {}).items():
        col = check(name, "filter")
        if isinstance(value, list | tuple):
            if not value:
                conds.append("FALSE")
                continue
            conds.append(f"{col} IN ({', '.join([d.ph] * len(value))})")
            params.extend(value)
        else:
            conds.append(f"{col} = {d.ph}")
            params.append(value)
    for name, (low, high) in (ranges or {}).items():
        col = check(name, "range")
        if low is not None:
            conds.append(f"{col} >= {d.ph}")
            params.append(low)
        if high is not None:
            conds.append(f"{col} <= {d.ph}")
            params.append(high)
    by = tuple(order) if order else (t.key or t.column_names[:1])
    direction = " DESC" if descending else ""
    order_sql = ", ".join(check(c, "order column") + direction for c in by)
    select = ", ".join(d.json_to_text(quote(c)) + f" AS {quote(c)}" if logical == "json"
                       else quote(c) for c, logical in t.columns)
    sql = (f"SELECT {select} FROM {quote(t.name)} "  # noqa: S608 - checked identifiers
           f'WHERE {" AND ".join(conds)} ORDER BY {order_sql}')
    return sql + _limit_clause(d, limit, offset, params), params
