"""Tuning throughput: measured candidates per minute on a 256^3 matmul, and time spent compiling."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=40, help="candidates to measure (default: 40)")
    parser.add_argument("--size", type=int, default=256, help="matmul M=N=K (default: 256)")
    parser.add_argument("--strategy", default="random", help="tpe or random (default: random)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results folder")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["AUTOSCHED_CACHE_DIR"] = str(Path(tmp) / "cache")  # cold kernel cache
        from schedules import ops
        from tuner import Database, MeasureOptions, tune
        op = ops.matmul(args.size, args.size, args.size)
        db = Database(str(Path(tmp) / "records.db"))
        opts = MeasureOptions()
        start = time.perf_counter()
        result = tune(op, "cpu", database=db, trials=args.trials, seed=args.seed,
                      strategy=args.strategy, options=opts, progress=True, confirm=0)
        wall = time.perf_counter() - start
    compile_s = sum(t.compile_seconds for t in result.history)
    structures = len({tuple(t.config[k.name] for k in op.space("cpu").structural_knobs)
                      for t in result.history})
    row = {
        "workload": f"matmul {args.size}^3", "strategy": args.strategy, "trials": len(result.history),
        "errors": sum(1 for t in result.history if t.error), "wall_s": round(wall, 2),
        "candidates_per_minute": round(60 * len(result.history) / wall, 1),
        "compile_s_in_builders": round(compile_s, 2),
        "compile_share_of_wall": round(compile_s / wall / max(1, os.cpu_count() or 1), 3),
        "distinct_structures": structures,
        "best_gflops": round(op.flops() / result.best_seconds / 1e9, 2) if result.best_seconds else None,
        "min_seconds_per_timing": opts.min_seconds,
    }
    doc = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
           "cores": os.cpu_count(), "python": platform.python_version(), "command": " ".join(["python", "benchmarks/tuning_throughput.py"] + (argv or sys.argv[1:])),
           "result": row}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"tuning_throughput-{args.strategy}-{args.size}-{doc['date']}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(row, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
