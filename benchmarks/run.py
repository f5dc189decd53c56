"""Run the benchmarks (`make bench`): every benchmarks/bench_*.py plus the peer comparison.

    python benchmarks/run.py                 # all of them
    python benchmarks/run.py engine peers    # a subset, by name
    python benchmarks/run.py --list          # the names found
    python benchmarks/run.py --quick engine  # small sizes (scripts that take --quick)
    python benchmarks/run.py engine -- --only batch   # arguments after -- go to the scripts

A name is a script's file name without ``bench_`` and ``.py`` (``bench_engine.py`` ->
``engine``); ``peers`` is ``benchmarks/peers/driver.py`` (ChargeTracker vs battdat and
BEEP, each peer in its own virtualenv, created with pip on first use).

Each script runs in its own process with this interpreter; its output is shown as it
comes. Every stdout line that is a JSON object is a result record: they are collected
(with the script's name added) into ``benchmarks/data/results.jsonl`` (``--out``), and a
table of the records that carry a target is printed at the end. The exit status is
non-zero when a script fails (or, with ``--strict``, when a target is missed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from common import load_average, machine_info  # noqa: E402

SPECIAL = {"peers": BENCH / "peers" / "driver.py"}


def discover() -> dict[str, Path]:
    """name -> script, bench_*.py in name order, then the special ones."""
    found = {p.stem.removeprefix("bench_"): p for p in sorted(BENCH.glob("bench_*.py"))}
    for name, path in SPECIAL.items():
        if path.exists():
            found[name] = path
    return found


def run_script(name: str, path: Path, extra: list[str]) -> tuple[int, float, list[dict[str, Any]]]:
    """Run one script, echoing its output; (exit code, seconds, result records)."""
    cmd = [sys.executable, "-u", str(path), *extra]
    print(f"\n{'=' * 78}\n>> {name}: {' '.join(cmd[2:])}\n{'=' * 78}", flush=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(BENCH), env.get("PYTHONPATH", "")])
    records: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1, env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            s = line.strip()
            if s.startswith("{") and s.endswith("}"):
                try:
                    rec = json.loads(s)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict):
                    rec.setdefault("script", name)
                    records.append(rec)
        rc = proc.wait()
    return rc, time.perf_counter() - t0, records


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int | float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        k = argv.index("--")
        argv, passthrough = argv[:k], argv[k + 1:]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the benchmarks found and exit")
    ap.add_argument("--skip", action="append", default=[], help="leave one out (repeatable)")
    ap.add_argument("--quick", action="store_true", help="pass --quick to scripts that accept it")
    ap.add_argument("--out", type=Path, default=BENCH / "data" / "results.jsonl",
                    help="where the JSON result lines go (default benchmarks/data/results.jsonl)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)

    found = discover()
    if args.list:
        for name, path in found.items():
            print(f"{name:16s} {path.relative_to(ROOT)}")
        return 0
    unknown = [n for n in args.names + args.skip if n not in found]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; found: {', '.join(found)}", file=sys.stderr)
        return 2
    names = [n for n in (args.names or list(found)) if n not in args.skip]

    info = machine_info()
    print(f"machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']}, {info['date']}")
    load = load_average()
    if load and info["nproc"] and load[0] > 0.5 * info["nproc"]:
        print(f"WARNING: load average {load} on {info['nproc']} cores: other work is running, "
              "figures will be low and noisy")

    all_records: list[dict[str, Any]] = []
    status: list[tuple[str, int, float]] = []
    for name in names:
        path = found[name]
        extra = list(passthrough)
        if args.quick and "--quick" in path.read_text(errors="replace"):
            extra.insert(0, "--quick")
        rc, secs, recs = run_script(name, path, extra)
        status.append((name, rc, secs))
        all_records.extend(recs)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as fh:
        for rec in all_records:
            fh.write(json.dumps(rec) + "\n")

    print(f"\n{'=' * 78}\nsummary ({len(all_records)} result lines -> {args.out})")
    for name, rc, secs in status:
        print(f"  {name:14s} {'ok' if rc == 0 else f'FAILED (exit {rc})':18s} {secs:8.1f} s")
    targeted = [r for r in all_records if "target" in r]
    missed = [r for r in targeted if r.get("met") is False]
    if targeted:
        print("\n  figure                                    value            target       met")
        for r in targeted:
            label = f"{r['bench']} {r['metric']}"
            print(f"  {label:40s} {_fmt(r.get('value')):>14s} {r.get('unit', ''):<10s}"
                  f" {_fmt(r['target']):>12s}  {r.get('met')}")
    failed = any(rc != 0 for _n, rc, _s in status)
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
