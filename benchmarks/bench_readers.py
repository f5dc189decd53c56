"""Reader throughput: one real Arbin export repeated, plain and wrapped (gzip, UTF-16,
CR-only), plus the refusal of a 1 M-column header. Wall and CPU seconds per case.

    python benchmarks/run.py readers            # or: python benchmarks/bench_readers.py
"""

from __future__ import annotations

import gzip
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, machine_info  # noqa: E402

from chargetracker.errors import SchemaError  # noqa: E402
from chargetracker.readers import open_reader  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "tests" / "data" / "arbin_example.csv"


def main() -> None:
    repeat = 20 if "--quick" in sys.argv else 100
    lines = SRC.read_bytes().replace(b"\r\n", b"\n").split(b"\n")
    big = lines[0] + b"\n" + (b"\n".join(lines[1:]).rstrip(b"\n") + b"\n") * repeat
    with tempfile.TemporaryDirectory(prefix="ct-bench-") as tmp:
        d = Path(tmp)
        cases = {
            "plain": (d / "plain.csv", big),
            "gzip": (d / "run.csv.gz", gzip.compress(big, 6)),
            "utf16": (d / "u16.csv", big.decode().encode("utf-16")),
            "cr_only": (d / "cr.csv", big.replace(b"\n", b"\r")),
        }
        for name, (path, data) in cases.items():
            path.write_bytes(data)
            t0, c0 = time.perf_counter(), time.process_time()
            rows = sum(c.frame.height for c in open_reader(path))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            emit(f"readers.{name}", "rows_per_s", round(rows / wall), "rows/s", rows=rows,
                 file_mb=round(len(data) / 1e6, 1), wall_s=round(wall, 3), cpu_s=round(cpu, 3),
                 machine=machine_info())
        wide = d / "wide.csv"
        n = 1_000_000
        wide.write_text("ts,voltage_v,current_a," + ",".join(f"c{i}" for i in range(n)) + "\n"
                        + "1.7e9,3.7,1.0" + ",0" * n + "\n")
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            open_reader(wide)
        except SchemaError:
            pass
        emit("readers.wide_header_refusal", "wall_s", round(time.perf_counter() - t0, 3), "s",
             higher_is_better=False, cpu_s=round(time.process_time() - c0, 3),
             file_mb=round(wide.stat().st_size / 1e6, 1))


if __name__ == "__main__":
    main()
