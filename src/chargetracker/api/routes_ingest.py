"""Write endpoints: ``POST /measurements`` (batches) and ``POST /files`` (cycler exports)."""

from __future__ import annotations

import json
import lzma
import re
import shutil
import tempfile
import time
import zlib
import zoneinfo
from pathlib import Path
from typing import Annotated, Any

import polars as pl
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..errors import ChargeTrackerError
from ..readers import open_reader
from ..runtime.step import IngestResult, StepContext, screen
from ..schema import CELL_SCHEMA, MEASUREMENT_SCHEMA
from .context import API_PREFIX, ApiContext, get_ctx
from .errors import ApiError, responses
from .ingest import MEDIA_TYPES, media_format, parse_body
from .models import CELL_ID_PATTERN, FileFormat, FileIngestResponse, IngestResponse
from .security import require_write

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["ingest"])

SOURCE_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,64}$"

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A batch of canonical measurements (ts: s since the epoch UTC; "
                       "current_a > 0 = charging). Format by Content-Type.",
        "content": {
            "application/json": {"schema": {"anyOf": [
                {"type": "array", "items": {"$ref": "#/components/schemas/MeasurementIn"}},
                {"$ref": "#/components/schemas/IngestEnvelope"},
            ]}},
            "application/x-ndjson": {"schema": {"type": "string",
                                                "description": "One measurement object per line."}},
            "text/csv": {"schema": {"type": "string", "description": "Header row with canonical "
                                    "column names, then one measurement per line."}},
            "application/vnd.apache.arrow.stream": {"schema": {"type": "string", "format": "binary"}},
            "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
        },
    },
}

_FILE_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary",
                                    "description": "A cycler export (Arbin, Maccor, Battery "
                                    "Archive, batterydata.energy.gov, generic CSV/Parquet)."}},
        }}},
    },
}


def _result_body(ctx: ApiContext, res: IngestResult, *, fmt: str, source: str, cells: int,
                 ignored: list[str]) -> dict[str, Any]:
    cap = ctx.settings.api.max_error_rows
    errs = res.rejected.head(cap).select("row", "field", "reason").to_dicts()
    return {
        "accepted": int(res.accepted),
        "rejected": int(res.rejected.height),
        "already_stored": int(res.already_stored),
        "errors": errs,
        "errors_truncated": res.rejected.height > cap,
        "closed_cycles": int(res.closed_cycles),
        "alerts": int(res.alerts),
        "cells_registered": cells,
        "ignored_columns": ignored[:cap],  # capped like errors: a hostile row may hold 1 M
        "format": fmt,
        "source": source,
    }


def _nothing_accepted(body: dict[str, Any]) -> ApiError:
    first = body["errors"][0] if body["errors"] else {"field": None, "reason": "no rows"}
    row = f"row {first.get('row')}: " if first.get("row") is not None else ""
    return ApiError(422, f"no row of the batch was accepted ({body['rejected']} rejected); "
                    f"first: {row}{first.get('field')}: {first.get('reason')}",
                    code="no_acceptable_rows", field=first.get("field"), details=body)


def _ingest_body(ctx: ApiContext, body: bytes, fmt: str, charset: str | None,
                 source: str) -> dict[str, Any]:
    parsed = parse_body(body, fmt, charset, source=source)
    n_cells = parsed.cells.height if parsed.cells is not None else 0
    if parsed.frame.height == 0:
        if n_cells:
            assert parsed.cells is not None
            ctx.pipeline.register_cells(parsed.cells)
            return {"accepted": 0, "rejected": 0, "errors": [], "errors_truncated": False,
                    "closed_cycles": 0, "alerts": 0, "cells_registered": n_cells,
                    "ignored_columns": parsed.ignored_columns, "format": fmt, "source": source}
        raise ApiError(422, "the batch holds no measurements", code="empty_batch")
    t0 = time.perf_counter()
    if ctx.sink is not None:
        res = _publish(ctx, parsed.frame, parsed.cells, source)
    else:
        res = ctx.pipeline.ingest(parsed.frame, source=source, cells=parsed.cells)
    ctx.metrics.observe_ingest(fmt, res.accepted, res.rejected.height, time.perf_counter() - t0)
    out = _result_body(ctx, res, fmt=fmt, source=source, cells=n_cells,
                       ignored=parsed.ignored_columns)
    if res.accepted == 0 and res.already_stored == 0:
        raise _nothing_accepted(out)
    return out


