"""``chargetracker serve``: the HTTP API and the dashboard in one process."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import ApiConfig, KafkaConfig, RuntimeConfig, Settings
from ..errors import ConfigError

#: Environment variables read here (the CLI is the only place that reads them).
ENV_STORE = "CHARGETRACKER_STORE"
ENV_API_KEYS = "CHARGETRACKER_API_KEYS"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    defaults = ApiConfig()
    p = sub.add_parser(
        "serve", help="serve the HTTP API (/api/v1) and the dashboard (/)",
        description="Serve the HTTP API under /api/v1 (OpenAPI at /api/v1/openapi.json, docs "
        "at /api/v1/docs), /healthz, /readyz, /metrics and the dashboard at / from one process. "
        f"API keys may also come from ${ENV_API_KEYS} (comma-separated) or --api-key-file; "
        f"the store from ${ENV_STORE}.",
    )
    p.add_argument("--store", metavar="URL", default=None,
                   help="store URL: duckdb:///path.duckdb or postgresql://... "
                   f"(default ${ENV_STORE} or {Settings().store_url})")
    p.add_argument("--host", default=defaults.host, help=f"bind address (default {defaults.host})")
    p.add_argument("--port", type=int, default=defaults.port, help=f"port (default {defaults.port})")
    p.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help="accept this API key (repeatable); writes then need "
                   "'Authorization: Bearer KEY'. Prefer --api-key-file or the environment: "
                   "command lines are visible to other users")
    p.add_argument("--api-key-file", metavar="PATH", help="file with one API key per line")
    p.add_argument("--protect-reads", action="store_true",
                   help="reads need an API key too (default: reads are open)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow cross-origin requests from ORIGIN (repeatable; default: none)")
    p.add_argument("--max-body-mb", type=float, default=defaults.max_body_bytes / 2**20,
                   metavar="MB", help="largest request body, MiB (default "
                   f"{defaults.max_body_bytes / 2**20:g})")
    p.add_argument("--no-dashboard", action="store_true", help="serve the API only")
    p.add_argument("--publish", metavar="kafka://HOST:PORT/TOPIC",
                   help="scale-out: publish ingested measurements to this Kafka topic for "
                   "`chargetracker worker` instead of the in-process pipeline")
    p.add_argument("-X", dest="kafka_extra", action="append", default=[], metavar="KEY=VALUE",
                   help="librdkafka setting for --publish (security.protocol, sasl.*, ssl.*)")
    p.add_argument("--future-horizon", type=float, default=RuntimeConfig().future_horizon_s,
                   metavar="S", help="samples stamped more than S seconds ahead of the wall "
                   "clock are dead letters (default %(default)g: one day)")
    p.add_argument("--alarm-write", default=defaults.alarm_write, choices=["grouped", "sync"],
                   help="how POST /api/v1/alarms/predict stores its prediction: 'grouped' "
                   "(reply once queued; one writer commits queued predictions in groups; a "
                   "crash loses at most the unflushed group) or 'sync' (reply after its own "
                   "commit). Default %(default)s")
    p.add_argument("--alarm-write-queue", type=int, default=defaults.alarm_write_queue_rows,
                   metavar="ROWS", help="grouped writes: predictions queued at most; a full "
                   "queue makes requests wait (default %(default)s)")
    p.add_argument("--alarm-write-age-ms", type=float,
                   default=defaults.alarm_write_max_age_s * 1000, metavar="MS",
                   help="grouped writes: commit when the oldest queued prediction is this old "
                   "(default %(default)g ms)")
    p.add_argument("--alarm-write-wait", type=float, default=defaults.alarm_write_wait_s,
                   metavar="S", help="grouped writes: how long a request waits for room in a "
                   "full queue before it fails with 503 (default %(default)g s)")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--no-access-log", action="store_true", help="no per-request log lines")
    p.add_argument("--log-format", default="text", choices=["text", "json"],
                   help="log lines as text or as JSON objects with request ids (default text)")
    p.set_defaults(func=run)
    _add_alarm_inbox_arguments(p)


def _add_alarm_inbox_arguments(p: argparse.ArgumentParser) -> None:
    from ..sources.alarm_inbox import add_inbox_arguments

    add_inbox_arguments(p)


def _keys(args: argparse.Namespace) -> tuple[str, ...]:
    keys: list[str] = [k.strip() for k in args.api_key]
    if args.api_key_file:
        try:
            text = Path(args.api_key_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--api-key-file {args.api_key_file}: {exc.strerror}") from None
        keys += [line.strip() for line in text.splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
    env = os.environ.get(ENV_API_KEYS, "")
    keys += [k.strip() for k in env.split(",") if k.strip()]
    if any(not k for k in keys):
        raise ConfigError("--api-key must not be empty")
    if args.protect_reads and not keys:
        raise ConfigError("--protect-reads needs at least one API key")
    return tuple(dict.fromkeys(keys))


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The Settings ``serve`` runs with (exposed for tests and other commands)."""
    if not args.max_body_mb > 0:
        raise ConfigError("--max-body-mb must be > 0")
    d = ApiConfig()
    api = ApiConfig(
        host=args.host, port=args.port, api_keys=_keys(args), protect_reads=args.protect_reads,
        cors_origins=tuple(args.cors_origin), max_body_bytes=max(1024, int(args.max_body_mb * 2**20)),
        dashboard=not args.no_dashboard,
        # getattr: other commands build serve's settings from their own arguments.
        alarm_write=getattr(args, "alarm_write", d.alarm_write),
        alarm_write_queue_rows=getattr(args, "alarm_write_queue", d.alarm_write_queue_rows),
        alarm_write_max_age_s=getattr(args, "alarm_write_age_ms",
                                      d.alarm_write_max_age_s * 1000) / 1000,
        alarm_write_wait_s=getattr(args, "alarm_write_wait", d.alarm_write_wait_s),
    )
    store = args.store or os.environ.get(ENV_STORE) or Settings().store_url
    kafka = KafkaConfig()
    if getattr(args, "publish", None):
        from urllib.parse import urlsplit

        url = urlsplit(args.publish)
        topic = url.path.strip("/")
        if url.scheme != "kafka" or not url.netloc or not topic:
            raise ConfigError(f"--publish {args.publish!r}: expected kafka://HOST:PORT/TOPIC")
        extra = []
        for item in args.kafka_extra:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"-X {item!r}: expected key=value")
            extra.append((key.strip(), value))
        kafka = KafkaConfig(brokers=url.netloc, topic=topic, extra=tuple(extra))
        api = replace(api, publish_kafka=True)
    return Settings(store_url=store, api=api, kafka=kafka,
                    runtime=replace(RuntimeConfig(), future_horizon_s=args.future_horizon))


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    from ..api.server import serve  # FastAPI/uvicorn are the 'server' extra
    from ..stores.url import open_store, store_location

    print(f"chargetracker serve: store {store_location(settings.store_url)}", file=sys.stderr,
          flush=True)
    # Opened here, before binding: a locked store or a bad URL fails fast.
    from ..kinds.pack import PackKind

    store = open_store(settings.store_url, kinds=[PackKind()])  # POST /pack-records
    inbox = None
    try:
        inbox = _start_alarm_inbox(args, settings.store_url)
        serve(settings, store=store, log_level=args.log_level, access_log=not args.no_access_log,
              log_format=args.log_format)
    finally:
        if inbox is not None:
            inbox.stop()
        store.close()
    return 0


def _start_alarm_inbox(args: argparse.Namespace, store_url: str) -> Any:
    """The consistency-alarm inbox worker beside the server (``--alarm-inbox``)."""
    from ..sources.alarm_inbox import start_inbox

    return start_inbox(args, store_url)
