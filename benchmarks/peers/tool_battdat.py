"""battery-data-toolkit (battdat): its Arbin reader + its per-cycle capacity/energy feature.

Runs in benchmarks/.venv-battdat. read = ``ArbinReader().read_dataset([file])`` (pandas
CSV parse, duplicate-row removal, state/step/method tagging); compute =
``CapacityPerCycle().compute_features(dataset)`` (trapezoid integral of current and of
current x voltage over each cycle, charge/discharge split at the extreme of the running
integral). battdat numbers cycles from 0; they are mapped back to the file's Cycle_Index.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _tool import run  # noqa: E402
from battdat.io.arbin import ArbinReader  # noqa: E402
from battdat.postprocess.integral import CapacityPerCycle  # noqa: E402


def read(path: str) -> Any:
    ds = ArbinReader().read_dataset([path])
    return ds


def compute(ds: Any) -> list[dict[str, float]]:
    with warnings.catch_warnings():
        # One "unable to clearly detect ..." warning per ambiguous cycle: not an error.
        warnings.simplefilter("ignore")
        cyc = CapacityPerCycle().compute_features(ds)
    return [
        {"cycle": int(r.cycle_number), "charge_ah": float(r.capacity_charge),
         "discharge_ah": float(r.capacity_discharge), "charge_wh": float(r.energy_charge),
         "discharge_wh": float(r.energy_discharge)}
        for r in cyc.itertuples()
    ]


if __name__ == "__main__":
    # Rows carry battdat's own numbering (Cycle_Index - min(Cycle_Index)); the driver
    # adds the file's first Cycle_Index back.
    raise SystemExit(run("battdat", ["battery-data-toolkit", "pandas", "numpy", "scipy"],
                         read, compute))
