"""Soak benchmark: ``chargetracker demo`` for a long time, quiet and then under attack.

    python benchmarks/bench_soak.py --quiet-s 3600 --hostile-s 3600     # the full soak
    python benchmarks/bench_soak.py --quiet-s 150 --hostile-s 150       # a 5 minute check

Starts ``chargetracker demo`` (embedded: simulator -> engine -> DuckDB file, API and
dashboard served, no browser) as a child process at its default rate and samples every
``--every`` seconds (default 30): resident memory (VmRSS of the process), CPU-seconds
(user + system, from /proc) and the store size on disk (DuckDB file + WAL).

Phase 1 (quiet): the demo alone. Phase 2 (hostile): 20 concurrent HTTP writers post
batches of their own cells (1 s sampling, alternating charge/discharge so steps close),
every tenth post re-sends the batch before it (an exact duplicate); and once a minute
the hostile corpus is replayed: an NDJSON row nested 800 levels deep, a body over the
size limit, malformed JSON, binary garbage, NaN/inf values, a year-3000 timestamp mixed
into a writer's batch, CR-only and UTF-16 cycler files through ``POST /files``.

Checks: the process never dies, no reply is a 5xx, and nothing accepted is lost: after
the demo stops, the steps stored for the writers' cells equal an offline replay of the
rows the server acknowledged (accepted rows of every 200 reply, in the order sent)
through a fresh :class:`~chargetracker.runtime.Pipeline` on an in-memory store. The last
step of each cell is left out of the comparison (still open in the stream).

Writes a JSON line per sample and a summary to stdout (``emit`` lines for RESULTS.md).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, load_average, machine_info  # noqa: E402

WRITERS = 20
ROWS_PER_POST = 30
STEP_S = 120           # writer cells alternate charge / discharge every STEP_S s
TICK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_sample(pid: int) -> dict[str, float]:
    """RSS (MiB) and CPU-seconds (user + system, the process and its reaped children)."""
    rss = 0.0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    with open(f"/proc/{pid}/stat") as fh:
        parts = fh.read().rsplit(")", 1)[1].split()
    cpu = sum(int(parts[i]) for i in (11, 12, 13, 14)) / TICK
    return {"rss_mb": round(rss, 1), "cpu_s": round(cpu, 2)}


def _store_mb(path: Path) -> float:
    total = 0
    for p in (path, path.with_name(path.name + ".wal")):
        if p.exists():
            total += p.stat().st_size
    return round(total / 2**20, 2)


def _post(url: str, body: bytes, ctype: str, timeout: float = 120.0) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            payload = json.loads(exc.read() or b"null")
        except ValueError:
            payload = None
        return exc.code, payload
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
        return -1, str(exc)


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "ctsoakboundary7d1f"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    status: dict[str, int] = field(default_factory=dict)
    five_xx: list[str] = field(default_factory=list)
    #: Rows the server acknowledged, per writer, in the order sent.
    accepted: list[pl.DataFrame] = field(default_factory=list)
    duplicates_acked: int = 0
    duplicates_refused: int = 0
    late_refused: int = 0
    rounds: int = 0

    def count(self, what: str, code: int, detail: Any = None) -> None:
        with self.lock:
            key = f"{what}:{code}"
            self.status[key] = self.status.get(key, 0) + 1
            if code >= 500 or code < 0:
                self.five_xx.append(f"{what} -> {code}: {str(detail)[:200]}")


def _writer_rows(cell: str, t0: float, k: int) -> pl.DataFrame:
    """Batch ``k`` of a writer cell: 1 s sampling, ``STEP_S`` charge / discharge steps."""
    ts = [t0 + k * ROWS_PER_POST + i for i in range(ROWS_PER_POST)]
    cur = [1.0 if int((t - t0) // STEP_S) % 2 == 0 else -1.0 for t in ts]
    volt = [3.6 + 0.2 * c + 1e-4 * ((t - t0) % STEP_S) * c for t, c in zip(ts, cur, strict=True)]
    return pl.DataFrame({"cell_id": [cell] * len(ts), "ts": ts, "voltage_v": volt,
                         "current_a": cur, "temperature_c": [25.0] * len(ts)})


def _acknowledged(frame: pl.DataFrame, body: Any) -> pl.DataFrame:
    bad = {e["row"] for e in (body or {}).get("errors", []) if e.get("row") is not None}
    if not bad:
        return frame
    return frame.with_row_index("_r").filter(~pl.col("_r").is_in(list(bad))).drop("_r")


def _writer(base: str, i: int, t0: float, stop: threading.Event, tally: Tally,
            future_row: threading.Event) -> None:
    cell = f"soak-w{i:02d}"
    url = f"{base}/api/v1/measurements?source=soak-w{i:02d}"
    k = 0
    prev: bytes | None = None
    while not stop.is_set():
        if prev is not None and k % 10 == 0:
            code, body = _post(url, prev, "application/json")
            tally.count("duplicate", code, body)
            with tally.lock:
                if code == 200:
                    tally.duplicates_acked += 1
                else:
                    tally.duplicates_refused += 1
        frame = _writer_rows(cell, t0, k)
        rows = frame.to_dicts()
        if i == 0 and future_row.is_set():
            future_row.clear()
            rows.insert(ROWS_PER_POST // 2, {**rows[0], "ts": 32503680000.0})  # year 3000
        body_bytes = json.dumps(rows).encode()
        code, body = _post(url, body_bytes, "application/json")
        tally.count("writer", code, body)
        if code == 200:
            sent = pl.DataFrame(rows, schema=frame.schema)
            with tally.lock:
                tally.accepted.append(_acknowledged(sent, body).filter(pl.col("ts") < 1e10))
                errs = body.get("errors", [])
                tally.late_refused += sum(1 for e in errs if "late" in str(e.get("reason", "")))
        prev = body_bytes
        k += 1
        stop.wait(1.0)


def _hostile_corpus() -> list[tuple[str, str, str, bytes]]:
    """(name, endpoint, content type, body) of each hostile request."""
    nested: Any = 1
    for _ in range(800):
        nested = {"x": nested}
    row = {"cell_id": "soak-hostile", "ts": time.time() - 86400, "voltage_v": 3.7,
           "current_a": 0.5, "extra": nested}
    csv_lines = ["Test_Time(s),Current(A),Voltage(V)"] + [
        f"{i},{0.5 if i < 60 else -0.5},{3.7 + i * 1e-4:.4f}" for i in range(120)]
    return [
        ("nested_ndjson", "/api/v1/measurements", "application/x-ndjson",
         (json.dumps(row) + "\n").encode()),
        ("malformed_json", "/api/v1/measurements", "application/json", b'[{"cell_id": "x", "ts": '),
        ("binary_garbage", "/api/v1/measurements", "application/json", os.urandom(4096)),
        ("binary_arrow", "/api/v1/measurements", "application/vnd.apache.arrow.stream", os.urandom(4096)),
        ("nan_inf", "/api/v1/measurements", "application/json",
         b'[{"cell_id": "soak-hostile", "ts": NaN, "voltage_v": Infinity, "current_a": -Infinity}]'),
        ("future_ts", "/api/v1/measurements", "application/json",
         json.dumps([{"cell_id": "soak-hostile", "ts": 32503680000.0, "voltage_v": 3.7,
                      "current_a": 0.1}]).encode()),
        ("whitespace_id", "/api/v1/measurements", "application/json",
         json.dumps([{"cell_id": "   ", "ts": time.time(), "voltage_v": 3.7, "current_a": 0.1}]).encode()),
        ("cr_only_file", "/api/v1/files?cell_id=soak-cr", "multipart",
         "\r".join(csv_lines).encode()),
        ("utf16_file", "/api/v1/files?cell_id=soak-utf16", "multipart",
         "\n".join(csv_lines).encode("utf-16")),
        ("gzip_garbage_file", "/api/v1/files?cell_id=soak-gz", "multipart",
         b"\x1f\x8b\x08\x00" + os.urandom(2048)),
    ]


def _oversize(base: str) -> tuple[int, Any]:
    """A body over the 64 MiB limit, announced by Content-Length: the server must refuse
    it (413) from the headers, before any of it is sent."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest("POST", "/api/v1/measurements")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(65 * 2**20))
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()[:200]
    except (OSError, http.client.HTTPException) as exc:
        return -1, str(exc)
    finally:
        conn.close()


