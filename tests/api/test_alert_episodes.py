"""``GET /api/v1/alerts/episodes`` on a live server: a condition that lasts over several
batches is one episode (first/last cycle, occurrences, open) and one alert; the episode
shows its notification's acknowledgement; filters and bad parameters."""

from __future__ import annotations

import httpx
import polars as pl
from tests.api.conftest import ARROW, AUTH, arrow_bytes, cycling_frame

HOT = "episodes-hot"


def _post(http: httpx.Client, frame: pl.DataFrame) -> None:
    r = http.post("/api/v1/measurements", content=arrow_bytes(frame),
                  headers={**AUTH, "Content-Type": ARROW})
    assert r.status_code == 200, r.text


def test_a_lasting_condition_is_one_episode_with_its_acknowledgement(http: httpx.Client) -> None:
    frame = cycling_frame(HOT, cycles=4, temperature_c=70.0, t0=1.75e9)
    half = frame.height // 2
    _post(http, frame[:half])
    _post(http, frame[half:])
    alerts = [a for a in http.get("/api/v1/alerts", params={"limit": 1000}).json()["items"]
              if a["cell_id"] == HOT]
    assert [a["rule"] for a in alerts] == ["over_temperature"]
    body = http.get("/api/v1/alerts/episodes", params={"cell_id": HOT}).json()
    [ep] = body["items"]
    cycles = http.get(f"/api/v1/cells/{HOT}/cycles").json()["items"]
    assert (ep["rule"], ep["state"], ep["severity"]) == ("over_temperature", "open", "critical")
    assert ep["start_cycle"] == min(c["cycle"] for c in cycles) == alerts[0]["cycle"]
    assert ep["last_cycle"] == max(c["cycle"] for c in cycles)
    assert ep["occurrences"] == len(cycles) > 1
    assert ep["worst_value"] == 70.0 and ep["threshold"] == 60.0 and ep["notified"] is True
    assert ep["start_ts"] == alerts[0]["ts"] and ep["alert_id"] == alerts[0]["id"]
    assert ep["acknowledged"] is False
    hot = next(c for c in body["counts"] if c["rule"] == "over_temperature")
    assert hot["open"] >= 1 and set(hot) == {"rule", "open", "resolved", "suppressed"}
    r = http.post(f"/api/v1/alerts/{ep['alert_id']}/ack", headers=AUTH, json={"by": "ops"})
    assert r.status_code == 200
    again = http.get("/api/v1/alerts/episodes", params={"cell_id": HOT, "state": "open"}).json()
    assert [(e["acknowledged"], e["acknowledged_by"]) for e in again["items"]] == [(True, "ops")]
    assert http.get("/api/v1/alerts/episodes", params={"cell_id": HOT, "state": "resolved"}).json()["items"] == []
    assert http.get("/api/v1/alerts/episodes", params={"cell_id": HOT, "notified": "false"}).json()["items"] == []
    for bad in ({"state": "closed"}, {"limit": 0}, {"offset": -1}, {"rule": "a b"}, {"notified": "maybe"}):
        assert http.get("/api/v1/alerts/episodes", params=bad).status_code == 422, bad
