"""Ingest round trip over a real server: a simulated fleet (every fault on) posted in
batches, alternately as Arrow IPC and JSON, gives exactly the engine's batch result
(``engine.summarize`` of all samples at once) in the cycles endpoint."""

from __future__ import annotations

import json

import httpx
import polars as pl
from tests.api.conftest import ARROW, AUTH, JSON, arrow_bytes, cells_json, streamed_cycles

from chargetracker.engine import summarize
from chargetracker.sim import FAULT_NAMES, FaultConfig, Fleet, FleetConfig, GroupConfig


def test_simulated_fleet_round_trip(http: httpx.Client) -> None:
    config = FleetConfig(
        groups=(GroupConfig("rt-nmc", "NMC", "accelerated", 3),
                GroupConfig("rt-lfp", "LFP", "standard", 3)),
        seed=21, sample_period_s=5.0, duration_s=20 * 3600.0,
        faults=FaultConfig.from_names(FAULT_NAMES),
    )
    fleet = Fleet(config)
    frames = list(fleet.chunks(seconds=2 * 3600.0))
    cells = fleet.cells
    assert len(frames) >= 8
    # Metadata first (it sets each cell's current threshold from its nominal capacity).
    r = http.post("/api/v1/measurements", json={"cells": cells_json(cells)}, headers=AUTH)
    assert r.status_code == 200 and r.json()["cells_registered"] == cells.height, r.text
    accepted = rejected = 0
    for k, frame in enumerate(frames):
        if k % 2 == 0:
            r = http.post("/api/v1/measurements", params={"source": "rt-arrow"},
                          content=arrow_bytes(frame), headers={**AUTH, "Content-Type": ARROW})
        else:
            # json.dumps writes floats with repr: the server must read them back exactly.
            r = http.post("/api/v1/measurements", params={"source": "rt-json"},
                          content=json.dumps(frame.to_dicts()), headers={**AUTH, "Content-Type": JSON})
        assert r.status_code == 200, r.text
        accepted += r.json()["accepted"]
        rejected += r.json()["rejected"]

    expected = summarize(pl.concat(frames), cells=cells)
    assert rejected == expected.rejected.height > 0  # faults were injected and refused
    assert accepted == sum(f.height for f in frames) - rejected
    # The API's pipeline is live (no end of data): compare with the streaming engine.
    closed = streamed_cycles(pl.concat(frames), cells).filter(pl.col("status") == "closed")
    assert closed.height >= 6 * 4
    n = 0
    for cid in cells.get_column("cell_id").to_list():
        got = http.get(f"/api/v1/cells/{cid}/cycles", params={"status": "closed"}).json()
        want = closed.filter(pl.col("cell_id") == cid)
        assert pl.DataFrame(got["items"], schema=want.schema).equals(want.fill_nan(None)), cid
        n += len(got["items"])
        steps = http.get(f"/api/v1/cells/{cid}/steps", params={"limit": 10_000}).json()["items"]
        want_steps = expected.steps.filter((pl.col("cell_id") == cid) & (pl.col("status") == "closed"))
        got_steps = pl.DataFrame(steps, schema=want_steps.schema).filter(pl.col("status") == "closed")
        assert got_steps.equals(want_steps.fill_nan(None)), cid
    assert n == closed.height
    # The group view is built from the same cycles.
    trend = http.get("/api/v1/groups/rt-nmc/trend").json()["items"]
    nmc = closed.join(cells.select("cell_id", "group"), on="cell_id").filter(pl.col("group") == "rt-nmc")
    assert [t["cycle"] for t in trend] == sorted(nmc.get_column("cycle").unique().to_list())
    assert sum(t["n"] for t in trend) == nmc.height
