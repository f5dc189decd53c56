"""POST /api/v1/measurements over a real server: every format, partial acceptance,
malformed input, wrong types, media types and the body size limit."""

from __future__ import annotations

import json

import httpx
import polars as pl
import pytest
from tests.api.conftest import (
    ARROW,
    AUTH,
    JSON,
    MAX_BODY_MB,
    PARQUET,
    LiveServer,
    arrow_bytes,
    cycling_frame,
    json_rows,
    parquet_bytes,
)

URL = "/api/v1/measurements"


def _post(http: httpx.Client, content: bytes | str, ctype: str | None, **kw: object) -> httpx.Response:
    headers = dict(AUTH)
    if ctype is not None:
        headers["Content-Type"] = ctype
    return http.post(URL, content=content, headers=headers, **kw)  # type: ignore[arg-type]


def _error(r: httpx.Response) -> dict[str, object]:
    body = r.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "field", "details"}, body
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("fmt", ["json", "envelope", "columnar", "ndjson", "csv", "arrow", "parquet"])
def test_every_format_is_accepted(http: httpx.Client, fmt: str) -> None:
    cid = f"fmt-{fmt}"
    frame = cycling_frame(cid, cycles=2)
    if fmt == "json":
        r = _post(http, json_rows(frame), JSON)
    elif fmt == "envelope":
        body = {"measurements": frame.to_dicts(),
                "cells": [{"cell_id": cid, "group": "formats", "chemistry": "NMC",
                           "nominal_capacity_ah": 2.0, "attributes": {"rig": "A"}}]}
        r = _post(http, json.dumps(body), "application/json; charset=utf-8")
    elif fmt == "columnar":
        r = _post(http, json.dumps({"measurements": frame.to_dict(as_series=False)}), JSON)
    elif fmt == "ndjson":
        r = _post(http, frame.write_ndjson(), "application/x-ndjson")
    elif fmt == "csv":
        r = _post(http, frame.write_csv(), "text/csv")
    elif fmt == "arrow":
        r = _post(http, arrow_bytes(frame), ARROW)
    else:
        r = _post(http, parquet_bytes(frame), PARQUET)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] == frame.height
    assert out["rejected"] == 0 and out["errors"] == []
    assert out["format"] == ("json" if fmt in ("envelope", "columnar") else fmt)
    assert out["closed_cycles"] >= 1
    cell = http.get(f"/api/v1/cells/{cid}").json()
    assert cell["n_measurements"] == frame.height
    if fmt == "envelope":
        assert out["cells_registered"] == 1
        assert cell["group"] == "formats" and cell["attributes"] == {"rig": "A"}
        assert cell["nominal_capacity_ah"] == 2.0


def test_mixed_batch_keeps_good_rows_and_names_bad_ones(http: httpx.Client) -> None:
    frame = cycling_frame("mixed-1", cycles=1).head(200)
    rows = frame.to_dicts()
    rows[3]["voltage_v"] = None
    rows[7]["current_a"] = 1e9            # outside the plausible range
    rows[11]["cell_id"] = ""
    rows[12]["temperature_c"] = 1e6
    r = _post(http, json.dumps(rows), JSON)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] == 196 and out["rejected"] == 4
    errors = {e["row"]: (e["field"], e["reason"]) for e in out["errors"]}
    assert errors[3] == ("voltage_v", "missing value")
    assert errors[7][0] == "current_a" and "range" in errors[7][1]
    assert errors[11][0] == "cell_id"
    assert errors[12][0] == "temperature_c"
    assert out["errors_truncated"] is False


def test_nothing_acceptable_is_422_with_every_row(http: httpx.Client) -> None:
    rows = [{"cell_id": "allbad", "ts": 1.7e9 + k, "voltage_v": float("nan"), "current_a": 1.0}
            for k in range(5)]
    r = _post(http, json.dumps(rows), JSON)  # json.dumps writes NaN; the row is refused
    assert r.status_code == 422
    err = _error(r)
    assert err["code"] == "no_acceptable_rows" and err["field"] == "voltage_v"
    details = err["details"]
    assert isinstance(details, dict)
    assert details["accepted"] == 0 and details["rejected"] == 5
    assert [e["row"] for e in details["errors"]] == [0, 1, 2, 3, 4]
    assert all(e["reason"] == "NaN" for e in details["errors"])


