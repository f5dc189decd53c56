"""API test fixtures: a real ``chargetracker serve`` process on a free loopback port.

The server runs on a temporary DuckDB file; tests talk to it over HTTP with httpx and
stop it by PID (SIGTERM, then SIGKILL if it hangs). Its combined stdout/stderr is kept
in a log file so tests can check what the server logs (never an API key).
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

KEY = "ct-test-key-7f3a9c"
AUTH = {"Authorization": f"Bearer {KEY}"}
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
JSON = "application/json"

#: Small body limit of the shared server, so 413 tests send little.
MAX_BODY_MB = 8


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    store_path: Path

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60.0, **kw)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode


def start_server(directory: Path, *args: str, timeout: float = 60.0) -> LiveServer:
    """Start ``chargetracker serve`` on a fresh DuckDB file and wait until it answers."""
    port = free_port()
    store = directory / "store.duckdb"
    log_path = directory / "server.log"
    cmd = [sys.executable, "-c", "import sys; from chargetracker.cli import main; sys.exit(main())",
           "serve", "--store", f"duckdb:///{store}", "--host", "127.0.0.1", "--port", str(port),
           *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGETRACKER_")}
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    server = LiveServer(f"http://127.0.0.1:{port}", proc, log_path, store)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not start within {timeout} s:\n{server.log()}")


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The shared server: one API key, reads open, small body limit, API only."""
    server = start_server(tmp_path_factory.mktemp("live"), "--api-key", KEY,
                          "--max-body-mb", str(MAX_BODY_MB), "--no-dashboard")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as client:
        yield client


# -- payload helpers -----------------------------------------------------------------
def arrow_bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_ipc_stream(buf)
    return buf.getvalue()


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


def json_rows(frame: pl.DataFrame) -> bytes:
    """Rows as a JSON array; floats printed with repr (exact round trip)."""
    return json.dumps(frame.to_dicts()).encode()


def cells_json(cells: pl.DataFrame) -> list[dict[str, Any]]:
    """CELL_SCHEMA frame -> JSON records with attributes as an object."""
    out = []
    for row in cells.to_dicts():
        row["attributes"] = json.loads(row["attributes"]) if row.get("attributes") else {}
        out.append(row)
    return out


def cycling_frame(cell_id: str, *, cycles: int = 3, dt: float = 10.0, t0: float = 1.7e9,
                  capacity_ah: float = 2.0, current_a: float = 1.0,
                  temperature_c: float = 25.0) -> pl.DataFrame:
    """A synthetic constant-current cycling record (charge, rest, discharge, rest)."""
    import numpy as np

    seg = int(capacity_ah / current_a * 3600 / dt)
    rest = 30
    one = np.concatenate([np.full(seg, current_a), np.zeros(rest), np.full(seg, -current_a),
                          np.zeros(rest)])
    i = np.tile(one, cycles)
    i[0] = 0.0  # the record opens at rest, so its first cycle is whole (not partial)
    n = i.size
    soc = np.clip(np.cumsum(i) * dt / 3600 / capacity_ah, 0, 1)
    v = 3.0 + 1.1 * soc + 0.05 * np.sign(i)
    return pl.DataFrame({
        "cell_id": [cell_id] * n,
        "ts": t0 + dt * np.arange(n, dtype=np.float64),
        "voltage_v": v,
        "current_a": i,
        "temperature_c": np.full(n, temperature_c),
    })


def streamed_cycles(frame: pl.DataFrame, cells: pl.DataFrame | None = None) -> pl.DataFrame:
    """Cycles as a live pipeline holds them (no end of data declared: the last cycle stays
    open), i.e. the engine's ``update`` without ``flush``."""
    from chargetracker.engine import new_state, update

    _, out = update(new_state(), frame, cells=cells)
    return out.cycles.unique(subset=["cell_id", "cycle"], keep="last", maintain_order=True).sort(
        ["cell_id", "cycle"])
