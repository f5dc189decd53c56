"""``--pack-feed`` / ``--pack-model``: the live pack feed's options, shared by ``run``
and ``worker`` (docs/alarms.md, "Daily records from cell telemetry")."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_pack_feed_arguments", "pack_model_of"]


def add_pack_feed_arguments(p: argparse.ArgumentParser, *, worker: bool = False) -> None:
    """Add the feed's switch and model directory to a command's parser."""
    g = p.add_argument_group(
        "live pack feed", "daily pack records and consistency-alarm predictions (source "
        "stream) from cells that name their pack (metadata pack_id or vin)")
    keyed = (" The topic must then be keyed by pack: every message of a cell goes to "
             "the partition of murmur2(its pack id), cell metadata first." if worker else "")
    g.add_argument("--pack-feed", dest="pack_feed", action=argparse.BooleanOptionalAction,
                   default=False, help="derive daily pack records from the cells and predict "
                   "alarms (default off)." + keyed)
    g.add_argument("--pack-model", dest="pack_model", metavar="DIR",
                   help="alarm model directory of the feed (default: --alarm-model when "
                   "given, else the packaged model)")


def pack_model_of(args: Any) -> str | None:
    """The feed's model directory (None: the packaged default)."""
    return getattr(args, "pack_model", None) or getattr(args, "alarm_model", None)
