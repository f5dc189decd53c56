"""Same seed -> bit-identical output; the split into chunks does not change it."""

from __future__ import annotations

import io

import polars as pl
import pytest

from chargetracker.sim import FAULT_NAMES, FaultConfig, Fleet

from .conftest import small_fleet

ALL_FAULTS = FaultConfig.from_names(FAULT_NAMES, dropout_rate=2e-3, spike_rate=2e-3,
                                    duplicate_rate=5e-3, out_of_order_rate=5e-3)


def _bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.rechunk().write_ipc(buf, compression="uncompressed")
    return buf.getvalue()


def _run(cfg, seconds: float) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    return pl.concat(list(Fleet(cfg).chunks(seconds=seconds)))


def test_same_seed_same_bytes() -> None:
    cfg = small_fleet(faults=ALL_FAULTS)
    assert _bytes(_run(cfg, 3600.0)) == _bytes(_run(cfg, 3600.0))
    assert Fleet(cfg).cells.equals(Fleet(cfg).cells)


def test_different_seed_differs() -> None:
    a = _run(small_fleet(seed=1), 3600.0)
    b = _run(small_fleet(seed=2), 3600.0)
    assert not a.equals(b)


@pytest.mark.parametrize("faults", [FaultConfig(), ALL_FAULTS], ids=["clean", "all-faults"])
def test_chunking_does_not_change_the_result(faults: FaultConfig) -> None:
    cfg = small_fleet(faults=faults)
    whole = _run(cfg, 8 * 3600.0)
    assert whole.height > 0
    for seconds in (10.0, 70.0, 1234.5, 3600.0):
        assert _bytes(_run(cfg, seconds)) == _bytes(whole), seconds


def test_irregular_advance_calls_match() -> None:
    cfg = small_fleet(faults=ALL_FAULTS)
    whole = _run(cfg, 8 * 3600.0)
    fleet = Fleet(cfg)
    parts = [fleet.advance(s) for s in (5.0, 0.0, 95.0, 7000.0, 13.0, 30000.0)]
    assert fleet.done
    assert _bytes(pl.concat(parts)) == _bytes(whole)


def test_output_is_canonical() -> None:
    from chargetracker.schema import MEASUREMENT_SCHEMA, validate

    cfg = small_fleet(include_labels=False, duration_s=3600.0)
    frame = _run(cfg, 3600.0)
    assert frame.schema == pl.Schema(MEASUREMENT_SCHEMA)
    assert frame["cycle"].null_count() == frame.height
    assert frame["step"].null_count() == frame.height
    v = validate(frame)
    assert v.rejected.height == 0 and v.good.height == frame.height
    assert frame["ts"].min() >= 1767225600.0 - 1.0  # 2026-01-01T00:00:00Z
    assert frame.height == 12 * 360  # 12 cells x 360 samples of 10 s
