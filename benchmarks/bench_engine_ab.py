"""A/B of the engine benchmark: this tree against an earlier commit, interleaved runs.

    python benchmarks/bench_engine_ab.py --base 3769d25 --rounds 2 -- --only incremental \\
        --inc-cells 10000 --inc-seconds 60 --profile never --no-check

On a shared machine wall time and even CPU-seconds drift with the load from minute to
minute, so a figure from another hour says little about a change. This runs
``bench_engine.py`` (this tree's script) alternately against the engine of ``--base``
(its ``src/`` exported with ``git archive`` into a temporary directory, put first on
``PYTHONPATH``) and against this tree, ``--rounds`` times each, and prints every
figure's best value per side and the ratio head / base (> 1: head faster).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "bench_engine.py"
#: Figures compared (metric -> higher is better).
METRICS = {"samples_per_cpu_s": True, "samples_per_s": True, "time_vs_grouped_cpu": True,
           "state_bytes_per_cell": False}


def _export(rev: str, dest: Path) -> Path:
    """``src/`` of ``rev`` under ``dest`` (git archive: no checkout, no worktree)."""
    archive = dest / "src.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def _run(src: Path, args: list[str]) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True,
                         text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _key(rec: dict) -> str:
    tags = [f"{k}={rec[k]}" for k in ("order", "cells", "snapshot_interval_s") if k in rec]
    if str(rec.get("path", "")).startswith("update_checked"):
        tags.append("validated")
    return f"{rec['bench']} {rec['metric']} {' '.join(tags)}".strip()


def _keep(seen: dict[str, list[float]], rec: dict) -> None:
    """Collect each compared figure in ``rec`` (its metric, or an extra field)."""
    figures = {rec.get("metric"): rec.get("value"), **{m: rec.get(m) for m in METRICS if m in rec}}
    for metric, value in figures.items():
        if metric not in METRICS or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        seen.setdefault(_key({**rec, "metric": metric}), []).append(float(value))


def _best(key: str, values: list[float]) -> float:
    higher = METRICS[key.split()[1]]
    return max(values) if higher else min(values)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="commit (or branch) to compare against")
    ap.add_argument("--rounds", type=int, default=2, help="runs per side, interleaved (default 2)")
    ap.add_argument("bench_args", nargs=argparse.REMAINDER, help="-- then bench_engine.py arguments")
    args = ap.parse_args(argv)
    bench_args = [a for a in args.bench_args if a != "--"]
    seen: dict[str, dict[str, list[float]]] = {"base": {}, "head": {}}
    loads: dict[str, list] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="ct-ab-") as tmp:
        sides = {"base": _export(args.base, Path(tmp)), "head": ROOT / "src"}
        for r in range(args.rounds):
            for side in (("base", "head") if r % 2 == 0 else ("head", "base")):
                for rec in _run(sides[side], bench_args):
                    if rec.get("metric") == "machine":
                        loads[side].append(rec.get("loadavg"))
                    _keep(seen[side], rec)
    print(f"A/B: base {args.base} vs this tree, {args.rounds} interleaved runs each; "
          f"load average at start of runs: base {loads['base']}, head {loads['head']}")
    print(f"{'figure (best of the runs; every run in brackets)':<78} {'base':>14} {'head':>14} {'head/base':>9}")
    for key in sorted(seen["head"]):
        bs, hs = seen["base"].get(key, []), seen["head"][key]
        b, h = (_best(key, bs) if bs else None), _best(key, hs)
        ratio = f"{h / b:.2f}x" if b else "-"
        print(f"{key:<78} {b if b is not None else float('nan'):>14,.3g} {h:>14,.3g} {ratio:>9}")
        print(f"{'':<78} {str([float(f'{v:.3g}') for v in bs]):>14} {str([float(f'{v:.3g}') for v in hs]):>14}")
        print(json.dumps({"bench": "engine.ab", "metric": key, "base": b, "head": h, "base_runs": bs,
                          "head_runs": hs, "base_rev": args.base,
                          "ratio": None if not b else round(h / b, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
