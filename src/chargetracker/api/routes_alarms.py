"""Consistency-alarm endpoints: predict (one VIN or a batch), stored predictions, and
daily pack-record ingest.

The model is the packaged default unless ``app.state.alarm_model_dir`` names a model
directory; the pack store lives beside the cell store (same DuckDB file or PostgreSQL
database, its own tables, see :mod:`chargetracker.stores.packs`). Both are opened on
first use and kept on ``app.state``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Annotated, Any

import numpy as np
import polars as pl
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from ..kinds.pack import ALARM_PREDICTIONS
from ..ml import Predictor
from ..ml.features import feature_matrix
from ..ml.predict import (
    PREDICTION_SCHEMA,
    BatchRows,
    latest_window,
    score_bytes,
    windows_from_batch84,
)
from ..ml.records import small_columns, validate_records
from ..ml.windows import CONTEXT_DAYS, build_panel, build_windows
from ..stores.base import CommitBatch
from .alarm_input import body_frame, features84, parse_date, records_frame, typed_numbers
from .alarm_models import (
    VIN_PATTERN,
    BatchOut,
    PackRecordIn,
    PredictIn,
    PredictionPage,
    PredictOut,
    RecordsOut,
)
from .context import API_PREFIX, get_ctx
from .errors import ApiError, responses
from .ingest import media_format
from .prediction_writer import PredictionWriter, Row, WriterLimits
from .security import require_read, require_write

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["alarms"])
_MAX_ERRORS = 100
_lock = threading.Lock()
#: Writes single HTTP predictions beside the rest of the request in ``alarm_write =
#: "sync"`` mode (see _predict_one).
_sync_writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="alarm-store")


# -- state -----------------------------------------------------------------------------
#: The model directory of apps without ``app.state.alarm_model_dir`` (``serve
#: --alarm-model``); None = the packaged default.
_default_model_dir: str | None = None


def use_model_dir(path: str | None) -> None:
    """Make ``path`` the alarm model of every app that names none (checked here, so a
    bad directory fails at start, not at the first request)."""
    global _default_model_dir
    if path is not None:
        from ..stores.models import load_model

        load_model(path)
    _default_model_dir = path


def _state(request: Request) -> tuple[Predictor, Any]:
    app = request.app
    with _lock:
        if getattr(app.state, "alarm_predictor", None) is None:
            from ..stores.models import load_default_model, load_model

            where = getattr(app.state, "alarm_model_dir", None) or _default_model_dir
            art = load_model(where) if where else load_default_model()
            app.state.alarm_predictor = Predictor(art)
        if getattr(app.state, "pack_store", None) is None:
            from ..stores.packs import open_pack_store

            app.state.pack_store = open_pack_store(get_ctx(request).store.url)  # type: ignore[attr-defined]
    return app.state.alarm_predictor, app.state.pack_store


def _pack_pipeline(request: Request) -> Any:
    """The pack kind's pipeline on the API's store (the process's one, see
    :func:`chargetracker.runtime.packs.shared_pack_pipeline`), registered on the context."""
    ctx = get_ctx(request)
    pipeline = ctx.kinds.get("pack")
    if pipeline is not None:
        return pipeline
    from ..errors import ConfigError
    from ..runtime.packs import shared_pack_pipeline

    where = getattr(request.app.state, "alarm_model_dir", None) or _default_model_dir
    with _lock:
        try:
            pipeline = shared_pack_pipeline(ctx.store, ctx.settings, where)
        except ConfigError as exc:
            raise ApiError(503, str(exc), code="store_without_pack_kind") from exc
        ctx.add_kind(pipeline)
    return pipeline


def _store_predictions(request: Request, packs: Any, preds: pl.DataFrame, *, source: str,
                       request_id: str | None) -> None:
    """Store predictions: through the API's store when it holds the pack kind's tables
    (one writer per store), else through the pack store. Predictions still queued by
    the grouped writer are committed first, so the latest scoring of a key wins."""
    _flush(request)
    store = get_ctx(request).store
    if ALARM_PREDICTIONS.name in getattr(store, "plugin_specs", {}):
        frame = preds.select(list(PREDICTION_SCHEMA)).with_columns(
            pl.lit(source).alias("source"), pl.lit(request_id, pl.Utf8).alias("request_id"))
        store.commit(CommitBatch(tables={ALARM_PREDICTIONS.name: frame}))
        return
    packs.upsert_predictions(preds, source=source, request_id=request_id)


#: A queued prediction row as a frame (the writer's :data:`ROW_FIELDS`).
_ROW_SCHEMA: dict[str, pl.DataType] = {**PREDICTION_SCHEMA, "source": pl.Utf8(),
                                       "request_id": pl.Utf8()}


def _row_writer(store: Any, packs: Any) -> Callable[[list[Row]], None]:
    """``write(rows)`` of the grouped writer: one store commit for the whole group
    (the pack store, without the kind's tables on the API's store, upserts per
    request id: one transaction each, idempotent on retry)."""

    def write(rows: list[Row]) -> None:
        frame = pl.DataFrame(rows, schema=_ROW_SCHEMA, orient="row")
        if ALARM_PREDICTIONS.name in getattr(store, "plugin_specs", {}):
            store.commit(CommitBatch(tables={ALARM_PREDICTIONS.name: frame}))
            return
        for (source, rid), part in frame.group_by(["source", "request_id"], maintain_order=True):
            packs.upsert_predictions(part, source=str(source),
                                     request_id=None if rid is None else str(rid))

    return write


def _alarm_writer(request: Request) -> PredictionWriter | None:
    """The app's grouped prediction writer (started on first use), or None in
    ``alarm_write = "sync"`` mode. Closed (drained) by the app's lifespan."""
    ctx = get_ctx(request)
    cfg = ctx.settings.api
    if cfg.alarm_write != "grouped":
        return None
    app = request.app
    writer: PredictionWriter | None = getattr(app.state, "alarm_writer", None)
    if writer is not None:
        return writer
    _, packs = _state(request)
    with _lock:
        writer = getattr(app.state, "alarm_writer", None)
        if writer is None:
            limits = WriterLimits(queue_rows=cfg.alarm_write_queue_rows,
                                  group_rows=cfg.alarm_write_group_rows,
                                  max_age_s=cfg.alarm_write_max_age_s,
                                  wait_s=cfg.alarm_write_wait_s)
            writer = PredictionWriter(_row_writer(ctx.store, packs), limits,
                                      key=getattr(ctx.store, "url", None))
            app.state.alarm_writer = writer
            ctx.metrics.alarm_writer = writer.snapshot
    return writer


