"""``chargetracker worker``: a scale-out worker (Kafka partitions -> engine -> store).

Start N of them with the same ``--group-id``: Kafka spreads the topic's partitions over
them, and each runs the engine on its partitions and commits results, engine state and
offsets to the store (PostgreSQL, shared by all workers) in one transaction per
micro-batch. Stop one (SIGTERM/Ctrl-C: it commits and leaves) or kill it (the others take
its partitions over after the session timeout and replay from its last commit).

    chargetracker worker --broker kafka1:9092 --topic measurements \\
        --store postgresql://ct@db/chargetracker --group-id ct-workers --metrics-port 9108 \\
        --archive /data/ct-archive

The topic must exist (``chargetracker topics create``); ``--create-topic N`` creates it
on start (development). ``GET /readyz`` on the metrics port answers 200 once the worker
has committed every assigned partition to its end ("caught up").

Broker security and tuning go through ``-X key=value`` (librdkafka settings, e.g.
``-X security.protocol=SASL_SSL -X sasl.mechanism=PLAIN -X sasl.username=...``).
See docs/deployment.md ("Kafka", "Workers").
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..config import KafkaConfig, Settings
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..kafka.options import WorkerOptions

__all__ = ["register", "run", "build_settings"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "worker", help="scale-out worker: Kafka consumer group -> engine -> store",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--broker", "--brokers", dest="broker", metavar="HOST:PORT[,HOST:PORT]",
                   help="Kafka bootstrap servers (default 127.0.0.1:9092)")
    p.add_argument("--topic", help="topic (default: the kind's, measurements for cells)")
    p.add_argument("--kind", default="cell",
                   help="telemetry kind of the topic's messages (default cell)")
    p.add_argument("--create-topic", dest="create_topic", type=int, metavar="PARTITIONS",
                   help="create the topic with this many partitions when it does not exist "
                   "(development; production: `chargetracker topics create`)")
    p.add_argument("--create-topic-replication", dest="create_topic_replication", type=int,
                   default=1, metavar="N", help="replication factor for --create-topic")
    p.add_argument("--store", metavar="URL", help="store URL, e.g. postgresql://user@host/db")
    p.add_argument("--group-id", dest="group_id", help="consumer group (default chargetracker-workers)")
    p.add_argument("--config", metavar="PIPELINE.toml",
                   help="settings file ([engine], [alerts], store; the same file as `run`)")
    p.add_argument("--dead-letter-topic", dest="dead_letter_topic", metavar="TOPIC",
                   help="also publish dead letters (JSON) to this topic")
    p.add_argument("-X", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                   help="librdkafka setting, repeatable (security.protocol, sasl.*, ssl.*, "
                   "session.timeout.ms, ...)")
    p.add_argument("--until-idle", dest="until_idle", type=float, metavar="S",
                   help="exit after S seconds without messages, flushing partitions that saw "
                   "no end-of-stream marker (finite replays, tests)")
    p.add_argument("--metrics-port", dest="metrics_port", type=int, metavar="PORT",
                   help="serve Prometheus metrics (lag, throughput, latency) on this port")
    p.add_argument("--metrics-host", dest="metrics_host", default="127.0.0.1")
    p.add_argument("--no-raw", dest="store_raw", action="store_false",
                   help="do not store raw measurements (results, state and offsets only)")
    p.add_argument("--raw-every", dest="raw_every", type=float, metavar="S",
                   help="keep at most one raw sample per cell per S seconds in the store (the "
                   "dashboard's raw view); with --archive the archive keeps every sample")
    p.add_argument("--archive", metavar="DIR",
                   help="also append accepted raw rows to this Parquet archive (batch layer)")
    p.add_argument("--archive-no-fsync", dest="archive_fsync", action="store_false",
                   help="do not fsync archive files (faster on slow disks; a process crash "
                   "loses nothing, a power loss may lose archived rows)")
    p.add_argument("--no-pipeline-commits", dest="pipeline_commits", action="store_false",
                   help="commit each micro-batch before processing the next (default: the "
                   "archive write and store commit run on a writer thread meanwhile; the "
                   "CPU per sample is the same, the wall rate lower)")
    p.add_argument("--commit-interval", dest="commit_interval", type=float, default=0.5, metavar="S",
                   help="longest time a message waits before its batch is committed when more "
                   "are coming (default 0.5; a caught-up worker commits at once)")
    p.add_argument("--max-batch-mb", dest="max_batch_mb", type=float, default=32.0, metavar="MB",
                   help="commit once this many MB of messages are buffered (default 32)")
    p.add_argument("--no-partition-check", dest="partition_check", action="store_false",
                   help="accept rows whose cell id murmur2-hashes to another partition")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", default="text", choices=["text", "json"],
                   help="log lines as text or JSON objects (credentials redacted either way)")
    p.add_argument("--stats-json", action="store_true",
                   help="print one JSON line with totals on exit (for scripts and benchmarks)")
    from .pack_options import add_pack_feed_arguments

    add_pack_feed_arguments(p, worker=True)
    p.set_defaults(func=run)


def build_settings(args: argparse.Namespace) -> Settings:
    """Settings from ``--config`` and flags (flags win)."""
    from ..kafka.client import parse_extra

    if args.config:
        from ..runtime.config import load_pipeline_config

        settings = load_pipeline_config(args.config).settings
    else:
        settings = Settings()
    if args.store:
        settings = settings.with_overrides(store_url=args.store)
    kafka: KafkaConfig = settings.kafka
    over: dict[str, Any] = {}
    if args.broker:
        over["brokers"] = args.broker
    if args.topic:
        over["topic"] = args.topic
    elif kafka.topic == KafkaConfig().topic:
        from ..kafka.kinds import kafka_kind

        over["topic"] = kafka_kind(getattr(args, "kind", "cell")).default_topic
    if args.group_id:
        over["group_id"] = args.group_id
    if args.dead_letter_topic:
        over["dead_letter_topic"] = args.dead_letter_topic
    if args.extra:
        over["extra"] = tuple(kafka.extra) + parse_extra(args.extra)
    if over:
        settings = settings.with_overrides(kafka=replace(kafka, **over))
    return settings


def build_options(args: argparse.Namespace, settings: Settings) -> WorkerOptions:
    """The worker's :class:`~chargetracker.kafka.options.WorkerOptions` from its flags."""
    from ..kafka.options import WorkerOptions

    return WorkerOptions(
        max_batch_bytes=int(args.max_batch_mb * 1024 * 1024),
        commit_interval_s=args.commit_interval,
        store_raw=args.store_raw,
        raw_every_s=args.raw_every,
        until_idle_s=args.until_idle,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        partition_check=args.partition_check,
        archive_dir=args.archive or settings.archive_dir,
        archive_fsync=args.archive_fsync,
        pipeline_commits=args.pipeline_commits,
        create_topic_partitions=args.create_topic,
        create_topic_replication=args.create_topic_replication,
    )


