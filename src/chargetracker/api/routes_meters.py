"""Smart-meter endpoints under ``/api/v1/meters``, and the live alert stream (SSE).

The router is self-contained: the first request opens a :class:`MeterService` on the
app's store (which then holds the meter kind's tables, :mod:`chargetracker.kinds.meter`):
ingested readings run through the one micro-batch step (a :class:`Pipeline` of the meter
kind): days, spike episodes, raw readings, dead letters, the episode notifications and
the engine checkpoint are one commit, and every spike event is pushed to the subscribers
of ``GET /api/v1/meters/alerts/stream`` (server-sent events) as it happens, without
polling the store. Reads go through :class:`~chargetracker.stores.meters.MeterStore`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import polars as pl
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..config import Settings
from ..errors import ChargeTrackerError, SchemaError, StoreError, StoreUnavailable
from ..kinds.meter import DAYS, SPIKES, THRESHOLDS, meter_kind, to_cell_letters
from ..meters import (
    MeterConfig,
    MeterState,
    compute_thresholds,
    house_breakdown,
    house_days,
    set_thresholds,
    zip_days,
)
from ..meters.calendar import check_timezone
from ..meters.readers import ReadOptions, long_readings
from ..runtime.pipeline import Pipeline
from ..stores.base import Store
from ..stores.meters import MeterStore
from .errors import ApiError, responses
from .security import require_read, require_write

__all__ = ["router", "MeterService", "AlertHub"]

router = APIRouter(prefix="/api/v1/meters", tags=["meters"])

_FORMATS = {"application/json": "json", "application/x-ndjson": "ndjson",
            "application/ndjson": "ndjson", "text/csv": "csv",
            "application/vnd.apache.arrow.stream": "arrow", "application/vnd.apache.parquet": "parquet",
            "application/x-parquet": "parquet"}
SOURCE_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,64}$"
#: Checkpoint name of the API process's meter engine state.
CHECKPOINT = "api-meters"


class AlertHub:
    """Fan-out of alert events to SSE subscribers (thread-safe publish)."""

    def __init__(self) -> None:
        self._subs: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[str]]] = []
        self._lock = threading.Lock()

    def subscribe(self) -> asyncio.Queue[str]:
        q: asyncio.Queue[str] = asyncio.Queue(maxsize=10_000)
        with self._lock:
            self._subs.append((asyncio.get_running_loop(), q))
        return q

    def unsubscribe(self, q: asyncio.Queue[str]) -> None:
        with self._lock:
            self._subs = [(lp, x) for lp, x in self._subs if x is not q]

    def publish(self, alerts: pl.DataFrame) -> None:
        if alerts.height == 0:
            return
        msgs = [json.dumps(r) for r in alerts.to_dicts()]
        with self._lock:
            subs = list(self._subs)
        for loop, q in subs:
            for m in msgs:
                try:
                    loop.call_soon_threadsafe(_offer, q, m)
                except RuntimeError:  # the subscriber's loop is gone
                    self.unsubscribe(q)


def _offer(q: asyncio.Queue[str], m: str) -> None:
    if not q.full():  # a stalled client loses events rather than the server's memory
        q.put_nowait(m)


class MeterService:
    """The meter kind as one API process serves it: a :class:`Pipeline` of the meter
    kind (the one micro-batch step; engine state checkpointed as ``api-meters`` with
    every commit), the meter reads and the alert hub.

    A restart resumes the engine where the last committed batch left it; raw readings
    are insert-if-absent and results upserts, so a batch re-sent after a crash is
    neither lost nor doubled (its readings come back as duplicates).
    """

    def __init__(self, store: Store, settings: Settings | None = None,
                 config: MeterConfig | None = None) -> None:
        self.settings = settings or Settings()
        self.kind = meter_kind(self.settings, config)
        self.config = self.kind.config
        self.store = MeterStore(store)  # holds the meter kind's tables (created if missing)
        self.pipeline = Pipeline(store, self.settings, name=CHECKPOINT, kind=self.kind)
        self.hub = AlertHub()
        # Metadata and thresholds stored since the checkpoint (another process, the batch
        # layer) win over the checkpoint's.
        entities = self.store.entities()
        if entities.height:
            self.pipeline.amend(lambda state: self.kind.register(state, entities))

    def register(self, meters: pl.DataFrame) -> int:
        df = self.kind.metadata(meters)  # raises ValidationError before any change
        self.pipeline.amend(lambda state: self.kind.register(state, df))
        return df.height

    def ingest(self, readings: pl.DataFrame, rejected: pl.DataFrame, source: str) -> dict[str, Any]:
        """One batch through the step (validate, engine, spike episodes, one commit)."""
        prepared = self.pipeline.prepare(readings, source=source,
                                         rejected=to_cell_letters(rejected))
        result = self.pipeline.write(prepared)
        tables = prepared.step.output.tables
        days, spikes = tables.get(DAYS.name), tables.get(SPIKES.name)
        if spikes is not None:
            self.hub.publish(spikes)
        dead = result.rejected
        return {"accepted": result.accepted, "rejected": dead.height,
                "errors": dead.head(1000).select("row", "field", "reason").to_dicts(),
                "days": 0 if days is None else days.height,
                "alerts": 0 if spikes is None else spikes.height}

    def recompute_thresholds(self, as_of: float | None = None) -> pl.DataFrame:
        """Batch layer over the stored raw readings (the trailing window)."""
        end = as_of if as_of is not None else time.time()
        start = end - self.config.window_days * 86_400.0
        readings = self.store.readings_between(start, end)
        known = self.store.meters()["meter_id"].to_list()
        ids = sorted(set(known) | set(readings["meter_id"].unique().to_list()))
        thr = compute_thresholds(readings, self.config, as_of=end, meter_ids=ids)

        def install(state: MeterState) -> dict[str, pl.DataFrame]:
            set_thresholds(state, thr)  # a meter without "on" readings now has none
            return {THRESHOLDS.name: thr}

        self.pipeline.amend(install)
        return thr


_SERVICE_LOCK = threading.Lock()
_READ_ERRORS = responses(401, 403, 422)
_WRITE_ERRORS = responses(401, 403, 404, 413, 415, 422)


def service(request: Request) -> MeterService:
    st = request.app.state
    svc = getattr(st, "meters", None)
    if svc is None:
        with _SERVICE_LOCK:
            svc = getattr(st, "meters", None)
            if svc is None:
                svc = st.meters = MeterService(st.ctx.store, st.ctx.settings)
    return svc  # type: ignore[no-any-return]


Service = Annotated[MeterService, Depends(service)]


# -- body parsing ----------------------------------------------------------------------------
def _frame(body: bytes, fmt: str) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(readings-like frame, optional meters frame) of a request body; 422 when malformed."""
    try:
        if fmt == "json":
            doc = json.loads(body)
            meters = None
            if isinstance(doc, dict):
                meters = pl.DataFrame(doc["meters"]) if doc.get("meters") else None
                doc = doc.get("readings", [])
            if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
                raise ApiError(422, "JSON body must be a list of reading objects or "
                               "{'readings': [...], 'meters': [...]}", field="body")
            return pl.DataFrame(doc, infer_schema_length=None), meters
        if fmt == "ndjson":
            return pl.read_ndjson(io.BytesIO(body)), None
        if fmt == "csv":
            return pl.read_csv(io.BytesIO(body), infer_schema_length=0), None
        if fmt == "arrow":
            import pyarrow.ipc as ipc

            tab = ipc.open_stream(io.BytesIO(body)).read_all()
            out = pl.from_arrow(tab)
            assert isinstance(out, pl.DataFrame)
            return out, None
        return pl.read_parquet(io.BytesIO(body)), None
    except ApiError:
        raise
    except (ValueError, KeyError, TypeError, pl.exceptions.PolarsError, OSError) as exc:
        raise ApiError(422, f"cannot read the {fmt} body: {str(exc)[:300]}", field="body") from exc
    except Exception as exc:  # pyarrow raises its own ArrowInvalid
        raise ApiError(422, f"cannot read the {fmt} body: {str(exc)[:300]}", field="body") from exc