def _flush(request: Request) -> None:
    """Read-your-writes: commit the predictions this app still queues (no-op when none;
    StoreUnavailable -> 503 when the store refuses them)."""
    writer: PredictionWriter | None = getattr(request.app.state, "alarm_writer", None)
    if writer is not None:
        writer.flush()


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    if 0 < len(given) <= 200 and given.isprintable():
        return given
    return uuid.uuid4().hex


def _rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    out = frame.with_columns(pl.col("date").cast(pl.Utf8)).to_dicts()
    return out


def _rejected(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.head(_MAX_ERRORS).to_dicts()


# -- endpoints -------------------------------------------------------------------------
def _check_span(span: int) -> None:
    """422 unless the records cover the 14 days before the prediction day (``span``:
    days from the first to the last record, inclusive)."""
    if span < CONTEXT_DAYS:
        raise ApiError(422, f"need daily records covering at least {CONTEXT_DAYS} days "
                       f"before the prediction day; got {span}", field="records")


def _predict_one(request: Request, body: PredictIn, rid: str) -> dict[str, Any]:
    predictor, packs = _state(request)
    warnings: list[str] = []
    if body.records is not None and body.features is not None:
        raise ApiError(422, "give either records or features, not both", field="records")
    if body.records is not None:
        # Clean small bodies: plain-Python checks and the window straight from the
        # values (no polars frame: its fixed costs exceeded the arithmetic).
        cols = small_columns(typed_numbers(body.records), vin=body.vin)
        if cols is not None:
            dates: list[dt.date] = cols["date"]  # type: ignore[assignment]
            _check_span((max(dates) - min(dates)).days + 1)
            w = latest_window(cols)
        else:  # something to reject or unusual: the full checks say what
            checked = validate_records(records_frame(body.records, body.vin),
                                       source="records")
            if checked.n_rejected:
                r = checked.rejected.row(0, named=True)
                raise ApiError(422, f"records[{r['row']}] (date {r['date']!r}): {r['reason']}",
                               field=f"records.{r['row']}.{r['field']}",
                               details={"rejected": _rejected(checked.rejected)})
            recs = checked.records
            days = recs.get_column("date").cast(pl.Int32).to_numpy()
            _check_span(int(days.max()) - int(days.min()) + 1)
            w = build_windows(build_panel(recs, extend_days=1), include_next_day=True)
            w = w.take(np.arange(len(w)) == len(w) - 1)
    elif body.features is not None:
        x = features84(body.features)
        day = parse_date(body.date, "date")
        w = windows_from_batch84(BatchRows([body.vin], np.array([day]), x))
    else:
        raise ApiError(422, "give records (14+ daily records) or features (84 values)",
                       field="records")
    # Features once, for both the probability and the contributions.
    x = feature_matrix(w, predictor.artifact.features)
    p = float(predictor.artifact.model.predict(x)[0])
    t = int(w.index[0])  # the panel row of the prediction day: its 14 days precede it
    n_days = int((~np.isnan(w.panel.x[t - CONTEXT_DAYS:t]).all(axis=1)).sum())
    if n_days == 0:
        warnings.append("no data in the 14 days before the prediction day: the probability "
                        "rests on the vehicle having stopped reporting")
    date = str(w.dates()[0])
    thr = predictor.artifact.threshold
    stored: Future[None] | None = None
    if body.store:
        row: Row = (body.vin, dt.date.fromisoformat(date), p, p >= thr, thr,
                    predictor.model_version, "http", rid)
        writer = _alarm_writer(request)
        if writer is not None:
            # Grouped: queued, committed by the writer with others (one commit per
            # group); readers in this process flush first (see prediction_writer).
            writer.submit([row])
        else:
            # Sync: the commit runs beside the SHAP contributions; the reply waits for
            # it, so a stored prediction is durable before the client hears of it.
            frame = pl.DataFrame([row[:6]], schema=PREDICTION_SCHEMA, orient="row")
            stored = _sync_writer.submit(_store_predictions, request, packs, frame,
                                         source="http", request_id=rid)
    out = {"vin": body.vin, "date": date, "probability": p, "alarm": p >= thr, "threshold": thr,
           "model_version": predictor.model_version, "days_with_data": n_days,
           "contributions": predictor.contributions(w, x=x)[0], "warnings": warnings,
           "request_id": rid}
    if stored is not None:
        stored.result()
    return out


@router.post("/alarms/predict", summary="Predict a consistency alarm for one vehicle",
             description="Scores one VIN from its last 14+ daily records (prediction day = "
             "the day after the last record) or from the reference's 84-value form. Returns "
             "the calibrated probability of a 'cell consistency poor' alarm within 14 days, "
             "the alarm flag at the model's threshold, and the features that contributed most.",
             response_model=PredictOut, responses=responses(401, 403, 413, 422, 503),
             dependencies=[Depends(require_write)])
async def predict(request: Request, body: PredictIn) -> dict[str, Any]:
    return await run_in_threadpool(_predict_one, request, body, _request_id(request))


def _predict_batch(request: Request, data: bytes, fmt: str, rid: str,
                   store: bool) -> dict[str, Any]:
    predictor, packs = _state(request)
    if fmt == "csv":
        preds, rejected = score_bytes(predictor, data, source="body")
    else:
        checked = validate_records(body_frame(data, fmt), source="body")
        preds, rejected = predictor.predict_records(checked.records), checked.rejected
    if preds.height == 0:
        raise ApiError(422, "nothing to score: no VIN has 14 days of records"
                       + (f" ({rejected.height} rows rejected)" if rejected.height else ""),
                       field="body", details={"rejected": _rejected(rejected)})
    if store:
        _store_predictions(request, packs, preds, source="batch", request_id=rid)
    return {"predictions": _rows(preds), "rejected": _rejected(rejected),
            "model_version": predictor.model_version, "request_id": rid}


_BATCH_DOC: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string", "description": "Daily records with a header, "
                            "or the reference's headerless 84-value rows (detected)."}},
    "application/json": {"schema": {"type": "array",
                                    "items": PackRecordIn.model_json_schema()}},
    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
}}}