def run(args: argparse.Namespace) -> int:
    from ..kafka.kinds import kafka_kind
    from ..kafka.worker import Worker
    from ..logs import configure_logging
    from ..stores.url import open_store, redact

    configure_logging(args.log_level.lower(), args.log_format)
    settings = build_settings(args)
    if not args.store and not args.config:
        raise ConfigError("give --store URL (e.g. postgresql://user@host/db) or --config")
    if args.max_batch_mb <= 0:
        raise ConfigError("--max-batch-mb must be > 0")
    options = build_options(args, settings)
    plugin = kafka_kind(args.kind)
    store = open_store(settings.store_url)
    if getattr(args, "pack_feed", False):
        from ..kafka.pack_feed import with_pack_feed
        from .pack_options import pack_model_of

        try:
            plugin = with_pack_feed(plugin, store, settings, model_dir=pack_model_of(args))
        except BaseException:
            store.close()
            raise
    worker = Worker(store, settings, options, plugin=plugin)

    def _stop(signum: int, frame: object) -> None:
        worker.stop()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    logging.getLogger("chargetracker.kafka.worker").info(
        "worker: %s topic %s group %s -> %s", settings.kafka.brokers, settings.kafka.topic,
        settings.kafka.group_id, redact(settings.store_url))
    try:
        worker.run()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        store.close()
    if args.stats_json:
        m = worker.metrics
        print(json.dumps({
            "exit": worker.exit_reason, "messages": m.messages_total, "samples": m.samples_total,
            "rejected": m.rejected_total, "commits": m.commits_total,
            "commit_seconds": round(m.commit_seconds, 6),
            "first_message_wall": m.first_message_wall, "last_commit_wall": m.last_commit_wall,
            "cpu_s": round(_cpu_seconds(), 3), "first_message_cpu_s": m.first_message_cpu_s,
            "last_commit_cpu_s": getattr(m, "last_commit_cpu_s", None),
            "phase_seconds": {k: round(v, 3) for k, v in sorted(m.phase_seconds.items())},
            "thread_cpu_s": _thread_cpu_seconds(),
        }), flush=True)
    return 0


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads, librdkafka's included)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds per thread name of this process (Linux ``/proc``; threads still alive:
    the main thread, librdkafka's ``rdk:*``, the Polars/NumPy pools). Empty elsewhere."""
    import os
    from pathlib import Path

    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            text = (task / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        name = name.rstrip("0123456789-_") or name  # pool threads by family
        f = text[text.rindex(")") + 2:].split()
        out[name] = round(out.get(name, 0.0) + (int(f[11]) + int(f[12])) / tick, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
