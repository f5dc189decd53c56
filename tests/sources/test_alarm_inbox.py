"""The alarm inbox end to end: good, partly bad and malformed files, half-written files,
restart."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from chargetracker.ml import Predictor
from chargetracker.sources.alarm_inbox import AlarmInbox
from chargetracker.stores.models import load_default_model
from chargetracker.stores.packs import open_pack_store

DATA = Path(__file__).resolve().parents[1] / "data"
SERIES = DATA / "bms-series_samples.csv"
BATCH = DATA / "bms-test_batch_samples-head.csv"


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(load_default_model())


def _aged(path: Path) -> None:
    old = path.stat().st_mtime - 60
    os.utime(path, (old, old))


def test_inbox_end_to_end_and_restart(tmp_path: Path, predictor: Predictor) -> None:
    inbox_dir = tmp_path / "inbox"
    url = f"duckdb:///{tmp_path / 'ct.duckdb'}"
    inbox_dir.mkdir()
    lines = SERIES.read_text().splitlines()
    (inbox_dir / "fleet.csv").write_text("\n".join(lines[:400] + ["X,2020-01-01,abc,1,3.7,3.6,"
                                                                  "25,24,0"]) + "\n")
    shutil.copy(BATCH, inbox_dir / "batch84.csv")
    (inbox_dir / "broken.csv").write_text("VIN,Date,TotalVoltage\nA,2020-01-01,1\n")
    (inbox_dir / "upload.csv.part").write_text("VIN,Da")
    for p in inbox_dir.iterdir():
        _aged(p)
    # Being written right now: fresh mtime, so not yet settled.
    (inbox_dir / "fresh.csv").write_text(SERIES.read_text())

    with open_pack_store(url) as store:
        inbox = AlarmInbox(inbox_dir, predictor, store, settle_s=30)
        res = inbox.poll()
        assert sorted(res.processed) == ["batch84.csv", "fleet.csv"]
        assert res.rejected == ["broken.csv"]
        reason = (inbox_dir / "rejected" / "broken.csv.reason.txt").read_text()
        assert "total_current_a" in reason
        assert (inbox_dir / "processed" / "fleet.csv.rejected.csv").read_text().count("\n") == 2
        assert (inbox_dir / "upload.csv.part").exists() and (inbox_dir / "fresh.csv").exists()
        n_first = store.count_predictions()
        assert n_first == res.predictions > 40
        assert set(store.predictions(limit=1000)["source"]) == {"batch"}

    # Restart: the same content arrives again (a crash before the move), plus nothing new.
    shutil.copy(inbox_dir / "processed" / "batch84.csv", inbox_dir / "batch84.csv")
    _aged(inbox_dir / "batch84.csv")
    with open_pack_store(url) as store:
        inbox = AlarmInbox(inbox_dir, predictor, store, settle_s=30)
        res = inbox.poll()
        assert res.processed == [] and res.skipped_duplicates == 1
        assert store.count_predictions() == n_first
        assert not (inbox_dir / "batch84.csv").exists()
        files = store.inbox_files()
        assert sorted(files["status"].to_list()) == ["processed", "processed", "rejected"]


def _wait(cond, timeout: float = 90.0) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_serve_alarm_inbox_scores_once_across_restarts(tmp_path: Path) -> None:
    """``serve --alarm-inbox``: a dropped file is scored and queryable over HTTP; after a
    restart the same file dropped again is moved aside, not scored twice."""
    from tests.api.conftest import start_server

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    lines = SERIES.read_text().splitlines()
    vin = lines[1].split(",")[0]
    body = "\n".join([lines[0], *[x for x in lines[1:] if x.startswith(vin + ",")]]) + "\n"

    def drop(name: str) -> None:
        part = inbox / f"{name}.part"  # written aside, renamed into place when complete
        part.write_text(body)
        _aged(part)
        os.replace(part, inbox / name)

    args = ("--no-dashboard", "--alarm-inbox", str(inbox), "--alarm-interval", "0.2")
    drop("day1.csv")
    server = start_server(tmp_path, *args)
    try:
        with server.client() as c:
            def scored() -> bool:
                r = c.get("/api/v1/alarms/predictions", params={"vin": vin, "limit": 1})
                return r.status_code == 200 and r.json()["total"] > 0
            _wait(scored)
            first = c.get("/api/v1/alarms/predictions",
                          params={"vin": vin, "limit": 1000}).json()
        assert (inbox / "processed" / "day1.csv").exists()
        assert first["total"] > 0 and {r["source"] for r in first["items"]} == {"batch"}
    finally:
        server.stop()

    drop("day1.csv")  # the same file again (a producer retrying), then a restart
    server = start_server(tmp_path, *args)
    try:
        _wait(lambda: not (inbox / "day1.csv").exists())
        with server.client() as c:
            again = c.get("/api/v1/alarms/predictions",
                          params={"vin": vin, "limit": 1000}).json()
    finally:
        server.stop()
    assert again["total"] == first["total"]
    assert [r["created_at"] for r in again["items"]] == [r["created_at"] for r in first["items"]]
    assert len(list((inbox / "processed").glob("day1*.csv"))) == 2
