"""Consistency-alarm benchmarks: training time, batch scoring throughput, single HTTP
prediction latency, and the evaluation table (reference baseline vs ChargeTracker).

    .venv/bin/python benchmarks/bench_alarms.py [--records 1e6] [--requests 300]
        [--repeats 3] [--skip-eval] [--skip-http] [--skip-batch]
        [--modes sync,grouped] [--http-rounds 1] [--clients 1] [--baseline-src DIR]

Prints Markdown; wall time and process CPU time beside each figure.
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
SERIES = ROOT / "tests" / "data" / "bms-series_samples.csv"


def _timed(fn):  # type: ignore[no-untyped-def]
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def synthetic_records(n_records: int, days: int = 365, seed: int = 1) -> pl.DataFrame:
    """Daily records of n_records // days vehicles: noise around a 96s pack, spreads
    drifting up on 10 % of them, 30 % of days empty (the sample's share)."""
    rng = np.random.default_rng(seed)
    n_vin = max(1, n_records // days)
    n = n_vin * days
    vin = np.repeat(np.array([f"V{i:07d}" for i in range(n_vin)]), days)
    date = np.tile(np.arange(days), n_vin) + np.datetime64("2024-01-01", "D").astype(np.int64)
    cell = 3.4 + 0.5 * rng.random(n)
    drift = np.repeat(rng.random(n_vin) < 0.1, days) * np.tile(np.linspace(0, 0.2, days), n_vin)
    spread = 0.012 + 0.004 * rng.random(n) + drift
    empty = rng.random(n) < 0.3
    def nan(a: np.ndarray) -> np.ndarray:
        return np.where(empty, np.nan, a)
    t = 15 + 15 * rng.random(n)
    return pl.DataFrame({
        "vin": vin, "date": date.astype("datetime64[D]"),
        "total_voltage_v": nan(96 * cell), "total_current_a": nan(rng.normal(0, 5, n)),
        "cell_max_v": nan(cell + spread / 2), "cell_min_v": nan(cell - spread / 2),
        "max_temperature_c": nan(t + 2), "min_temperature_c": nan(t),
    })


def bench_training() -> dict[str, float]:
    from chargetracker.ml import (
        CHARGETRACKER,
        build_panel,
        build_windows,
        feature_matrix,
        fit_model,
        parse_records_csv,
        require_valid,
    )

    recs = require_valid(parse_records_csv(SERIES.read_bytes()))
    w = build_windows(build_panel(recs))
    x = feature_matrix(w, CHARGETRACKER.features)
    y = (w.label == 1).astype(np.int8)
    _, wall, cpu = _timed(lambda: fit_model(CHARGETRACKER, x, y, w.vin_names()))
    return {"samples": len(w), "wall_s": wall, "cpu_s": cpu}


def bench_scoring(n_records: int) -> dict[str, float]:
    from chargetracker.ml import Predictor, validate_records
    from chargetracker.stores.models import load_default_model

    pred = Predictor(load_default_model())
    frame = synthetic_records(n_records)
    pred.predict_records(validate_records(frame.head(2000)).records)  # warm up
    checked, w1, c1 = _timed(lambda: validate_records(frame))
    out, w2, c2 = _timed(lambda: pred.predict_records(checked.records))
    return {"records": frame.height, "predictions": out.height, "validate_wall_s": w1,
            "score_wall_s": w2, "wall_s": w1 + w2, "cpu_s": c1 + c2,
            "records_per_s": frame.height / (w1 + w2)}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_http(n_requests: int, mode: str = "grouped", extra: tuple[str, ...] = (),
               baseline_src: str | None = None, clients: int = 1) -> dict[str, Any]:
    """Single predictions against ``chargetracker serve --alarm-write MODE`` (20 daily
    records as the CSV gives them, stored), ``n_requests`` in sequence from each of
    ``clients`` concurrent clients (one VIN each); latency percentiles, the server's
    CPU-s over the timed requests (wall time of the run too), and that every prediction
    is stored (listed right after the run: read-your-writes)."""
    import httpx

    rows = [r for r in csv.DictReader(open(SERIES)) if r["VIN"] == "JH4PC6DU52KF7SVMZ"][-20:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tempfile.mkdtemp()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGETRACKER_")}
    if baseline_src:  # another checkout's server (no --alarm-write there: it writes sync)
        env["PYTHONPATH"] = baseline_src
        flags: tuple[str, ...] = ()
    else:
        flags = ("--alarm-write", mode, *extra)
    proc = subprocess.Popen([sys.executable, "-m", "chargetracker", "serve", "--store",
                             f"duckdb:///{tmp}/b.duckdb", "--port", str(port), "--host",
                             "127.0.0.1", "--no-dashboard", *flags], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        day0 = np.array([np.datetime64(r["Date"], "D") for r in rows])
        vins = ["JH4PC6DU52KF7SVMZ", *[f"JH4PC6DU52KF7SVMZ-{j}" for j in range(1, clients)]]
        lat: list[list[float]] = [[] for _ in vins]

        def client(j: int) -> None:
            vin = vins[j]
            with httpx.Client(base_url=url, timeout=120) as c:
                for i in range(n_requests):
                    # The same 20 records shifted by i days: every prediction is its own
                    # row (no upsert of one key), like a vehicle reporting day after day.
                    body = {"vin": vin, "records": [
                        {**r, "VIN": vin, "Date": str(d + i)}
                        for r, d in zip(rows, day0, strict=True)]}
                    t0 = time.perf_counter()
                    c.post("/api/v1/alarms/predict", json=body).raise_for_status()
                    lat[j].append(time.perf_counter() - t0)

        with httpx.Client(base_url=url, timeout=120) as c:
            for _ in range(20):
                c.post("/api/v1/alarms/predict", json={"vin": "WARMUP", "records": [
                    {**r, "VIN": "WARMUP"} for r in rows]}).raise_for_status()
            c0, s0, w0 = time.process_time(), _cpu_s(proc.pid), time.perf_counter()
            if clients == 1:
                client(0)
            else:
                threads = [threading.Thread(target=client, args=(j,)) for j in range(clients)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            wall, server_cpu = time.perf_counter() - w0, _cpu_s(proc.pid) - s0
            stored = sum(c.get("/api/v1/alarms/predictions", params={"vin": v, "limit": 1}
                               ).json()["total"] for v in vins)
            commits = float("nan")  # group commits of the writer (grouped mode only)
            for line in c.get("/metrics").text.splitlines():
                if line.startswith('chargetracker_alarm_prediction_commits_total{result="ok"}'):
                    commits = float(line.split()[-1])
        n_requests *= clients
        a = np.concatenate([np.array(x) for x in lat]) * 1000
        return {"mode": mode, "requests": n_requests, "p50_ms": float(np.percentile(a, 50)),
                "p90_ms": float(np.percentile(a, 90)), "p99_ms": float(np.percentile(a, 99)),
                "max_ms": float(a.max()), "wall_s": wall, "server_cpu_s": server_cpu,
                "client_cpu_s": time.process_time() - c0, "stored": stored,
                "rows_per_commit": (n_requests + 20) / commits}
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def bench_eval(repeats: int) -> str:
    import datetime as dt

    from chargetracker.ml import (
        BASELINE,
        CHARGETRACKER,
        EvaluationPlan,
        build_panel,
        build_windows,
        evaluate,
        format_report,
        parse_records_csv,
        require_valid,
    )

    recs = require_valid(parse_records_csv(SERIES.read_bytes()))
    w = build_windows(build_panel(recs))
    cut = (dt.date(2019, 12, 10) - dt.date(1970, 1, 1)).days
    rep, wall, cpu = _timed(lambda: evaluate(w, [BASELINE, CHARGETRACKER],
                                             EvaluationPlan(5, repeats, 0, cut)))
    return format_report(rep) + f"\n(evaluation wall {wall:.0f} s, CPU {cpu:.0f} s)\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=float, default=1e6)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-batch", action="store_true", help="no training / batch scoring")
    ap.add_argument("--modes", default="sync,grouped",
                    help="HTTP store modes to compare, back to back (serve --alarm-write; "
                    "grouped@MS also sets --alarm-write-age-ms MS)")
    ap.add_argument("--baseline-src", metavar="DIR",
                    help="the mode 'baseline' runs the server of this src directory (another "
                    "checkout) instead")
    ap.add_argument("--clients", type=int, default=1,
                    help="concurrent HTTP clients, each sending --requests in sequence")
    ap.add_argument("--http-rounds", type=int, default=1,
                    help="repeat the HTTP comparison (alternating modes)")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    if not args.skip_batch:
        t = bench_training()
        print(f"training (one model: 4 inner fits + final): {t['samples']} samples, "
              f"wall {t['wall_s']:.2f} s, CPU {t['cpu_s']:.2f} s")
        s = bench_scoring(int(args.records))
        print(f"batch scoring: {s['records']:,} records -> {s['predictions']:,} predictions; "
              f"validate {s['validate_wall_s']:.2f} s + score {s['score_wall_s']:.2f} s = "
              f"{s['wall_s']:.2f} s wall, CPU {s['cpu_s']:.2f} s -> "
              f"{s['records_per_s'] / 1e3:.0f} k records/s")
    if not args.skip_http:
        print(f"HTTP single prediction ({args.clients} client(s), each sequential; 20 daily "
              "records, stored), modes back to back:")
        print("| mode | requests | load | p50 ms | p90 ms | p99 ms | max ms | wall s | "
              "server CPU-s | server CPU ms/request | rows/commit | stored |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for _ in range(args.http_rounds):
            for mode in args.modes.split(","):
                load = os.getloadavg()[0]
                name, _, age = mode.partition("@")  # grouped@20: --alarm-write-age-ms 20
                h = bench_http(args.requests, name,
                               ("--alarm-write-age-ms", age) if age else (),
                               baseline_src=args.baseline_src if name == "baseline" else None,
                               clients=args.clients)
                print(f"| {mode} | {h['requests']} | {load:.1f} | {h['p50_ms']:.1f} | "
                      f"{h['p90_ms']:.1f} | {h['p99_ms']:.1f} | {h['max_ms']:.1f} | "
                      f"{h['wall_s']:.2f} | {h['server_cpu_s']:.2f} | "
                      f"{1000 * h['server_cpu_s'] / h['requests']:.2f} | "
                      f"{h['rows_per_commit']:.1f} | {h['stored']} |",
                      flush=True)
    if not args.skip_eval:
        print(bench_eval(args.repeats))
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
