"""Shared helpers for the benchmark scripts: machine facts, timing, result lines.

Every benchmark script prints human-readable text and, for each figure, one JSON object
on a line of its own (see :func:`emit`), which ``benchmarks/run.py`` collects.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["machine_info", "emit", "best_of", "peak_rss_mb", "load_average", "fmt_rate"]


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    """1, 5, 15 minute load averages (other work on the machine skews timings)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    """What a figure was measured on: cores, CPU model, Python, date, load."""
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "loadavg": load_average(),
    }


def emit(bench: str, metric: str, value: float | int | None, unit: str, *,
         target: float | None = None, higher_is_better: bool = True,
         **extra: Any) -> dict[str, Any]:
    """Print one result as a JSON line; ``met`` compares against ``target`` when given."""
    rec: dict[str, Any] = {"bench": bench, "metric": metric, "value": value, "unit": unit}
    if target is not None:
        rec["target"] = target
        if value is not None:
            rec["met"] = bool(value >= target) if higher_is_better else bool(value <= target)
    rec.update(extra)
    print(json.dumps(rec, default=_jsonable), flush=True)
    return rec


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, list[float], Any]:
    """(best wall time s, all times, last result) of ``repeat`` calls of ``fn``."""
    times: list[float] = []
    result: Any = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, result


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20


def fmt_rate(x: float) -> str:
    """3 significant figures with a k/M suffix."""
    for div, suf in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suf}"
    return f"{x:.3g} "