def _dead_letters_stored(http: httpx.Client) -> int:
    text = http.get("/metrics").text
    line = next(x for x in text.splitlines() if x.startswith("chargetracker_dead_letters_stored"))
    return int(float(line.split()[-1]))


def test_replay_is_idempotent_acknowledged_and_not_a_dead_letter(http: httpx.Client) -> None:
    """Re-sending a stored batch (a client retrying after a timeout) is acknowledged as
    already stored: 200, not counted twice, no dead letters (issue 10 #9; on main 422
    ``no_acceptable_rows`` and the dead-letter table filled again)."""
    frame = cycling_frame("replay-1", cycles=1).head(100)
    assert _post(http, arrow_bytes(frame), ARROW).json()["accepted"] == 100
    dead_before = _dead_letters_stored(http)
    for _ in range(2):
        again = _post(http, arrow_bytes(frame), ARROW)
        assert again.status_code == 200, again.text
        body = again.json()
        assert (body["accepted"], body["already_stored"], body["rejected"]) == (0, 100, 0)
    assert _dead_letters_stored(http) == dead_before
    assert http.get("/api/v1/cells/replay-1").json()["n_measurements"] == 100
    # Half re-sent, half new: the new half is taken in, the rest acknowledged.
    more = cycling_frame("replay-1", cycles=1).head(150).tail(100)
    body = _post(http, json_rows(more), JSON).json()
    assert (body["accepted"], body["already_stored"], body["rejected"]) == (50, 50, 0)
    assert http.get("/api/v1/cells/replay-1").json()["n_measurements"] == 150


def test_resend_with_different_values_is_a_conflict(http: httpx.Client) -> None:
    """A row at a stored timestamp with other values is not a re-send: a dead letter."""
    frame = cycling_frame("replay-2", cycles=1).head(20)
    assert _post(http, json_rows(frame), JSON).json()["accepted"] == 20
    changed = frame.with_columns(pl.col("voltage_v") + 0.5)
    r = _post(http, json_rows(changed), JSON)
    assert r.status_code == 422 and _error(r)["code"] == "no_acceptable_rows"
    assert _error(r)["details"]["already_stored"] == 0  # type: ignore[index]


@pytest.mark.parametrize(("body", "ctype", "field", "needle"), [
    (b'[{"cell_id": "x", "ts": 1', JSON, None, "line 1 column"),
    (b'{"measurements": [1, 2]}', JSON, "measurements", "expected a measurement object"),
    (b'"hello"', JSON, None, "expected a JSON array"),
    (b'{"measurement": []}', JSON, "measurement", "unknown key"),
    (b'[{"cell_id": "x", "ts": 1, "voltage_v": "abc", "current_a": 1}]', JSON, "voltage_v", "abc"),
    (b'[{"cell_id": "x", "ts": 1, "voltage_v": true, "current_a": 1}]', JSON, "voltage_v", "boolean"),
    (b'[{"cell_id": "x", "ts": 1, "voltage_v": [3], "current_a": 1}]', JSON, "voltage_v", "array"),
    (b'[{"cell_id": "x", "ts": 1, "voltage_v": 3, "current_a": 1, "cycle": 1.5}]', JSON, "cycle", "integer"),
    (b'[{"cell_id": "x", "ts": "yesterday", "voltage_v": 3, "current_a": 1}]', JSON, "ts", "yesterday"),
    (b'[{"cell_id": {"a": 1}, "ts": 1, "voltage_v": 3, "current_a": 1}]', JSON, "cell_id", "string"),
    (b'[{"cell_id": "x", "ts": 1, "voltage_v": 3}]', JSON, "current_a", "missing required column"),
    (b'{"measurements": {"cell_id": ["a", "b"], "ts": [1]}}', JSON, "measurements", "lengths"),
    (b'{"cells": [{"cell_id": "c", "nominal_capacity_ah": -1}]}', JSON, "cells[0].nominal_capacity_ah", "greater"),
    (b'{"cells": [{"cell_id": "c", "colour": "red"}]}', JSON, "cells[0].colour", "xtra"),
    (b'[{"cell_id": "x", "ts": 1, "voltage_v": 3, "current_a": 1},'
     b' {"cell_id": "x", "ts": 2, "voltage_v": false, "current_a": 1}]', JSON, "voltage_v", "boolean"),
    (b'{"measurements": {"cell_id": ["a", "a"], "ts": [1, 2], "voltage_v": [3, true], '
     b'"current_a": [0, 0]}}', JSON, "voltage_v", "boolean"),
    (b'{"measurements": {"cell_id": ["a", "a"], "ts": [1, "2"], "voltage_v": [3, 3], '
     b'"current_a": [0, 0]}}', JSON, "ts", "mixed value types"),
    (b'{"cells": [{"cell_id": "c", "attributes": {"x": NaN}}]}', JSON, "cells[0].attributes", "NaN"),
    (b'{"cell_id": "x", "ts": 1, "voltage_v": 3, "current_a": true}', "application/x-ndjson",
     "current_a", "boolean"),
    (b'{"cell_id": "x"}\nnot json\n', "application/x-ndjson", None, "line 2"),
    (b"cell_id,ts,voltage_v,current_a\nx,1,3.5,1\nx,2,volts,1\n", "text/csv", "voltage_v", "volts"),
    (b"\x00\x01garbage", ARROW, None, "Arrow IPC stream"),
    (b"PAR1 not really", PARQUET, None, "Parquet"),
    (b"   ", JSON, None, "empty"),
    (b"[]", JSON, None, "no measurements"),
    (b"[\xff\xfe]", JSON, None, "UTF-8"),
])
def test_bad_bodies_are_422_naming_the_problem(http: httpx.Client, body: bytes, ctype: str,
                                               field: str | None, needle: str) -> None:
    r = _post(http, body, ctype)
    assert r.status_code == 422, r.text
    err = _error(r)
    assert needle in str(err["message"]), err
    if field is not None:
        assert err["field"] == field, err


