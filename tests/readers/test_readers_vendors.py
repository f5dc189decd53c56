"""Always-on tests of the vendor readers on the small real files in tests/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from chargetracker.readers import BioLogicMprReader, detect_format, open_reader, read_file

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize(("name", "fmt", "rows"), [
    ("test.nda", "neware_nda", 439),
    ("test.ndax", "neware_nda", 1464),
    ("00_test_04_MB_C01.mpr", "biologic_mpr", 1501),
    ("2017-05-09_test-TC-contact_CH33.csv", "arbin", 287),
    ("novonix_head.csv", "novonix", 242),
    ("maccor_testtime_head.txt", "maccor", 296),
    ("maccor_mims_head.txt", "maccor", 385),
    ("pec_head.csv", "pec", 367),
    ("neware_flat_excerpt.csv", "neware_csv", 301),
    ("neware_3level_head.csv", "neware_csv", 322),
])
def test_detected_from_content_and_read(name: str, fmt: str, rows: int, tmp_path: Path) -> None:
    path = DATA / name
    assert detect_format(path) == fmt
    # The name never decides: the same bytes under a meaningless name read the same.
    blind = tmp_path / "export.dat"
    blind.write_bytes(path.read_bytes())
    frame, rejected, meta = read_file(blind)
    assert detect_format(blind) == fmt
    assert frame.height == rows and rejected.height == 0
    assert frame.get_column("ts").diff().drop_nulls().min() >= 0  # type: ignore[operator]
    assert frame.get_column("voltage_v").is_between(-5.0, 6.0).all()  # the .mpr: -1.65 V vs ref
    assert frame.get_column("current_a").abs().max() < 10.0  # type: ignore[operator]
    assert frame.get_column("ts").min() > 1.2e9  # type: ignore[operator]  # absolute time


def test_pec_units_and_sign() -> None:
    frame, _, _ = read_file(DATA / "pec_head.csv", keep_reference=True)
    # "Current (mA)" -1633.9 on the first discharge row, "Voltage (mV)" 3269.2348.
    row = frame.filter(pl.col("current_a") < -1.0).row(0, named=True)
    assert row["current_a"] == pytest.approx(-1.6339)
    assert row["voltage_v"] == pytest.approx(3.2692348)
    # 02/22/2019 16:23:27 (read as UTC) is the first row's Real Time, Total Time 1 s.
    assert frame.get_column("ts")[0] == pytest.approx(1550852607.0, abs=1.0)
    # "Charge Capacity (mWh)" is the energy counter, not a capacity.
    assert "discharge_energy_wh" in frame.columns and "discharge_capacity_ah" in frame.columns
    last = frame.row(-1, named=True)
    assert last["discharge_energy_wh"] > 3 * last["discharge_capacity_ah"]


def test_novonix_quoted_lines_and_hours() -> None:
    frame, _, meta = read_file(DATA / "novonix_head.csv")
    assert meta["nominal_capacity_ah"] == pytest.approx(0.24)
    # Run Time (h) 0.0003111 -> 1.12 s after the first row; "10:58:08 AM".
    assert frame.get_column("ts")[1] - frame.get_column("ts")[0] == pytest.approx(1.11996, abs=1e-4)
    assert frame.get_column("ts")[0] == pytest.approx(1649674687.0)  # 2022-04-11 10:58:07


def test_neware_3level_labels_from_cycle_and_step_rows() -> None:
    frame, _, _ = read_file(DATA / "neware_3level_head.csv", keep_reference=True)
    steps = frame.get_column("step").unique(maintain_order=True).to_list()
    assert steps[:4] == [1, 2, 3, 4]  # the running Step Number, first one on the cycle row
    assert frame.get_column("cycle").unique().to_list() == [1]
    chg = frame.filter(pl.col("step") == 2)
    assert (chg.get_column("current_a") > 0).all()
    # Step 2 (CC Chg) ends at the step row's 0.02256 Ah.
    assert chg.get_column("capacity_ah").max() == pytest.approx(0.02256, abs=2e-5)


def test_neware_flat_step_time_and_counters() -> None:
    frame, _, _ = read_file(DATA / "neware_flat_excerpt.csv", keep_reference=True)
    dchg = frame.filter(pl.col("current_a") < 0)
    assert dchg.get_column("discharge_capacity_ah").max() > 0  # type: ignore[operator]
    # Step time restarts at each step; ts keeps increasing.
    assert frame.get_column("step_time_s").min() == 0.0


def test_mpr_records_decode_consistently() -> None:
    """Column types decoded right: the current integrated over time equals the cycler's own
    Q charge/discharge counter of the half cycle (within 0.5 %)."""
    reader = open_reader(DATA / "00_test_04_MB_C01.mpr")
    assert isinstance(reader, BioLogicMprReader)
    table = reader._table
    t = table.get_column("time/s").to_numpy()
    i_ma = table.get_column("I/mA").to_numpy()
    q = table.get_column("Q charge/discharge/mA.h").to_numpy()
    integral = np.sum(0.5 * (i_ma[1:] + i_ma[:-1]) * np.diff(t)) / 3600.0
    assert integral == pytest.approx(q[-1] - q[0], rel=5e-3)
    frame, _, meta = read_file(DATA / "00_test_04_MB_C01.mpr")
    # The LOG module's acquisition start: 2023-12-08 09:49:52 (local, read as UTC).
    assert frame.get_column("ts")[0] == pytest.approx(1702028992.0 + t[0], abs=1.0)
    assert frame.get_column("current_a").max() < 0  # type: ignore[operator]  # discharge


def test_nda_and_ndax_steps_and_time() -> None:
    nda, _, _ = read_file(DATA / "test.nda", keep_reference=True)
    assert set(nda.get_column("step").unique().to_list()) >= {1, 2}
    d = nda.get_column("ts").diff().drop_nulls()
    assert d.min() >= 0  # type: ignore[operator]
    assert d.filter(d > 0).min() == pytest.approx(0.1, abs=0.01)  # the 0.1 s logging
    ndax, _, _ = read_file(DATA / "test.ndax", keep_reference=True)
    assert ndax.get_column("ts")[0] == pytest.approx(1706819063.0, abs=1.0)  # 2024-02-01 20:24:23


def test_arbin_csv_without_labels_reads_null_labels() -> None:
    frame, _, _ = read_file(DATA / "2017-05-09_test-TC-contact_CH33.csv")
    assert frame.get_column("cycle").null_count() == frame.height
    assert frame.get_column("ts")[0] == pytest.approx(1494377253.17)


def test_maccor_mims_minutes_and_testtime_text() -> None:
    mims, _, meta = read_file(DATA / "maccor_mims_head.txt")
    assert mims.get_column("ts")[1] - mims.get_column("ts")[0] == pytest.approx(60.0)
    assert '"test_time_unit_s": 60.0' in meta["attributes"]
    text, _, _ = read_file(DATA / "maccor_testtime_head.txt")
    assert text.get_column("ts")[1] - text.get_column("ts")[0] == pytest.approx(5.0)
    # 12/11/2020 12:22:12, DPt Time of the first row.
    assert text.get_column("ts")[0] == pytest.approx(1607689332.0)


def _mpt(rows: list[str], *, comma: bool = False) -> str:
    head = [
        "EC-Lab ASCII FILE",
        "Nb header lines : 6",
        "",
        "Galvanostatic Cycling with Potential Limitation",
        "Acquisition started on : 01/02/2024 10:00:00.000",
        "mode\tox/red\ttime/s\tEwe/V\t<I>/mA\tcycle number\tNs\tQ charge/mA.h\t"
        "Q discharge/mA.h\tEnergy charge/W.h\tEnergy discharge/W.h",
    ]
    body = [r.replace(".", ",") if comma else r for r in rows]
    return "\r\n".join(head + body) + "\r\n"


HAND_MPT = [
    "1\t1\t0.0\t3.50\t1.000\t0\t1\t0.0\t0.0\t0.0\t0.0",
    "1\t1\t1800.0\t3.60\t1.000\t0\t1\t0.5\t0.0\t0.0018\t0.0",
    "1\t1\t3600.0\t3.70\t1.000\t0\t1\t1.0\t0.0\t0.0036\t0.0",
    "1\t0\t3601.0\t3.60\t-1.000\t0\t2\t1.0\t0.0\t0.0036\t0.0",
    "1\t0\t7201.0\t3.40\t-1.000\t0\t2\t1.0\t1.0\t0.0036\t0.0035",
]


@pytest.mark.parametrize("comma", [False, True])
def test_mpt_hand_made_units_time_and_decimal_comma(comma: bool, tmp_path: Path) -> None:
    path = tmp_path / "hand.mpt"
    path.write_bytes(_mpt(HAND_MPT, comma=comma).encode("cp1252"))
    assert detect_format(path) == "biologic_mpt"
    frame, rejected, meta = read_file(path, keep_reference=True, timezone="Europe/Paris")
    assert rejected.height == 0 and frame.height == 5
    # 01/02/2024 10:00 in Paris (CET) = 09:00 UTC, month first as EC-Lab writes it.
    assert frame.get_column("ts")[0] == pytest.approx(1704186000.0)
    assert frame.get_column("ts")[-1] - frame.get_column("ts")[0] == pytest.approx(7201.0)
    assert frame.get_column("current_a").to_list()[2:4] == [pytest.approx(1e-3), pytest.approx(-1e-3)]
    assert frame.get_column("step").to_list() == [1, 1, 1, 2, 2]
    assert frame.get_column("charge_capacity_ah")[-1] == pytest.approx(1e-3)
    assert frame.get_column("discharge_energy_wh")[-1] == pytest.approx(0.0035)


def _mpr(ids: list[int], records: bytes, n: int, version: int = 11) -> bytes:
    import struct

    def module(short: bytes, data: bytes, ver: int) -> bytes:
        return (b"MODULE" + short.ljust(10) + short.ljust(25) + struct.pack("<I", 0xFFFFFFFF)
                + struct.pack("<III", len(data), 0, ver) + b"01/02/24" + data)

    head = struct.pack("<IH", n, len(ids)) + struct.pack(f"<{len(ids)}H", *ids)
    data = head.ljust(0x3EF, b"\x00") + records
    return b"BIO-LOGIC MODULAR FILE\x1a".ljust(52, b" ") + module(b"VMP data", data, version)


def test_mpr_hand_made_records_and_unknown_column(tmp_path: Path) -> None:
    import struct

    # flags (mode/ox-red), Ns u2, time f8, Ewe f4, I/mA f4, cycle number f8
    ids = [1, 2, 131, 4, 6, 8, 24]
    rec = b"".join(struct.pack("<BHdffd", flags, ns, t, v, i, cyc) for flags, ns, t, v, i, cyc in (
        (0x05, 1, 0.0, 3.5, 2.0, 0.0), (0x05, 1, 10.0, 3.6, 2.0, 0.0),
        (0x01, 2, 20.0, 3.4, -2.0, 1.0)))
    path = tmp_path / "hand.mpr"
    path.write_bytes(_mpr(ids, rec, 3))
    frame, rejected, _ = read_file(path)
    assert rejected.height == 0
    assert frame.get_column("current_a").to_list() == pytest.approx([2e-3, 2e-3, -2e-3])
    assert frame.get_column("voltage_v").to_list() == pytest.approx([3.5, 3.6, 3.4])
    assert frame.get_column("step").to_list() == [1, 1, 2]
    assert frame.get_column("cycle").to_list() == [0, 0, 1]
    reader = open_reader(path)
    assert reader._table.get_column("ox/red").to_list() == [1, 1, 0]  # type: ignore[attr-defined]
    # An id the reader does not know is named, never guessed.
    bad = tmp_path / "bad.mpr"
    bad.write_bytes(_mpr([4, 9999], b"\x00" * 12, 1))
    with pytest.raises(Exception, match="unknown BioLogic data column id 9999"):
        open_reader(bad)
    # A record size that does not match the module length is refused.
    short = tmp_path / "short.mpr"
    short.write_bytes(_mpr(ids, rec[:-4], 3))
    with pytest.raises(Exception, match="does not match its length"):
        open_reader(short)


@pytest.mark.parametrize("name", [
    "novonix_head.csv", "maccor_testtime_head.txt", "maccor_mims_head.txt", "pec_head.csv",
    "neware_flat_excerpt.csv", "neware_3level_head.csv", "test.nda", "00_test_04_MB_C01.mpr",
])
def test_any_chunking_gives_the_same_frame(name: str) -> None:
    whole, rej, _ = read_file(DATA / name, keep_reference=True)
    for rows in (13, 97):  # chunks cut inside steps, cycles and 3-level groups
        reader = open_reader(DATA / name, keep_reference=True, chunk_rows=rows)
        chunks = list(reader)
        parts = pl.concat([c.frame for c in chunks])
        assert parts.equals(whole), (name, rows)
        assert sum(c.rejected.height for c in chunks) == rej.height
