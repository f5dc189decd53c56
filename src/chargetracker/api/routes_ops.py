"""Operations endpoints at the root: ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from ..errors import StoreError
from .context import get_ctx
from .errors import ApiError, responses
from .metrics import CONTENT_TYPE
from .models import Health, Ready
from .security import require_read

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers", response_model=Health)
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the store answers", response_model=Ready,
            responses=responses(503))
def readyz(request: Request) -> dict[str, Any]:
    ctx = get_ctx(request)
    try:
        ctx.store.cells_count()
    except StoreError as exc:
        raise ApiError(503, f"store not reachable: {exc}", code="store_unavailable") from None
    return {"status": "ready", "store": type(ctx.store).__name__}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Text exposition format 0.0.4: samples ingested and rejected (store-wide), "
    "pipeline lag, ingest batch time, request counts and latency histograms per route.",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                     "description": "Prometheus text format."}, **responses(401, 403)},
    dependencies=[Depends(require_read)],
)
def metrics(request: Request) -> PlainTextResponse:
    ctx = get_ctx(request)
    try:
        stats: dict[str, Any] | None = ctx.store.ingest_stats()
        up = True
    except StoreError:
        stats, up = None, False
    return PlainTextResponse(ctx.metrics.render(stats, up), media_type=CONTENT_TYPE)
