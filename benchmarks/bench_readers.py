"""Reader throughput: one real Arbin export repeated, plain and wrapped (gzip, UTF-16,
CR-only), the refusal of a 1 M-column header, and every text format against a plain typed
``polars.read_csv`` of the same columns in the same run. Wall and CPU seconds per case.

    python benchmarks/run.py readers            # or: python benchmarks/bench_readers.py
    python benchmarks/bench_readers.py --formats [--rows 300000] [--rounds 3]
    python benchmarks/bench_readers.py --phases [--rows 200000] [--rounds 3]   # CPU-s per phase
    python benchmarks/bench_readers.py --opens [--rows 200000] [--rounds 3]    # CPU-ms per open
    python benchmarks/bench_readers.py --formats --base 389e8b9 [--rows 200000] [--rounds 5]

``--formats``: for each text format, a real export (``tests/data`` or, for the formats
whose real files are not in the project, ``../shared/data/cycler-more``, skipped when
absent) has its data lines repeated to about ``--rows`` rows; then, alternating, the
reader (``open_reader(path)`` iterated to the end, chunks of 250,000 rows) and
``polars.read_csv`` of the columns the reader uses (numbers as Float64, text as String,
the same lines skipped) are timed ``--rounds`` times; the best CPU and wall time of each
count. ``ratio`` = plain CPU-s / reader CPU-s (>= 0.8: the reader reads at 0.8x the speed
of a bare typed parse or better).

``--formats --base REV``: the same, with the readers of commit ``REV`` (its ``src/`` exported
with ``git archive``) and of this tree each in a worker process, timed in turn with the plain
read in every round (plain, base, head, ...), so that the load drifts alike for all three.
"""

from __future__ import annotations

import gzip
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from common import emit, load_average, machine_info  # noqa: E402

from chargetracker.errors import SchemaError  # noqa: E402
from chargetracker.readers import open_reader  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "tests" / "data" / "arbin_example.csv"


ROOT = Path(__file__).resolve().parents[1]
SHARED = next((p for p in (ROOT.parent / "shared" / "data" / "cycler-more",
                           ROOT.parent.parent / "shared" / "data" / "cycler-more") if p.is_dir()),
              None)

#: format -> (file, whole-line quotes to strip). Novonix's copy in BEEP quotes every line;
#: the instrument does not, so the benchmark file is unquoted.
FORMAT_FILES: dict[str, tuple[str, bool]] = {
    "arbin": ("tests/data/arbin_example.csv", False),
    "maccor": ("shared:xTESLADIAG_000038.078", False),
    "neware_csv": ("shared:neware_uio.csv", False),
    "biologic_mpt": ("shared:gcpl.issue_211.mpt", False),
    "pec": ("shared:pec.csv", False),
    "novonix": ("shared:test_Nova_Form-CH01-01_short.csv", True),
    "generic": ("generic", False),
}


def _source(spec: str) -> Path | None:
    if spec.startswith("shared:"):
        return SHARED / spec[7:] if SHARED is not None else None
    return ROOT / spec