def _error(exc: ChargeTrackerError) -> ApiError:
    field = getattr(exc, "field", None)
    row = getattr(exc, "row", None)
    return ApiError(422, str(exc), code="invalid_input", field=field,
                    details={"row": row} if row is not None else None)


def _ingest(svc: MeterService, body: bytes, content_type: str | None, source: str,
            timezone: str) -> dict[str, Any]:
    main = (content_type or "").partition(";")[0].strip().lower()
    fmt = _FORMATS.get(main)
    if fmt is None:
        raise ApiError(415, f"unsupported Content-Type {main[:100]!r}; use one of "
                       + ", ".join(sorted(_FORMATS)), field="Content-Type")
    frame, meters = _frame(body, fmt)
    try:
        check_timezone(timezone, field="timezone")
        if meters is not None:
            svc.register(meters)
        if frame.height == 0:
            if meters is not None:
                return {"accepted": 0, "rejected": 0, "errors": [], "days": 0, "alerts": 0}
            raise ApiError(422, "the batch holds no readings", code="empty_batch", field="body")
        chunk = long_readings(frame, ReadOptions(timezone=timezone), source)
        out = svc.ingest(chunk.readings, chunk.rejected, source)
    except (StoreUnavailable, StoreError):
        raise  # the app's handlers answer 503 / 500
    except (SchemaError, ChargeTrackerError) as exc:
        raise _error(exc) from exc
    except pl.exceptions.PolarsError as exc:  # e.g. nested values where numbers belong
        raise ApiError(422, f"cannot read the readings: {str(exc)[:300]}", field="body") from exc
    if out["accepted"] == 0:
        first = out["errors"][0] if out["errors"] else {"field": None, "reason": "no rows"}
        raise ApiError(422, f"no reading was accepted ({out['rejected']} rejected); first: row "
                       f"{first.get('row')}: {first.get('field')}: {first.get('reason')}",
                       code="no_acceptable_rows", field=first.get("field"), details=out)
    return out


