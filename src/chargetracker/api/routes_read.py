"""Read endpoints: cells, cycles, steps, measurements, trends, groups, outliers, alerts.

Every parameter is validated (ids by pattern and length, integers bounded, pages at most
:data:`MAX_PAGE` rows) before the store sees it, and the store binds every value as a
query parameter. Large frames are serialized by Polars (see :mod:`.encode`).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

import polars as pl
from fastapi import APIRouter, Body, Depends, Path, Query, Request

from ..errors import NotFound
from ..schema import CELL_SCHEMA
from .context import API_PREFIX, ApiContext, get_ctx
from .encode import JSONBytes, envelope, finite
from .errors import ApiError, responses
from .models import (
    CELL_ID_PATTERN,
    GROUP_KEY_PATTERN,
    AckIn,
    AckOut,
    AlertEpisodePage,
    AlertPage,
    CellDetail,
    CellIn,
    CellPage,
    CellTrend,
    CyclePage,
    GroupCycle,
    GroupTrend,
    MeasurementSeries,
    MetricName,
    Outliers,
    StepPage,
)
from .security import require_read, require_write

__all__ = ["router", "MAX_PAGE"]

#: Largest page of cycles/steps; cells and alerts pages are capped at 1,000.
MAX_PAGE = 10_000
_MAX_INT = 2**31 - 1

router = APIRouter(prefix=API_PREFIX)

CellId = Annotated[str, Path(pattern=CELL_ID_PATTERN, description="Cell id (1-256 characters, "
                             "no control characters, no '/').")]
GroupValue = Annotated[str, Path(pattern=CELL_ID_PATTERN, description="The group's value, "
                                 "e.g. `NMC-fast` (of the metadata key `group_key`).")]
GroupKey = Annotated[str | None, Query(pattern=GROUP_KEY_PATTERN, description="Metadata key that "
                                       "defines groups: group, chemistry, test_type or an "
                                       "attributes key (default: the server's setting).")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
BigLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=10**9, description="Rows to skip.")]

_READ = [Depends(require_read)]
_R = responses(401, 403, 422, 503)
_R404 = responses(401, 403, 404, 422, 503)


def _next(offset: int, n: int, limit: int) -> int | None:
    return offset + n if n == limit else None


def _cell_dict(row: dict[str, Any]) -> dict[str, Any]:
    attrs = row.get("attributes")
    if isinstance(attrs, str):
        try:
            attrs = json.loads(attrs) if attrs else {}
        except ValueError:
            attrs = {}
    out = dict(row)
    out["attributes"] = attrs if isinstance(attrs, dict) else {}
    return finite(out)  # type: ignore[no-any-return]


def _require_cell(ctx: ApiContext, cell_id: str) -> None:
    ctx.queries.require_cell(cell_id)


def _cell_page(ctx: ApiContext, cell_id: str, frame: pl.DataFrame, limit: int,
               offset: int) -> JSONBytes:
    """One page of a cell's rows; an empty page of an unknown cell is a 404."""
    if frame.height == 0:
        _require_cell(ctx, cell_id)
    return envelope({"cell_id": cell_id, "limit": limit, "offset": offset,
                     "next_offset": _next(offset, frame.height, limit)}, frame)


# -- cells ---------------------------------------------------------------------------
_ATTR = re.compile(GROUP_KEY_PATTERN[:-1] + r":(.{0,256})$", re.S)


def _filters(group: str | None, chemistry: str | None, test_type: str | None,
             attr: list[str]) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for key, value in (("group", group), ("chemistry", chemistry), ("test_type", test_type)):
        if value is not None:
            filters[key] = value
    for item in attr:
        m = _ATTR.match(item)
        if m is None:
            raise ApiError(422, f"attr {item[:80]!r}: expected key:value with a key of letters, "
                           "digits, '_', '.', '-'", field="attr")
        key, value = item.split(":", 1)
        if key in CELL_SCHEMA:
            raise ApiError(422, f"attr key {key!r} is a metadata column; use ?{key}=...",
                           field="attr")
        prev = filters.get(key)
        filters[key] = [*prev, value] if isinstance(prev, list) else [value]
    return filters


@router.get("/cells", tags=["cells"], summary="List cells", response_model=CellPage,
            responses=_R, dependencies=_READ)
