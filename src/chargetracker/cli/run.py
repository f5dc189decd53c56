"""``chargetracker run``: run a live pipeline (sources -> engine -> store) until stopped.

Sources and settings come from a pipeline TOML (``--config``, see
:mod:`chargetracker.runtime.config`) and/or flags: ``--simulate`` (a simulated fleet),
``--file PATH`` (replay a cycler file), ``--watch DIR`` (new and growing cycler exports).
Every batch is committed with the engine state and the source position, so stopping
(Ctrl-C, SIGTERM) or killing the process loses nothing: the next start resumes where the
last commit left off. A finite run (simulation with --hours, file replays) ends by itself.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import ConfigError
from ..runtime import Pipeline, PipelineConfig, Runner, load_pipeline_config, print_summary
from ..runtime.pipeline import IngestResult
from ..sources import Batch, Source, build_source
from ..stores.base import Store

__all__ = ["register", "run", "build_pipeline_config", "build_sources", "commit_logger",
           "describe", "open_runtime"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run", help="run a live pipeline: sources -> engine -> store",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="PIPELINE.toml", help="pipeline config (store, sources, "
                   "engine, alerts, runtime)")
    p.add_argument("--store", metavar="URL", help="store URL, e.g. duckdb:///chargetracker.duckdb")
    src = p.add_argument_group("sources (added to those of --config)")
    src.add_argument("--simulate", action="store_true", help="a simulated fleet")
    src.add_argument("--fleet", metavar="FLEET.toml", help="fleet config for --simulate")
    src.add_argument("--cells", type=int, help="simulated cells (default 104)")
    src.add_argument("--hours", type=float, help="simulated hours (0: unbounded; default 48)")
    src.add_argument("--seed", type=int, help="simulation seed")
    src.add_argument("--accel", metavar="X|max", help="time acceleration (default 3600; max = full speed)")
    src.add_argument("--file", action="append", default=[], metavar="PATH",
                     help="replay a cycler file (repeatable)")
    src.add_argument("--watch", action="append", default=[], metavar="DIR",
                     help="watch a folder of cycler exports (repeatable)")
    src.add_argument("--pattern", default="*", help="file pattern for --watch (default *)")
    rt = p.add_argument_group("runtime")
    rt.add_argument("--max-batch-rows", type=int, metavar="N")
    rt.add_argument("--poll-interval", type=float, metavar="S")
    rt.add_argument("--queue", type=int, metavar="N", help="max batches between sources and store")
    rt.add_argument("--lateness", type=float, metavar="S", help="engine lateness window, s")
    rt.add_argument("--future-horizon", type=float, metavar="S",
                    help="samples stamped more than S seconds ahead of the clock (wall, or a "
                    "simulation's own) are dead letters (default 86400: one day)")
    rt.add_argument("--no-summary", action="store_true", help="no live terminal summary")
    rt.add_argument("--summary-interval", type=float, default=5.0, metavar="S")
    rt.add_argument("--log-commits", action="store_true",
                    help="print one JSON line per commit on stdout (source, position, counts)")
    rt.add_argument("--serve", action="store_true", help="also start the web server (API + dashboard)")
    _add_alarm_inbox_arguments(p)
    from .pack_options import add_pack_feed_arguments

    add_pack_feed_arguments(p)
    p.set_defaults(func=run)


def _add_alarm_inbox_arguments(p: argparse.ArgumentParser) -> None:
    from ..sources.alarm_inbox import add_inbox_arguments

    add_inbox_arguments(p)


def build_pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    """The pipeline config from ``--config`` plus flags."""
    pcfg = load_pipeline_config(args.config) if args.config else PipelineConfig(Settings())
    settings = pcfg.settings
    over: dict[str, Any] = {}
    if args.store:
        over["store_url"] = args.store
    rt: dict[str, Any] = {}
    if args.max_batch_rows is not None:
        rt["max_batch_rows"] = args.max_batch_rows
    if args.poll_interval is not None:
        rt["poll_interval_s"] = args.poll_interval
    if args.queue is not None:
        rt["max_queue_batches"] = args.queue
    if getattr(args, "future_horizon", None) is not None:
        rt["future_horizon_s"] = args.future_horizon
    if rt:
        over["runtime"] = replace(settings.runtime, **rt)
    if args.lateness is not None:
        over["engine"] = replace(settings.engine, lateness_s=args.lateness)
    if over:
        settings = settings.with_overrides(**over)
    sources = list(pcfg.sources)
    if args.simulate or args.fleet:
        spec: dict[str, Any] = {"type": "simulator"}
        if args.fleet:
            spec["fleet"] = str(Path(args.fleet).resolve())
        for key in ("cells", "hours", "seed"):
            if getattr(args, key) is not None:
                spec[key] = getattr(args, key)
        if args.accel is not None:
            spec["acceleration"] = args.accel
        sources.append(spec)
    elif any(getattr(args, k) is not None for k in ("cells", "hours", "seed", "accel")):
        raise ConfigError("--cells/--hours/--seed/--accel apply to --simulate")
    for f in args.file:
        sources.append({"type": "file", "path": str(Path(f).resolve())})
    for d in args.watch:
        sources.append({"type": "directory", "path": str(Path(d).resolve()), "pattern": args.pattern})
    if not sources:
        raise ConfigError("no sources: give --config with [[sources]], --simulate, --file or --watch")
    return replace(pcfg, settings=settings, sources=tuple(sources))


def build_sources(pcfg: PipelineConfig) -> list[Source]:
    """Sources of a pipeline config, with distinct default names."""
    out: list[Source] = []
    counts: dict[str, int] = {}
    for spec in pcfg.sources:
        kind = str(spec.get("type"))
        counts[kind] = counts.get(kind, 0) + 1
        default = kind if counts[kind] == 1 else f"{kind}-{counts[kind]}"
        if kind in ("file", "directory") and "name" not in spec:
            default = f"{kind}:{spec.get('path')}"
        out.append(build_source(spec, base_dir=pcfg.base_dir, default_name=default))
    return out


def open_runtime(pcfg: PipelineConfig, *, pack_feed: bool = False,
                 pack_model: str | None = None) -> tuple[Store, Pipeline, list[Source]]:
    """Open the store, the pipeline (restoring its checkpoint) and the sources. With
    ``pack_feed`` the pipeline also derives daily pack records from the cells that name
    their pack and predicts alarms with the model of ``pack_model`` (None: packaged)."""
    from ..stores.url import open_store

    sources = build_sources(pcfg)
    if pack_feed:
        from ..kinds.pack import PackKind

        store = open_store(pcfg.settings.store_url, kinds=[PackKind()])
    else:
        store = open_store(pcfg.settings.store_url)
    try:
        if pack_feed:
            from ..runtime.pack_feed import pack_feed_pipeline

            pipeline: Pipeline = pack_feed_pipeline(store, pcfg.settings, name=pcfg.name,
                                                    model_dir=pack_model)
        else:
            pipeline = Pipeline(store, pcfg.settings, name=pcfg.name)
    except BaseException:
        store.close()
        raise
    return store, pipeline, sources


def commit_logger(stream: Any = None) -> Any:
    """An ``on_commit`` callback printing one JSON line per commit."""
    def log(source: str, batch: Batch, result: IngestResult) -> None:
        print(json.dumps({"source": source, "position": batch.position,
                          "accepted": result.accepted, "rejected": result.rejected.height,
                          "closed_cycles": result.closed_cycles}),
              file=stream or sys.stdout, flush=True)
    return log


def describe(sources: list[Source], settings: Settings) -> str:
    parts = []
    for s in sources:
        accel = getattr(s, "acceleration", None)
        if accel is not None:
            n = getattr(s, "n_cells", "?")
            speed = "full speed" if not math.isfinite(accel) else f"{accel:g}x"
            parts.append(f"{s.name} ({n} cells, {speed})")
        else:
            parts.append(s.name)
    from ..stores.url import store_location

    return f"{', '.join(parts)} -> {store_location(settings.store_url)}"


def run(args: argparse.Namespace) -> int:
    pcfg = build_pipeline_config(args)
    from .pack_options import pack_model_of

    store, pipeline, sources = open_runtime(pcfg, pack_feed=args.pack_feed,
                                            pack_model=pack_model_of(args))
    server = None
    inbox = None
    try:
        print(f"chargetracker run: {describe(sources, pcfg.settings)}", file=sys.stderr, flush=True)
        inbox = _start_alarm_inbox(args, pcfg.settings.store_url)
        if args.serve:
            from .web import start_server

            server = start_server(pcfg.settings, store, pipeline)
        runner = Runner(
            pipeline, sources, pcfg.settings.runtime,
            summary=None if args.no_summary else print_summary(),
            summary_interval_s=args.summary_interval,
            on_commit=commit_logger() if args.log_commits else None,
        )
        stats = runner.run()
        state = "finished" if stats.finished else ("stopped" if stats.stopped else "ended")
        print(f"chargetracker run: {state}: {stats.batches} batches, {stats.accepted:,} samples, "
              f"{stats.rejected:,} rejected, {stats.closed_cycles:,} cycles closed in "
              f"{stats.wall_s:.1f} s", file=sys.stderr, flush=True)
        if server is not None and not stats.stopped:
            server.wait_for_interrupt()
    finally:
        if inbox is not None:
            inbox.stop()
        if server is not None:
            server.stop()
        for s in sources:
            s.close()
        store.close()
    return 0


def _start_alarm_inbox(args: argparse.Namespace, store_url: str) -> Any:
    """The consistency-alarm inbox worker beside the pipeline (``--alarm-inbox``)."""
    from ..sources.alarm_inbox import start_inbox

    return start_inbox(args, store_url)