@router.post("/alarms/predict/batch", summary="Score a batch of daily records",
             description="One prediction per VIN and day with 14 earlier days (including the "
             "day after each VIN's last record). Bad rows are listed and their days count as "
             "days without data. 422 when nothing can be scored.",
             response_model=BatchOut, responses=responses(401, 403, 413, 415, 422, 503),
             dependencies=[Depends(require_write)], openapi_extra=_BATCH_DOC)
async def predict_batch(
    request: Request,
    store: Annotated[bool, Query(description="Store the predictions.")] = True,
) -> dict[str, Any]:
    fmt, _ = media_format(request.headers.get("content-type"))
    data = await request.body()
    return await run_in_threadpool(_predict_batch, request, data, fmt, _request_id(request),
                                   store)


@router.get("/alarms/predictions", summary="Stored predictions", response_model=PredictionPage,
            responses=responses(401, 403, 404, 422, 503), dependencies=[Depends(require_read)])
def list_predictions(
    request: Request,
    vin: Annotated[str | None, Query(pattern=VIN_PATTERN)] = None,
    start: Annotated[dt.date | None, Query(description="First day (inclusive).")] = None,
    end: Annotated[dt.date | None, Query(description="Last day (inclusive).")] = None,
    alarm_only: Annotated[bool, Query(description="Only predicted alarms.")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> dict[str, Any]:
    _, packs = _state(request)
    if start is not None and end is not None and start > end:
        raise ApiError(422, "start is after end", field="start")
    _flush(request)
    total = packs.count_predictions(vin=vin, start=start, end=end, alarm_only=alarm_only)
    if vin is not None and total == 0 and packs.count_predictions(vin=vin) == 0:
        raise ApiError(404, f"no predictions for VIN {vin!r}", field="vin")
    page = packs.predictions(vin=vin, start=start, end=end, alarm_only=alarm_only,
                             limit=limit, offset=offset)
    nxt = offset + page.height if offset + page.height < total else None
    return {"items": _rows(page), "total": total, "next_offset": nxt}


@router.get("/alarms/model", summary="The alarm model's card (manifest and evaluation)",
            responses=responses(401, 403, 422, 503), dependencies=[Depends(require_read)])
def model_card(request: Request) -> dict[str, Any]:
    predictor, _ = _state(request)
    art = predictor.artifact
    from ..ml.artifact import _finite

    return {"manifest": art.manifest(), "report": _finite(art.report)}


def _ingest_records(request: Request, data: bytes, fmt: str) -> dict[str, Any]:
    # The one micro-batch step of the pack kind: validate, store the records, predict
    # the VIN-days that now have 14 earlier days, raise alarm episodes, one commit.
    # Queued HTTP predictions go first (the step's own predictions must win).
    _flush(request)
    result = _pack_pipeline(request).ingest(body_frame(data, fmt), source="http")
    errors = _record_errors(result.rejected)
    if result.accepted == 0:
        first = errors[0] if errors else None
        raise ApiError(422, "no acceptable record" + (f": {first['reason']}" if first else ""),
                       code="no_acceptable_rows", field=first["field"] if first else "body",
                       details={"rejected": errors})
    return {"accepted": result.accepted, "rejected": result.rejected.height, "errors": errors}


def _record_errors(dead: pl.DataFrame) -> list[dict[str, Any]]:
    """Dead letters of the pack kind as RejectedRow dicts (VIN and date as given)."""
    out = []
    for r in dead.head(_MAX_ERRORS).iter_rows(named=True):  # at most _MAX_ERRORS rows
        given = json.loads(r["payload"]) if r["payload"] else {}
        out.append({"row": r["row"], "vin": given.get("vin"), "date": given.get("date"),
                    "field": r["field"], "reason": r["reason"]})
    return out


@router.post("/pack-records", summary="Ingest daily pack records",
             description="Validates and stores daily records (upsert by VIN and day) through "
             "the pack pipeline, which also stores a prediction for every VIN-day that now has "
             "14 earlier days and raises one alert per predicted alarm episode. Good rows are "
             "kept when others are rejected (200, each listed with field and reason); 422 when "
             "none is acceptable.", response_model=RecordsOut,
             responses=responses(401, 403, 413, 415, 422, 503),
             dependencies=[Depends(require_write)], openapi_extra=_BATCH_DOC)
async def post_pack_records(request: Request) -> dict[str, Any]:
    fmt, _ = media_format(request.headers.get("content-type"))
    data = await request.body()
    return await run_in_threadpool(_ingest_records, request, data, fmt)
