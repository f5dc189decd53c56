"""``chargetracker analyze``: per-cycle table of cycler files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from ..analysis import analyze_files, group_table
from ..config import EngineConfig
from ..errors import ConfigError
from ..readers import FORMATS, GenericOptions

TABLE_COLUMNS = ["cell_id", "cycle", "status", "duration_s", "charge_ah", "discharge_ah",
                 "charge_wh", "discharge_wh", "coulombic_efficiency", "energy_efficiency",
                 "retention", "internal_resistance_ohm", "gap_count", "gap_missing_ah"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("analyze", help="per-cycle capacity, energy and efficiency of cycler files",
                       description="Read cycler exports (Arbin CSV/.res, Maccor, BioLogic "
                       ".mpt/.mpr, Neware CSV/.nda/.ndax, PEC, Novonix, Battery Archive, "
                       "batterydata.energy.gov, generic CSV/Parquet; plain or .gz/.bz2/.xz/.zip, "
                       "UTF-8/UTF-16/code page) and print the per-cycle table. The format is "
                       "detected from each file's content (see docs/readers.md).")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", default="auto", choices=["auto", *FORMATS])
    p.add_argument("--group-by", metavar="KEY", help="print group statistics by a metadata key "
                   "(group, chemistry, test_type, an attributes key, or 'file')")
    p.add_argument("--metric", default="discharge_ah", help="metric for --group-by (default discharge_ah)")
    p.add_argument("--out", metavar="cycles.csv|.parquet", help="write the cycle table")
    p.add_argument("--steps", metavar="steps.csv|.parquet", help="write the step table")
    p.add_argument("--rejects", metavar="rejects.csv", help="write rejected rows with reasons")
    p.add_argument("--cell-id", action="append", help="cell id per file (default: file name)")
    p.add_argument("--nominal-capacity", type=float, metavar="AH",
                   help="nominal capacity, Ah, of every cell of every file")
    p.add_argument("--cells", metavar="cells.csv|.parquet",
                   help="cell metadata (cell_id, nominal_capacity_ah, group, ...); default: "
                   "X.cells.parquet beside X.parquet when present")
    p.add_argument("--timezone", metavar="TZ", default="UTC",
                   help="IANA zone of naive local timestamps in the files (default UTC)")
    p.add_argument("--start-time", type=float, metavar="EPOCH_S",
                   help="epoch s of test time 0 for files without absolute time")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("engine")
    g.add_argument("--epsilon", type=float, metavar="A", help="rest/charge current threshold, A")
    g.add_argument("--min-step", type=float, default=3.0, metavar="S")
    g.add_argument("--gap-limit", type=float, metavar="S",
                   help="fixed gap limit, s (default: judged from evidence, docs/metrics.md)")
    g.add_argument("--lateness", type=float, default=2.0, metavar="S")
    g.add_argument("--cycle-start", choices=["charge", "discharge"], default="charge")
    g.add_argument("--ignore-labels", action="store_true", help="detect cycles/steps from current only")
    gen = p.add_argument_group("generic CSV/Parquet")
    gen.add_argument("--map", action="append", default=[], metavar="CANONICAL=SOURCE",
                     help="column map, e.g. --map current_a=I_mA --map ts=time")
    gen.add_argument("--current-unit", choices=["A", "mA"], default="A")
    gen.add_argument("--voltage-unit", choices=["V", "mV"], default="V")
    gen.add_argument("--time-unit", choices=["s", "ms", "us", "min", "h"], default="s")
    gen.add_argument("--time-format", default="auto", help="auto, epoch, relative, iso or a strptime format")
    gen.add_argument("--sign", choices=["charge_positive", "discharge_positive"], default="charge_positive")
    gen.add_argument("--skip-lines", type=int, default=0, metavar="N",
                     help="lines before the header line (a preamble)")
    gen.add_argument("--separator", metavar="SEP",
                     help="field separator: ',', ';', 'tab' (default: sniffed from the header)")
    gen.add_argument("--decimal-comma", action="store_true", help="numbers written as 3,71")
    p.set_defaults(func=run)


def _write(frame: pl.DataFrame, path: str) -> None:
    if path.endswith(".parquet"):
        frame.write_parquet(path)
    elif path.endswith(".csv"):
        frame.write_csv(path)
    else:
        raise ConfigError(f"{path}: output must end in .csv or .parquet")


def run(args: argparse.Namespace) -> int:
    config = EngineConfig(
        current_epsilon_a=args.epsilon, min_step_s=args.min_step, gap_limit_s=args.gap_limit,
        lateness_s=args.lateness, cycle_start=args.cycle_start,
        use_cycle_labels=not args.ignore_labels, use_step_labels=not args.ignore_labels,
    )
    options = None
    sep = {"tab": "\t", "\\t": "\t", "semicolon": ";", "comma": ","}.get(
        args.separator or "", args.separator)
    if sep is not None and len(sep) != 1:
        raise ConfigError(f"--separator {args.separator!r}: give one character, or tab")
    if args.skip_lines < 0:
        raise ConfigError("--skip-lines must be >= 0")
    generic_flags = bool(args.map or args.skip_lines or sep or args.decimal_comma)
    if generic_flags and args.format not in ("auto", "generic"):
        raise ConfigError("--map, --skip-lines, --separator and --decimal-comma are options of "
                          "--format generic")
    if generic_flags or args.format == "generic":
        columns = {}
        for item in args.map:
            if "=" not in item:
                raise ConfigError(f"--map {item!r}: expected CANONICAL=SOURCE")
            k, v = item.split("=", 1)
            columns[k.strip()] = v.strip()
        options = GenericOptions(columns=columns, current_unit=args.current_unit,
                                 voltage_unit=args.voltage_unit, time_unit=args.time_unit,
                                 time_format=args.time_format, sign=args.sign,
                                 skip_lines=args.skip_lines, separator=sep,
                                 decimal_comma=args.decimal_comma)
    if args.cell_id and len(args.cell_id) != len(args.files):
        raise ConfigError("give --cell-id once per file")
    for f in args.files:
        if not Path(f).is_file():
            raise ConfigError(f"{f}: no such file")
    if args.cells and not Path(args.cells).is_file():
        raise ConfigError(f"--cells {args.cells}: no such file")
    bar = None
    if not args.no_progress and sys.stderr.isatty():
        from tqdm import tqdm
        bar = tqdm(total=0, unit="B", unit_scale=True, file=sys.stderr, leave=False)

    def progress(source: str, done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.set_description(Path(source).name)
            bar.update(done - bar.n)

    result = analyze_files(args.files, format=args.format, config=config, options=options,
                           cell_ids=args.cell_id, nominal_capacity_ah=args.nominal_capacity,
                           progress=progress, cells=args.cells,
                           reader_kw={"timezone": args.timezone, "start_time": args.start_time})
    if bar is not None:
        bar.close()
    with pl.Config(tbl_rows=60, tbl_cols=len(TABLE_COLUMNS), float_precision=4,
                   tbl_hide_dataframe_shape=True, tbl_width_chars=200):
        print(result.cycles.select(TABLE_COLUMNS))
        if args.group_by:
            table = group_table(result, key=args.group_by, metric=args.metric)
            print(f"\n{args.metric} by {args.group_by} (closed cycles):")
            print(table.select("group", "cycle", "cell_id", "value", "mean", "std", "z", "robust_z",
                               "pct_deviation", "outlier"))
    if args.out:
        _write(result.cycles, args.out)
    if args.steps:
        _write(result.steps, args.steps)
    gaps = result.cycles.filter(pl.col("gap_count") > 0)
    if gaps.height:
        # Excluded intervals change the numbers: say so loudly, per cycle.
        print(f"\nwarning: data gaps excluded in {gaps.height} cycle(s) (not integrated):", file=sys.stderr)
        for r in gaps.head(10).iter_rows(named=True):
            print(f"  {r['cell_id']} cycle {r['cycle']}: {r['gap_count']} gap(s), "
                  f"{r['gap_excluded_s']:.0f} s, ~{r['gap_missing_ah']:.4g} Ah missing", file=sys.stderr)
    if result.rejected.height:
        print(f"\n{result.rejected.height} row(s) rejected:", file=sys.stderr)
        for r in result.rejected.head(10).iter_rows(named=True):
            where = Path(r["source"]).name if r["source"] else "?"
            print(f"  {where}:{r['row']}: {r['field']}: {str(r['reason'])[:200]}",
                  file=sys.stderr)
        if args.rejects:
            _write(result.rejected, args.rejects)
    empty = result.files.filter((pl.col("rows") == 0) & (pl.col("rejected") == 0))
    for r in empty.iter_rows(named=True):
        print(f"chargetracker analyze: error: {Path(r['source']).name}: no data rows (a header "
              f"only?); nothing to analyze", file=sys.stderr)
    if result.files.height and result.files.filter(pl.col("rows") > 0).height == 0:
        print("chargetracker analyze: error: no measurements accepted from any file",
              file=sys.stderr)
        return 1
    return 1 if empty.height else 0
