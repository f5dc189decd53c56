"""Shared helpers of the Kafka tests: a compressed-protocol fleet, poison messages,
waiting for workers, comparing the store with the batch engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from confluent_kafka import Producer

from chargetracker.config import KafkaConfig
from chargetracker.engine import summarize
from chargetracker.errors import StoreUnavailable
from chargetracker.kafka import codec
from chargetracker.kafka.partitioner import partition_for
from chargetracker.kafka.worker import checkpoint_name
from chargetracker.sim import Fleet, FleetConfig, GroupConfig, Protocol, Step
from chargetracker.sim.measurement import FaultConfig
from chargetracker.stores.base import Store

#: A compressed cycling protocol: 6C CC-CV charge, 1 min rest, 6C discharge, 1 min rest
#: (about 20 min per cycle), so a few simulated hours give thousands of cycles.
FAST = Protocol("fast", (
    Step("charge", 6.0, cutoff_c_rate=1.0), Step("rest", duration_s=60.0),
    Step("discharge", 6.0), Step("rest", duration_s=60.0),
))


def fast_fleet(cells: int = 200, hours: float = 6.0, sample_period_s: float = 10.0,
               seed: int = 3, faults: tuple[str, ...] = ("duplicates", "out_of_order", "spikes",
                                                        "dropouts")) -> Fleet:
    half = cells // 2
    cfg = FleetConfig(
        groups=(GroupConfig("nmc-fast", "NMC", "fast", half),
                GroupConfig("lfp-fast", "LFP", "fast", cells - half)),
        seed=seed, sample_period_s=sample_period_s, duration_s=hours * 3600.0,
        protocols=(FAST,), faults=FaultConfig.from_names(list(faults)),
    )
    return Fleet(cfg)


@dataclass(frozen=True)
class Stream:
    cells: pl.DataFrame
    chunks: list[pl.DataFrame]

    @property
    def frame(self) -> pl.DataFrame:
        return pl.concat(self.chunks)


def fleet_stream(**kw: object) -> Stream:
    fleet = fast_fleet(**kw)  # type: ignore[arg-type]
    chunks = list(fleet.chunks(seconds=1800))
    return Stream(fleet.cells, chunks)


# -- poison ---------------------------------------------------------------------------
def poison_messages(cell_id: str) -> list[tuple[bytes | None, list[tuple[str, bytes]], str, str]]:
    """(value, headers, expected field, expected reason fragment) of malformed messages."""
    good = {"cell_id": cell_id, "ts": 1767225600.5, "voltage_v": 3.7, "current_a": 1.0}
    j = [(codec.FORMAT_HEADER, b"json")]
    return [
        (b'{"cell_id": "x", "ts": 1.0, "voltage_v": 3.7', j, "message", "invalid JSON"),
        (json.dumps({**good, "voltage_v": "high"}).encode(), j, "voltage_v", "expected a number"),
        (json.dumps({**good, "current_a": True}).encode(), j, "current_a", "expected a number"),
        (json.dumps({**good, "cycle": 1.5}).encode(), j, "cycle", "expected an integer"),
        (json.dumps({**good, "ts": float("nan")}).encode(), j, "ts", "NaN"),
        (b"[1, 2, 3]", j, "message", "expected a JSON object"),
        (b"", j, "message", "empty message"),
        (json.dumps(good).encode(), [(codec.FORMAT_HEADER, b"protobuf")], codec.FORMAT_HEADER,
         "unknown format"),
        (b"\xff\xff\xff\xff\x10\x00\x00\x00garbage-not-arrow", [(codec.FORMAT_HEADER, b"arrow")],
         "message", "broken Arrow"),
        (json.dumps({**good, "voltage_v": 1e9}).encode(), j, "voltage_v", "outside plausible range"),
        (json.dumps(good).encode(), [(codec.TYPE_HEADER, b"bogus")], codec.TYPE_HEADER,
         "unknown message type"),
    ]


def produce_poison(cfg: KafkaConfig, partitions: int, cell_id: str) -> list[tuple[str, str]]:
    """Produce every poison message into ``cell_id``'s partition; returns (field, reason).

    A plain librdkafka producer (not the sink), as a foreign device gateway would be."""
    p = partition_for(cell_id, partitions)
    prod = Producer({"bootstrap.servers": cfg.brokers})
    expected = []
    for value, headers, field, reason in poison_messages(cell_id):
        prod.produce(cfg.topic, value=value, key=cell_id.encode(), partition=p, headers=headers)
        expected.append((field, reason))
    assert prod.flush(10) == 0
    return expected


# -- waiting --------------------------------------------------------------------------
def wait_checkpoints(store: Store, topic: str, ends: dict[int, int], *, timeout_s: float,
                     final: bool = True, procs: list[subprocess.Popen[bytes]] | None = None
                     ) -> dict[int, dict[str, object]]:
    """Wait until every partition's checkpoint stands at ``ends[p]`` (the next offset
    after the last message: a delivered end-of-stream marker's offset + 1)."""
    deadline = time.monotonic() + timeout_s
    positions: dict[int, dict[str, object]] = {}
    while time.monotonic() < deadline:
        positions = {}
        try:
            for p in ends:
                cp = store.load_checkpoint(checkpoint_name(topic, p))
                if cp is not None:
                    positions[p] = cp.position
        except StoreUnavailable:  # a server just restarted: the pool reconnects
            time.sleep(0.2)
            continue
        if len(positions) == len(ends) and all(
                positions[p]["offset"] == ends[p] and (positions[p].get("final") or not final)
                for p in ends):
            return positions
        for proc in procs or []:
            assert proc.poll() is None, f"worker {proc.pid} exited with {proc.returncode}"
        time.sleep(0.1)
    raise AssertionError(f"workers did not reach the end offsets {ends}: {positions}")