def _hostile_round(base: str, tally: Tally, corpus: list[tuple[str, str, str, bytes]]) -> None:
    code, payload = _oversize(base)
    tally.count("oversize", code, payload)
    for name, path, ctype, body in corpus:
        if ctype == "multipart":
            body, ctype = _multipart(f"{name}.csv", body)
        code, payload = _post(base + path, body, ctype)
        tally.count(name, code, payload)


def _hostile_loop(base: str, tally: Tally, stop: threading.Event, every: float,
                  future_row: threading.Event) -> None:
    corpus = _hostile_corpus()
    while not stop.is_set():
        future_row.set()
        _hostile_round(base, tally, corpus)
        tally.rounds += 1
        stop.wait(every)


def _offline_steps(accepted: list[pl.DataFrame]) -> pl.DataFrame:
    from chargetracker.config import Settings
    from chargetracker.runtime import Pipeline
    from chargetracker.stores.duckdb import DuckDBStore

    store = DuckDBStore(":memory:")
    pipe = Pipeline(store, Settings(store_url="duckdb:///:memory:"))
    for frame in accepted:
        if frame.height:
            pipe.ingest(frame, source="replay")
    out = store._con.sql(
        "SELECT cell_id, step, kind, n_samples, charge_ah, discharge_ah FROM steps "
        "WHERE cell_id LIKE 'soak-w%' ORDER BY cell_id, step").pl()
    store.close()
    return out


def _stored_steps(path: Path) -> pl.DataFrame:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql(
            "SELECT cell_id, step, kind, n_samples, charge_ah, discharge_ah FROM steps "
            "WHERE cell_id LIKE 'soak-w%' ORDER BY cell_id, step").pl()
    finally:
        con.close()