def _publish(ctx: ApiContext, frame: pl.DataFrame, cells: pl.DataFrame | None,
             source: str) -> IngestResult:
    """Scale-out mode: validate here, publish good rows to Kafka for the workers (which
    run the rest of the step and count accepted samples); rejected rows are dead letters
    in the store right away."""
    checked, dead = screen(frame, StepContext(
        ctx.pipeline.kind, source, now=ctx.pipeline.now(),
        future_horizon_s=ctx.settings.runtime.future_horizon_s))
    if cells is not None and cells.height:
        ctx.store.upsert_cells(cells)
        ctx.sink.send_cells(cells)
    if checked.good.height:
        ctx.sink.send(checked.good)
        ctx.sink.flush()
    if dead is not None:
        ctx.store.commit(dead)
    return IngestResult(checked.good.height, checked.rejected)


@router.post(
    "/measurements",
    summary="Ingest a batch of measurements",
    description=(
        "Runs the batch through the pipeline (engine, alerts, one atomic commit). Good rows "
        "are kept even when others are rejected (200); each rejected row is listed with its "
        "0-based row index, field and reason, and stored as a dead letter. 422 when no row "
        "is acceptable, the body is malformed, or a column has the wrong type. Re-sending a "
        "batch is safe (idempotent): rows equal to stored samples are acknowledged as "
        "`already_stored` (200), never counted twice nor kept as dead letters; a row that "
        "differs from the stored sample at its timestamp is a dead letter. Rows stamped "
        "beyond the future horizon (`runtime.future_horizon_s`, default 1 day ahead of the "
        "clock) are dead letters. "
        f"Content types: {', '.join(sorted(MEDIA_TYPES))}."
    ),
    response_model=IngestResponse,
    responses=responses(401, 403, 413, 415, 422, 503),
    dependencies=[Depends(require_write)],
    openapi_extra=_BODY_DOC,
)
async def post_measurements(
    request: Request,
    source: Annotated[str, Query(pattern=SOURCE_PATTERN, description="Name of the sender, "
                                 "recorded with counters and dead letters.")] = "api",
) -> dict[str, Any]:
    ctx = get_ctx(request)
    fmt, charset = media_format(request.headers.get("content-type"))
    body = await request.body()
    return await run_in_threadpool(_ingest_body, ctx, body, fmt, charset, source)


# -- files ---------------------------------------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9._\- ()+,=@#]")