def test_lenient_where_unambiguous(http: httpx.Client) -> None:
    """Integers for floats, integral floats for labels, numeric text, non-canonical
    columns of any shape (reported, never decoded)."""
    body = {"measurements": {
        "cell_id": ["lenient", "lenient", "lenient"], "ts": [1.7e9, 1.7e9 + 1, "1700000002"],
        "voltage_v": [3, 3.5, 3.25], "current_a": [0, 0.0, 0], "cycle": [1.0, 1, None],
        "notes": [[1], {"a": 2}, "free text"]}}
    r = _post(http, json.dumps(body), JSON)
    assert r.status_code == 422 and _error(r)["field"] == "ts"  # a string among numbers
    body["measurements"]["ts"] = [1.7e9, 1.7e9 + 1, 1.7e9 + 2]
    r = _post(http, json.dumps(body), JSON)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 3 and r.json()["ignored_columns"] == ["notes"]
    csv = "cell_id,ts,voltage_v,current_a,cycle\nlenient-csv,1.5,3.5,0,2.0\nlenient-csv,2.5,3.5,0,\n"
    r = _post(http, csv, "text/csv")
    assert r.status_code == 200 and r.json()["accepted"] == 2, r.text


def test_wrong_type_names_the_row(http: httpx.Client) -> None:
    rows = [{"cell_id": "x", "ts": k, "voltage_v": 3.0, "current_a": 1.0} for k in range(10)]
    rows[6]["voltage_v"] = "n/a"  # type: ignore[assignment]
    err = _error(_post(http, json.dumps(rows), JSON))
    assert err["field"] == "voltage_v" and err["details"] == {"row": 6}


def test_arrow_with_wrong_column_type_is_422(http: httpx.Client) -> None:
    frame = pl.DataFrame({"cell_id": ["a"], "ts": [1.0], "voltage_v": [True], "current_a": [1.0]})
    err = _error(_post(http, arrow_bytes(frame), ARROW))
    assert err["field"] == "voltage_v" and "boolean" in str(err["message"])


