"""One error body for every failure, and the mapping of ChargeTracker errors to HTTP.

Every non-2xx response of the API has the body::

    {"error": {"code": "not_found", "message": "cell 'x' not found",
               "field": null, "details": null}}

``code`` is a stable machine-readable word, ``message`` says what is wrong in words a
user can act on, ``field`` names the offending input (column, query parameter, body key)
when there is one, ``details`` carries extra structured data (rejected rows, row index).

Mapping (see :func:`status_for`): :class:`~chargetracker.errors.NotFound` -> 404,
:class:`~chargetracker.errors.ValidationError` / ``SchemaError`` / ``ReaderError`` -> 422,
:class:`~chargetracker.errors.AuthError` -> 401, :class:`~chargetracker.errors.StoreUnavailable`
-> 503, any other store error -> 500 (a server problem, never caused by input).
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    AuthError,
    ChargeTrackerError,
    ConfigError,
    NotFound,
    ReaderError,
    StoreUnavailable,
    ValidationError,
)

__all__ = [
    "ApiError",
    "ErrorBody",
    "ErrorResponse",
    "error_response",
    "install_handlers",
    "scrub",
    "responses",
    "status_for",
]

log = logging.getLogger("chargetracker.api")


class ErrorBody(BaseModel):
    """What went wrong."""

    code: str = Field(description="Stable machine-readable error code, e.g. `not_found`, "
                      "`invalid_input`, `no_acceptable_rows`, `payload_too_large`.")
    message: str = Field(description="Human-readable explanation naming the problem.")
    field: str | None = Field(None, description="The offending field, column or parameter, "
                              "when one is to blame.")
    details: dict[str, Any] | None = Field(None, description="Extra structured information "
                                           "(e.g. rejected rows, the row index).")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorBody


_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    500: "internal_error",
    503: "store_unavailable",
}

_DESCRIPTIONS: dict[int, str] = {
    401: "Missing API key (send `Authorization: Bearer <key>`).",
    403: "Wrong API key.",
    404: "Not found.",
    413: "Request body larger than the configured limit.",
    415: "Unsupported Content-Type.",
    422: "Invalid input: the body, a parameter or every row of a batch was rejected; "
         "`field` names the culprit.",
    503: "The store cannot be reached.",
}


class ApiError(Exception):
    """An HTTP error raised by the API layer itself (auth, body limit, media type)."""

    def __init__(self, status: int, message: str, *, code: str | None = None,
                 field: str | None = None, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")
        self.field = field
        self.details = details
        self.headers = headers


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses (common error body)."""
    return {s: {"model": ErrorResponse, "description": _DESCRIPTIONS.get(s, "Error.")}
            for s in statuses}


#: Longest error message sent, characters (a message may quote user data).
MAX_MESSAGE_CHARS = 2000
_TMP = re.escape(tempfile.gettempdir().rstrip("/"))
#: Server-side temporary paths (uploads are spooled there): reduced to the file name.
_TMP_PATH = re.compile(_TMP + r"/[^\s'\"]*/([^/\s'\"]+)")


def scrub(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """An error text fit for a client: no server temp paths, no binary or control
    characters (escaped), at most ``limit`` characters."""
    text = _TMP_PATH.sub(r"\1", text)
    if not text.isprintable() or "\ufffd" in text:
        text = "".join(ch if ch.isprintable() and ch != "\ufffd" else
                       ("?" if ch == "\ufffd" else repr(ch)[1:-1]) for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scrub_details(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub(value, 500)
    if depth > 4:
        return None
    if isinstance(value, dict):
        return {str(k)[:100]: _scrub_details(v, depth + 1) for k, v in list(value.items())[:200]}
    if isinstance(value, list | tuple):
        return [_scrub_details(v, depth + 1) for v in value[:200]]
    return value


def error_response(status: int, message: str, *, code: str | None = None,
                   field: str | None = None, details: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code or _CODES.get(status, "error"), "message": scrub(message),
                      "field": scrub(field, 200) if field else field,
                      "details": _scrub_details(details) if details else details}}
    return JSONResponse(body, status_code=status, headers=headers)


def status_for(exc: ChargeTrackerError) -> tuple[int, str]:
    """HTTP status and error code of a ChargeTracker exception."""
    if isinstance(exc, NotFound):
        return 404, "not_found"
    if isinstance(exc, StoreUnavailable):
        return 503, "store_unavailable"
    if isinstance(exc, ValidationError):
        return 422, "invalid_input"
    if isinstance(exc, ReaderError):
        return 422, "unreadable_file"
    if isinstance(exc, AuthError):
        return 401, "unauthorized"
    if isinstance(exc, ConfigError):
        return 500, "configuration_error"
    return 500, "store_error"


def _chargetracker_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ChargeTrackerError)
    status, code = status_for(exc)
    field = getattr(exc, "field", None)
    details: dict[str, Any] | None = None
    row = getattr(exc, "row", None)
    if row is not None:
        details = {"row": int(row)}
    message = getattr(exc, "reason", None) or str(exc)
    if status >= 500:
        # Log the route, never headers or bodies (they may hold keys or user data).
        log.error("%s %s failed: %s", request.method, _route_of(request), exc)
    return error_response(status, message, code=code, field=field, details=details)


def _api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, code=exc.code, field=exc.field,
                          details=exc.details, headers=exc.headers)


def _field_of(loc: Sequence[Any]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) if parts else (str(loc[0]) if loc else None)


def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
         "type": str(e.get("type", ""))}
        for e in exc.errors()
    ][:50]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    field = _field_of(first["loc"])
    where = f"{'.'.join(first['loc'])}: " if first["loc"] else ""
    return error_response(422, f"{where}{first['msg']}", code="invalid_request", field=field,
                          details={"errors": errors})


def _http_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    headers = dict(exc.headers) if exc.headers else None
    if status == 400:
        # Starlette/FastAPI raise 400 for bodies they cannot parse (e.g. a broken
        # multipart form): malformed input is a 422 everywhere in this API.
        return error_response(422, f"malformed request body: {message}", code="malformed_body",
                              headers=headers)
    if status == 404 and message == "Not Found":
        message = f"no such endpoint: {request.url.path}"
    return error_response(status, message, headers=headers)


def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s: unexpected error", request.method, _route_of(request), exc_info=exc)
    return error_response(500, "internal server error", code="internal_error")


def _route_of(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", None) or "<unmatched>"


def install_handlers(app: Any) -> None:
    """Register the exception handlers on a FastAPI app."""
    app.add_exception_handler(ChargeTrackerError, _chargetracker_handler)
    app.add_exception_handler(ApiError, _api_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(Exception, _unhandled)
