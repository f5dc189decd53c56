"""Read endpoints over a real server: cells (filters, pagination), cycles, steps,
measurements (range, downsampling), trends, groups, deep dive, outliers, alerts + ack."""

from __future__ import annotations

import httpx
import polars as pl
import pytest
from tests.api.conftest import ARROW, AUTH, arrow_bytes, cycling_frame, streamed_cycles

GROUP = "reads-grp"
#: Capacities of the group's cells, Ah; the last is the outlier.
CAPACITIES = [2.0, 2.01, 1.99, 2.02, 1.98, 2.005, 1.4]
CELLS = [f"reads-{k}" for k in range(len(CAPACITIES))]
HOT = "reads-hot"


@pytest.fixture(scope="module")
def fleet(http: httpx.Client) -> dict[str, pl.DataFrame]:
    frames = {}
    for k, (cid, cap) in enumerate(zip(CELLS, CAPACITIES, strict=True)):
        r = http.put(f"/api/v1/cells/{cid}", headers=AUTH, json={
            "group": GROUP, "chemistry": "NMC" if k % 2 == 0 else "LFP", "test_type": "cc",
            "nominal_capacity_ah": 2.0, "v_min": 2.5, "v_max": 4.2,
            "attributes": {"rig": f"R{k % 3}", "slot": k}})
        assert r.status_code == 200, r.text
        frames[cid] = cycling_frame(cid, cycles=4, capacity_ah=cap)
    frames[HOT] = cycling_frame(HOT, cycles=2, temperature_c=70.0)
    batch = pl.concat(list(frames.values()))
    r = http.post("/api/v1/measurements", content=arrow_bytes(batch),
                  headers={**AUTH, "Content-Type": ARROW})
    assert r.status_code == 200 and r.json()["accepted"] == batch.height, r.text
    return frames


def test_cell_detail_and_404(http: httpx.Client, fleet: dict[str, pl.DataFrame]) -> None:
    cid = CELLS[0]
    cell = http.get(f"/api/v1/cells/{cid}").json()
    assert cell["group"] == GROUP and cell["attributes"] == {"rig": "R0", "slot": 0}
    assert cell["n_measurements"] == fleet[cid].height
    assert cell["n_cycles"] == 4 and cell["n_closed_cycles"] == 3
    assert cell["latest_cycle"]["cycle"] == 4 and cell["latest_cycle"]["status"] == "open"
    assert cell["first_ts"] == fleet[cid]["ts"][0]
    for suffix in ("", "/cycles", "/steps", "/measurements", "/trend"):
        r = http.get(f"/api/v1/cells/no-such-cell{suffix}")
        assert r.status_code == 404, suffix
        assert r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", [
    "/api/v1/cells/" + "x" * 257,
    "/api/v1/cells/a%01b",
    "/api/v1/cells?limit=0",
    "/api/v1/cells?limit=100000",
    "/api/v1/cells?offset=-1",
    "/api/v1/cells?attr=nocolon",
    "/api/v1/cells?attr=group:x",
    "/api/v1/cells/x/cycles?limit=10001",
    "/api/v1/cells/x/cycles?status=half",
    "/api/v1/cells/x/steps?cycle=99999999999",
    "/api/v1/cells/x/measurements?max_points=0",
    "/api/v1/cells/x/measurements?start_ts=nan",
    "/api/v1/cells/x/measurements?start_ts=5&end_ts=4",
    "/api/v1/cells/x/trend?metric=bogus",
    "/api/v1/groups/g/trend?metric=bogus",
    "/api/v1/groups/g/trend?group_key=a%20b",
    "/api/v1/groups/g/trend?group_key=bad'key",
    "/api/v1/groups/g/cycles/abc",
    "/api/v1/groups/g/cycles/-1",
    "/api/v1/alerts?limit=5000",
    "/api/v1/alerts?since_id=-3",
    "/api/v1/alerts?acknowledged=maybe",
])
def test_bad_parameters_are_422(http: httpx.Client, path: str) -> None:
    r = http.get(path)
    assert r.status_code == 422, (path, r.text)
    err = r.json()["error"]
    assert err["message"] and err["field"], err


def test_cells_filters_and_pagination(http: httpx.Client, fleet: dict[str, pl.DataFrame]) -> None:
    page = http.get("/api/v1/cells", params={"group": GROUP, "limit": 3}).json()
    assert page["total"] == len(CELLS) and page["limit"] == 3 and page["offset"] == 0
    assert [c["cell_id"] for c in page["items"]] == sorted(CELLS)[:3]
    seen = [c["cell_id"] for c in page["items"]]
    while page["next_offset"] is not None:
        page = http.get("/api/v1/cells", params={"group": GROUP, "limit": 3,
                                                 "offset": page["next_offset"]}).json()
        seen += [c["cell_id"] for c in page["items"]]
    assert seen == sorted(CELLS)
    nmc = http.get("/api/v1/cells", params={"group": GROUP, "chemistry": "NMC"}).json()
    assert {c["cell_id"] for c in nmc["items"]} == {CELLS[k] for k in range(0, len(CELLS), 2)}
    rig = http.get("/api/v1/cells", params=[("attr", "rig:R1"), ("group", GROUP)]).json()
    assert {c["cell_id"] for c in rig["items"]} == {CELLS[k] for k in range(len(CELLS)) if k % 3 == 1}
    either = http.get("/api/v1/cells", params=[("attr", "rig:R1"), ("attr", "rig:R2"),
                                               ("group", GROUP)]).json()
    assert either["total"] == sum(1 for k in range(len(CELLS)) if k % 3 in (1, 2))
    none = http.get("/api/v1/cells", params={"group": "no-such-group"}).json()
    assert none == {"items": [], "total": 0, "limit": 100, "offset": 0, "next_offset": None}


