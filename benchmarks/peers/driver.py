"""Side-by-side: ChargeTracker vs battery-data-toolkit (battdat) vs BEEP on one Arbin file.

    python benchmarks/run.py peers                 # the usual way
    python benchmarks/peers/driver.py [--rows 1000000] [--repeat 2] [--tools chargetracker,battdat,beep]

1. Makes ``benchmarks/data/arbin_tiled.csv`` (about 1 M rows) by tiling
   ``tests/data/arbin_example.csv`` in time (``tile.py``), unless it is already there.
2. Creates ``benchmarks/.venv-battdat`` and ``benchmarks/.venv-beep`` with pip when
   missing (each tool in its own virtualenv, pinned below); ChargeTracker runs in the
   interpreter running this script (the project's .venv).
3. Runs ``tool_<name>.py`` for each tool in a fresh process: one untimed warm-up on the
   small source file, then ``--repeat`` timed read + compute runs; the best run (least
   read + compute) counts.
4. Compares every tool's per-cycle charge/discharge capacity and energy with the cycler's
   own figures (per cycle: last - first of the cumulative Charge/Discharge_Capacity and
   _Energy columns, which restart every cycle) and prints the largest relative
   difference, overall and on the full cycles (even Cycle_Index: the source's first
   cycle is a partial one, cut from a longer test, and so is every copy of it).

Results: human text on stdout, one JSON line per figure, and everything in
``benchmarks/data/peers.json``.
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

import polars as pl

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(HERE))

from common import emit, load_average, machine_info  # noqa: E402
from tile import CUMULATIVE, DEFAULT_OUT, DEFAULT_SRC, tile  # noqa: E402

#: Each peer's virtualenv and what pip installs there. battdat 0.4.6 needs pandas < 3;
#: BEEP gets the same pandas line so both peers run on the same pandas.
PEERS: dict[str, dict[str, Any]] = {
    "battdat": {"venv": BENCH / ".venv-battdat",
                "requirements": ["battery-data-toolkit==0.4.6", "pandas<3"]},
    "beep": {"venv": BENCH / ".venv-beep", "requirements": ["beep==2026.2.7", "pandas<3"]},
}
QUANTITIES = ("charge_ah", "discharge_ah", "charge_wh", "discharge_wh")
REF_COLUMNS = dict(zip(QUANTITIES, CUMULATIVE, strict=True))
TARGET_SPEEDUP = 50.0  # issue 14
TARGET_DIFF_PCT = 0.5


def ensure_venv(name: str, log: Path) -> tuple[Path | None, str | None]:
    """The peer's python, creating its virtualenv when missing; (None, error text) on failure."""
    spec = PEERS[name]
    venv: Path = spec["venv"]
    py = venv / "bin" / "python"
    stamp = venv / ".installed"
    want = " ".join(spec["requirements"])
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py, None
    print(f"  creating {venv} and installing {want} (pip, a few minutes) ...")
    steps = []
    if not py.exists():
        steps.append([sys.executable, "-m", "venv", str(venv)])
    steps.append([str(py), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    steps.append([str(py), "-m", "pip", "install", "--quiet", *spec["requirements"]])
    with log.open("a") as fh:
        for cmd in steps:
            fh.write(f"$ {' '.join(cmd)}\n")
            fh.flush()
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.PIPE, text=True, check=False)
            fh.write(proc.stderr)
            if proc.returncode != 0:
                err = proc.stderr.strip().splitlines()
                text = "\n".join(err[-15:]) or f"exit code {proc.returncode}"
                return None, f"`{' '.join(cmd)}` failed:\n{text}"
    stamp.write_text(want)
    return py, None


def reference(path: Path) -> pl.DataFrame:
    """The cycler's own per-cycle amounts: last - first of each cumulative column."""
    df = pl.read_csv(path, columns=["Cycle_Index", *CUMULATIVE])
    return df.group_by("Cycle_Index", maintain_order=True).agg(
        [(pl.col(src).last() - pl.col(src).first()).alias(q) for q, src in REF_COLUMNS.items()]
    ).rename({"Cycle_Index": "cycle"})


def compare(tool_cycles: list[dict[str, float]], ref: pl.DataFrame, cycle_offset: int) -> dict[str, Any]:
    """Largest relative per-cycle difference (%) from the cycler's columns, per quantity."""
    if not tool_cycles:
        return {"cycles_compared": 0}
    got = pl.DataFrame(tool_cycles).with_columns(
        (pl.col("cycle") + cycle_offset).cast(pl.Int64)
    )
    j = ref.join(got, on="cycle", how="inner", suffix="_tool")
    out: dict[str, Any] = {"cycles_reported": got.height, "cycles_in_file": ref.height,
                           "cycles_compared": j.height}
    for subset, frame in (("all", j), ("full", j.filter(pl.col("cycle") % 2 == 0))):
        worst: dict[str, Any] = {}
        for q in QUANTITIES:
            rel = frame.select(
                "cycle",
                ((pl.col(f"{q}_tool") - pl.col(q)).abs() / pl.col(q).abs() * 100.0).alias("pct"),
                pl.col(q).alias("ref"), pl.col(f"{q}_tool").alias("tool"),
            ).filter(pl.col("ref").abs() > 1e-9).sort("pct", descending=True, nulls_last=True)
            if rel.height:
                r = rel.row(0, named=True)
                worst[q] = {"max_pct": r["pct"], "cycle": r["cycle"], "ref": r["ref"], "tool": r["tool"]}
        out[subset] = worst
        vals = [w["max_pct"] for w in worst.values() if w["max_pct"] is not None]
        out[f"max_pct_{subset}"] = max(vals) if vals else None
    return out


def run_tool(name: str, py: Path, data: Path, repeat: int, workdir: Path,
             timeout_s: float) -> dict[str, Any]:
    out = workdir / f"peer_{name}.json"
    out.unlink(missing_ok=True)
    cmd = [str(py), str(HERE / f"tool_{name}.py"), "--file", str(data),
           "--warmup-file", str(DEFAULT_SRC), "--repeat", str(repeat), "--out", str(out)]
    env = dict(os.environ)
    if name == "chargetracker":
        env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"tool": name, "error": f"timed out after {timeout_s:.0f} s"}
    wall = time.perf_counter() - t0
    if not out.exists():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return {"tool": name, "error": f"exit code {proc.returncode}, no result file:\n{tail}"}
    res = json.loads(out.read_text())
    res["process_wall_s"] = wall
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the tiled file")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per tool (best counts)")
    ap.add_argument("--tools", default="chargetracker,battdat,beep")
    ap.add_argument("--regen", action="store_true", help="rewrite the tiled file")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per tool, s")
    ap.add_argument("--quick", action="store_true", help="100 k rows, one run (smoke test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.repeat = 100_000, 1
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    work = BENCH / "data"
    work.mkdir(parents=True, exist_ok=True)
    data = DEFAULT_OUT if args.rows == 1_000_000 else work / f"arbin_tiled_{args.rows}.csv"
    meta_path = data.with_suffix(".json")

    info = machine_info()
    print(f"machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']}, {info['date']}")
    emit("peers", "machine", None, "", **info)
    if args.regen or not data.exists() or not meta_path.exists():
        desc = tile(DEFAULT_SRC, data, args.rows)
        meta_path.write_text(json.dumps(desc))
    desc = json.loads(meta_path.read_text())
    rows = int(desc["rows"])
    print(f"input: {data.relative_to(ROOT)}: {rows:,} rows, {desc['cycles']} cycles "
          f"({desc['copies']} copies of {DEFAULT_SRC.relative_to(ROOT)}), "
          f"{int(desc['bytes']) / 2**20:.0f} MiB")
    ref = reference(data)

    results: dict[str, dict[str, Any]] = {}
    for name in tools:
        print(f"\n== {name} ==")
        if name == "chargetracker":
            py: Path | None = Path(sys.executable)
            err = None
        elif name in PEERS:
            py, err = ensure_venv(name, work / f"install_{name}.log")
        else:
            print(f"  unknown tool {name!r}; known: chargetracker, {', '.join(PEERS)}")
            continue
        if py is None:
            res: dict[str, Any] = {"tool": name, "error": f"cannot install: {err}"}
        else:
            load0 = load_average()
            res = run_tool(name, py, data, args.repeat, work, args.timeout)
            res["loadavg_before"], res["loadavg_after"] = load0, load_average()
        if "error" in res:
            print(f"  FAILED: {res['error']}")
            results[name] = res
            emit(f"peers.{name}", "error", None, "", error=res["error"])
            continue
        tot = [r + c for r, c in zip(res["read_s"], res["compute_s"], strict=True)]
        k = min(range(len(tot)), key=tot.__getitem__)
        res["best"] = {"read_s": res["read_s"][k], "compute_s": res["compute_s"][k], "total_s": tot[k],
                       "read_cpu_s": min(res["read_cpu_s"]), "compute_cpu_s": min(res["compute_cpu_s"])}
        res["best"]["total_cpu_s"] = res["best"]["read_cpu_s"] + res["best"]["compute_cpu_s"]
        # battdat numbers cycles from 0 (Cycle_Index - its minimum).
        offset = int(ref.get_column("cycle").min()) if name == "battdat" else 0  # type: ignore[arg-type]
        res["accuracy"] = compare(res.pop("cycles"), ref, offset)
        results[name] = res
        b, acc = res["best"], res["accuracy"]
        print(f"  versions: {res['versions']}")
        print(f"  read {b['read_s']:.3f} s + compute {b['compute_s']:.3f} s = {b['total_s']:.3f} s"
              f"  ->  {rows / b['total_s'] / 1e3:,.0f} k rows/s end to end "
              f"(read {rows / b['read_s'] / 1e3:,.0f} k rows/s, compute {rows / b['compute_s'] / 1e3:,.0f} k rows/s);"
              f" runs: {', '.join(f'{t:.2f}' for t in tot)} s")
        print(f"  CPU time (all threads, least of the runs): read {b['read_cpu_s']:.3f} s + compute "
              f"{b['compute_cpu_s']:.3f} s = {b['total_cpu_s']:.3f} s")
        if res.get("extra"):
            print(f"  extra: {res['extra']}")
        print(f"  per-cycle vs cycler: {acc['cycles_compared']} of {acc['cycles_in_file']} cycles compared"
              f" ({acc['cycles_reported']} reported); largest difference {_pct(acc['max_pct_all'])}"
              f" (all cycles), {_pct(acc['max_pct_full'])} (full cycles)")
        for q in QUANTITIES:
            w = acc["all"].get(q)
            if w:
                print(f"    {q:13s} max {_pct(w['max_pct'])} at cycle {w['cycle']} "
                      f"(tool {w['tool']:.6g}, cycler {w['ref']:.6g}); full cycles "
                      f"{_pct(acc['full'].get(q, {}).get('max_pct'))}")
        emit(f"peers.{name}", "rows_per_s", round(rows / b["total_s"]), "rows/s",
             read_s=round(b["read_s"], 4), compute_s=round(b["compute_s"], 4),
             total_s=round(b["total_s"], 4), rows=rows, read_cpu_s=round(b["read_cpu_s"], 4),
             compute_cpu_s=round(b["compute_cpu_s"], 4), total_cpu_s=round(b["total_cpu_s"], 4), runs_s=[round(t, 4) for t in tot],
             versions=res["versions"], extra=res.get("extra"),
             max_diff_pct_all=acc["max_pct_all"], max_diff_pct_full=acc["max_pct_full"],
             cycles_compared=acc["cycles_compared"],
             loadavg_before=res["loadavg_before"], loadavg_after=res["loadavg_after"])

    ct = results.get("chargetracker", {})
    ok_peers = {n: r for n, r in results.items() if n != "chargetracker" and "best" in r}
    if "best" in ct and ok_peers:
        fastest = min(ok_peers, key=lambda n: ok_peers[n]["best"]["total_s"])
        speedup = ok_peers[fastest]["best"]["total_s"] / ct["best"]["total_s"]
        print(f"\n== summary ==\n  ChargeTracker end to end is {speedup:.1f}x faster than the faster peer "
              f"({fastest}); target >= {TARGET_SPEEDUP:g}x")
        for n, r in ok_peers.items():
            s = r["best"]
            print(f"  vs {n}: read {s['read_s'] / ct['best']['read_s']:.1f}x, compute "
                  f"{s['compute_s'] / ct['best']['compute_s']:.1f}x, end to end "
                  f"{s['total_s'] / ct['best']['total_s']:.1f}x")
        cpu_ratio = ok_peers[fastest]["best"]["total_cpu_s"] / ct["best"]["total_cpu_s"]
        print(f"  by CPU time (robust to a busy machine): {cpu_ratio:.1f}x less CPU than {fastest}; "
              + ", ".join(f"{n} {r['best']['total_cpu_s'] / ct['best']['total_cpu_s']:.1f}x"
                          for n, r in ok_peers.items()))
        acc = ct["accuracy"]["max_pct_all"]
        print(f"  ChargeTracker per-cycle numbers within {_pct(acc)} of the cycler's own "
              f"(target <= {TARGET_DIFF_PCT} %)")
        emit("peers", "speedup_vs_fastest_peer", round(speedup, 2), "x", target=TARGET_SPEEDUP,
             fastest_peer=fastest, cpu_time_ratio=round(cpu_ratio, 2),
             per_peer={n: round(r["best"]["total_s"] / ct["best"]["total_s"], 2) for n, r in ok_peers.items()})
        emit("peers", "chargetracker_max_diff_pct", acc, "%", target=TARGET_DIFF_PCT,
             higher_is_better=False)
    (work / "peers.json").write_text(json.dumps(
        {"machine": info, "input": desc, "results": results}, indent=1, default=str))
    print(f"\n  full results: {(work / 'peers.json').relative_to(ROOT)}")
    return 0


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g} %"


if __name__ == "__main__":
    raise SystemExit(main())