def list_cells(
    request: Request,
    group: Annotated[str | None, Query(max_length=256)] = None,
    chemistry: Annotated[str | None, Query(max_length=256)] = None,
    test_type: Annotated[str | None, Query(max_length=256)] = None,
    attr: Annotated[list[str], Query(max_length=16, description="Attribute filter `key:value`; "
                                     "repeat for more (same key: any of the values).")] = [],  # noqa: B006
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    ctx = get_ctx(request)
    filters = _filters(group, chemistry, test_type, attr) or None
    page = ctx.queries.cells(filters=filters, limit=limit, offset=offset)
    total = ctx.queries.cells_count(filters=filters)
    items = [_cell_dict(r) for r in page.to_dicts()]
    return {"items": items, "total": total, "limit": limit, "offset": offset,
            "next_offset": offset + len(items) if offset + len(items) < total else None}


@router.get("/cells/{cell_id}", tags=["cells"], summary="One cell: metadata and counts",
            response_model=CellDetail, responses=_R404, dependencies=_READ)
def get_cell(request: Request, cell_id: CellId) -> dict[str, Any]:
    cell = get_ctx(request).queries.cell(cell_id)
    if cell is None:
        raise NotFound(f"cell {cell_id!r} not found")
    return _cell_dict(cell)


@router.put("/cells/{cell_id}", tags=["cells"], summary="Create or replace a cell's metadata",
            response_model=CellDetail, responses=responses(401, 403, 413, 422, 503),
            dependencies=[Depends(require_write)])
def put_cell(request: Request, cell_id: CellId, body: CellIn) -> dict[str, Any]:
    ctx = get_ctx(request)
    if body.v_min is not None and body.v_max is not None and body.v_min >= body.v_max:
        raise ApiError(422, "v_min must be below v_max", field="v_min")
    row = body.model_dump()
    row["cell_id"] = cell_id
    try:
        row["attributes"] = json.dumps(row["attributes"], sort_keys=True, allow_nan=False,
                                       default=str)
    except ValueError:
        raise ApiError(422, "attributes must not hold NaN or infinity", field="attributes") from None
    ctx.pipeline.register_cells(pl.DataFrame([{k: row.get(k) for k in CELL_SCHEMA}],
                                             schema=CELL_SCHEMA))
    cell = ctx.queries.cell(cell_id)
    assert cell is not None
    return _cell_dict(cell)


@router.get("/cells/{cell_id}/cycles", tags=["cells"], summary="Cycles of a cell",
            response_model=CyclePage, responses=_R404, dependencies=_READ,
            response_class=JSONBytes)
def cell_cycles(
    request: Request,
    cell_id: CellId,
    status: Annotated[Literal["open", "closed", "partial"] | None, Query(
        description="Only open, closed or partial (data starts or stops inside) cycles.")] = None,
    limit: BigLimit = 1000,
    offset: Offset = 0,
) -> JSONBytes:
    ctx = get_ctx(request)
    return _cell_page(ctx, cell_id, ctx.queries.cycles(cell_id, status=status, limit=limit, offset=offset),
                      limit, offset)


@router.get("/cells/{cell_id}/steps", tags=["cells"], summary="Steps of a cell",
            response_model=StepPage, responses=_R404, dependencies=_READ,
            response_class=JSONBytes)
def cell_steps(
    request: Request,
    cell_id: CellId,
    cycle: Annotated[int | None, Query(ge=0, le=_MAX_INT, description="Only this cycle.")] = None,
    limit: BigLimit = 1000,
    offset: Offset = 0,
) -> JSONBytes:
    ctx = get_ctx(request)
    return _cell_page(ctx, cell_id, ctx.queries.steps(cell_id, cycle=cycle, limit=limit, offset=offset),
                      limit, offset)


@router.get("/cells/{cell_id}/measurements", tags=["cells"], summary="Raw samples of a cell",
            description="Samples with start_ts <= ts <= end_ts, oldest first. Longer ranges "
            "are downsampled to every k-th sample so at most `max_points` are returned.",
            response_model=MeasurementSeries, responses=_R404, dependencies=_READ,
            response_class=JSONBytes)
def cell_measurements(
    request: Request,
    cell_id: CellId,
    start_ts: Annotated[float | None, Query(ge=0, le=1e11, description="s since the epoch.")] = None,
    end_ts: Annotated[float | None, Query(ge=0, le=1e11, description="s since the epoch.")] = None,
    max_points: Annotated[int, Query(ge=1, le=100_000)] = 5000,
) -> JSONBytes:
    ctx = get_ctx(request)
    if start_ts is not None and end_ts is not None and start_ts > end_ts:
        raise ApiError(422, "start_ts must not be after end_ts", field="start_ts")
    frame = ctx.queries.measurements(cell_id, start_ts=start_ts, end_ts=end_ts,
                                   max_points=max_points)
    if frame.height == 0:
        _require_cell(ctx, cell_id)
    return envelope({"cell_id": cell_id, "start_ts": start_ts, "end_ts": end_ts,
                     "max_points": max_points}, frame)


@router.get("/cells/{cell_id}/trend", tags=["cells"], summary="Fade, knee and forecast of a cell",
            response_model=CellTrend, responses=_R404, dependencies=_READ)
def cell_trend(request: Request, cell_id: CellId,
               metric: Annotated[MetricName, Query()] = "retention") -> dict[str, Any]:
    out = get_ctx(request).queries.cell_trend(cell_id, metric=metric)
    out["metric"] = metric
    return finite(out)  # type: ignore[no-any-return]


# -- groups --------------------------------------------------------------------------
def _group_exists(ctx: ApiContext, key: str, group: str) -> None:
    if ctx.queries.cells_count(filters={key: group}) == 0:
        raise NotFound(f"no cell has {key} = {group!r}")


@router.get("/groups/{group}/trend", tags=["groups"], summary="Group mean ± std per cycle",
            description="Per cycle: n, mean, std, median, MAD, min, max and std % of a cycle "
            "metric over the group's closed cycles (`status=open`: the cycles in progress, "
            "kept apart, never averaged with finished ones).",
            response_model=GroupTrend, responses=_R404, dependencies=_READ,
            response_class=JSONBytes)
def group_trend(
    request: Request,
    group: GroupValue,
    metric: Annotated[MetricName, Query()] = "discharge_ah",
    group_key: GroupKey = None,
    status: Annotated[Literal["closed", "open"], Query()] = "closed",
) -> JSONBytes:
    ctx = get_ctx(request)
    key = group_key or ctx.settings.stats.group_key
    _group_exists(ctx, key, group)
    frame = ctx.queries.group_trend(metric, group_key=key, filters={key: group}, status=status)
    frame = frame.filter(pl.col("group") == group).drop("group")
    return envelope({"group": group, "group_key": key, "metric": metric, "status": status}, frame)


@router.get("/groups/{group}/cycles/{cycle}", tags=["groups"],
            summary="Deep dive: the group's cells at one cycle",
            description="Each cell's value, z, robust z, % deviation and outlier flag at one "
            "cycle (`latest`: the newest cycle at least half the group has closed), sorted by "
            "|% deviation|.",
            response_model=GroupCycle, responses=_R404, dependencies=_READ,
            response_class=JSONBytes)
def group_cycle(
    request: Request,
    group: GroupValue,
    cycle: Annotated[str, Path(pattern=r"^(latest|[0-9]{1,9})$",
                               description="Cycle number or `latest`.")],
    metric: Annotated[MetricName, Query()] = "discharge_ah",
    group_key: GroupKey = None,
) -> JSONBytes:
    ctx = get_ctx(request)
    key = group_key or ctx.settings.stats.group_key
    _group_exists(ctx, key, group)
    n = None if cycle == "latest" else int(cycle)
    chosen, frame = ctx.queries.group_cycle(group, n, metric=metric, group_key=key)
    return envelope({"group": group, "group_key": key, "metric": metric, "cycle": chosen}, frame)


@router.get("/outliers", tags=["groups"], summary="Cells flagged as outliers",
            description="By default at each group's latest complete cycle; the rule (robust "
            "|z| > 3.5 or k sigma) is the server's setting.",
            response_model=Outliers, responses=_R, dependencies=_READ, response_class=JSONBytes)
def outliers(
    request: Request,
    metric: Annotated[MetricName, Query()] = "discharge_ah",
    group_key: GroupKey = None,
    latest_only: Annotated[bool, Query()] = True,
) -> JSONBytes:
    ctx = get_ctx(request)
    key = group_key or ctx.settings.stats.group_key
    frame = ctx.queries.outliers(metric, group_key=key, latest_only=latest_only)
    return envelope({"metric": metric, "group_key": key, "latest_only": latest_only}, frame)


# -- alerts --------------------------------------------------------------------------
@router.get("/alerts", tags=["alerts"], summary="Alerts, newest first", response_model=AlertPage,
            responses=_R, dependencies=_READ, response_class=JSONBytes)
def list_alerts(
    request: Request,
    since_id: Annotated[int | None, Query(ge=0, le=2**62, description="Only alerts with a "
                                          "larger id (for polling).")] = None,
    acknowledged: Annotated[bool | None, Query()] = None,
    limit: Limit = 100,
) -> JSONBytes:
    frame = get_ctx(request).queries.alerts(since_id=since_id, acknowledged=acknowledged,
                                          limit=limit)
    return envelope({}, frame)


@router.get("/alerts/episodes", tags=["alerts"], summary="Alert episodes, newest first",
            description="One episode per (cell, rule) condition for as long as it lasts "
                        "(docs/alerts.md): first and last cycle, occurrences, worst value, "
                        "open or resolved, and the acknowledgement of its notification "
                        "(acknowledge with `POST /alerts/{alert_id}/ack`).",
            response_model=AlertEpisodePage, responses=_R, dependencies=_READ,
            response_class=JSONBytes)
def list_alert_episodes(
    request: Request,
    state: Annotated[Literal["open", "resolved", "all"], Query()] = "all",
    cell_id: Annotated[str | None, Query(pattern=CELL_ID_PATTERN)] = None,
    rule: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] = None,
    notified: Annotated[bool | None, Query(description="false: only the episodes the rate "
                                           "limit suppressed.")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> JSONBytes:
    queries = get_ctx(request).queries
    frame = queries.alert_episodes(state=state, cell_id=cell_id, rule=rule, notified=notified,
                                   limit=limit, offset=offset)
    counts = queries.episode_counts().to_dicts()
    return envelope({"counts": counts}, frame)


@router.post("/alerts/{alert_id}/ack", tags=["alerts"], summary="Acknowledge an alert",
             response_model=AckOut, responses=responses(401, 403, 404, 413, 422, 503),
             dependencies=[Depends(require_write)])
def ack_alert(
    request: Request,
    alert_id: Annotated[int, Path(ge=1, le=2**62)],
    body: Annotated[AckIn | None, Body()] = None,
) -> dict[str, Any]:
    by = body.by if body is not None else None
    if not get_ctx(request).queries.ack_alert(alert_id, by=by):
        raise NotFound(f"alert {alert_id} not found")
    return {"id": alert_id, "acknowledged": True, "acknowledged_by": by}


# -- plug-in telemetry kinds ---------------------------------------------------------
_WHERE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]{0,63}):(.{0,256})$", re.S)


