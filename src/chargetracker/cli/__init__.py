"""The ``chargetracker`` command: the composition root.

Each subcommand lives in its own module exposing ``register(subparsers)``; the module
adds its parser and sets ``func`` to a callable ``(args) -> int``. Settings are built
here (flags, config files, environment) and passed down; nothing deeper reads them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import ChargeTrackerError

__all__ = ["main", "build_parser"]

#: Subcommand modules, in help order.
COMMANDS: tuple[str, ...] = (
    "analyze",
    "serve",
    "dashboard",
    "simulate",
    "run",
    "demo",
    "backfill",
    "worker",
    "topics",
    "alarm",
    "meters",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chargetracker",
        description="Near-real-time battery and energy telemetry analytics.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ChargeTrackerError as exc:
        print(f"chargetracker {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
