"""POST /api/v1/files: cycler exports uploaded over a real server, read by the same
readers as the CLI, streamed through the pipeline chunk by chunk."""

from __future__ import annotations

from pathlib import Path

import httpx
import polars as pl
from tests.api.conftest import AUTH

from chargetracker.engine import new_state, update
from chargetracker.readers import read_file

DATA = Path(__file__).resolve().parents[1] / "data"
ARBIN = DATA / "arbin_example.csv"
MACCOR = DATA / "maccor_example.001"
ARCHIVE = DATA / "CALCE_CX2-33_prism_LCO_25C_0-100_0.5-0.5C_d_timeseries.csv"


def _upload(http: httpx.Client, path: Path, *, name: str | None = None,
            headers: dict[str, str] | None = None, **params: object) -> httpx.Response:
    with open(path, "rb") as fh:
        return http.post("/api/v1/files", params=params, headers=AUTH if headers is None else headers,
                         files={"file": (name or path.name, fh, "application/octet-stream")})


def test_arbin_upload_detected_and_equal_to_the_engine(http: httpx.Client) -> None:
    r = _upload(http, ARBIN, name="arbin-api.csv", group="uploads", chemistry="LFP",
                nominal_capacity_ah=1.1)
    assert r.status_code == 200, r.text
    out = r.json()
    frame, rejected, _ = read_file(ARBIN, cell_id="arbin-api")
    assert out["file_format"] == "arbin" and out["cell_id"] == "arbin-api"
    assert out["cell_ids"] == ["arbin-api"] and out["filename"] == "arbin-api.csv"
    assert out["accepted"] == frame.height and out["rejected"] == rejected.height == 0
    assert out["bytes"] == ARBIN.stat().st_size and out["chunks"] >= 1
    cell = http.get("/api/v1/cells/arbin-api").json()
    assert cell["group"] == "uploads" and cell["chemistry"] == "LFP"
    assert cell["nominal_capacity_ah"] == 1.1 and cell["attributes"]["format"] == "arbin"
    cells = pl.DataFrame({"cell_id": ["arbin-api"], "nominal_capacity_ah": [1.1]})
    # An upload feeds the live pipeline (no end of data declared): as the streaming engine.
    _, streamed = update(new_state(), frame, cells=cells)
    expected = streamed.cycles.unique(subset=["cell_id", "cycle"], keep="last").sort("cycle")
    got = http.get("/api/v1/cells/arbin-api/cycles", ).json()["items"]
    assert expected.get_column("status").to_list() == ["partial", "open"]
    assert pl.DataFrame(got, schema=expected.schema).equals(expected.fill_nan(None))


def test_maccor_with_explicit_format_and_cell_id(http: httpx.Client) -> None:
    r = _upload(http, MACCOR, format="maccor", cell_id="maccor-upload")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["file_format"] == "maccor" and out["cell_id"] == "maccor-upload"
    assert out["accepted"] == read_file(MACCOR)[0].height
    assert http.get("/api/v1/cells/maccor-upload").json()["nominal_capacity_ah"] == 0.0024


def test_battery_archive_cell_id_from_file_name(http: httpx.Client) -> None:
    out = _upload(http, ARCHIVE).json()
    assert out["file_format"] == "battery_archive"
    assert out["cell_id"] == "CALCE_CX2-33_prism_LCO_25C_0-100_0.5-0.5C_d"


def test_bad_lines_are_reported_and_the_rest_kept(http: httpx.Client, tmp_path: Path) -> None:
    path = tmp_path / "generic-bad.csv"
    path.write_text("ts,voltage_v,current_a\n1,3.5,1\n2,abc,1\n3,3.6,1\n4,3.7,1\n4,3.7,1\n")
    r = _upload(http, path)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["file_format"] == "generic" and out["cell_id"] == "generic-bad"
    assert out["accepted"] == 3 and out["rejected"] == 2
    reader, engine = out["errors"]
    assert reader == {"row": 3, "field": "voltage_v", "reason": "not a number: 'abc'"}  # line 3
    assert engine["field"] == "ts" and "duplicate" in engine["reason"]
    metrics = http.get("/metrics").text
    assert "chargetracker_samples_rejected_total" in metrics


def test_upload_errors(http: httpx.Client, tmp_path: Path) -> None:
    junk = tmp_path / "junk.csv"
    junk.write_text("hello,world\n1,2\n")
    r = _upload(http, junk)
    assert r.status_code == 422 and r.json()["error"]["code"] == "unreadable_file"
    r = _upload(http, ARBIN, format="maccor")
    assert r.status_code == 422
    r = _upload(http, ARBIN, format="excel")
    assert r.status_code == 422 and r.json()["error"]["field"] == "format"
    r = _upload(http, ARBIN, timezone="Mars/Olympus")
    assert r.status_code == 422 and r.json()["error"]["field"] == "timezone"
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    r = _upload(http, empty)
    assert r.status_code == 422 and r.json()["error"]["field"] == "file"
    r = http.post("/api/v1/files", headers=AUTH, data={"not_file": "x"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "file"
    r = http.post("/api/v1/files", headers={**AUTH, "Content-Type": "multipart/form-data; boundary=zz"},
                  content=b"--zz\r\nbroken")
    assert r.status_code == 422
    assert _upload(http, ARBIN, headers={}).status_code == 401
    assert _upload(http, ARBIN, headers={"Authorization": "Bearer wrong"}).status_code == 403
    # Path tricks in the file name stay inside the upload directory.
    r = _upload(http, MACCOR, name="../../etc/passwd.001", format="maccor")
    assert r.status_code == 200 and r.json()["filename"] == "passwd.001"
