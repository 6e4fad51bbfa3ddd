"""Polish every workload of a bench suite already tuned in a database: each gets `--polish`
more trials, spent on the runtime neighbours of its built record (tuner.polish; the search
first where the budget's last quarter is smaller), then the end-of-tuning re-timing. Prints
the built record's time before and after.

    python benchmarks/polish_suite.py --database benchmarks/.bench/cur.db --polish 16
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="records database URL or SQLite path")
    parser.add_argument("--polish", type=int, default=16, help="polish trials per workload (default: 16)")
    parser.add_argument("--only", default=None, help=";-separated glob patterns of workload labels")
    parser.add_argument("--out", default=None, help="JSON file for the before/after table")
    args = parser.parse_args(argv)
    if args.polish < 1:
        parser.error("--polish must be at least 1")

    from schedules import as_target
    from tuner import Database, tune
    from tuner.baselines import Workload, parameter_names
    from tuner.bench import DEFAULT_SUITE, label_of
    from tuner.commands import make_operator, read_suite
    from tuner.versions import codegen_version

    db = Database(args.database)
    target = as_target("cpu")
    entries, _ = read_suite("default", DEFAULT_SUITE)
    rows = []
    for op_name, params, _ in entries:
        workload = Workload(op_name, params)
        label = label_of(workload)
        if args.only and not any(fnmatch.fnmatch(label, p) for p in args.only.split(";")):
            continue
        op = make_operator(op_name, dict(params)).with_constants(*parameter_names(workload))
        space = op.space(target)
        before = db.best(op, target, space.version, codegen_version())
        if before is None:
            print(f"{label}: no tuned record; skipped", flush=True)
            continue
        measured = len(db.measured_configs(op, target, space.version))
        # tune() polishes at most the last quarter of a budget, so a workload with fewer than
        # 3 * polish records (an `export --best` import) gets search trials first.
        budget = measured + args.polish
        result = tune(op, target, database=db, trials=budget, strategy="xgb", polish=args.polish)
        after = db.best(op, target, space.version, codegen_version())
        row = {"workload": label, "records_before": measured, "new_trials": len(result.history),
               "before": {"config": before.config.to_json(), "seconds": before.seconds,
                          "confirmed_seconds": before.confirmed_seconds},
               "after": {"config": after.config.to_json(), "seconds": after.seconds,
                         "confirmed_seconds": after.confirmed_seconds},
               "changed": before.config != after.config}
        rows.append(row)
        shown = lambda r: f"{r.seconds * 1e3:.4f} ms" + (f" (re-timed {r.confirmed_seconds * 1e3:.4f})"
                                                          if r.confirmed_seconds else "")
        print(f"{label}: {len(result.history)} trials; built {shown(before)} -> {shown(after)}"
              + ("" if row["changed"] else ", unchanged"), flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"database": args.database, "polish": args.polish, "rows": rows}, f, indent=2)
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
