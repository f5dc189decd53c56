"""Open a store from a URL (the ``store_url`` setting).

Accepted forms:

* ``duckdb:///var/lib/ct/store.duckdb`` -- an absolute path (``/var/lib/ct/store.duckdb``),
  as in a ``file:///`` URL; ``duckdb:////var/lib/ct/store.duckdb`` (SQLAlchemy's
  spelling) names the same file;
* ``duckdb:///chargetracker.duckdb`` -- a bare file name (no ``/`` after the three
  slashes) is a file in the working directory: the short form these docs have always
  used (a store at the filesystem root is never meant);
* ``duckdb://data/ct.duckdb`` -- a path relative to the working directory;
* ``duckdb://~/ct.duckdb``, ``duckdb:///~/ct.duckdb`` or ``~/ct.duckdb`` -- the home folder;
* ``duckdb:///:memory:`` (or ``duckdb://``, ``:memory:``) -- an in-memory store;
* a plain path ending ``.duckdb`` (or ``.db``), e.g. ``./data/ct.duckdb``;
* ``postgresql://user[:password]@host[:port]/db`` (or ``postgres://``,
  ``postgresql+psycopg://``) -- the PostgreSQL store (needs the ``scale`` extra);
  store options (``pool_max_size``, ``migrate``, ...) and libpq parameters
  (``sslmode``, ``connect_timeout``, ...) may follow as query parameters.

Query parameters are passed to the store as keyword arguments when the store knows
them, e.g. ``duckdb:///ct.duckdb?read_only=true`` or ``duckdb:///ct.duckdb?memory_limit=1GB``
(DuckDB's buffer pool, which otherwise grows with the file up to 80 % of RAM); keyword arguments of
:func:`open_store` win over them.

Backends are looked up in :data:`BACKENDS` (scheme -> ``"module:attribute"``), imported
lazily so that the PostgreSQL driver is only needed when it is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..errors import ConfigError
from .base import Store

__all__ = ["BACKENDS", "open_store", "parse_duckdb_url", "redact", "store_location"]

#: scheme -> "module:callable(url_or_path, **kw) -> Store".
BACKENDS: dict[str, str] = {
    "duckdb": "chargetracker.stores.duckdb:DuckDBStore",
    "postgresql": "chargetracker.stores.postgresql:PostgresStore",
    "postgres": "chargetracker.stores.postgresql:PostgresStore",
}

_BOOL = {"1": True, "true": True, "yes": True, "on": True,
         "0": False, "false": False, "no": False, "off": False}
_DUCKDB_KW: dict[str, Callable[[str], Any]] = {
    "read_only": lambda v: _parse_bool("read_only", v),
    "series_retention_s": float,
    "memory_limit": str,
}


def _parse_bool(name: str, value: str) -> bool:
    try:
        return _BOOL[value.strip().lower()]
    except KeyError:
        raise ConfigError(f"store URL parameter {name}={value!r} is not a boolean") from None


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def parse_duckdb_url(url: str) -> tuple[str, dict[str, Any]]:
    """``(path, keyword arguments)`` of a DuckDB URL or plain path."""
    if not url.startswith("duckdb:"):
        return (url if url == ":memory:" else str(Path(url).expanduser())), {}
    rest = url[len("duckdb:"):]
    path, _, query = rest.partition("?")
    if path in ("", "//", "///", "//:memory:", "///:memory:", ":memory:"):
        path = ":memory:"
    elif path.startswith("////"):
        path = "/" + path[4:].lstrip("/")   # SQLAlchemy's absolute form
    elif path.startswith("///"):
        tail = path[3:]
        if tail.startswith("~"):
            path = tail
        elif "/" in tail:
            path = "/" + tail          # duckdb:///abs/path
        else:
            path = tail                # duckdb:///name.duckdb: the working directory
    elif path.startswith("//"):
        path = path[2:]                # duckdb://relative/path
    else:
        raise ConfigError(
            f"bad DuckDB store URL {url!r}: use duckdb:///absolute/dir/file.duckdb, "
            "duckdb://relative/file.duckdb, a plain path or duckdb:///:memory:"
        )
    if path != ":memory:":
        path = str(Path(path).expanduser())
    kw: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        conv = _DUCKDB_KW.get(key)
        if conv is None:
            raise ConfigError(f"unknown DuckDB store URL parameter {key!r}; known: {sorted(_DUCKDB_KW)}")
        try:
            kw[key] = conv(value)
        except ValueError as exc:
            raise ConfigError(f"store URL parameter {key}={value!r}: {exc}") from exc
    return path, kw


def store_location(url: str) -> str:
    """Where a store URL points, for start-up messages: the absolute DuckDB file (or
    "in memory"), or the PostgreSQL URL with its password redacted."""
    try:
        scheme = _scheme(url.strip())
    except (AttributeError, ValueError):
        return "<invalid store URL>"
    if scheme == "duckdb":
        try:
            path, _ = parse_duckdb_url(url.strip())
        except ConfigError:
            return f"<invalid store URL {url!r}>"
        if path == ":memory:":
            return "DuckDB in memory (nothing is kept after exit)"
        return f"DuckDB file {Path(path).resolve()}"
    if scheme in ("postgresql", "postgres"):
        return f"PostgreSQL {redact(url.strip())}"
    return redact(url)


def _scheme(url: str) -> str:
    if url == ":memory:" or "://" not in url and not url.startswith("duckdb:") and (
            url.endswith((".duckdb", ".db")) or url.startswith(("/", "./", "../", "~"))):
        return "duckdb"
    head, sep, _ = url.partition(":")
    if not sep:
        return ""
    return head.split("+", 1)[0].lower()  # "postgresql+psycopg" -> "postgresql"


def _load(scheme: str, url: str) -> Callable[..., Store]:
    target = BACKENDS[scheme]
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if scheme in ("postgresql", "postgres"):
            raise ConfigError(
                f"cannot open {redact(url)}: the PostgreSQL driver is not installed "
                f"({exc.name}); pip install 'chargetracker[scale]' or use a DuckDB store "
                "(duckdb:///chargetracker.duckdb)"
            ) from exc
        raise ConfigError(f"store backend {scheme!r} is not installed ({exc})") from exc
    return getattr(module, attr)


def open_store(url: str, **kw: Any) -> Store:
    """Open the store a URL names (see the module docstring for the forms).

    Raises :class:`~chargetracker.errors.ConfigError` for an unknown or malformed URL
    and :class:`~chargetracker.errors.StoreUnavailable` when the store cannot be opened
    (e.g. a DuckDB file locked by another process).
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("store URL is empty; e.g. duckdb:///chargetracker.duckdb")
    url = url.strip()
    scheme = _scheme(url)
    if scheme not in BACKENDS:
        raise ConfigError(
            f"unsupported store URL {redact(url)!r}: expected duckdb:///abs/dir/file.duckdb, "
            "duckdb://relative/file.duckdb, duckdb:///:memory:, a path ending .duckdb, "
            "or postgresql://..."
        )
    factory = _load(scheme, url)
    if scheme == "duckdb":
        path, url_kw = parse_duckdb_url(url)
        return factory(path, **{**url_kw, **kw})
    return factory(url, **kw)
