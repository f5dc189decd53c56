"""API keys: ``Authorization: Bearer <key>``.

When ``ApiConfig.api_keys`` is non-empty every write needs a key (401 when none is sent,
403 when it is wrong); reads need one too when ``protect_reads`` is set. Keys are compared
in constant time (SHA-256 digests through :func:`hmac.compare_digest`, every configured key
checked, so neither the position nor the length of a key leaks through timing) and are
never logged: nothing in the API logs request headers.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError

__all__ = ["Guard", "bearer", "require_read", "require_write"]

#: The OpenAPI security scheme (auto_error=False: we answer 401/403 with our own body).
bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey",
                    description="An API key configured on the server (`--api-key`), sent as "
                    "`Authorization: Bearer <key>`.")


@dataclass(frozen=True)
class Guard:
    """Checks keys; holds only digests of the configured keys."""

    digests: tuple[bytes, ...]
    protect_reads: bool

    @classmethod
    def from_keys(cls, keys: tuple[str, ...], protect_reads: bool) -> Guard:
        return cls(tuple(hashlib.sha256(k.encode()).digest() for k in keys if k), protect_reads)

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    def valid(self, presented: str) -> bool:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        ok = False
        for known in self.digests:  # no early exit: constant work per request
            ok |= hmac.compare_digest(digest, known)
        return ok

    def check(self, credentials: HTTPAuthorizationCredentials | None, *, write: bool) -> None:
        if not self.enabled or (not write and not self.protect_reads):
            return
        what = "writes" if write else "reads"
        if credentials is None or not credentials.credentials:
            raise ApiError(
                401, f"an API key is required for {what}: send 'Authorization: Bearer <key>'",
                code="unauthorized", field="Authorization",
                headers={"WWW-Authenticate": 'Bearer realm="chargetracker"'},
            )
        if not self.valid(credentials.credentials):
            raise ApiError(403, "the API key is not valid", code="forbidden", field="Authorization")


def _guard(request: Request) -> Guard:
    return request.app.state.ctx.guard  # type: ignore[no-any-return]


Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


# Coroutines, though they never await: FastAPI runs a plain-def dependency in its thread
# pool, a thread hop per request for a few microseconds of hashing.
async def require_write(request: Request, credentials: Credentials) -> None:
    """Dependency of every write endpoint."""
    _guard(request).check(credentials, write=True)


async def require_read(request: Request, credentials: Credentials) -> None:
    """Dependency of every read endpoint (a no-op unless ``protect_reads``)."""
    _guard(request).check(credentials, write=False)
