"""PostgreSQL store URLs: store options in the query string, the rest for libpq."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ..errors import ConfigError
from .url import redact

__all__ = ["split_url"]


_BOOL = {"1": True, "true": True, "yes": True, "on": True,
         "0": False, "false": False, "no": False, "off": False}


def _bool(value: str) -> bool:
    try:
        return _BOOL[value.strip().lower()]
    except KeyError:
        raise ValueError("not a boolean") from None


#: Store options accepted as URL query parameters (the rest go to libpq).
_URL_KW: dict[str, Callable[[str], Any]] = {
    "pool_min_size": int,
    "pool_max_size": int,
    "pool_timeout": float,
    "series_retention_s": float,
    "migrate": _bool,
}


def split_url(url: str) -> tuple[str, dict[str, Any]]:
    """(libpq conninfo URL, store keyword arguments) of a store URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0].lower()  # postgresql+psycopg -> postgresql
    if scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"not a PostgreSQL URL: {redact(url)!r}")
    kw: dict[str, Any] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        conv = _URL_KW.get(key)
        if conv is None:
            rest.append((key, value))
            continue
        try:
            kw[key] = conv(value)
        except ValueError as exc:
            raise ConfigError(f"store URL parameter {key}={value!r}: {exc}") from exc
    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(rest), ""))
    try:
        conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        raise ConfigError(f"bad PostgreSQL URL {redact(url)!r}: {exc}") from exc
    return conninfo, kw
