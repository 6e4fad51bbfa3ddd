"""The tune, best, export and import subcommands of `autosched`."""
from __future__ import annotations

import argparse
import re
import sys
import time

from schedules.errors import AutoschedError

from .confirm import CONFIRM_ROUNDS, CONFIRM_TOP
from .polish import POLISH_TRIALS


class UsageError(AutoschedError):
    """A command-line argument or suite file that cannot be used."""


def parse_duration(text: str) -> float:
    """'90', '45s', '30m', '8h' or '1h30m' -> seconds."""
    t = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", t)
    if not parts or "".join(a + b for a, b in parts) != t:
        raise UsageError(f"cannot read time budget {text!r}; write e.g. 90, 45s, 30m, 8h or 1h30m")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def _whole_number_at_least(least: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got {text!r}")
        return value
    return parse


_non_negative = _whole_number_at_least(0)
_positive = _whole_number_at_least(1)


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    return text


def parse_shape(text: str) -> dict:
    """'M=128,N=768,K=768,activation=gelu' -> keyword arguments of the operator constructor."""
    out = {}
    for item in filter(None, (p.strip() for p in (text or "").split(","))):
        if "=" not in item:
            raise UsageError(f"--shape item {item!r} must look like name=value, e.g. M=128")
        k, v = item.split("=", 1)
        out[k.strip()] = _value(v.strip())
    return out


def make_operator(name: str, params: dict):
    from schedules import ops
    if name not in ops.LIBRARY:
        raise UsageError(f"unknown operator {name!r}; choose one of {', '.join(sorted(ops.LIBRARY))}")
    try:
        return ops.LIBRARY[name](**params)
    except TypeError as exc:
        raise UsageError(f"operator {name}: {exc}; see help(schedules.ops.{ops.LIBRARY[name].__name__})") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def load_suite(path: str) -> tuple:
    """(workloads, time budget or None) from a YAML suite file.

    time_budget: 8h            # optional, for the whole suite
    trials: 200                # optional default per workload
    workloads:
      - {op: dense, M: 128, N: 768, K: 768, activation: gelu, trials: 300}
      - {op: softmax, M: 128, N: 768}
    """
    entries, budget = read_suite(path)
    return [(make_operator(name, params), trials) for name, params, trials in entries], budget


def read_suite(path: str, text: str | None = None) -> tuple:
    """([(op name, constructor params, trials)], time budget or None), each entry validated
    by building its operator. `text` gives the YAML directly (path then only names it)."""
    import yaml
    try:
        if text is None:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        doc = yaml.safe_load(text)
    except OSError as exc:
        raise UsageError(f"cannot read suite {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"suite {path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("workloads"), list) or not doc["workloads"]:
        raise UsageError(f"suite {path} needs a non-empty 'workloads:' list")
    budget = parse_duration(doc["time_budget"]) if doc.get("time_budget") is not None else None
    default_trials = doc.get("trials", 64)
    out = []
    for i, w in enumerate(doc["workloads"], 1):
        if not isinstance(w, dict) or "op" not in w:
            raise UsageError(f"suite {path}: workload {i} must be a mapping with an 'op' key")
        params = {k: v for k, v in w.items() if k not in ("op", "trials")}
        trials = w.get("trials", default_trials)
        if not isinstance(trials, int) or trials < 0:
            raise UsageError(f"suite {path}: workload {i} has trials={trials!r}; use a non-negative integer")
        make_operator(str(w["op"]), params)
        out.append((str(w["op"]), params, trials))
    return out, budget


def cmd_tune(args) -> int:
    from tuner import Database, tune
    if bool(args.suite) == bool(args.op):
        raise UsageError("give either --op NAME (with --shape) or --suite FILE.yaml")
    if args.suite:
        jobs, budget = load_suite(args.suite)
    else:
        jobs, budget = [(make_operator(args.op, parse_shape(args.shape)), args.trials)], None
    if args.constants:
        names = [n.strip() for n in args.constants.split(",") if n.strip()]
        try:
            jobs = [(op.with_constants(*names), trials) for op, trials in jobs]
        except ValueError as exc:
            raise UsageError(f"--constants: {exc}") from None
    if args.time_budget:
        budget = parse_duration(args.time_budget)
    db = Database(args.database)
    deadline = None if budget is None else time.monotonic() + budget
    status = 0
    for op, trials in jobs:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            print(f"time budget spent; {op.name} ({op.workload_key}) not tuned this time")
            continue
        result = tune(op, args.target, database=db, trials=trials, seed=args.seed,
                      strategy=args.strategy, timeout=remaining, progress=not args.quiet,
                      confirm=args.confirm, confirm_rounds=args.confirm_rounds, polish=args.polish)
        errors = sum(1 for t in result.history if t.error)
        best = "no correct candidate yet" if result.best_seconds is None else \
            f"best {result.best_seconds * 1e3:.4f} ms ({op.flops() / result.best_seconds / 1e9:.1f} GFLOPS)"
        if result.confirmed_seconds is not None:
            best += (f", {result.confirmed_seconds * 1e3:.4f} ms re-timed beside "
                     f"{result.confirmed_among - 1} other fastest record(s)")
        print(f"{op.name} {op.workload_key}: {len(result.history)} measured now ({errors} errors), "
              f"{result.total_measured}/{trials} in total; {best}")
        if result.interrupted:
            print(f"autosched: interrupted; measured records are kept in {db.url}", file=sys.stderr)
            return 130
    return status


def cmd_best(args) -> int:
    from tuner import Database
    rows = Database(args.database).summary()
    if not rows:
        print(f"no records in {args.database}")
        return 0
    print(f"{'operator':<24} {'workload':<44} {'records':>7} {'errors':>6} {'fastest ms':>10} "
          f"{'built ms':>10} {'re-timed ms':>11}  target")
    for r in rows:
        cells = [("-" if v is None else f"{v * 1e3:.4f}")
                 for v in (r["best_seconds"], r["built_seconds"], r["confirmed_seconds"])]
        print(f"{r['op_name']:<24} {r['workload_key']:<44} {r['records']:>7} {r['errors']:>6} "
              f"{cells[0]:>10} {cells[1]:>10} {cells[2]:>11}  {r['target_key']}")
    return 0


def cmd_export(args) -> int:
    from tuner import Database
    from tuner.logs import export_jsonl
    n = export_jsonl(Database(args.database), args.out, best=args.best)
    kept = "" if args.best is None else \
        f" (the {args.best} fastest correct ones of each workload and target, and every re-timed one)"
    print(f"exported {n} records{kept} to {args.out}")
    return 0


def cmd_import(args) -> int:
    from tuner import Database
    from tuner.logs import import_jsonl
    added, present = import_jsonl(Database(args.database), args.file)
    print(f"imported {added} records from {args.file} ({present} were already present)")
    return 0


def add_commands(sub) -> None:
    t = sub.add_parser("tune", help="tune one operator or a suite of them into a records database",
                       description="Measure candidates of an operator's schedule space and store every "
                                   "measurement. Rerunning the same command resumes: --trials is the "
                                   "total budget per workload and target.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  autosched tune --op dense --shape M=128,N=768,K=768,activation=gelu "
                              "--trials 200 --database tuning.db\n  autosched tune --suite overnight.yaml "
                              "--database postgresql://host/tuning --time-budget 8h")
    t.add_argument("--op", help="library operator: matmul, dense, conv2d, softmax, ...")
    t.add_argument("--shape", default="", help="constructor arguments, e.g. M=128,N=768,K=768")
    t.add_argument("--suite", help="YAML file listing operators and shapes")
    t.add_argument("--target", default="cpu",
                   help="hardware target: cpu (this machine, the default), cuda (GPU 0), or cuda-sim "
                        "(the GPU schedule run on the CPU, for checking)")
    t.add_argument("--trials", type=int, default=64, help="total trials per workload (default: 64)")
    t.add_argument("--database", default="autosched.db", help="SQLAlchemy URL or SQLite path (default: ./autosched.db)")
    t.add_argument("--strategy", default="xgb", choices=("xgb", "tpe", "random"),
                   help="xgb (cost-model guided), tpe or random (default: xgb)")
    t.add_argument("--seed", type=int, default=0, help="search seed (default: 0)")
    t.add_argument("--constants", default="",
                   help="comma-separated inputs held constant across calls, e.g. weight,bias: tuned "
                        "with them bound (packed once), as a workload of its own")
    t.add_argument("--time-budget", help="stop after this long, e.g. 30m or 8h")
    t.add_argument("--confirm", type=_non_negative, default=CONFIRM_TOP,
                   help="at the end, time the N fastest records again, interleaved, and build the one "
                        f"with the fastest median (default: {CONFIRM_TOP}; 0: keep the fastest single timing)")
    t.add_argument("--confirm-rounds", type=_non_negative, default=CONFIRM_ROUNDS,
                   help=f"rounds of that re-timing (default: {CONFIRM_ROUNDS})")
    t.add_argument("--polish", type=_non_negative, default=POLISH_TRIALS,
                   help="the last N trials (at most a quarter of --trials) measure the best record's "
                        "runtime neighbours: each other cache block or parallel split, no compile "
                        f"(default: {POLISH_TRIALS}; 0: search to the end)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_tune)

    b = sub.add_parser("best", help="show the best record of each workload and target",
                       description="A table per workload and target: records, errors, the fastest "
                                   "single timing, the time of the record build_best builds, and "
                                   "that record's median when the fastest were re-timed together.")
    b.add_argument("--database", default="autosched.db", help="SQLAlchemy URL or SQLite path")
    b.set_defaults(func=cmd_best)

    e = sub.add_parser("export", help="write every record as JSON lines",
                       description="Export the records of a database as JSON lines, for sharing: every "
                                   "record, or with --best only the fastest of each workload.")
    e.add_argument("--database", default="autosched.db", help="SQLAlchemy URL or SQLite path")
    e.add_argument("--out", required=True, help="output file (.jsonl)")
    e.add_argument("--best", type=_positive, metavar="K",
                   help="keep only the K fastest correct records of each workload and target (per "
                        "space and code-generator version), and every record a re-timing compared: "
                        "imported into an empty database, the file builds the same kernels, and it "
                        "stays small enough to commit beside a benchmark (default: every record)")
    e.set_defaults(func=cmd_export)

    i = sub.add_parser("import", help="add records from a JSON-lines file",
                       description="Import records from JSON lines. Every line is validated first; "
                                   "if any line is invalid nothing is imported, and each bad line is "
                                   "reported with its number. Records already present are skipped.")
    i.add_argument("--database", default="autosched.db", help="SQLAlchemy URL or SQLite path")
    i.add_argument("file", help="a .jsonl file written by autosched export")
    i.set_defaults(func=cmd_import)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run `autosched`, not this module")