def _safe_filename(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = _UNSAFE.sub("_", base)[:200].lstrip(".") or "upload"
    return base


def _ingest_file(ctx: ApiContext, upload: UploadFile, *, fmt: str, cell_id: str | None,
                 meta: dict[str, Any], timezone: str, start_time: float | None) -> dict[str, Any]:
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ApiError(422, f"unknown time zone {timezone!r}; use an IANA name like "
                       "'Europe/Berlin'", field="timezone") from None
    name = _safe_filename(upload.filename or "upload")
    source = f"file:{name}"[:128]
    with tempfile.TemporaryDirectory(prefix="ct-upload-") as tmp:
        path = Path(tmp) / name
        upload.file.seek(0)
        with open(path, "wb") as out:
            shutil.copyfileobj(upload.file, out, 1 << 20)
        size = path.stat().st_size
        if size == 0:
            raise ApiError(422, "the uploaded file is empty", field="file", code="empty_batch")
        # Without an explicit id the reader derives it from the (sanitized) file name.
        reader = open_reader(path, fmt, cell_id=cell_id, timezone=timezone,
                             start_time=start_time, metadata=meta or None,
                             chunk_rows=ctx.settings.api.upload_chunk_rows)
        file_format = reader.format
        cid = str(reader.metadata.get("cell_id") or cell_id or Path(name).stem or "upload")
        cells = _file_cells(ctx, reader.metadata, cid)
        ctx.pipeline.register_cells(cells)
        accepted = rejected = closed = alerts = chunks = stored = 0
        errors: list[dict[str, Any]] = []
        cap = ctx.settings.api.max_error_rows
        cell_ids: dict[str, None] = {}
        parsed_rows = 0
        t0 = time.perf_counter()
        try:
            for chunk in reader:
                chunks += 1
                # Rows the reader refused are committed with the chunk (same transaction).
                dead = chunk.rejected.with_columns(pl.lit(source).alias("source"))
                frame = chunk.frame.select([c for c in MEASUREMENT_SCHEMA if c in chunk.frame.columns])
                if frame.height == 0 and dead.height == 0:
                    continue
                if frame.height:
                    cell_ids.update(dict.fromkeys(
                        frame.get_column("cell_id").unique(maintain_order=True).to_list()))
                res = ctx.pipeline.ingest(frame, source=source, rejected=dead if dead.height else None)
                accepted += res.accepted
                stored += res.already_stored
                rejected += res.rejected.height
                closed += res.closed_cycles
                alerts += res.alerts
                if len(errors) < cap and dead.height:
                    errors += dead.head(cap - len(errors)).select("row", "field", "reason").to_dicts()
                engine = res.rejected.slice(dead.height)  # after the reader's own rows
                if len(errors) < cap and engine.height:
                    # Engine rejections (late, duplicate) count rows of the parsed data.
                    errors += engine.head(cap - len(errors)).select(
                        pl.col("row") + parsed_rows, "field", "reason").to_dicts()
                parsed_rows += frame.height
        except ChargeTrackerError as exc:
            raise ApiError(422, f"{exc} (file {name!r}; {accepted} samples from earlier chunks "
                           "were accepted)", code="unreadable_file",
                           field=getattr(exc, "field", None),
                           details={"accepted": accepted, "rejected": rejected}) from None
        except (OSError, EOFError, zlib.error, lzma.LZMAError):
            # A compressed upload damaged past its first block fails while it is read.
            raise ApiError(422, f"file {name!r}: compressed data is truncated or damaged "
                           f"({accepted} samples from earlier chunks were accepted)",
                           code="unreadable_file", field="file",
                           details={"accepted": accepted, "rejected": rejected}) from None
        ctx.metrics.observe_ingest("file", accepted, rejected, time.perf_counter() - t0)
    body = {
        "accepted": accepted, "rejected": rejected, "already_stored": stored, "errors": errors,
        "errors_truncated": rejected > len(errors), "closed_cycles": closed, "alerts": alerts,
        "cells_registered": cells.height, "ignored_columns": [],
        "format": "file", "source": source, "cell_id": next(iter(cell_ids), cid),
        "cell_ids": list(cell_ids), "file_format": file_format, "filename": name,
        "bytes": size, "chunks": chunks,
    }
    if accepted == 0 and stored == 0:
        if rejected == 0:
            raise ApiError(422, f"the file {name!r} holds no measurements", field="file",
                           code="empty_batch", details=body)
        raise _nothing_accepted(body)
    return body


def _file_cells(ctx: ApiContext, meta: dict[str, Any], cell_id: str) -> pl.DataFrame:
    """The file's cell metadata merged over what the store already has (new values win)."""
    row = {c: meta.get(c) for c in CELL_SCHEMA}
    row["cell_id"] = cell_id
    existing = ctx.queries.cell(cell_id)
    if existing is not None:
        for c in CELL_SCHEMA:
            if c == "attributes":
                old = existing.get("attributes") or {}
                text = row.get("attributes")
                new = json.loads(text) if isinstance(text, str) and text else {}
                row["attributes"] = json.dumps({**old, **new}, sort_keys=True, default=str)
            elif row.get(c) is None:
                row[c] = existing.get(c)
    return pl.DataFrame([row], schema=CELL_SCHEMA)


@router.post(
    "/files",
    summary="Upload a cycler export",
    description=(
        "Multipart upload (part `file`). The format is detected from the file's header "
        "unless `format` is given; the file is read chunk by chunk (bounded memory) and "
        "each chunk goes through the pipeline. Rows the reader cannot use are reported with "
        "their line number and kept as dead letters. The cell id defaults to the file name."
    ),
    response_model=FileIngestResponse,
    responses=responses(401, 403, 413, 422, 503),
    dependencies=[Depends(require_write)],
    openapi_extra=_FILE_DOC,
)
async def post_file(
    request: Request,
    format: Annotated[FileFormat, Query(description="Reader; `auto` detects it.")] = "auto",
    cell_id: Annotated[str | None, Query(pattern=CELL_ID_PATTERN,
                                         description="Cell id (default: file name stem).")] = None,
    group: Annotated[str | None, Query(max_length=256)] = None,
    chemistry: Annotated[str | None, Query(max_length=256)] = None,
    test_type: Annotated[str | None, Query(max_length=256)] = None,
    nominal_capacity_ah: Annotated[float | None, Query(gt=0, le=1e6, allow_inf_nan=False)] = None,
    timezone: Annotated[str, Query(max_length=64, description="IANA zone of naive local "
                                   "times in the file.")] = "UTC",
    start_time: Annotated[float | None, Query(ge=0, le=1e11, description="Test start, s since "
                                              "the epoch, for files without absolute time.")] = None,
) -> dict[str, Any]:
    ctx = get_ctx(request)
    form = await request.form(max_files=1, max_fields=16)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "expected multipart/form-data with a file part named 'file'",
                           field="file")
        meta = {k: v for k, v in {"group": group, "chemistry": chemistry, "test_type": test_type,
                                  "nominal_capacity_ah": nominal_capacity_ah}.items()
                if v is not None}
        return await run_in_threadpool(_ingest_file, ctx, upload, fmt=format, cell_id=cell_id,
                                       meta=meta, timezone=timezone, start_time=start_time)
    finally:
        await form.close()