class IngestOut(BaseModel):
    accepted: int
    rejected: int
    errors: list[dict[str, Any]] = Field(description="row (0-based), field and reason per rejected row")
    days: int
    alerts: int


@router.post("/readings", summary="Ingest meter readings", response_model=IngestOut,
             description="Rows: meter_id, ts (epoch s or ISO time), power_w (or power_kw), "
             "optional energy_wh. JSON may be `{'readings': [...], 'meters': [...]}` to register "
             "metadata too. Content types: " + ", ".join(sorted(_FORMATS)) + ". Bad rows are "
             "listed and kept as dead letters; 422 when none is acceptable.", dependencies=[Depends(require_write)], responses=_WRITE_ERRORS)
async def post_readings(request: Request, svc: Service,
                        source: Annotated[str, Query(pattern=SOURCE_PATTERN)] = "api",
                        timezone: Annotated[str, Query(max_length=64, description="zone of naive ISO times")] = "UTC"
                        ) -> dict[str, Any]:
    body = await request.body()
    return await run_in_threadpool(_ingest, svc, body, request.headers.get("content-type"),
                                   source, timezone)


class MeterIn(BaseModel):
    meter_id: str = Field(min_length=1, max_length=256)
    house_id: str = Field(min_length=1, max_length=256)
    appliance: str = Field(min_length=1, max_length=128, description="'mains' for the whole house")
    zip: str | None = Field(default=None, max_length=32)
    timezone: str | None = Field(default=None, max_length=64, description="IANA zone")
    attributes: dict[str, Any] | None = None


@router.post("/meters", summary="Register meter metadata", dependencies=[Depends(require_write)], responses=_WRITE_ERRORS)
async def post_meters(svc: Service, meters: list[MeterIn]) -> dict[str, int]:
    rows = [{**m.model_dump(exclude={"attributes"}),
             "attributes": json.dumps(m.attributes) if m.attributes else None} for m in meters]
    try:
        n = await run_in_threadpool(svc.register, pl.DataFrame(rows, schema={
            "meter_id": pl.Utf8, "house_id": pl.Utf8, "appliance": pl.Utf8, "zip": pl.Utf8,
            "timezone": pl.Utf8, "attributes": pl.Utf8}))
    except ChargeTrackerError as exc:
        raise _error(exc) from exc
    return {"registered": n}


def _rows(df: pl.DataFrame) -> list[dict[str, Any]]:
    return df.with_columns(pl.col(pl.Date).cast(pl.Utf8)).to_dicts()


#: Seconds since the epoch in a query (finite, plausible).
Ts = Annotated[float | None, Query(ge=0, le=1e11, allow_inf_nan=False)]
Date = Annotated[dt.date | None, Query(description="YYYY-MM-DD (local date of the meter)")]
Read = [Depends(require_read)]


@router.get("/meters", summary="Meters, filtered", dependencies=Read, responses=_READ_ERRORS)
async def get_meters(svc: Service, house_id: str | None = None, zip: str | None = None,
                     appliance: str | None = None) -> list[dict[str, Any]]:
    return _rows(svc.store.meters(house_id=house_id, zip_code=zip, appliance=appliance))


@router.get("/houses", summary="Houses, filtered by zip", dependencies=Read, responses=_READ_ERRORS)
async def get_houses(svc: Service, zip: str | None = None) -> list[dict[str, Any]]:
    return _rows(svc.store.houses(zip_code=zip))


