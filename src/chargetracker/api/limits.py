"""Request body size limit (``ApiConfig.max_body_bytes``), enforced twice.

1. A declared ``Content-Length`` above the limit is refused with 413 before a byte of the
   body is read.
2. Bodies without a length (chunked transfer) or lying about it are counted as they
   stream in; the moment the count passes the limit, reading stops with 413. Nothing is
   buffered beyond the limit, so a client cannot exhaust memory or disk.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimitMiddleware", "BodyTooLarge"]


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit (-> 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_message(limit))


def _message(limit: int) -> str:
    return (f"request body larger than the limit of {limit} bytes "
            f"({limit / 2**20:.1f} MiB); send smaller batches or raise the server's "
            "--max-body-mb")


class BodyLimitMiddleware:
    """Pure ASGI middleware (it must see the raw ``receive`` stream)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = int(max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await _send_413(send, limit, declared)
                    return
                break
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counting_receive, send)


async def _send_413(send: Send, limit: int, declared: int) -> None:
    body = json.dumps({"error": {
        "code": "payload_too_large", "message": _message(limit), "field": None,
        "details": {"limit_bytes": limit, "content_length": declared},
    }}).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]})
    await send({"type": "http.response.body", "body": body})
