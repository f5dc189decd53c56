"""BEEP: its Arbin datapath + per-cycle summary.

Runs in benchmarks/.venv-beep. read = ``ArbinDatapath.from_file(file)`` (pandas CSV
parse, dtype casts, ISO date strings per row); compute = ``summarize_cycles()``, the
per-cycle summary that ``structure()`` produces (BEEP takes the per-cycle maximum of the
cycler's own cumulative capacity/energy columns, it does not integrate). With
``BEEP_STRUCTURE=1`` the full ``structure()`` (which also interpolates every cycle) is
timed once more and reported under ``extra``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _tool import run  # noqa: E402
from beep.structure.arbin import ArbinDatapath  # noqa: E402

logging.getLogger("beep").setLevel(logging.ERROR)
warnings.simplefilter("ignore")


def read(path: str) -> Any:
    return ArbinDatapath.from_file(path)


def compute(dp: Any) -> list[dict[str, float]]:
    summary = dp.summarize_cycles()
    return [
        {"cycle": int(r.cycle_index), "charge_ah": float(r.charge_capacity),
         "discharge_ah": float(r.discharge_capacity), "charge_wh": float(r.charge_energy),
         "discharge_wh": float(r.discharge_energy)}
        for r in summary.itertuples()
    ]


def structure(path: str) -> dict[str, Any]:
    if os.environ.get("BEEP_STRUCTURE") != "1":
        return {}
    dp = ArbinDatapath.from_file(path)
    t0 = time.perf_counter()
    try:
        dp.structure()
    except Exception as exc:
        return {"structure_error": f"{type(exc).__name__}: {exc}"}
    return {"structure_s": time.perf_counter() - t0}


if __name__ == "__main__":
    raise SystemExit(run("beep", ["beep", "pandas", "numpy", "scipy"], read, compute,
                         extra=structure))
