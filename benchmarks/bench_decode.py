"""Cost of the shared decoder's safety scan (JSON nesting/width) next to the parse itself.

    python benchmarks/bench_decode.py [--rows 100000] [--repeat 5]

Prints, per body (NDJSON and a JSON array, flat telemetry rows), the best-of-N wall time
and CPU time of ``json_shape`` (the scan that keeps deep JSON away from Polars' native
parser) and of the whole ``decode_batch`` (scan + parse + canonical columns).
"""

from __future__ import annotations

import argparse
import json
import time

from chargetracker.decoding import decode_batch, json_shape


def _best(fn, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    wall, cpu = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rows = [{"cell_id": f"c{i % 1000}", "ts": 1.7e9 + i, "voltage_v": 3.7 + i % 7 * 0.01,
             "current_a": -1.5, "temperature_c": 25.0} for i in range(args.rows)]
    bodies = {"ndjson": "\n".join(json.dumps(r) for r in rows).encode(),
              "json": json.dumps(rows).encode()}
    for fmt, body in bodies.items():
        per_line = fmt == "ndjson"
        scan = _best(lambda b=body, p=per_line: json_shape(b, per_line=p), args.repeat)
        full = _best(lambda b=body, f=fmt: decode_batch(b, f), args.repeat)
        print(f"{fmt:7s} {len(body) / 1e6:6.1f} MB {args.rows:>8,} rows  scan {scan[0] * 1e3:7.1f} ms "
              f"(cpu {scan[1] * 1e3:6.1f})  decode {full[0] * 1e3:7.1f} ms (cpu {full[1] * 1e3:6.1f})  "
              f"scan share {scan[0] / full[0]:.0%}")


if __name__ == "__main__":
    main()
