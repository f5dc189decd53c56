"""Shared by the per-tool scripts (runs inside each tool's own virtualenv: stdlib only).

A tool script defines ``read(path) -> obj`` and ``compute(obj) -> rows``, where rows are
dicts with ``cycle`` (the cycler's Cycle_Index), ``charge_ah``, ``discharge_ah``,
``charge_wh`` and ``discharge_wh``; :func:`main` times them and writes one JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from typing import Any


def run(tool: str, packages: list[str], read: Callable[[str], Any],
        compute: Callable[[Any], list[dict[str, float]]], *,
        extra: Callable[[str], dict[str, Any]] | None = None) -> int:
    ap = argparse.ArgumentParser(description=f"time {tool} on an Arbin CSV")
    ap.add_argument("--file", required=True)
    ap.add_argument("--warmup-file", help="small file read + computed once, untimed")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    # Absolute paths: BEEP refuses relative ones.
    args.file = os.path.abspath(args.file)
    if args.warmup_file:
        args.warmup_file = os.path.abspath(args.warmup_file)
    res: dict[str, Any] = {
        "tool": tool,
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in packages},
        "read_s": [], "compute_s": [],
        # Process CPU time (all threads): less sensitive than wall time to other work on
        # the machine, but counts every thread of a parallel tool.
        "read_cpu_s": [], "compute_cpu_s": [],
    }
    try:
        if args.warmup_file:
            compute(read(args.warmup_file))
        rows: list[dict[str, float]] = []
        for _ in range(args.repeat):
            c0, t0 = time.process_time(), time.perf_counter()
            obj = read(args.file)
            c1, t1 = time.process_time(), time.perf_counter()
            rows = compute(obj)
            c2, t2 = time.process_time(), time.perf_counter()
            res["read_s"].append(t1 - t0)
            res["compute_s"].append(t2 - t1)
            res["read_cpu_s"].append(c1 - c0)
            res["compute_cpu_s"].append(c2 - c1)
            del obj
        res["cycles"] = rows
        if extra is not None:
            res["extra"] = extra(args.file)
    except Exception as exc:  # report, don't hide: the driver prints this text
        res["error"] = f"{type(exc).__name__}: {exc}"
        res["traceback"] = traceback.format_exc()
    with open(args.out, "w") as fh:
        json.dump(res, fh)
    return 0 if "error" not in res else 1


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None
