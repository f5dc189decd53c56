"""Hostile bodies against a real ``chargetracker serve`` process: each one gets a clear
4xx, the process survives (no SIGSEGV from a native parser), and a good batch still
goes in afterwards. Replies stay small whatever the body holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.api.conftest import LiveServer, start_server

NDJSON = "application/x-ndjson"
ROW = {"cell_id": "h1", "ts": 1.7e9, "voltage_v": 3.7, "current_a": -1.0}


def _deep(n: int) -> str:
    return '{"a":' * n + "1" + "}" * n


def _ndjson_row(extra: str, ts: float = 1.7e9) -> bytes:
    return (json.dumps({**ROW, "ts": ts})[:-1] + f', "x": {extra}}}\n').encode()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Key-less (writes open, as in ``demo``), default body limit."""
    server = start_server(tmp_path_factory.mktemp("hostile"), "--no-dashboard")
    yield server
    server.stop()


HOSTILE: dict[str, tuple[str, bytes]] = {
    "ndjson-deep-object-800": (NDJSON, _ndjson_row(_deep(800))),
    "ndjson-deep-array-5000": (NDJSON, _ndjson_row("[" * 5000 + "]" * 5000)),
    "ndjson-deep-unclosed": (NDJSON, _ndjson_row("[" * 100_000)),
    "ndjson-deep-after-good-lines": (NDJSON, json.dumps(ROW).encode() + b"\n" * 3
                                     + _ndjson_row(_deep(2000))),
    "ndjson-deep-after-unterminated-string": (NDJSON, b'{"cell_id": "a\n' + _ndjson_row(_deep(900))),
    "ndjson-deep-escaped-quotes": (NDJSON, _ndjson_row('"\\\\"' + "," + _deep(900))[:-2] + b"}\n"),
    "json-deep-array": ("application/json", b"[" * 100_000 + b"]" * 100_000),
    "json-deep-in-row": ("application/json",
                         ("[" + json.dumps(ROW)[:-1] + f', "x": {_deep(3000)}}}]').encode()),
    "json-deep-envelope": ("application/json",
                           ('{"measurements": [' + json.dumps(ROW)[:-1]
                            + f', "x": {_deep(3000)}}}]}}').encode()),
    "json-huge-integer": ("application/json",
                          ('[{"cell_id": "h", "ts": 1' + "0" * 5000 + ', "voltage_v": 3, '
                           '"current_a": 0}]').encode()),
    "ndjson-huge-integer": (NDJSON, ('{"cell_id": "h", "ts": 1.7e9, "voltage_v": 9' + "9" * 400
                                     + ', "current_a": 0}\n').encode()),
    "json-huge-exponent": ("application/json",
                           b'[{"cell_id": "h", "ts": 1e99999, "voltage_v": 3, "current_a": 0}]'),
    "json-long-string-id": ("application/json",
                            json.dumps([{**ROW, "cell_id": "x" * 2_000_000}]).encode()),
    "binary-garbage-ndjson": (NDJSON, bytes(range(256)) * 64),
    "binary-garbage-json": ("application/json", b"[" + bytes(range(256)) * 64),
    "binary-garbage-csv": ("text/csv", b"cell_id,ts\n" + bytes(range(256)) * 64),
    "binary-garbage-arrow": ("application/vnd.apache.arrow.stream",
                             b"\xff\xff\xff\xff" + bytes(range(256)) * 64),
    "binary-garbage-parquet": ("application/vnd.apache.parquet",
                               b"PAR1" + bytes(range(256)) * 64 + b"PAR1"),
    "malformed-utf8-ndjson": (NDJSON, b'{"cell_id": "\xff\xfe\xc3", "ts": 1, "voltage_v": 3, '
                                      b'"current_a": 0}\n'),
    "malformed-utf8-json": ("application/json", b'[{"cell_id": "\xc3\x28", "ts": 1, '
                                                b'"voltage_v": 3, "current_a": 0}]'),
    "wide-csv": ("text/csv", (",".join(f"c{i}" for i in range(200_000)) + "\n"
                              + ",".join("1" for _ in range(200_000)) + "\n").encode()),
    "wide-ndjson": (NDJSON, ("{" + ",".join(f'"c{i}":1' for i in range(100_000)) + "}\n").encode()),
    "wide-json": ("application/json",
                  ("[{" + ",".join(f'"c{i}":1' for i in range(100_000)) + "}]").encode()),
}


def _assert_alive(server: LiveServer, client: httpx.Client) -> None:
    assert server.proc.poll() is None, f"server died ({server.proc.returncode}):\n{server.log()[-3000:]}"
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_body_gets_a_4xx_and_the_server_survives(open_server: LiveServer, name: str) -> None:
    ctype, body = HOSTILE[name]
    with open_server.client() as client:
        try:
            r = client.post("/api/v1/measurements", content=body, headers={"Content-Type": ctype})
        except httpx.TransportError as exc:  # the connection died with the process
            pytest.fail(f"{name}: no answer ({exc}); server alive: {open_server.proc.poll() is None}")
        _assert_alive(open_server, client)
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:500])
        err = r.json()["error"]
        assert err["message"] and len(r.content) < 20_000, (name, len(r.content))
        # Binary never comes back: the reply is printable ASCII/UTF-8 text.
        assert "\ufffd" not in r.text and "\x00" not in r.text
        ok = client.post("/api/v1/measurements",
                         content=json.dumps({**ROW, "cell_id": f"ok-{name}"}).encode() + b"\n",
                         headers={"Content-Type": NDJSON})
        assert ok.status_code == 200, ok.text


