"""The `autosched bench` subcommand."""
from __future__ import annotations

import argparse
import fnmatch
import sys


def cmd_bench(args) -> int:
    from .baselines import BASELINES, Workload
    from .bench import DEFAULT_SUITE, format_table, run_bench, write_json
    from .commands import UsageError, read_suite
    if args.write_suite:
        with open(args.write_suite, "w", encoding="utf-8") as f:
            f.write(DEFAULT_SUITE)
        print(f"wrote the default suite to {args.write_suite}; edit it and pass --suite {args.write_suite}")
        return 0
    name = args.suite or "default"
    entries, _ = read_suite(name, None if args.suite else DEFAULT_SUITE)
    jobs = [(Workload(op, params), trials) for op, params, trials in entries]
    if args.only:
        from .bench import label_of
        jobs = [j for j in jobs if any(fnmatch.fnmatch(label_of(j[0]), p) for p in args.only.split(";"))]
        if not jobs:
            raise UsageError(f"--only {args.only!r} matches no workload of suite {name}")
    baselines = tuple(b for b in (args.baselines or ",".join(BASELINES)).split(",") if b)
    if args.trials is not None and args.trials < 0:
        raise UsageError(f"--trials must be >= 0, got {args.trials}")
    db = None
    if args.database != "none":
        from tuner import Database
        db = Database(args.database)
    if args.rounds < 1:
        raise UsageError(f"--rounds must be >= 1, got {args.rounds}")
    report = run_bench(jobs, db, args.target, trials=args.trials, seconds=args.seconds, rounds=args.rounds,
                       baselines=baselines, strategy=args.strategy, seed=args.seed,
                       progress=not args.quiet, suite_name=name)
    print()
    print(format_table(report))
    print(f"\npeak {report.peak_gflops:.1f} GFLOPS on {report.threads} threads; "
          f"'vs X' is X's time over autosched's (above 1: autosched is faster)")
    if args.out != "none":
        path = write_json(report, args.out)
        print(f"raw results: {path}" + (f"; stored in {db.url}" if db is not None else ""))
    return 0


def add_bench_command(sub) -> None:
    b = sub.add_parser(
        "bench", help="time tuned kernels against numpy, PyTorch, ONNX Runtime and OpenVINO",
        description="For each workload of a suite, take the best tuned kernel from the database "
                    "(tuning it now when --trials asks for more than is recorded), check every "
                    "implementation against the reference, and time it against the baselines in "
                    "the same run. Prints time, GFLOPS, % of the machine's measured FMA peak and "
                    "speedups; stores the run in the database and a JSON file.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  autosched bench --database tuning.db --trials 0\n"
               "  autosched bench --only 'matmul*' --trials 64\n"
               "  autosched bench --write-suite my-suite.yaml && autosched bench --suite my-suite.yaml")
    b.add_argument("--suite", help="YAML suite file (default: the built-in suite of BERT, ResNet-50, "
                                   "MobileNet and transformer shapes; see --write-suite)")
    b.add_argument("--database", default="autosched.db",
                   help="records database URL or SQLite path, or 'none' (default: ./autosched.db)")
    b.add_argument("--trials", type=int, default=None,
                   help="tuning budget per workload; 0 never tunes (default: the suite's trials)")
    b.add_argument("--baselines", help="comma-separated subset of numpy,pytorch,onnxruntime,openvino (default: all)")
    b.add_argument("--only", help="run only workloads whose label matches these ;-separated glob patterns")
    b.add_argument("--seconds", type=float, default=0.5, help="minimum timed seconds per implementation (default: 0.5)")
    b.add_argument("--rounds", type=int, default=3,
                   help="interleaved timing rounds, each of seconds/rounds per implementation (default: 3)")
    b.add_argument("--target", default="cpu", help="hardware target (default: cpu)")
    b.add_argument("--strategy", default="xgb", choices=("xgb", "tpe", "random"), help="search strategy when tuning")
    b.add_argument("--seed", type=int, default=0, help="search seed (default: 0)")
    b.add_argument("--out", default="benchmarks/results",
                   help="folder for the JSON result, or 'none' (default: benchmarks/results)")
    b.add_argument("--write-suite", metavar="FILE", help="write the default suite to FILE and exit")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=cmd_bench)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run `autosched bench`, not this module")