# -- plug-in telemetry kinds ---------------------------------------------------------
KIND_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"


def _records(body: bytes, fmt: str) -> pl.DataFrame:
    """A plug-in kind's batch: a JSON array of objects (or ``{"records": [...]}``), NDJSON
    or CSV with a header; columns are conformed and judged by the kind."""
    try:
        if fmt == "csv":
            return pl.read_csv(body, infer_schema_length=None)
        if fmt == "ndjson":
            rows: Any = [json.loads(line) for line in body.splitlines() if line.strip()]
        else:
            rows = json.loads(body)
            if isinstance(rows, dict):
                rows = rows.get("records")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ApiError(422, "expected a JSON array of objects or {\"records\": [...]}",
                           code="malformed_body")
        return pl.DataFrame(rows, infer_schema_length=None)
    except ApiError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError, pl.exceptions.PolarsError) as exc:
        raise ApiError(422, f"cannot read the {fmt} body: {str(exc)[:200]}",
                       code="malformed_body") from None


def _ingest_kind(ctx: ApiContext, kind: str, body: bytes, fmt: str, source: str) -> dict[str, Any]:
    pipeline = ctx.kinds.get(kind)
    if pipeline is None:
        raise ApiError(404, f"no telemetry kind {kind!r} (known: {sorted(ctx.kinds)})",
                       field="kind")
    frame = _records(body, fmt)
    if frame.height == 0:
        raise ApiError(422, "the batch holds no records", code="empty_batch")
    t0 = time.perf_counter()
    res = pipeline.ingest(frame, source=source)
    ctx.metrics.observe_ingest(fmt, res.accepted, res.rejected.height, time.perf_counter() - t0)
    out = _result_body(ctx, res, fmt=fmt, source=source, cells=0, ignored=[])
    out["kind"] = kind
    if res.accepted == 0:
        raise _nothing_accepted(out)
    return out


@router.post(
    "/telemetry/{kind}",
    summary="Ingest a batch of a plug-in telemetry kind",
    description="Records of the kind's canonical layout (JSON array, NDJSON or CSV), run "
                "through the same micro-batch step as measurements: validated once, the "
                "kind's engine, its alert rules, one atomic commit. 404 for an unknown kind.",
    responses=responses(401, 403, 404, 413, 415, 422, 503),
    dependencies=[Depends(require_write)],
)
async def post_telemetry(
    request: Request,
    kind: Annotated[str, PathParam(pattern=KIND_PATTERN)],
    source: Annotated[str, Query(pattern=SOURCE_PATTERN)] = "api",
) -> dict[str, Any]:
    ctx = get_ctx(request)
    fmt, _ = media_format(request.headers.get("content-type"))
    if fmt not in ("json", "ndjson", "csv"):
        raise ApiError(415, f"telemetry of a plug-in kind is JSON, NDJSON or CSV, not {fmt}",
                       code="unsupported_media_type")
    body = await request.body()
    return await run_in_threadpool(_ingest_kind, ctx, kind, body, fmt, source)
