"""``chargetracker simulate``: write a simulated fleet's measurements to a file.

Streams chunk by chunk (``--chunk-hours`` of simulated time each), so long runs never hold
the whole data set in memory. Writes canonical measurements to ``--out`` (``.parquet``,
``.csv`` or ``-`` for CSV on stdout) and the cells metadata (CELL_SCHEMA) next to it as
``<stem>.cells.<ext>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import IO, Any

import polars as pl

from ..errors import ConfigError, SourceError
from ..schema import MEASUREMENT_SCHEMA
from ..sim.fleet import Fleet
from ..sim.fleet_config import FleetConfig, default_fleet_config, load_fleet_config, parse_start
from ..sim.measurement import FAULT_NAMES, FaultConfig

__all__ = ["register", "run", "build_config", "cells_path_for"]


def register(subparsers: Any) -> None:
    """Add the ``simulate`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "simulate",
        help="simulate a fleet of cells and write canonical measurements",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True,
                   help="output .parquet, .csv, - (CSV on stdout) or kafka://HOST:PORT/TOPIC "
                   "(?format=json|arrow; cells metadata and an end-of-stream marker are sent too)")
    p.add_argument("-X", dest="kafka_extra", action="append", default=[], metavar="KEY=VALUE",
                   help="librdkafka setting passed through for kafka:// (security.protocol, sasl.*, ssl.*)")
    p.add_argument("--config", help="fleet config TOML (groups, protocols, ageing, faults)")
    p.add_argument("--cells", type=int, help="number of cells, spread over the groups (default 104)")
    p.add_argument("--hours", type=float, help="simulated duration, h (default 48)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--faults", help=f"comma-separated faults to switch on: {','.join(FAULT_NAMES)}, all or none")
    p.add_argument("--sample-period", type=float, dest="sample_period", help="sampling period, s (default 1)")
    p.add_argument("--start", help="ISO-8601 time of t = 0 (default 2026-01-01T00:00:00Z)")
    p.add_argument("--labels", action="store_true", help="fill cycle/step/step_time_s labels")
    p.add_argument("--chunk-hours", type=float, default=1.0, dest="chunk_hours",
                   help="simulated hours per streamed chunk (default 1)")
    p.add_argument("--format", choices=("auto", "parquet", "csv"), default="auto",
                   help="output format (default: from the extension)")
    p.add_argument("--cells-out", dest="cells_out", help="cells metadata path (default <stem>.cells.<ext>)")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> FleetConfig:
    """The fleet config from ``--config`` (or the default fleet) with flag overrides."""
    cfg = load_fleet_config(args.config) if args.config else default_fleet_config()
    over: dict[str, Any] = {}
    if args.seed is not None:
        over["seed"] = args.seed
    if args.hours is not None:
        if not args.hours > 0:
            raise ConfigError("--hours must be > 0")
        over["duration_s"] = args.hours * 3600.0
    if args.sample_period is not None:
        over["sample_period_s"] = args.sample_period
    if args.start is not None:
        over["start_epoch"] = parse_start(args.start)
    if args.labels:
        over["include_labels"] = True
    if args.faults is not None:
        names = [n.strip() for n in args.faults.split(",") if n.strip()]
        if names == ["all"]:
            names = list(FAULT_NAMES)
        elif names == ["none"]:
            names = []
        fc = cfg.faults
        over["faults"] = FaultConfig.from_names(
            names, **{f: getattr(fc, f) for f in fc.__dataclass_fields__ if f != "enabled"}
        )
    if over:
        cfg = cfg.with_overrides(**over)
    if args.cells is not None:
        cfg = cfg.with_cells(args.cells)
    if cfg.duration_s is None:
        raise ConfigError("simulate needs a bounded duration (--hours)")
    return cfg


def _format(path: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if path == "-":
        return "csv"
    suffix = Path(path).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise ConfigError(f"--out {path}: cannot tell the format from {suffix!r}; use .parquet or .csv or --format")


def cells_path_for(out: str, fmt: str) -> Path:
    """``data.parquet`` -> ``data.cells.parquet`` (same folder, same format)."""
    p = Path(out)
    ext = ".parquet" if fmt == "parquet" else ".csv"
    return p.with_name(f"{p.stem}.cells{ext}")


class _Writer:
    """Appends frames to one Parquet or CSV file (or stdout)."""

    def __init__(self, out: str, fmt: str) -> None:
        self.out, self.fmt = out, fmt
        self._pq: Any = None
        self._fh: IO[bytes] | None = None
        self._header = True

    def write(self, frame: pl.DataFrame) -> None:
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            table = frame.to_arrow()
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.out, table.schema)
            self._pq.write_table(table)
            return
        if self._fh is None:
            self._fh = sys.stdout.buffer if self.out == "-" else open(self.out, "wb")  # noqa: SIM115
        frame.write_csv(self._fh, include_header=self._header)
        self._header = False

    def close(self, empty: pl.DataFrame) -> None:
        if self._pq is None and self._fh is None:
            self.write(empty)  # a file with the header/schema and no rows
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            if self.out == "-":
                self._fh.flush()
            else:
                self._fh.close()


def run(args: argparse.Namespace) -> int:
    """Run the simulation and write the files; returns the exit code."""
    cfg = build_config(args)
    if not args.chunk_hours > 0:
        raise ConfigError("--chunk-hours must be > 0")
    if args.out.startswith("kafka://"):
        return _run_kafka(args, cfg)
    fmt = _format(args.out, args.format)
    fleet = Fleet(cfg)
    cells_path = Path(args.cells_out) if args.cells_out else (
        None if args.out == "-" else cells_path_for(args.out, fmt))
    writer = _Writer(args.out, fmt)
    rows = 0
    try:
        if cells_path is not None:
            cells = fleet.cells
            if cells_path.suffix.lower() in (".parquet", ".pq"):
                cells.write_parquet(cells_path)
            else:
                cells.write_csv(cells_path)
        for frame in fleet.chunks(seconds=args.chunk_hours * 3600.0):
            writer.write(frame)
            rows += frame.height
        writer.close(pl.DataFrame(schema=MEASUREMENT_SCHEMA))
    except OSError as exc:
        raise SourceError(f"cannot write {exc.filename or args.out}: {exc.strerror or exc}") from exc
    meta = fleet.metadata
    print(
        f"simulated {fleet.n_cells} cells x {fleet.sim_time_s / 3600:g} h "
        f"(seed {cfg.seed}): {rows} rows -> {args.out}"
        + (f"; cells -> {cells_path}" if cells_path else "")
        + f"; defective: {len(meta['defective'])}, knee: {len(meta['knee'])}",
        file=sys.stderr,
    )
    return 0


def _run_kafka(args: argparse.Namespace, cfg: FleetConfig) -> int:
    """Publish the simulated fleet to a Kafka topic (keyed by cell id)."""
    from ..kafka.client import parse_extra
    from ..kafka.sink import KafkaSink

    fleet = Fleet(cfg)
    sink = KafkaSink.from_url(args.out, extra=parse_extra(args.kafka_extra))
    rows = 0
    try:
        sink.send_cells(fleet.cells)
        for frame in fleet.chunks(seconds=args.chunk_hours * 3600.0):
            rows += sink.send(frame)
        sink.end_of_stream()
    finally:
        sink.close()
    print(f"simulated {fleet.n_cells} cells x {fleet.sim_time_s / 3600:g} h (seed {cfg.seed}): "
          f"{rows} rows -> {args.out}", file=sys.stderr)
    return 0
