"""Logging for every process (server, runner, workers): level, text or JSON lines,
request ids, and credentials redacted wherever they appear.

:func:`configure_logging` installs one handler on the root logger (uvicorn's loggers
propagate to it). Every record passes :class:`RedactingFilter` first, which masks

* query parameters that carry secrets (``?api_key=…``, ``token``, ``password``,
  ``secret``, ``access_token``, ``signature``, ...),
* ``Authorization:`` header values and ``Bearer``/``Basic`` credentials,
* the password (or a lone user token) of the userinfo in URLs
  (``postgresql://ct:***@db/ct``), and ``password=…`` pairs of DSN strings,

in the message *and* its arguments, so formatters that read ``record.args`` (uvicorn's
access log) see redacted values too. In JSON mode each line is one object with ``ts``
(ISO-8601 UTC), ``level``, ``logger``, ``message``, ``request_id`` (when a request is
being served) and, for access lines, ``client``, ``method``, ``path``, ``status``.

Request ids: :class:`RequestIdMiddleware` takes a client's ``X-Request-ID`` (when it is
1-128 characters of ``[A-Za-z0-9._:/=+-]``) or makes one, returns it in the response's
``X-Request-ID`` and puts it on every log record written while the request is served.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from typing import IO, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["configure_logging", "redact", "RedactingFilter", "JsonFormatter",
           "RequestIdMiddleware", "request_id", "LOG_LEVELS", "LOG_FORMATS"]

LOG_LEVELS: tuple[str, ...] = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS: tuple[str, ...] = ("text", "json")
MASK = "***"

_SECRET_KEYS = (r"api[_-]?key|apikey|key|token|access[_-]?token|refresh[_-]?token|id[_-]?token"
                r"|auth|authorization|password|passwd|pwd|secret|client[_-]?secret"
                r"|signature|sig|x-amz-signature|x-api-key|session|sessionid")
_QUERY = re.compile(rf"(?i)([?&;](?:{_SECRET_KEYS})=)[^&\s\"'#]*")
_HEADER = re.compile(r"(?i)(\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?)"
                     r"(?:(bearer|basic|token|digest)\s+)?[^\s\"',;]+")
_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s:@?#]+)(?::([^/\s@?#]*))?@")
_PAIR = re.compile(rf"(?i)(\b(?:{_SECRET_KEYS})\s*=\s*)(?!{re.escape(MASK)})[^\s&,;\"']+")
_JSON_PAIR = re.compile(rf"(?i)(\"(?:{_SECRET_KEYS})\"\s*:\s*\")[^\"]*(\")")


def _userinfo(m: re.Match[str]) -> str:
    scheme, user, password = m.group(1), m.group(2), m.group(3)
    if password is None:  # a lone user part is often a token (https://TOKEN@host)
        return f"{scheme}{MASK}@"
    return f"{scheme}{user}:{MASK}@"


def _header(m: re.Match[str]) -> str:
    scheme = m.group(2)
    return f"{m.group(1)}{scheme + ' ' if scheme else ''}{MASK}"


def redact(text: str) -> str:
    """``text`` with every credential it holds replaced by ``***``."""
    if not text:
        return text
    text = _USERINFO.sub(_userinfo, text)
    text = _QUERY.sub(rf"\g<1>{MASK}", text)
    text = _HEADER.sub(_header, text)
    text = _SCHEME.sub(rf"\g<1> {MASK}", text)
    text = _JSON_PAIR.sub(rf"\g<1>{MASK}\g<2>", text)
    return _PAIR.sub(rf"\g<1>{MASK}", text)


def _redact_arg(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "chargetracker_request_id", default=None)


def request_id() -> str | None:
    """The id of the request being served in this context (None outside a request)."""
    return _request_id.get()


class RedactingFilter(logging.Filter):
    """Masks credentials in a record's message and arguments; adds ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
            if record.name == "uvicorn.access":
                record.access_args = record.args
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        # Redact the whole message once formatted (a secret may be split between the
        # format string and an argument); later handlers see plain text.
        try:
            record.msg = redact(record.getMessage())
            record.args = None
        except (TypeError, ValueError):  # a malformed format: leave it to logging
            pass
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for the keys)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            out["request_id"] = rid
        access = getattr(record, "access_args", None)
        if isinstance(access, tuple) and len(access) == 5:
            client, method, path, version, status = access
            out.update(client=client, method=method, path=redact(str(path)),
                       http_version=version, status=status)
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, default=str, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        record.rid = f" [{rid}]" if rid else ""
        return super().format(record)


_HANDLER_NAME = "chargetracker"


def configure_logging(level: str = "info", fmt: str = "text", *,
                      stream: IO[str] | None = None) -> logging.Handler:
    """Install the process's log handler (idempotent: replaces the one installed before).

    ``level``: one of :data:`LOG_LEVELS` (applied to the root, ``chargetracker`` and
    ``uvicorn`` loggers); ``fmt``: ``text`` or ``json``. Returns the handler.
    """
    if level.lower() not in LOG_LEVELS:
        raise ValueError(f"log level {level!r}: use one of {', '.join(LOG_LEVELS)}")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r}: use one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter(
            "%(asctime)s %(levelname)s %(name)s%(rid)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = getattr(logging, level.upper())
    root.setLevel(numeric)
    for name in ("chargetracker", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.setLevel(numeric)
        # uvicorn's own handlers (if it configured any) would bypass redaction.
        for h in list(logger.handlers):
            logger.removeHandler(h)
        logger.propagate = True
    return handler


_VALID_ID = re.compile(r"^[A-Za-z0-9._:/=+\-]{1,128}$")


class RequestIdMiddleware:
    """Pure ASGI middleware: ``X-Request-ID`` in (validated) or made, and out."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                text = value.decode("latin-1")
                rid = text if _VALID_ID.match(text) else None
                break
        rid = rid or uuid.uuid4().hex
        token = _request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ())
                           if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)
