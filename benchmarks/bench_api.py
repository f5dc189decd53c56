"""HTTP API: ingest throughput into the embedded pipeline, read latency of the query endpoints.

    python benchmarks/bench_api.py               # both cases, default sizes
    python benchmarks/bench_api.py --only ingest # one case
    python benchmarks/bench_api.py --quick       # small sizes (smoke run)

One ``chargetracker serve`` process (uvicorn, DuckDB store in a temporary directory, API
key on, access log off, no dashboard) on a free loopback port; the client is httpx in
this process, one keep-alive connection.

Ingest: a synthetic fleet (``benchmarks/fleetgen.py``, ``--cells`` cells at 1 Hz) cut
into time windows, each window one request with every cell's samples for that window
(``--batch-rows`` rows), as a gateway would forward them. Bodies are serialized before
the clock starts, so the figure is the server's: receive, decode, validate, engine,
alerts, one DuckDB commit per request. The first request of each format (numba warm-up)
is not timed. Formats: Arrow IPC stream (target >= 500 k samples/s) and JSON array of
objects (target >= 100 k samples/s); JSON columnar and NDJSON are reported too.

Reads: a store with ``--read-cells`` cells x ``--read-cycles`` closed cycles (default
1,000 x 1,000 = 1 M cycle rows, 10 groups) written directly with ``Store.commit``; then
the server is started on it and ``GET /api/v1/cells/{id}/cycles`` (a whole cell: 1,000
rows), ``GET /api/v1/groups/{g}/trend`` (100 cells x 1,000 cycles aggregated) and the
deep dive ``GET /api/v1/groups/{g}/cycles/latest`` are timed sequentially; p50 / p99.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, fmt_rate, load_average, machine_info  # noqa: E402
from fleetgen import make_fleet  # noqa: E402

from chargetracker.schema import CELL_SCHEMA, CYCLE_SCHEMA  # noqa: E402
from chargetracker.stores.base import CommitBatch  # noqa: E402
from chargetracker.stores.duckdb import DuckDBStore  # noqa: E402

ARROW_TARGET = 500e3   # samples/s
JSON_TARGET = 100e3    # samples/s
KEY = "bench-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


# -- server ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, store: Path, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-c", "import sys; from chargetracker.cli import main; sys.exit(main())",
               "serve", "--store", f"duckdb:///{store}", "--port", str(self.port),
               "--api-key", KEY, "--no-dashboard", "--no-access-log", "--max-body-mb", "512",
               "--log-level", "warning"]
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start")

    def cpu_s(self) -> float:
        """CPU time (user + system) the server process has used so far, s."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- ingest ---------------------------------------------------------------------------
def _windows(cells: int, seconds: int, window: int, prefix: str, seed: int) -> list[pl.DataFrame]:
    fleet = make_fleet(cells, seconds, seed=seed, dtype_ids=prefix + "-{:05d}")
    ids = pl.Series("cell_id", fleet.cell_ids, dtype=pl.Utf8)
    frames = []
    for lo in range(0, seconds, window):
        hi = min(seconds, lo + window)
        w = hi - lo
        frames.append(pl.DataFrame({
            "cell_id": ids.gather(np.repeat(np.arange(cells, dtype=np.uint32), w)),
            "ts": fleet.ts[:, lo:hi].ravel(),
            "voltage_v": fleet.voltage_v[:, lo:hi].ravel(),
            "current_a": fleet.current_a[:, lo:hi].ravel(),
            "temperature_c": fleet.temperature_c[:, lo:hi].ravel(),
        }))
    return frames


def _encode(fmt: str, frame: pl.DataFrame) -> tuple[bytes, str]:
    if fmt == "arrow":
        buf = io.BytesIO()
        frame.write_ipc_stream(buf)
        return buf.getvalue(), "application/vnd.apache.arrow.stream"
    if fmt == "json":  # as a Python client writes it (json.dumps, floats by repr)
        return json.dumps(frame.to_dicts()).encode(), "application/json"
    if fmt == "json-columnar":
        return json.dumps({"measurements": frame.to_dict(as_series=False)}).encode(), "application/json"
    if fmt == "ndjson":
        return frame.write_ndjson().encode(), "application/x-ndjson"
    raise ValueError(fmt)


