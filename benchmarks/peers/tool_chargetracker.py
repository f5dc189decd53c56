"""ChargeTracker: chargetracker.readers + the engine (runs in the project's .venv).

read = ``read_file(file)`` (the Arbin reader, whole file into one canonical frame);
compute = ``summarize(frame)`` (segmentation, trapezoid integration with step-boundary
handling, cycles by the cycler's labels). ``extra`` also times the streaming path
``analyze_files([file])`` (read and compute chunk by chunk, bounded memory) end to end.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _tool import run  # noqa: E402

from chargetracker.analysis import analyze_files  # noqa: E402
from chargetracker.engine import summarize  # noqa: E402
from chargetracker.readers import read_file  # noqa: E402


def read(path: str) -> Any:
    frame, rejected, _meta = read_file(path)
    if rejected.height:
        print(f"chargetracker: {rejected.height} rows rejected by the reader", file=sys.stderr)
    return frame


def compute(frame: Any) -> list[dict[str, float]]:
    cycles = summarize(frame).cycles
    return cycles.select(
        "cycle", "charge_ah", "discharge_ah", "charge_wh", "discharge_wh"
    ).to_dicts()


def streamed(path: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    analyze_files([path])
    return {"analyze_files_s": time.perf_counter() - t0}


if __name__ == "__main__":
    raise SystemExit(run("chargetracker", ["chargetracker", "polars", "numpy", "numba"],
                         read, compute, extra=streamed))
