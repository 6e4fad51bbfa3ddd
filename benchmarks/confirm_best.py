"""What re-timing the fastest records (tuner.confirm) changes: for each workload of a suite,
confirm the database's fastest records (unless tuning already did), and where the confirmed
pick is another record than the fastest single timing, time both kernels again, alternating,
over several rounds, to see which pick is faster.

    python benchmarks/confirm_best.py --database benchmarks/.bench/bench.db --rounds 7

The confirmations are stored in the database, as `autosched tune` would store them, so later
`autosched bench` runs build the confirmed records. Copy the database first to keep it as it was.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _tuned_operator(db, workload, target):
    """The operator `autosched bench` builds for this workload: with its weights bound when
    such records exist, else the plain one. None when neither was tuned."""
    from tuner.baselines import parameter_names
    from tuner.commands import make_operator
    from tuner.versions import codegen_version
    plain = make_operator(workload.op_name, dict(workload.params))
    for op in (plain.with_constants(*parameter_names(workload)), plain):
        if db.best(op, target, op.space(target).version, codegen_version()) is not None:
            return op
    return None


def _alternate(kernels: dict, inputs, params, rounds: int, seconds: float) -> dict:
    """name -> median over rounds of each round's median time; the kernels take turns."""
    from tuner.timing import median, time_callable
    bound = {}
    for name, kernel in kernels.items():
        free = inputs
        if params and hasattr(kernel, "bind_inputs"):
            kernel, free = kernel.bind_inputs(inputs, params)
        bound[name] = (kernel, free)
    per_round = {name: [] for name in kernels}
    names = list(kernels)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            kernel, free = bound[name]
            kernel(*free)
            time.sleep(0.1)
            per_round[name].append(median(time_callable(lambda: kernel(*free), seconds)))
    return {name: statistics.median(v) for name, v in per_round.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database", required=True, help="records database (SQLite path or URL)")
    p.add_argument("--only", default="*", help="';'-separated globs over the bench labels")
    p.add_argument("--top", type=int, default=4, help="records re-timed per workload (default 4)")
    p.add_argument("--confirm-rounds", type=int, default=3, help="rounds of the confirmation (default 3)")
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds of the final comparison")
    p.add_argument("--seconds", type=float, default=0.3, help="timing per kernel per round")
    p.add_argument("--out", default="benchmarks/results", help="folder for the JSON and markdown results")
    args = p.parse_args(argv)

    from codegen import build
    from schedules import as_target
    from tuner import Database, LocalMeasurer
    from tuner.baselines import Workload, parameter_names
    from tuner.bench import DEFAULT_SUITE, label_of
    from tuner.commands import read_suite
    from tuner.confirm import confirm_best
    from tuner.versions import codegen_version
    target = as_target("cpu")
    db = Database(args.database)
    entries, _ = read_suite("default", DEFAULT_SUITE)
    workloads = [Workload(op, params) for op, params, _ in entries]
    workloads = [w for w in workloads if any(fnmatch.fnmatch(label_of(w), g) for g in args.only.split(";"))]
    rows = []
    with LocalMeasurer() as measurer:
        for w in workloads:
            label = label_of(w)
            op = _tuned_operator(db, w, target)
            if op is None:
                print(f"{label}: no tuned record; skipped")
                continue
            space, version = op.space(target), codegen_version()
            [(fastest_id, fastest)] = db.fastest(op, target, space.version, version, 1)
            start = time.perf_counter()
            done = confirm_best(db, op, target, space, measurer, None, args.top, args.confirm_rounds)
            spent = time.perf_counter() - start
            best = db.best(op, target, space.version, version)
            compared = db.newest_confirmation(op, target, space.version, version)
            row = {"label": label, "compared": len(compared), "confirmed_now": done is not None,
                   "confirm_seconds": round(spent, 1), "changed": best.config != fastest.config,
                   "fastest_single_ms": fastest.seconds * 1e3,
                   "confirmed_ms": None if best.confirmed_seconds is None else best.confirmed_seconds * 1e3}
            if row["changed"]:
                inputs = op.random_inputs(0)
                params = [n for n in parameter_names(w) if n in op.constants]
                times = _alternate({"fastest single timing": build(op, target, fastest.config),
                                    "confirmed": build(op, target, best.config)},
                                   inputs, params, args.rounds, args.seconds)
                row["fastest_single_pick_ms"] = times["fastest single timing"] * 1e3
                row["confirmed_pick_ms"] = times["confirmed"] * 1e3
                row["speedup"] = times["fastest single timing"] / times["confirmed"]
            rows.append(row)
            gain = f", confirmed pick {row['speedup']:.3f}x the other" if row["changed"] else ""
            print(f"{label}: compared {row['compared']} in {spent:.0f} s; "
                  f"{'another record' if row['changed'] else 'the same record'}{gain}", flush=True)
    stamp = datetime.now(timezone.utc)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"confirm-best-{stamp:%Y-%m-%d}-{target.arch}"
    (out / f"{name}.json").write_text(json.dumps({"date": stamp.isoformat(timespec="seconds"),
                                                   "target": target.key, "args": vars(args), "rows": rows},
                                                  indent=1))
    (out / f"{name}.md").write_text(_markdown(rows, args))
    print(_markdown(rows, args))
    return 0


def _markdown(rows, args) -> str:
    lines = [f"Confirmation: the {args.top} fastest records re-timed in {args.confirm_rounds} rounds; "
             f"where the pick changed, both picks timed alternately over {args.rounds} rounds.", "",
             "| workload | compared | confirm s | pick | fastest single timing ms | confirmed median ms "
             "| old pick ms | new pick ms | new/old speed |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        conf = "-" if r["confirmed_ms"] is None else f"{r['confirmed_ms']:.4f}"
        if r["changed"]:
            tail = f"{r['fastest_single_pick_ms']:.4f} | {r['confirmed_pick_ms']:.4f} | {r['speedup']:.3f}x"
        else:
            tail = "- | - | -"
        lines.append(f"| {r['label']} | {r['compared']} | {r['confirm_seconds']} | "
                     f"{'changed' if r['changed'] else 'same'} | {r['fastest_single_ms']:.4f} | {conf} | {tail} |")
    changed = [r["speedup"] for r in rows if r["changed"]]
    if changed:
        lines += ["", f"{len(changed)} of {len(rows)} picks changed; new/old speed median "
                      f"{statistics.median(changed):.3f}x, range {min(changed):.3f}-{max(changed):.3f}x."]
    else:
        lines += ["", f"none of {len(rows)} picks changed."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