def wait_progress(store: Store, cfg: KafkaConfig, partitions: int, *, min_partitions: int,
                  timeout_s: float) -> None:
    """Wait until at least ``min_partitions`` partitions have committed a checkpoint."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n = sum(store.load_checkpoint(checkpoint_name(cfg.topic, p)) is not None
                for p in range(partitions))
        if n >= min_partitions:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {min_partitions} partitions committed within {timeout_s} s")


# -- worker processes ---------------------------------------------------------------
def start_worker(cfg: KafkaConfig, store_url: str, log_path: Path, *extra_args: str
                 ) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-c", "import sys; from chargetracker.cli import main; sys.exit(main())",
            "worker", "--broker", cfg.brokers, "--topic", cfg.topic, "--store", store_url,
            "--group-id", cfg.group_id, "--commit-interval", "0.2", "--log-level", "INFO"]
    for k, v in cfg.extra:
        args += ["-X", f"{k}={v}"]
    args += list(extra_args)
    log = open(log_path, "ab")  # noqa: SIM115 - closed by the child's exit
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env)


def stop_worker(proc: subprocess.Popen[bytes], *, kill: bool = False, timeout_s: float = 20.0) -> int:
    """Stop a worker by its PID (SIGTERM: graceful; SIGKILL with ``kill``)."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        return proc.wait(timeout_s)


# -- comparing ------------------------------------------------------------------------
def store_steps(store: Store, cell_ids: list[str]) -> pl.DataFrame:
    return pl.concat([store.steps(c) for c in cell_ids]).sort("cell_id", "step")


def assert_equal_to_batch(store: Store, frame: pl.DataFrame, cells: pl.DataFrame) -> None:
    """Every step and cycle in the store equals engine.summarize of the same samples."""
    expected = summarize(frame, cells=cells)
    exp_cycles = expected.cycles.fill_nan(None).sort("cell_id", "cycle")
    got_cycles = store.cycles().sort("cell_id", "cycle")
    assert got_cycles.height == exp_cycles.height
    assert got_cycles.equals(exp_cycles), _first_difference(got_cycles, exp_cycles)
    ids = exp_cycles.get_column("cell_id").unique().sort().to_list()
    exp_steps = expected.steps.fill_nan(None).sort("cell_id", "step")
    got_steps = store_steps(store, ids)
    assert got_steps.height == exp_steps.height
    assert got_steps.equals(exp_steps), _first_difference(got_steps, exp_steps)


def _first_difference(got: pl.DataFrame, exp: pl.DataFrame) -> str:
    if got.height != exp.height:
        return f"{got.height} rows stored, {exp.height} expected"
    for col in exp.columns:
        a, b = got.get_column(col), exp.get_column(col)
        diff = ~(a.eq_missing(b))
        if diff.any():
            i = int(diff.arg_true()[0])
            return f"column {col} row {i}: stored {a[i]!r}, expected {b[i]!r} ({got.row(i)})"
    return "frames differ"

