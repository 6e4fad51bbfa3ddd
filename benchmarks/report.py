"""Writing a benchmark's JSON result with the machine, the date and the command that made it."""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path


def write_result(out_dir, name: str, script: str, argv, fields: dict) -> Path:
    """Write benchmarks/results-style JSON to out_dir/name-DATE.json and return its path."""
    date = datetime.date.today().isoformat()
    doc = {"date": date, "machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "python": platform.python_version(),
           "command": " ".join(["python", script] + list(argv if argv is not None else sys.argv[1:])),
           **fields}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{date}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def add_bench_row_arguments(parser, rounds: int, only: str = "") -> None:
    """The arguments of a script that times kernels at the tuned configs of a bench run."""
    parser.add_argument("bench_json", help="an `autosched bench` result whose rows name their configs")
    parser.add_argument("--only", default=only, help="';'-separated parts of the labels of the rows to time "
                        f"(default: {only!r})" if only else "';'-separated parts of the labels of the rows "
                        "to time (default: every row it applies to)")
    parser.add_argument("--rounds", type=int, default=rounds, help=f"alternating timing rounds (default: {rounds})")
    parser.add_argument("--seconds", type=float, default=0.25, help="timed seconds per variant and round")


def bench_rows(parser, args) -> list:
    """The rows of args.bench_json, after checking the timing arguments (exits with a usage
    error otherwise)."""
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds must be at least 1 and --seconds above 0")
    try:
        return json.loads(Path(args.bench_json).read_text())["rows"]
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"cannot read bench rows from {args.bench_json}: {exc}")


def wanted(row: dict, only: str) -> bool:
    """Whether a bench row's label holds one of the ';'-separated parts of `only` (any, if empty)."""
    return not only or any(part and part in row["label"] for part in only.split(";"))


def write_rows_result(args, name: str, script: str, argv, results: list) -> None:
    """Write the timed rows to args.out (a folder), if given, with the thread count, the rounds
    and the bench run the configs came from."""
    if not args.out:
        return
    from codegen.parallel import thread_count
    path = write_result(args.out, name, script, argv, {"threads": thread_count(), "rounds": args.rounds,
                                                       "configs_from": args.bench_json, "rows": results})
    print(f"results: {path}")


def tuned_workloads(rows: list, only: str):
    """(row, its tuned config, its operator with weight and bias as constants, inputs) for each
    bench row with a config whose label `only` selects."""
    from schedules import ops
    for row in rows:
        config = (row.get("autosched") or {}).get("config")
        if not config or not wanted(row, only):
            continue
        plain = getattr(ops, row["op"])(**row["params"])
        op = plain.with_constants(*[t.name for t in plain.inputs if t.name in ("weight", "bias")])
        yield row, config, op, op.random_inputs(0)