def _drop_last(df: pl.DataFrame) -> pl.DataFrame:
    if df.height == 0:
        return df
    last = df.group_by("cell_id").agg(pl.col("step").max().alias("_last"))
    return df.join(last, on="cell_id").filter(pl.col("step") < pl.col("_last")).drop("_last")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quiet-s", type=float, default=3600.0, help="phase 1 duration (s)")
    ap.add_argument("--hostile-s", type=float, default=3600.0, help="phase 2 duration (s)")
    ap.add_argument("--every", type=float, default=30.0, help="sampling period (s)")
    ap.add_argument("--hostile-every", type=float, default=60.0, help="corpus replay period (s)")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args()

    work = Path(args.dir or tempfile.mkdtemp(prefix="ct-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "soak.duckdb"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    exe = Path(sys.executable).with_name("chargetracker")
    cmd = [str(exe), "demo", "--fresh", "--store", str(db), "--port", str(port),
           "--summary-interval", "30"]
    info = machine_info()
    print(f"# soak: {' '.join(cmd)}\n# machine: {json.dumps(info)}", flush=True)
    err = open(work / "demo.stderr", "wb")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    t_start = time.monotonic()
    samples: list[dict[str, Any]] = []
    tally = Tally()
    stop = threading.Event()
    future_row = threading.Event()
    threads: list[threading.Thread] = []
    phase = "quiet"
    next_sample = t_start
    t_end = t_start + args.quiet_s + args.hostile_s
    died = None
    try:
        while time.monotonic() < t_end:
            now = time.monotonic()
            if proc.poll() is not None:
                died = proc.returncode
                break
            if phase == "quiet" and now - t_start >= args.quiet_s:
                phase = "hostile"
                t0 = time.time() - 1.5 * 86400
                for i in range(WRITERS):
                    th = threading.Thread(target=_writer, args=(base, i, t0, stop, tally, future_row),
                                          daemon=True)
                    th.start()
                    threads.append(th)
                th = threading.Thread(target=_hostile_loop, daemon=True,
                                      args=(base, tally, stop, args.hostile_every, future_row))
                th.start()
                threads.append(th)
            if now >= next_sample:
                s = {"t_s": round(now - t_start, 1), "phase": phase, **_proc_sample(proc.pid),
                     "store_mb": _store_mb(db), "loadavg": load_average()}
                samples.append(s)
                print(json.dumps(s), flush=True)
                next_sample += args.every
            time.sleep(0.5)
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=150)
        final = _proc_sample(proc.pid) if proc.poll() is None else {}
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        err.close()
    stderr = (work / "demo.stderr").read_text(errors="replace")
    traceback = "Traceback" in stderr
    stored = _drop_last(_stored_steps(db))
    replay = _drop_last(_offline_steps(tally.accepted))
    same = stored.height == replay.height and stored.equals(replay)
    if not same and stored.height == replay.height:
        diff = (stored.drop("cell_id", "kind") - replay.drop("cell_id", "kind")).abs().max()
        print(f"# step differences: {diff.to_dicts()}")
    quiet = [s for s in samples if s["phase"] == "quiet"]
    hostile = [s for s in samples if s["phase"] == "hostile"]

    def _rss(ss: list[dict[str, Any]], q: str) -> float | None:
        if not ss:
            return None
        half = ss[len(ss) // 2:]
        return max(s["rss_mb"] for s in (half if q == "late" else ss))

    summary = {
        "demo_exit": died if died is not None else proc.returncode,
        "traceback_in_stderr": traceback, "five_xx": tally.five_xx[:20],
        "status_counts": tally.status, "duplicates_acked": tally.duplicates_acked,
        "duplicates_refused": tally.duplicates_refused, "late_refused_rows": tally.late_refused,
        "hostile_rounds": tally.rounds,
        "accepted_rows": sum(f.height for f in tally.accepted),
        "writer_steps_compared": stored.height, "replay_steps": replay.height,
        "nothing_lost": same, "final": final,
        "rss_max_quiet_mb": _rss(quiet, "all"), "rss_max_quiet_2nd_half_mb": _rss(quiet, "late"),
        "rss_max_hostile_mb": _rss(hostile, "all"),
        "store_mb_end": samples[-1]["store_mb"] if samples else None,
        "cpu_s_end": samples[-1]["cpu_s"] if samples else None,
        "wall_s": round(time.monotonic() - t_start, 1), "work_dir": str(work),
    }
    print("# summary: " + json.dumps(summary), flush=True)
    emit("soak", "rss_max_quiet", summary["rss_max_quiet_mb"], "MiB", higher_is_better=False,
         quiet_s=args.quiet_s)
    emit("soak", "rss_max_hostile", summary["rss_max_hostile_mb"], "MiB", higher_is_better=False,
         hostile_s=args.hostile_s)
    emit("soak", "five_xx", len(tally.five_xx), "replies", target=0, higher_is_better=False)
    emit("soak", "nothing_lost", int(same), "bool", target=1)
    ok = died is None and not tally.five_xx and same and not traceback
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