def _format_file(fmt: str, spec: str, unquote: bool, rows: int, d: Path) -> Path | None:
    """A file of about ``rows`` data rows in ``fmt``: the real file's data lines repeated."""
    out = d / f"{fmt}.bench"
    if spec == "generic":
        n = rows
        ts = 1.7e9 + np.arange(n) * 1.0
        pl.DataFrame({"cell_id": ["c1"] * n, "ts": ts, "voltage_v": 3.6 + 0.1 * np.sin(ts / 900),
                      "current_a": np.where((ts // 3600) % 2 == 0, 1.0, -1.0),
                      "temperature_c": 25.0}).write_csv(out)
        return out
    src = _source(spec)
    if src is None or not src.is_file():
        return None
    raw = src.read_bytes().replace(b"\r\n", b"\n")
    reader = open_reader(src)
    head_n = reader._header_lines  # type: ignore[attr-defined]
    lines = raw.split(b"\n")
    head, data = lines[:head_n], [ln for ln in lines[head_n:] if ln.strip()]
    if unquote:
        data = [ln.strip(b'"').replace(b'""', b'"') for ln in data]
        head = [ln.strip(b'"').replace(b'""', b'"') if ln.startswith(b'"') else ln for ln in head]
    body = b"\n".join(data) + b"\n"
    out.write_bytes(b"\n".join(head) + b"\n" + body * max(1, rows // len(data)))
    return out


def _plain(reader: Any) -> Any:
    """The bare typed parse of the reader's columns: what the reader cannot beat."""
    wanted = [f for f in reader.fields if not f.probe_only]
    text = {f.source for f in wanted if f.kind in ("str", "datetime", "duration")}
    cols = list(dict.fromkeys(f.source for f in wanted))
    idx = sorted(reader.columns.index(c) for c in cols)
    numeric = {f.source for f in wanted if f.kind in ("float", "int", "epoch")} - text
    schema = {c: pl.Float64 if c in numeric else pl.Utf8 for c in reader.columns}
    return lambda: pl.read_csv(reader.path, has_header=False, skip_lines=reader._header_lines,
                               columns=idx, schema=schema, separator=reader.separator,
                               encoding="utf8-lossy", quote_char='"')


def formats(rows: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="ct-bench-fmt-") as tmp:
        d = Path(tmp)
        for fmt, (spec, unquote) in FORMAT_FILES.items():
            path = _format_file(fmt, spec, unquote, rows, d)
            if path is None:
                print(f"readers.format.{fmt}: skipped ({spec} not found)")
                continue
            reader = open_reader(path)
            assert reader.format == fmt, (fmt, reader.format)
            plain = _plain(reader)
            best: dict[str, list[float]] = {"plain": [1e9, 1e9], "reader": [1e9, 1e9]}
            n_rows = n_plain = 0
            for _ in range(rounds):
                for name in ("plain", "reader"):
                    t0, c0 = time.perf_counter(), time.process_time()
                    if name == "plain":
                        n_plain = plain().height
                    else:
                        n_rows = sum(c.frame.height for c in open_reader(path))
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                    best[name] = [min(best[name][0], cpu), min(best[name][1], wall)]
            emit(f"readers.format.{fmt}", "ratio_cpu", round(best["plain"][0] / best["reader"][0], 2),
                 "x", rows=n_rows, plain_rows=n_plain, file_mb=round(path.stat().st_size / 1e6, 1),
                 reader_cpu_s=round(best["reader"][0], 3), reader_wall_s=round(best["reader"][1], 3),
                 plain_cpu_s=round(best["plain"][0], 3), plain_wall_s=round(best["plain"][1], 3),
                 ratio_wall=round(best["plain"][1] / best["reader"][1], 2),
                 reader_rows_per_cpu_s=round(n_rows / best["reader"][0]),
                 load=load_average(), machine=machine_info())


_WORKER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from chargetracker.readers import open_reader
plain = {}
for line in sys.stdin:
    what, path = line.split(maxsplit=1)
    path = path.strip()
    if what == "plain" and path not in plain:
        import bench_readers
        plain[path] = bench_readers._plain(open_reader(path))
    c0, t0 = time.process_time(), time.perf_counter()
    if what == "plain":
        n = plain[path]().height
    else:
        n = sum(c.frame.height for c in open_reader(path))
    print(n, time.process_time() - c0, time.perf_counter() - t0, flush=True)
"""


def formats_ab(rows: int, rounds: int, base: str) -> None:
    """``--formats`` against the readers of commit ``base``, interleaved (see the module)."""
    import os
    import subprocess
    import tarfile

    with tempfile.TemporaryDirectory(prefix="ct-bench-ab-") as tmp:
        d = Path(tmp)
        with (d / "src.tar").open("wb") as fh:
            subprocess.run(["git", "-C", str(ROOT), "archive", base, "src"], stdout=fh, check=True)
        with tarfile.open(d / "src.tar") as tar:
            tar.extractall(d / "base", filter="data")
        # Three like processes (the plain read too), so that each sees the same process state.
        workers = {}
        for side, src in (("plain", ROOT / "src"), ("base", d / "base" / "src"),
                          ("head", ROOT / "src")):
            env = dict(os.environ, PYTHONPATH=str(src))
            workers[side] = subprocess.Popen(
                [sys.executable, "-c", _WORKER, str(Path(__file__).resolve().parent)], env=env,
                text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

        def read(side: str, path: Path) -> tuple[int, float, float]:
            w = workers[side]
            assert w.stdin is not None and w.stdout is not None
            w.stdin.write(f"{'plain' if side == 'plain' else 'read'} {path}\n")
            w.stdin.flush()
            n, cpu, wall = w.stdout.readline().split()
            return int(n), float(cpu), float(wall)

        try:
            for fmt, (spec, unquote) in FORMAT_FILES.items():
                path = _format_file(fmt, spec, unquote, rows, d)
                if path is None:
                    print(f"readers.format_ab.{fmt}: skipped ({spec} not found)")
                    continue
                counts = {side: read(side, path)[0] for side in workers}  # warm: kernels, cache
                best = {k: [1e9, 1e9] for k in ("plain", "base", "head")}
                for _ in range(rounds):
                    for name in ("plain", "base", "head"):
                        _, cpu, wall = read(name, path)
                        best[name] = [min(best[name][0], cpu), min(best[name][1], wall)]
                assert counts["base"] == counts["head"] == counts["plain"], counts
                emit(f"readers.format_ab.{fmt}", "ratio_cpu_head", round(
                    best["plain"][0] / best["head"][0], 3), "x", rows=counts["head"],
                    ratio_cpu_base=round(best["plain"][0] / best["base"][0], 3),
                    plain_cpu_s=round(best["plain"][0], 4), base_cpu_s=round(best["base"][0], 4),
                    head_cpu_s=round(best["head"][0], 4),
                    head_vs_base_cpu=round(best["base"][0] / best["head"][0], 3),
                    ratio_wall_head=round(best["plain"][1] / best["head"][1], 3),
                    ratio_wall_base=round(best["plain"][1] / best["base"][1], 3),
                    base=base, load=load_average())
                path.unlink()
        finally:
            for w in workers.values():
                if w.stdin is not None:
                    w.stdin.close()
                w.wait(timeout=60)


def phases(rows: int, rounds: int) -> None:
    """CPU-s of each phase of a read (best of ``rounds``): opening (detection, header, probe
    of 1,000 lines), reading blocks, the typed block parse, the text parse (blocks that are
    not clean), converting the chunks (``process_chunk``: the fused pass or the exact one)
    and within it ``schema.validate`` (the exact path only); the plain typed read beside."""
    from collections import defaultdict

    import chargetracker.readers.chunk as chunk_mod
    import chargetracker.readers.text as text_mod

    acc: dict[str, float] = defaultdict(float)

    def timed(owner: Any, name: str, key: str) -> None:
        fn = getattr(owner, name)

        def wrapper(*a: Any, **k: Any) -> Any:
            c0 = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                acc[key] += time.process_time() - c0
        setattr(owner, name, wrapper)

    timed(text_mod, "process_chunk", "convert")
    timed(chunk_mod, "validate", "validate")
    timed(text_mod.TextReader, "_parse_block_typed", "typed_parse")
    timed(text_mod.TextReader, "_parse_block", "text_parse")
    blocks = text_mod.read_blocks

    def read_blocks(*a: Any, **k: Any) -> Any:
        it = blocks(*a, **k)
        while True:
            c0 = time.process_time()
            try:
                b = next(it)
            except StopIteration:
                acc["read_blocks"] += time.process_time() - c0
                return
            acc["read_blocks"] += time.process_time() - c0
            yield b
    text_mod.read_blocks = read_blocks  # type: ignore[assignment]
    with tempfile.TemporaryDirectory(prefix="ct-bench-phase-") as tmp:
        for fmt, (spec, unquote) in FORMAT_FILES.items():
            path = _format_file(fmt, spec, unquote, rows, Path(tmp))
            if path is None:
                print(f"readers.phases.{fmt}: skipped ({spec} not found)")
                continue
            plain = _plain(open_reader(path))
            best: tuple[float, float, dict[str, float]] | None = None
            n = 0
            for _ in range(rounds):
                c0 = time.process_time()
                plain()
                plain_cpu = time.process_time() - c0
                acc.clear()
                c0 = time.process_time()
                reader = open_reader(path)
                acc["open"] = time.process_time() - c0
                n = sum(c.frame.height for c in reader)
                total = time.process_time() - c0
                if best is None or total < best[0]:
                    best = (total, plain_cpu, dict(acc))
            assert best is not None
            emit(f"readers.phases.{fmt}", "reader_cpu_s", round(best[0], 4), "s",
                 higher_is_better=False, rows=n, plain_cpu_s=round(best[1], 4),
                 **{f"{k}_cpu_s": round(v, 4) for k, v in best[2].items()},
                 load=load_average())


def opens(rows: int, rounds: int, n: int = 20) -> None:
    """CPU-ms of ``open_reader(path)`` alone (detection, header, probe, calibration) per
    format: the mean of ``n`` opens, best of ``rounds``; the fixed cost of every file."""
    with tempfile.TemporaryDirectory(prefix="ct-bench-open-") as tmp:
        for fmt, (spec, unquote) in FORMAT_FILES.items():
            path = _format_file(fmt, spec, unquote, rows, Path(tmp))
            if path is None:
                print(f"readers.open.{fmt}: skipped ({spec} not found)")
                continue
            open_reader(path)  # warm: imports, caches, the page cache
            best = 1e9
            for _ in range(rounds):
                c0 = time.process_time()
                for _ in range(n):
                    open_reader(path)
                best = min(best, (time.process_time() - c0) / n)
            emit(f"readers.open.{fmt}", "open_cpu_ms", round(best * 1e3, 2), "ms",
                 higher_is_better=False, opens=n, load=load_average())


def main() -> None:
    if "--formats" in sys.argv:
        rows = int(_arg("--rows", "300000"))
        if "--base" in sys.argv:
            formats_ab(rows, int(_arg("--rounds", "5")), _arg("--base", "main"))
            return
        formats(rows, int(_arg("--rounds", "3")))
        return
    if "--opens" in sys.argv:
        opens(int(_arg("--rows", "200000")), int(_arg("--rounds", "3")))
        return
    if "--phases" in sys.argv:
        phases(int(_arg("--rows", "200000")), int(_arg("--rounds", "3")))
        return
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


def _arg(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


if __name__ == "__main__":
    main()
