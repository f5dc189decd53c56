"""POST /api/v1/files with compressed, UTF-16, CR-only and binary uploads."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import httpx
from tests.api.conftest import AUTH

from chargetracker.readers import read_file

DATA = Path(__file__).resolve().parents[1] / "data"
ARBIN = DATA / "arbin_example.csv"


def _post(http: httpx.Client, name: str, body: bytes) -> httpx.Response:
    return http.post("/api/v1/files", headers=AUTH,
                     files={"file": (name, body, "application/octet-stream")})


def test_wrapped_uploads_are_read(http: httpx.Client) -> None:
    raw = ARBIN.read_bytes()
    want = read_file(ARBIN)[0].height
    for name, body in (("w-gz.csv.gz", gzip.compress(raw)), ("w-bz.csv.bz2", bz2.compress(raw)),
                       ("w-u16.csv", raw.decode().encode("utf-16")),
                       ("w-cr.csv", raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r"))):
        r = _post(http, name, body)
        assert r.status_code == 200, (name, r.text[:500])
        assert r.json()["accepted"] == want and r.json()["file_format"] == "arbin", name


def test_binary_upload_is_a_short_422(http: httpx.Client) -> None:
    r = _post(http, "junk.csv", bytes(range(256)) * 400)
    assert r.status_code == 422
    assert len(r.text) < 1000 and "junk.csv" in r.text
    assert "ct-upload-" not in r.text and "/tmp" not in r.text
    r = _post(http, "vendor.nda", (DATA / "test.nda").read_bytes())
    assert r.status_code == 200, r.text[:500]
    assert r.json()["file_format"] == "neware_nda" and r.json()["accepted"] == 439