@router.get("/telemetry/{kind}/{query}", tags=["telemetry"],
            summary="A read query of a plug-in telemetry kind",
            description="Rows of the kind's query, ordered by the table's key; `where` "
                        "filters `column:value` on the query's filter columns (AND-ed).",
            responses=_R404, dependencies=_READ, response_class=JSONBytes)
def kind_rows(
    request: Request,
    kind: Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,31}$")],
    query: Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,63}$")],
    where: Annotated[list[str], Query(max_length=16)] = [],  # noqa: B006
    limit: BigLimit = 1000,
    offset: Offset = 0,
) -> JSONBytes:
    filters: dict[str, Any] = {}
    for item in where:
        m = _WHERE.match(item)
        if m is None:
            raise ApiError(422, f"where {item[:80]!r}: expected column:value", field="where")
        filters[m.group(1)] = m.group(2)
    ctx = get_ctx(request)
    q = ctx.queries.kind_query(kind, query)
    k = ctx.queries.kinds[kind]
    spec = next((t for t in (k.raw_table, *k.tables) if t is not None and t.name == q.table), None)
    if spec is not None:
        # Filter values arrive as text: cast them to the column's type for the binding.
        for name, value in list(filters.items()):
            dtype = spec.schema.get(name)
            if dtype is not None and dtype != pl.Utf8:
                try:
                    filters[name] = pl.Series([value]).cast(dtype, strict=True)[0]
                except pl.exceptions.PolarsError:
                    raise ApiError(422, f"where {name}: {value[:40]!r} is not {dtype}",
                                   field="where") from None
    frame = ctx.queries.kind_rows(kind, query, filters, limit=limit, offset=offset)
    return envelope({"kind": kind, "query": query, "limit": limit, "offset": offset,
                     "next_offset": _next(offset, frame.height, limit)}, frame)
