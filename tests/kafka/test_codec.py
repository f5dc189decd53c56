"""Message formats: exact round trips, dead letters naming the field, batch independence."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from chargetracker.kafka import cell_codec, codec
from chargetracker.schema import MEASUREMENT_SCHEMA


def _frame(n: int = 50, cells: int = 3, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "cell_id": [f"c{i % cells}" for i in range(n)],
        "ts": 1.767e9 + np.arange(n) * 1.37 + rng.random(n),
        "voltage_v": 3.0 + rng.random(n),
        "current_a": rng.normal(size=n) * 2.5,
        "temperature_c": np.where(rng.random(n) < 0.2, np.nan, 20 + rng.random(n) * 10),
        "cycle": [None] * n,
        "step": list(range(n)),
        "step_time_s": [None] * n,
    }, schema=MEASUREMENT_SCHEMA)


def _ipc(frame: pl.DataFrame) -> bytes:
    """An Arrow IPC stream of any frame (not conformed)."""
    table = frame.to_arrow()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _decode(values: list[bytes | None], fmts: list[str | None]) -> codec.Decoded:
    return codec.decode_measurements(values, fmts, list(range(100, 100 + len(values))), source="t")


def test_json_round_trip_is_bit_exact() -> None:
    frame = _frame()
    values = codec.encode_json(frame)
    assert len(values) == frame.height
    assert b"step_time_s" not in values[0]          # all-null columns are omitted
    dec = _decode(values, [codec.JSON] * len(values))
    assert dec.rejected.height == 0
    expected = frame.with_columns(pl.col("temperature_c").fill_nan(None))  # NaN -> null
    assert dec.frame.equals(expected)
    assert dec.offsets.tolist() == list(range(100, 100 + frame.height))


def test_arrow_round_trip_and_message_order() -> None:
    a, b = _frame(20, seed=1), _frame(30, seed=2)
    values = [codec.encode_arrow(a), codec.encode_json(b)[0], codec.encode_arrow(b, compression="zstd")]
    dec = _decode(values, [codec.ARROW, codec.JSON, codec.ARROW])
    assert dec.rejected.height == 0
    assert dec.frame.height == 20 + 1 + 30
    assert dec.frame[:20].equals(a)
    assert dec.frame[21:].equals(b)
    assert dec.offsets.tolist() == [100] * 20 + [101] + [102] * 30


def test_sniffing_without_header() -> None:
    frame = _frame(5)
    dec = _decode([codec.encode_json(frame)[0], codec.encode_arrow(frame), b"hello"], [None, None, None])
    assert dec.frame.height == 6
    assert dec.rejected.get_column("field").to_list() == ["message"]
    assert "not recognisable" in dec.rejected.get_column("reason")[0]


@pytest.mark.parametrize(("value", "field", "reason"), [
    (b'{"cell_id": "a", "ts": 1.0, "voltage_v": 3.7', "message", "invalid JSON"),
    (b'{"cell_id": "a", "ts": 1.0, "voltage_v": "3.7", "current_a": 1}', "voltage_v", "expected a number, got string"),
    (b'{"cell_id": "a", "ts": 1.0, "voltage_v": 3.7, "current_a": false}', "current_a", "expected a number, got boolean"),
    (b'{"cell_id": "a", "ts": NaN, "voltage_v": 3.7, "current_a": 1}', "ts", "NaN"),
    (b'{"cell_id": "a", "ts": 1.0, "voltage_v": Infinity, "current_a": 1}', "voltage_v", "infinite"),
    (b'{"cell_id": "a", "ts": 1e999, "voltage_v": 3.7, "current_a": 1}', "ts", "infinite"),
    (b'{"cell_id": "a", "ts": 1.0, "voltage_v": 3.7, "current_a": 1, "step": 2.5}', "step", "expected an integer"),
    (b'{"cell_id": "a", "ts": 1.0, "voltage_v": {"v": 1}, "current_a": 1}', "voltage_v", "got object"),
    (b'[{"cell_id": "a"}]', "message", "expected a JSON object, got list"),
    (b'"just a string"', "message", "expected a JSON object"),
    (b"   ", "message", "empty message"),
    (b"\xff\xfe{garbage", "message", "invalid JSON"),
])
def test_bad_json_is_a_dead_letter_naming_the_field(value: bytes, field: str, reason: str) -> None:
    good = codec.encode_json(_frame(4))
    dec = _decode([good[0], value, good[1]], [codec.JSON] * 3)
    assert dec.frame.height == 2                      # the neighbours survive
    assert dec.offsets.tolist() == [100, 102]
    assert dec.rejected.height == 1
    row = dec.rejected.row(0, named=True)
    assert row["field"] == field
    assert reason in row["reason"]
    assert row["row"] == 101 and row["source"] == "t"


def test_unknown_format_and_broken_arrow() -> None:
    arrow = codec.encode_arrow(_frame(10))
    dec = _decode([b'{"cell_id":"a"}', arrow[: len(arrow) // 2], b"\x00\x01", arrow],
                  ["avro", codec.ARROW, codec.ARROW, codec.ARROW])
    assert dec.frame.height == 10
    fields = dec.rejected.get_column("field").to_list()
    reasons = dec.rejected.get_column("reason").to_list()
    assert fields[0] == codec.FORMAT_HEADER and "unknown format 'avro'" in reasons[0]
    assert all("Arrow" in r for r in reasons[1:])
    assert dec.rejected.get_column("row").to_list() == [100, 101, 102]


def test_arrow_batch_missing_a_required_column() -> None:
    missing = _ipc(_frame(5).drop("voltage_v"))
    dec = _decode([missing, codec.encode_arrow(_frame(5))], [codec.ARROW, codec.ARROW])
    assert dec.frame.height == 5
    assert dec.rejected.get_column("field").to_list() == ["voltage_v"]
    assert "missing required column" in dec.rejected.get_column("reason")[0]


def test_nul_in_cell_id_is_rejected() -> None:
    value = json.dumps({"cell_id": "a\u0000b", "ts": 1.0, "voltage_v": 3.7, "current_a": 1.0}).encode()
    dec = _decode([value], [codec.JSON])
    assert dec.frame.height == 0
    assert dec.rejected.get_column("field").to_list() == ["cell_id"]
    assert "\x00" not in dec.rejected.get_column("payload")[0]


def test_decoding_does_not_depend_on_batching() -> None:
    """Each message is accepted or refused the same way alone or among others, so a
    replay cut into different batches decodes identically (exactly-once needs it)."""
    rng = np.random.default_rng(7)
    good = codec.encode_json(_frame(200, seed=3))
    bad = [b"{", b'{"cell_id": "a", "ts": "x", "voltage_v": 1, "current_a": 1}', b"[]",
           b'{"cell_id": 5, "ts": 1.0, "voltage_v": 3.7, "current_a": 1}', b"null",
           b'{"cell_id": "a",\n "ts": 2.0, "voltage_v": 3.7, "current_a": 1}']
    values = list(good)
    for b in bad:
        values.insert(int(rng.integers(0, len(values))), b)
    fmts: list[str | None] = [codec.JSON] * len(values)
    whole = _decode(values, fmts)
    pieces = [_decode(values[i:i + 1], fmts[i:i + 1]) for i in range(len(values))]
    alone = pl.concat([p.frame for p in pieces])
    assert whole.frame.equals(alone)
    assert whole.rejected.height == sum(p.rejected.height for p in pieces)
    # Split at random points: still the same rows.
    cuts = sorted(set(rng.integers(1, len(values), 7).tolist()))
    parts = [_decode(values[a:b], fmts[a:b]) for a, b in zip([0, *cuts], [*cuts, len(values)], strict=True)]
    assert pl.concat([p.frame for p in parts]).equals(whole.frame)


def test_cells_json_and_arrow() -> None:
    cells = pl.DataFrame({"cell_id": ["a", "b"], "group": ["g1", None], "nominal_capacity_ah": [2.5, math.nan],
                          "attributes": ['{"line": 3}', None]})
    encoded = cell_codec.encode_cells_json(cells)
    assert [cid for cid, _ in encoded] == ["a", "b"]
    assert json.loads(encoded[0][1])["attributes"] == {"line": 3}
    df, letters = cell_codec.decode_cells(encoded[0][1], codec.JSON, 5, source="t")
    assert letters.height == 0
    assert df.row(0, named=True)["nominal_capacity_ah"] == 2.5
    assert json.loads(df.row(0, named=True)["attributes"]) == {"line": 3}
    # Cells as Arrow: any table with a cell_id column.
    table = pl.DataFrame({"cell_id": ["x"], "group": ["g"], "nominal_capacity_ah": [3.0]})
    df, letters = cell_codec.decode_cells(_ipc(table), codec.ARROW, 6, source="t")
    assert df.height == 1 and letters.height == 0
    for value, field in [(b"{", "message"), (b'{"group": "g"}', "cell_id"),
                         (b'{"cell_id": "a", "nominal_capacity_ah": "big"}', "nominal_capacity_ah"),
                         (b'{"cell_id": "a", "nominal_capacity_ah": -1}', "nominal_capacity_ah")]:
        df, letters = cell_codec.decode_cells(value, codec.JSON, 7, source="t")
        assert df.height == 0
        assert letters.get_column("field").to_list() == [field], value


def test_headers_parsing() -> None:
    assert codec.headers_of(None) == (None, None)
    assert codec.headers_of([("ct-format", b"arrow"), ("x", None), ("ct-type", b"cell")]) == ("arrow", "cell")
    assert codec.headers_of({"ct-format": "json"}) == ("json", None)


# -- hostile messages (issue 10): the same limits as the HTTP API -----------------------
def _deep(n: int) -> str:
    return '{"a":' * n + "1" + "}" * n


HOSTILE_SCRIPT = """
import json, sys
from chargetracker.kafka import cell_codec, codec
good = [json.dumps({"cell_id": "g", "ts": 1.7e9 + i, "voltage_v": 3.7, "current_a": 0.0}).encode()
        for i in range(4)]