def bench_ingest(args: argparse.Namespace, tmp: Path) -> None:
    server = Server(tmp / "ingest.duckdb", tmp / "ingest.log")
    formats = [("arrow", ARROW_TARGET), ("json", JSON_TARGET), ("json-columnar", None),
               ("ndjson", None)]
    try:
        with httpx.Client(base_url=server.url, timeout=300, headers=AUTH) as client:
            for k, (fmt, target) in enumerate(formats):
                rows_per_cell = max(1, args.batch_rows // args.cells)
                frames = _windows(args.cells, rows_per_cell * (args.batches + 1), rows_per_cell,
                                  f"{fmt}", seed=args.seed + k)
                bodies = [_encode(fmt, f) for f in frames]
                mb = sum(len(b) for b, _ in bodies[1:]) / 2**20
                # Warm-up (numba compile, first commit): not timed.
                r = client.post("/api/v1/measurements", content=bodies[0][0],
                                headers={"Content-Type": bodies[0][1]})
                r.raise_for_status()
                cpu0 = server.cpu_s()
                t0 = time.perf_counter()
                accepted = 0
                for body, ctype in bodies[1:]:
                    r = client.post("/api/v1/measurements", content=body,
                                    headers={"Content-Type": ctype})
                    r.raise_for_status()
                    accepted += r.json()["accepted"]
                dt = time.perf_counter() - t0
                cpu = server.cpu_s() - cpu0
                rate = accepted / dt
                n = sum(f.height for f in frames[1:])
                assert accepted == n, (accepted, n)
                # Samples per CPU-second of the server: less sensitive to other load on
                # the machine than the wall-clock rate (both are reported).
                print(f"  {fmt:14s} {len(bodies) - 1} requests x {frames[1].height:,} rows "
                      f"({mb / (len(bodies) - 1):.1f} MiB each): {fmt_rate(rate)}samples/s, "
                      f"{mb / dt:.0f} MiB/s; server CPU {cpu:.1f} s for {dt:.1f} s wall "
                      f"({fmt_rate(accepted / cpu)}samples per CPU-s)")
                emit("api", f"ingest_{fmt.replace('-', '_')}", round(rate), "samples/s",
                     target=target, requests=len(bodies) - 1, rows_per_request=frames[1].height,
                     mib_per_request=round(mb / (len(bodies) - 1), 2), cells=args.cells,
                     server_cpu_s=round(cpu, 2), samples_per_cpu_s=round(accepted / cpu))
    finally:
        server.stop()


# -- reads ----------------------------------------------------------------------------
def _build_read_store(path: Path, cells: int, cycles: int, groups: int) -> list[str]:
    rng = np.random.default_rng(7)
    ids = [f"cell-{c:05d}" for c in range(cells)]
    group_of = [f"group-{c % groups:02d}" for c in range(cells)]
    store = DuckDBStore(path)
    try:
        store.upsert_cells(pl.DataFrame({
            "cell_id": ids, "group": group_of, "chemistry": ["NMC"] * cells,
            "test_type": ["cc"] * cells, "nominal_capacity_ah": [2.5] * cells,
            "v_min": [2.75] * cells, "v_max": [4.2] * cells, "attributes": ["{}"] * cells,
        }, schema=CELL_SCHEMA))
        per_commit = max(1, 200_000 // cycles)
        cyc = np.arange(1, cycles + 1, dtype=np.int64)
        for lo in range(0, cells, per_commit):
            block = list(range(lo, min(cells, lo + per_commit)))
            n = len(block) * cycles
            cap = (2.5 * rng.uniform(0.97, 1.02, len(block)))[:, None] * (1 - 2e-4 * cyc[None, :])
            cap = cap + rng.normal(0, 0.002, cap.shape)
            start = 1.7e9 + (cyc[None, :] - 1) * 7200.0 + np.zeros((len(block), 1))
            dis = cap.ravel()
            chg = dis / rng.uniform(0.995, 0.9995, n)
            cols: dict[str, object] = {
                "cell_id": np.repeat(np.array([ids[c] for c in block]), cycles),
                "cycle": np.tile(cyc, len(block)), "status": ["closed"] * n,
                "start_ts": start.ravel(), "end_ts": start.ravel() + 7000.0,
                "duration_s": np.full(n, 7000.0), "n_samples": np.full(n, 7000, dtype=np.int64),
                "n_steps": np.full(n, 4, dtype=np.int64),
                "charge_ah": chg, "discharge_ah": dis, "charge_wh": chg * 3.9, "discharge_wh": dis * 3.6,
                "coulombic_efficiency": dis / chg, "energy_efficiency": dis * 3.6 / (chg * 3.9),
                "mean_charge_v": np.full(n, 3.9), "mean_discharge_v": np.full(n, 3.6),
                "min_v": np.full(n, 2.8), "max_v": np.full(n, 4.2), "mean_v": np.full(n, 3.7),
                "min_current_a": np.full(n, -2.5), "max_current_a": np.full(n, 2.5),
                "mean_current_a": np.zeros(n), "min_temperature_c": np.full(n, 24.0),
                "max_temperature_c": np.full(n, 31.0), "mean_temperature_c": np.full(n, 27.0),
                "retention": (cap / cap[:, :3].max(axis=1, keepdims=True)).ravel(),
                "internal_resistance_ohm": np.full(n, 0.03),
                "throughput_ah": np.cumsum(chg + dis), "equivalent_full_cycles": np.tile(cyc, len(block)) * 1.0,
                "gap_count": np.zeros(n, dtype=np.int64),
            }
            store.commit(CommitBatch(cycles=pl.DataFrame(cols, schema=CYCLE_SCHEMA)))
    finally:
        store.close()
    return ids


def _percentiles(times: list[float]) -> tuple[float, float]:
    a = np.array(times) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def bench_reads(args: argparse.Namespace, tmp: Path) -> None:
    path = tmp / "reads.duckdb"
    t0 = time.perf_counter()
    ids = _build_read_store(path, args.read_cells, args.read_cycles, args.groups)
    print(f"  store: {args.read_cells:,} cells x {args.read_cycles:,} cycles "
          f"= {args.read_cells * args.read_cycles:,} cycle rows written in {time.perf_counter() - t0:.1f} s")
    server = Server(path, tmp / "reads.log")
    rng = np.random.default_rng(3)
    cases = [
        ("cycles", lambda: f"/api/v1/cells/{ids[rng.integers(len(ids))]}/cycles", args.requests),
        ("cell_trend", lambda: f"/api/v1/cells/{ids[rng.integers(len(ids))]}/trend", args.requests),
        ("group_trend", lambda: f"/api/v1/groups/group-{rng.integers(args.groups):02d}/trend",
         max(20, args.requests // 3)),
        ("group_deep_dive", lambda: f"/api/v1/groups/group-{rng.integers(args.groups):02d}/cycles/latest",
         max(20, args.requests // 3)),
    ]
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for name, url, n in cases:
                for _ in range(3):  # warm-up
                    client.get(url()).raise_for_status()
                times = []
                size = 0
                for _ in range(n):
                    u = url()
                    t = time.perf_counter()
                    r = client.get(u)
                    times.append(time.perf_counter() - t)
                    r.raise_for_status()
                    size = len(r.content)
                p50, p99 = _percentiles(times)
                print(f"  {name:16s} {n} requests: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
                      f"({size / 1024:.0f} KiB per response)")
                emit("api", f"read_{name}_p50", round(p50, 2), "ms", higher_is_better=False,
                     requests=n, cells=args.read_cells, cycles=args.read_cycles)
                emit("api", f"read_{name}_p99", round(p99, 2), "ms", higher_is_better=False,
                     requests=n, cells=args.read_cells, cycles=args.read_cycles)
    finally:
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["ingest", "reads"])
    ap.add_argument("--cells", type=int, default=1000, help="ingest: cells (default 1000)")
    ap.add_argument("--batch-rows", type=int, default=200_000, help="ingest: rows per request")
    ap.add_argument("--batches", type=int, default=10, help="ingest: timed requests per format")
    ap.add_argument("--read-cells", type=int, default=1000)
    ap.add_argument("--read-cycles", type=int, default=1000)
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--requests", type=int, default=300, help="reads: timed requests per endpoint")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.cells, args.batch_rows, args.batches = 100, 20_000, 3
        args.read_cells, args.read_cycles, args.requests = 50, 100, 30
    info = machine_info()
    print(f"machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']}, "
          f"load {load_average()}")
    with tempfile.TemporaryDirectory(prefix="ct-bench-api-") as d:
        tmp = Path(d)
        if args.only in (None, "ingest"):
            print("ingest over HTTP (one server process, embedded pipeline, DuckDB):")
            bench_ingest(args, tmp)
        if args.only in (None, "reads"):
            print("read latency:")
            bench_reads(args, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