@router.get("/days", summary="Daily energy per meter", dependencies=Read, responses=_READ_ERRORS)
async def get_days(svc: Service, meter_id: str | None = None, house_id: str | None = None,
                   zip: str | None = None, start: Date = None, end: Date = None) -> list[dict[str, Any]]:
    d = svc.store.days(meter_ids=[meter_id] if meter_id else None, house_id=house_id,
                       zip_code=zip, start=start, end=end)
    return _rows(d)


@router.get("/houses/days", summary="Daily mains, appliances and unmetered kWh per house",
            dependencies=Read, responses=_READ_ERRORS)
async def get_house_days(svc: Service, house_id: str | None = None, zip: str | None = None,
                         start: Date = None, end: Date = None,
                         breakdown: bool = False) -> list[dict[str, Any]]:
    meters = svc.store.meters(house_id=house_id, zip_code=zip)
    d = svc.store.days(house_id=house_id, zip_code=zip, start=start, end=end)
    return _rows(house_breakdown(d, meters) if breakdown else house_days(d, meters))


@router.get("/zips/days", summary="Daily totals per zip code", dependencies=Read, responses=_READ_ERRORS)
async def get_zip_days(svc: Service, zip: str | None = None, start: Date = None,
                       end: Date = None, min_coverage: Annotated[float, Query(ge=0, le=1)] = 0.0
                       ) -> list[dict[str, Any]]:
    meters = svc.store.meters(zip_code=zip)
    d = svc.store.days(zip_code=zip, start=start, end=end)
    return _rows(zip_days(house_days(d, meters), min_coverage=min_coverage))


@router.get("/thresholds", summary="Spike thresholds (p97 of 'on' power)", dependencies=Read, responses=_READ_ERRORS)
async def get_thresholds(svc: Service, meter_id: str | None = None) -> list[dict[str, Any]]:
    return _rows(svc.store.thresholds(meter_id=meter_id))


@router.post("/thresholds/recompute", summary="Recompute thresholds from stored readings",
             dependencies=[Depends(require_write)], responses=_WRITE_ERRORS)
async def post_recompute(svc: Service, as_of: Ts = None) -> dict[str, int]:
    thr = await run_in_threadpool(svc.recompute_thresholds, as_of)
    return {"meters": thr.height, "with_threshold": int(thr["p97_w"].is_not_null().sum())}


@router.get("/readings", summary="Raw readings of one meter (its power trace)", dependencies=Read, responses=_READ_ERRORS)
async def get_readings(svc: Service, meter_id: Annotated[str, Query(min_length=1)],
                       start_ts: Ts = None, end_ts: Ts = None,
                       limit: Annotated[int, Query(ge=1, le=1_000_000)] = 20_000) -> list[dict[str, Any]]:
    return _rows(svc.store.readings(meter_id, start_ts=start_ts, end_ts=end_ts, limit=limit))


@router.get("/alerts", summary="Spike alerts, newest first", dependencies=Read, responses=_READ_ERRORS)
async def get_alerts(svc: Service, meter_id: str | None = None, house_id: str | None = None,
                     zip: str | None = None,
                     status: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
                     acked: bool | None = None, since_ts: Ts = None,
                     limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> list[dict[str, Any]]:
    return _rows(svc.store.alerts(meter_id=meter_id, house_id=house_id, zip_code=zip,
                                  status=status, acked=acked, since_ts=since_ts, limit=limit))


class AckIn(BaseModel):
    meter_id: str = Field(min_length=1, max_length=256)
    start_ts: float = Field(ge=0, le=1e11, allow_inf_nan=False)


@router.post("/alerts/ack", summary="Acknowledge an alert", dependencies=[Depends(require_write)], responses=_WRITE_ERRORS)
async def post_ack(svc: Service, ack: AckIn) -> dict[str, Any]:
    return _rows(svc.store.ack_alert(ack.meter_id, ack.start_ts))[0]


# Not in the OpenAPI document: an endless stream has no response schema to check.
@router.get("/alerts/stream", summary="Live alert events (server-sent events)",
            dependencies=Read, include_in_schema=False, response_class=StreamingResponse,
            description="`text/event-stream`: one `event: alert` with the alert as JSON per "
            "episode opening and ending, pushed as the engine raises it; a comment every 15 s "
            "keeps the connection open.")
async def alert_stream(request: Request, svc: Service) -> StreamingResponse:
    q = svc.hub.subscribe()

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while True:
                try:
                    msg = await asyncio.wait_for(q.get(), timeout=15.0)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": keep-alive\n\n"
                    continue
                yield f"event: alert\ndata: {msg}\n\n".encode()
        finally:
            svc.hub.unsubscribe(q)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