deep = b'{"cell_id": "g", "ts": 1, "voltage_v": 3, "current_a": 0, "x": ' + b'{"a":' * 900 + b'1' + b'}' * 900 + b'}'
arr = b'{"cell_id": "g", "ts": 1, "voltage_v": 3, "current_a": 0, "x": ' + b'[' * 50000 + b'}'
values = [good[0], deep, good[1], arr, good[2], good[3]]
d = codec.decode_measurements(values, ["json"] * 6, list(range(6)), source="t")
print(json.dumps({"rows": d.frame.height, "offsets": d.offsets.tolist(),
                  "dead": d.rejected.get_column("row").to_list(),
                  "reasons": d.rejected.get_column("reason").to_list()}))
cells, dead = cell_codec.decode_cell_messages([b'{"cell_id": "c", "attributes": ' + b'[' * 5000 + b']' * 5000 + b'}'],
                                         ["json"], [7], source="t")
print(json.dumps({"cells": cells.height, "dead": dead.get_column("reason").to_list()}))
"""


def test_deeply_nested_messages_are_dead_letters_and_the_worker_survives() -> None:
    import subprocess
    import sys

    # In a child process: before the fix Polars' native parser overflowed its stack
    # (SIGSEGV), which would take the test runner down with it.
    res = subprocess.run([sys.executable, "-c", HOSTILE_SCRIPT], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    first, second = (json.loads(line) for line in res.stdout.splitlines()[-2:])
    assert first["rows"] == 4 and first["offsets"] == [0, 2, 4, 5]
    assert first["dead"] == [1, 3]
    assert all("levels deep; the limit is 32" in r for r in first["reasons"])
    assert second["cells"] == 0 and "levels deep" in second["dead"][0]


def test_wide_messages_are_dead_letters() -> None:
    wide = ("{" + ",".join(f'"k{i}":1' for i in range(5000)) + "}").encode()
    good = json.dumps({"cell_id": "w", "ts": 1.0, "voltage_v": 3.0, "current_a": 0.0}).encode()
    d = _decode([good, wide], ["json", "json"])
    assert d.frame.height == 1
    assert d.rejected.get_column("row").to_list() == [101]
    assert "limit is 1024 columns" in d.rejected.get_column("reason")[0]
    table = pa.table({f"c{i}": [1.0] for i in range(2000)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    d = _decode([sink.getvalue().to_pybytes()], ["arrow"])
    assert d.frame.height == 0 and "2000 columns" in d.rejected.get_column("reason")[0]


def test_arrow_messages_follow_the_api_column_rules() -> None:
    # ISO-8601 text in ts and integer cell ids are read as the HTTP API reads them.
    frame = pl.DataFrame({"cell_id": [7, 8], "ts": ["2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"],
                          "voltage_v": [3.5, 3.6], "current_a": [1, 2]})
    d = _decode([_ipc(frame)], ["arrow"])
    assert d.rejected.height == 0
    assert d.frame.get_column("cell_id").to_list() == ["7", "8"]
    assert d.frame.get_column("ts").to_list() == [1767225600.0, 1767225601.0]


def test_a_run_of_arrow_messages_decodes_as_each_message_alone() -> None:
    """Same-schema Arrow messages are canonicalized as one table; a message that fails
    a check (text ts that is no time, here) is still refused alone, its neighbours kept,
    every row with its own message's offset."""
    def text_ts(ts: list[str]) -> bytes:
        return _ipc(pl.DataFrame({"cell_id": ["a"] * len(ts), "ts": ts,
                                  "voltage_v": [3.5] * len(ts), "current_a": [1.0] * len(ts)}))
    values = [codec.encode_arrow(_frame(30, seed=1)), codec.encode_arrow(_frame(20, seed=2)),
              text_ts(["2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"]),
              text_ts(["2026-01-01T00:00:02Z", "not a time"]),
              text_ts(["2026-01-01T00:00:03Z"]),
              codec.encode_arrow(_frame(0)), codec.encode_arrow(_frame(10, seed=3))]
    fmts: list[str | None] = [codec.ARROW] * len(values)
    whole = _decode(values, fmts)
    pieces = [codec.decode_measurements([v], [f], [100 + i], source="t")
              for i, (v, f) in enumerate(zip(values, fmts, strict=True))]
    assert whole.frame.equals(pl.concat([p.frame for p in pieces]))
    assert whole.offsets.tolist() == np.concatenate([p.offsets for p in pieces]).tolist()
    assert whole.offsets.tolist()[:51] == [100] * 30 + [101] * 20 + [102]
    assert whole.rejected.get_column("row").to_list() == [103]
    assert whole.rejected.equals(pl.concat([p.rejected for p in pieces]))