def test_deep_nesting_is_named_with_line_and_limit(open_server: LiveServer) -> None:
    body = json.dumps(ROW).encode() + b"\n" + _ndjson_row(_deep(800))
    with open_server.client() as client:
        r = client.post("/api/v1/measurements", content=body, headers={"Content-Type": NDJSON})
    err = r.json()["error"]
    assert r.status_code == 422 and err["code"] == "too_complex"
    assert "line 2" in err["message"] and "801 levels" in err["message"]
    assert err["details"] == {"line": 2, "depth": 801, "limit": 32}


def test_moderate_nesting_in_extra_fields_is_still_accepted(open_server: LiveServer) -> None:
    body = b"".join(_ndjson_row(_deep(20), ts=1.7e9 + i).replace(b'"h1"', b'"moderate"')
                    for i in range(3))
    with open_server.client() as client:
        r = client.post("/api/v1/measurements", content=body, headers={"Content-Type": NDJSON})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 3 and r.json()["ignored_columns"] == ["x"]


def test_a_long_ignored_key_is_shortened_in_the_reply(open_server: LiveServer) -> None:
    body = json.dumps({**ROW, "cell_id": "long-key", "k" * 1_000_000: 1}).encode() + b"\n"
    with open_server.client() as client:
        r = client.post("/api/v1/measurements", content=body, headers={"Content-Type": NDJSON})
    assert r.status_code == 200 and len(r.content) < 2_000
    assert r.json()["ignored_columns"] == ["k" * 63 + "…"]


def test_many_ignored_columns_give_a_small_reply(open_server: LiveServer) -> None:
    cols = [f"extra_{i}" for i in range(1000)]
    header = ",".join(["cell_id", "ts", "voltage_v", "current_a", *cols])
    row = ",".join(["wide", "1700000000", "3.7", "0", *["1"] * len(cols)])
    with open_server.client() as client:
        r = client.post("/api/v1/measurements", content=f"{header}\n{row}\n".encode(),
                        headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["ignored_columns"]) == 50 and len(r.content) < 5_000


def test_body_over_the_limit_is_413_before_it_is_read(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--no-dashboard", "--max-body-mb", "1")
    try:
        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            for _ in range(64):
                yield b" " * 65536

        with server.client() as client:
            r = client.post("/api/v1/measurements", content=chunks(),
                            headers={"Content-Type": NDJSON})
            assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
            big = client.post("/api/v1/measurements", content=b" " * (2 << 20),
                              headers={"Content-Type": NDJSON})
            assert big.status_code == 413
            _assert_alive(server, client)
    finally:
        server.stop()


def test_whitespace_only_cell_id_is_rejected(open_server: LiveServer) -> None:
    rows = [{**ROW, "cell_id": "   "}, {**ROW, "cell_id": "\t"}, {**ROW, "cell_id": "ws-ok"}]
    with open_server.client() as client:
        r = client.post("/api/v1/measurements", content=json.dumps(rows).encode(),
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["accepted"] == 1 and body["rejected"] == 2
        assert {e["field"] for e in body["errors"]} == {"cell_id"}
        env = {"measurements": [{**ROW, "cell_id": "ws-ok", "ts": 1.7e9 + 5}],
               "cells": [{"cell_id": "  "}]}
        r = client.post("/api/v1/measurements", content=json.dumps(env).encode(),
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "blank" in r.json()["error"]["message"]


def test_nan_nominal_capacity_gets_a_proper_message(open_server: LiveServer) -> None:
    env = '{"measurements": [], "cells": [{"cell_id": "nan-cap", "nominal_capacity_ah": NaN}]}'
    with open_server.client() as client:
        r = client.post("/api/v1/measurements", content=env.encode(),
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 422
        msg = r.json()["error"]["message"]
        assert "finite number" in msg and "1000000" not in msg, msg
        r = client.post("/api/v1/files?nominal_capacity_ah=nan",
                        files={"file": ("x.csv", b"cell_id,ts,voltage_v,current_a\na,1,3,0\n")})
        assert r.status_code == 422
        msg = r.json()["error"]["message"]
        assert "finite number" in msg and "1000000" not in msg, msg


@pytest.mark.parametrize("name,content", [
    ("data.csv.gz", __import__("gzip").compress(b"cell_id,ts,voltage_v,current_a\na,1,3,0\n" * 50, mtime=0)),
    ("garbage.csv", bytes(range(256)) * 40),
    ("nul.csv", b"cell_id,ts,voltage_v,current_a\n" + b"\x00\xff\xfe" * 500),
])
def test_file_errors_never_echo_binary_or_server_paths(open_server: LiveServer, name: str,
                                                        content: bytes) -> None:
    import tempfile

    with open_server.client() as client:
        r = client.post("/api/v1/files", files={"file": (name, content)})
        _assert_alive(open_server, client)
    assert r.status_code < 500, r.text[:500]
    if r.status_code >= 400:
        text = r.text
        assert tempfile.gettempdir() not in text and "ct-upload-" not in text, text[:500]
        assert "\ufffd" not in text and "\x00" not in text
        assert len(r.content) < 20_000