def test_timestamps_and_extra_columns(http: httpx.Client) -> None:
    frame = cycling_frame("ts-types", cycles=1).head(50)
    typed = frame.with_columns(
        pl.from_epoch((pl.col("ts") * 1e6).cast(pl.Int64), time_unit="us").alias("ts"),
        pl.lit("x").alias("operator"))
    r = _post(http, arrow_bytes(typed), ARROW)
    assert r.status_code == 200, r.text
    assert r.json()["ignored_columns"] == ["operator"]
    stored = http.get("/api/v1/cells/ts-types/measurements").json()["items"]
    assert [m["ts"] for m in stored] == frame.get_column("ts").to_list()
    iso = [{"cell_id": "ts-iso", "ts": "2024-01-01T00:00:00Z", "voltage_v": 3.5, "current_a": 0.0},
           {"cell_id": "ts-iso", "ts": "2024-01-01T01:00:01+01:00", "voltage_v": 3.5, "current_a": 0.0}]
    r = _post(http, json.dumps(iso), JSON)
    assert r.status_code == 200, r.text
    stored = http.get("/api/v1/cells/ts-iso/measurements").json()["items"]
    assert [m["ts"] for m in stored] == [1704067200.0, 1704067201.0]


@pytest.mark.parametrize("ctype", [None, "application/xml", "text/plain"])
def test_unsupported_media_type_is_415(http: httpx.Client, ctype: str | None) -> None:
    r = _post(http, b"<x/>", ctype)
    assert r.status_code == 415
    err = _error(r)
    assert err["field"] == "Content-Type" and "application/vnd.apache.arrow.stream" in str(err["message"])


def test_body_limit_declared_and_streamed(http: httpx.Client, live: LiveServer) -> None:
    big = b"[" + b" " * (MAX_BODY_MB * 2**20 + 10) + b"]"
    r = _post(http, big, JSON)  # Content-Length declared: refused before reading
    assert r.status_code == 413
    err = _error(r)
    assert err["code"] == "payload_too_large" and f"{MAX_BODY_MB * 2**20} bytes" in str(err["message"])

    def chunks():  # no Content-Length: counted while streaming
        for k in range(0, len(big), 1 << 20):
            yield big[k:k + (1 << 20)]

    r = http.post(URL, content=chunks(), headers={**AUTH, "Content-Type": JSON})
    assert r.status_code == 413 and _error(r)["code"] == "payload_too_large"
    assert http.get("/healthz").status_code == 200  # the server is fine afterwards


def test_future_timestamp_is_a_dead_letter_and_the_cell_goes_on(http: httpx.Client) -> None:
    """One sample stamped year 3000 is refused with the reason (future horizon); later
    real samples of the cell are accepted, and /metrics lag is not negative."""
    import time

    now = time.time()
    frame = cycling_frame("future-1", cycles=1, t0=now - 3600.0).head(30)
    assert _post(http, json_rows(frame.head(10)), JSON).json()["accepted"] == 10
    bad = [{"cell_id": "future-1", "ts": 32503680000.0, "voltage_v": 3.7, "current_a": 0.5}]
    r = _post(http, json.dumps(bad), JSON)
    assert r.status_code == 422
    assert "future horizon" in _error(r)["message"] and _error(r)["field"] == "ts"
    assert _post(http, json_rows(frame.tail(20)), JSON).json()["accepted"] == 20
    lag = next(x for x in http.get("/metrics").text.splitlines()
               if x.startswith("chargetracker_pipeline_lag_seconds"))
    assert float(lag.split()[-1]) >= 0.0


def _no_nan(text: str) -> object:
    def refuse(name: str) -> None:
        raise AssertionError(f"non-JSON number {name} in the reply")
    return json.loads(text, parse_constant=refuse)


def test_uncomputable_metrics_are_null_in_the_json(http: httpx.Client) -> None:
    """A metric that cannot be computed is JSON null (docs/metrics.md), never NaN."""
    frame = cycling_frame("nan-json", cycles=1).head(200)   # a charge only: no discharge
    assert _post(http, json_rows(frame), JSON).status_code == 200
    r = http.get("/api/v1/cells/nan-json/cycles")
    assert r.status_code == 200
    items = _no_nan(r.text)
    rows = items["items"] if isinstance(items, dict) else items  # type: ignore[index]
    assert rows, r.text
    assert any(v is None for row in rows for k, v in row.items()
               if k in ("retention", "energy_efficiency", "coulombic_efficiency",
                        "mean_discharge_v", "internal_resistance_ohm"))