def test_put_cell_validates_and_replaces(http: httpx.Client) -> None:
    url = "/api/v1/cells/put-1"
    assert http.put(url, json={"group": "a"}).status_code == 401
    r = http.put(url, headers=AUTH, json={"group": "a", "v_min": 4.0, "v_max": 3.0})
    assert r.status_code == 422 and r.json()["error"]["field"] == "v_min"
    r = http.put(url, headers=AUTH, json={"group": "a", "nominal_capacity_ah": 0})
    assert r.status_code == 422 and r.json()["error"]["field"] == "nominal_capacity_ah"
    r = http.put(url, headers=AUTH, json={"group": "a", "colour": "red"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "colour"
    r = http.put(url, headers=AUTH, content=b"{not json")
    assert r.status_code == 422
    r = http.put(url, headers={**AUTH, "Content-Type": "application/json"},
                 content=b'{"attributes": {"a": Infinity}}')
    assert r.status_code == 422 and r.json()["error"]["field"] == "attributes"
    r = http.put(url, headers=AUTH, json={"group": "a", "chemistry": "LFP", "attributes": {"k": 1}})
    assert r.status_code == 200 and r.json()["chemistry"] == "LFP"
    r = http.put(url, headers=AUTH, json={"group": "b"})
    assert r.json()["group"] == "b" and r.json()["chemistry"] is None and r.json()["attributes"] == {}


def test_cycles_equal_the_engine(http: httpx.Client, fleet: dict[str, pl.DataFrame]) -> None:
    cid = CELLS[1]
    cells = pl.DataFrame({"cell_id": [cid], "nominal_capacity_ah": [2.0]})
    expected = streamed_cycles(fleet[cid], cells=cells).filter(pl.col("status") == "closed")
    got = http.get(f"/api/v1/cells/{cid}/cycles", params={"status": "closed"}).json()
    assert got["cell_id"] == cid and got["next_offset"] is None
    assert pl.DataFrame(got["items"], schema=expected.schema).equals(expected.fill_nan(None))
    page = http.get(f"/api/v1/cells/{cid}/cycles", params={"limit": 2, "offset": 1}).json()
    assert [c["cycle"] for c in page["items"]] == [2, 3] and page["next_offset"] == 3
    opened = http.get(f"/api/v1/cells/{cid}/cycles", params={"status": "open"}).json()["items"]
    assert [c["cycle"] for c in opened] == [4]


def test_steps(http: httpx.Client, fleet: dict[str, pl.DataFrame]) -> None:
    cid = CELLS[2]
    steps = http.get(f"/api/v1/cells/{cid}/steps").json()["items"]
    assert [s["kind"] for s in steps[:4]] == ["rest", "charge", "rest", "discharge"]
    two = http.get(f"/api/v1/cells/{cid}/steps", params={"cycle": 2}).json()["items"]
    assert {s["cycle"] for s in two} == {2} and len(two) == 4
    page = http.get(f"/api/v1/cells/{cid}/steps", params={"limit": 5}).json()
    assert len(page["items"]) == 5 and page["next_offset"] == 5


def test_measurements_range_and_downsampling(http: httpx.Client, fleet: dict[str, pl.DataFrame]) -> None:
    cid = CELLS[3]
    frame = fleet[cid]
    ts = frame.get_column("ts")
    lo, hi = float(ts[100]), float(ts[299])
    got = http.get(f"/api/v1/cells/{cid}/measurements",
                   params={"start_ts": lo, "end_ts": hi, "max_points": 1000}).json()
    assert [m["ts"] for m in got["items"]] == ts[100:300].to_list()
    assert got["items"][0]["voltage_v"] == frame["voltage_v"][100]
    small = http.get(f"/api/v1/cells/{cid}/measurements", params={"max_points": 100}).json()
    assert 50 <= len(small["items"]) <= 100 and small["max_points"] == 100
    stamps = [m["ts"] for m in small["items"]]
    assert stamps == sorted(stamps) and set(stamps) <= set(ts.to_list())


def test_cell_trend(http: httpx.Client, fleet: dict[str, pl.DataFrame]) -> None:
    trend = http.get(f"/api/v1/cells/{CELLS[0]}/trend").json()
    assert trend["cell_id"] == CELLS[0] and trend["metric"] == "retention"
    assert trend["n_cycles"] == 3
    other = http.get(f"/api/v1/cells/{CELLS[0]}/trend", params={"metric": "discharge_ah"}).json()
    assert other["metric"] == "discharge_ah" and other["n_cycles"] == 3


def test_group_trend(http: httpx.Client, fleet: dict[str, pl.DataFrame]) -> None:
    out = http.get(f"/api/v1/groups/{GROUP}/trend", params={"metric": "discharge_ah"}).json()
    assert out["group"] == GROUP and out["group_key"] == "group" and out["status"] == "closed"
    assert [r["cycle"] for r in out["items"]] == [1, 2, 3]
    assert all(r["n"] == len(CELLS) for r in out["items"])
    caps = [http.get(f"/api/v1/cells/{c}/cycles", params={"status": "closed"}).json()["items"][0]
            ["discharge_ah"] for c in CELLS]
    assert out["items"][0]["mean"] == pytest.approx(sum(caps) / len(caps), rel=1e-12)
    assert out["items"][0]["min"] == min(caps) and out["items"][0]["max"] == max(caps)
    opened = http.get(f"/api/v1/groups/{GROUP}/trend", params={"status": "open"}).json()
    assert [r["cycle"] for r in opened["items"]] == [4]
    by_chem = http.get("/api/v1/groups/LFP/trend", params={"group_key": "chemistry"}).json()
    assert by_chem["group_key"] == "chemistry" and by_chem["items"][0]["n"] >= 3
    by_attr = http.get("/api/v1/groups/R0/trend", params={"group_key": "rig"}).json()
    assert by_attr["items"][0]["n"] == sum(1 for k in range(len(CELLS)) if k % 3 == 0)
    assert http.get("/api/v1/groups/no-such-group/trend").status_code == 404


def test_group_deep_dive_and_outliers(http: httpx.Client, fleet: dict[str, pl.DataFrame]) -> None:
    latest = http.get(f"/api/v1/groups/{GROUP}/cycles/latest").json()
    assert latest["cycle"] == 3 and latest["metric"] == "discharge_ah"
    items = latest["items"]
    assert len(items) == len(CELLS)
    assert items[0]["cell_id"] == CELLS[-1] and items[0]["outlier"] is True
    assert not any(i["outlier"] for i in items[1:])
    devs = [abs(i["pct_deviation"]) for i in items]
    assert devs == sorted(devs, reverse=True)
    two = http.get(f"/api/v1/groups/{GROUP}/cycles/2").json()
    assert two["cycle"] == 2 and {i["cycle"] for i in two["items"]} == {2}
    empty = http.get(f"/api/v1/groups/{GROUP}/cycles/99").json()
    assert empty["cycle"] == 99 and empty["items"] == []
    assert http.get("/api/v1/groups/no-such-group/cycles/latest").status_code == 404
    out = http.get("/api/v1/outliers").json()
    ours = [o for o in out["items"] if o["group"] == GROUP]
    assert [o["cell_id"] for o in ours] == [CELLS[-1]] and ours[0]["cycle"] == 3
    every = http.get("/api/v1/outliers", params={"latest_only": "false"}).json()
    assert {o["cycle"] for o in every["items"] if o["group"] == GROUP} == {1, 2, 3}


def test_alerts_and_ack(http: httpx.Client, fleet: dict[str, pl.DataFrame]) -> None:
    alerts = http.get("/api/v1/alerts", params={"limit": 1000}).json()["items"]
    hot = [a for a in alerts if a["cell_id"] == HOT and a["rule"] == "over_temperature"]
    assert hot and all(a["value"] == 70.0 and a["threshold"] == 60.0 for a in hot)
    outlier = [a for a in alerts if a["cell_id"] == CELLS[-1] and a["rule"] == "outlier_discharge_ah"]
    assert outlier
    ids = [a["id"] for a in alerts]
    assert ids == sorted(ids, reverse=True)
    target = hot[0]["id"]
    newer = http.get("/api/v1/alerts", params={"since_id": target}).json()["items"]
    assert all(a["id"] > target for a in newer)
    url = f"/api/v1/alerts/{target}/ack"
    assert http.post(url).status_code == 401
    assert http.post(url, headers={"Authorization": "Bearer nope"}).status_code == 403
    r = http.post(url, headers=AUTH, json={"by": "tester"})
    assert r.status_code == 200 and r.json() == {"id": target, "acknowledged": True,
                                                 "acknowledged_by": "tester"}
    assert http.post(url, headers=AUTH).status_code == 200  # idempotent
    acked = http.get("/api/v1/alerts", params={"acknowledged": "true", "limit": 1000}).json()["items"]
    row = next(a for a in acked if a["id"] == target)
    assert row["acknowledged"] is True and row["acknowledged_by"] == "tester"
    unacked = http.get("/api/v1/alerts", params={"acknowledged": "false", "limit": 1000}).json()
    assert target not in {a["id"] for a in unacked["items"]}
    assert http.post("/api/v1/alerts/999999999/ack", headers=AUTH).status_code == 404
    assert http.post("/api/v1/alerts/0/ack", headers=AUTH).status_code == 422
    r = http.post(url, headers=AUTH, json={"by": "x" * 500})
    assert r.status_code == 422 and r.json()["error"]["field"] == "by"
