"""Search efficiency: how many measured trials each strategy needs to find a fast schedule.

For every workload, the strategies random, tpe, xgb (cold) and xgb-warm (warm-started from the
records of the other workloads) tune with several seeds. Reported: best-so-far throughput
against trials (SVG plots), trials to reach 95% of the best throughput known for the workload,
and the cost model's ranking quality on held-out workloads (Spearman, top-k recall).

Each (workload, config) is measured once and replayed to every strategy that proposes it
(benchmarks/measure_cache.py), so strategies are compared on identical timings. Progress is
saved after every run: rerunning with the same --work folder resumes.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STRATEGIES = ("random", "tpe", "xgb", "xgb-warm")


def workloads():
    from schedules import ops
    return {
        "matmul 256x256x256": ops.matmul(256, 256, 256),
        "conv2d 1x32x28x28 k32 3x3": ops.conv2d(1, 32, 28, 28, 32, 3, 3, padding=1),
        "dense+gelu 64x256x256": ops.dense(64, 256, 256, activation="gelu"),
        "layer_norm 128x768": ops.layer_norm(128, 768),
    }


def run_one(op, others, strategy, seed, trials, measurer, work: Path) -> dict:
    """Tune op from an empty database (plus the other workloads' records for xgb-warm)."""
    from schedules import Target
    from tuner import Database, tune
    from tuner.records import TuningRecord
    db_path = work / f"run-{op.workload_key}-{strategy}-{seed}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    db = Database(str(db_path))
    tgt = Target.host_cpu()
    if strategy == "xgb-warm":  # one transaction, not a commit per transferred record
        db.import_records(
            TuningRecord(other.workload_key, tgt.key, config, r.seconds, r.costs, r.error, r.error_message,
                         r.compile_seconds, space_version=other.space(tgt).version, op_name=other.name,
                         features=r.features)
            for other in others for config, r in measurer.entries(other.workload_key))
    measuring_before = measurer.seconds_measuring
    start = time.perf_counter()
    result = tune(op, tgt, database=db, trials=trials, seed=seed,
                  strategy="xgb" if strategy == "xgb-warm" else strategy,
                  measurer=measurer, transfer=strategy == "xgb-warm")
    wall = time.perf_counter() - start
    db.close()
    db_path.unlink(missing_ok=True)
    return {"seconds": [t.seconds for t in result.history],
            "errors": sum(1 for t in result.history if t.error),
            "search_seconds": round(wall - (measurer.seconds_measuring - measuring_before), 2)}


def best_so_far(seconds: list, flops: float) -> list:
    out, best = [], 0.0
    for s in seconds:
        if s is not None and s > 0:
            best = max(best, flops / s)
        out.append(best)
    return out


def trials_to_reach(curve: list, goal: float) -> int | None:
    for i, v in enumerate(curve):
        if v >= goal:
            return i + 1
    return None


def ranks(x):
    import numpy as np
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    for v in np.unique(x):  # average rank for ties
        m = x == v
        r[m] = r[m].mean()
    return r


def spearman(a, b) -> float:
    import numpy as np
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def ranking_quality(ops_by_name, measurer, seed: int, k: int = 10) -> dict:
    """Train on all but one workload, rank the held-out workload's measured configs."""
    import numpy as np

    from costmodel import RandomModel, XGBModel
    data = {}
    for name, op in ops_by_name.items():
        rows = [(r.features, r.seconds) for _, r in measurer.entries(op.workload_key) if r.features is not None]
        X = np.array([f for f, _ in rows], dtype=np.float32)
        y = np.array([s if s is not None else np.inf for _, s in rows])
        data[name] = (X, y)
    out = {}
    for held, (Xh, yh) in data.items():
        others = [n for n in data if n != held]
        X = np.concatenate([data[n][0] for n in others])
        y = np.concatenate([data[n][1] for n in others])
        g = np.concatenate([np.full(len(data[n][1]), i) for i, n in enumerate(others)])
        ok = np.isfinite(yh)
        truth = 1.0 / yh[ok]
        row = {"train_points": int(len(y)), "test_points": int(ok.sum())}
        for label, model in (("xgb", XGBModel(seed=seed)), ("random", RandomModel(seed))):
            model.fit(X, y, g)
            pred = model.predict(Xh[ok])
            kk = min(k, len(truth))
            top_true = set(np.argsort(-truth, kind="stable")[:kk])
            top_pred = set(np.argsort(-pred, kind="stable")[:kk])
            row[f"{label}_spearman"] = round(spearman(pred, truth), 3)
            row[f"{label}_top{k}_recall"] = round(len(top_true & top_pred) / kk, 3)
            # the best config's position when the model's ranking is followed
            row[f"{label}_rank_of_best"] = int(np.where(np.argsort(-pred, kind="stable") == np.argmax(truth))[0][0]) + 1
        out[held] = row
    return out


def summarize(doc: dict, ops_by_name, measurer, threshold: float) -> dict:
    summary = {}
    for name, op in ops_by_name.items():
        ok = [r.seconds for _, r in measurer.entries(op.workload_key) if r.seconds]
        best = op.flops() / min(ok) / 1e9 if ok else None
        row = {"best_known_gflops": round(best, 2) if best else None, "distinct_measured": len(ok)}
        for strategy in STRATEGIES:
            runs = [r for r in doc["runs"] if r["workload"] == name and r["strategy"] == strategy]
            if not runs or best is None:
                continue
            reached, finals = [], []
            for r in runs:
                curve = best_so_far(r["seconds"], op.flops() / 1e9)
                reached.append(trials_to_reach(curve, threshold * best))
                finals.append(curve[-1] / best if curve else 0.0)
            censored = [t if t is not None else doc["trials"] + 1 for t in reached]
            row[strategy] = {"trials_to_95": reached, "median_trials_to_95": statistics.median(censored),
                             "runs_reaching": sum(t is not None for t in reached), "runs": len(runs),
                             "median_final_fraction": round(statistics.median(finals), 3),
                             "median_search_seconds": statistics.median(r["search_seconds"] for r in runs)}
        summary[name] = row
    return summary


def plots(doc, ops_by_name, out: Path, date: str) -> list:
    from svg_plot import line_chart
    paths = []
    for name, op in ops_by_name.items():
        best = doc["summary"][name]["best_known_gflops"]
        if not best:
            continue
        series = {}
        for strategy in STRATEGIES:
            curves = [best_so_far(r["seconds"], op.flops() / 1e9) for r in doc["runs"]
                      if r["workload"] == name and r["strategy"] == strategy]
            if curves:
                n = min(len(c) for c in curves)
                series[strategy] = [(i + 1, statistics.median(c[i] for c in curves) / best) for i in range(n)]
        slug = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
        path = out / f"search_efficiency-t{doc['trials']}-{slug}-{date}.svg"
        path.write_text(line_chart(series, f"{name}: median best-so-far over {doc['seeds']} seeds",
                                   "measured trials", "fraction of best known throughput",
                                   reference=doc["threshold"]))
        paths.append(path)
    return paths


def markdown(doc) -> str:
    lines = [f"# Search efficiency, {doc['date']}", "",
             f"Machine: {doc['machine']} ({doc['cores']} cores). Command: `{doc['command']}`.",
             f"{doc['trials']} trials per run, seeds {doc['seed_list']}. Trials to reach "
             f"{doc['threshold']:.0%} of the best throughput any run found; '>{doc['trials']}' means "
             f"the run never reached it (counted as {doc['trials'] + 1} in medians).", "",
             "| workload | best known GFLOPS | " + " | ".join(f"{s} median trials (runs reaching)" for s in STRATEGIES) + " |",
             "|---|---|" + "---|" * len(STRATEGIES)]
    for name, row in doc["summary"].items():
        cells = []
        for s in STRATEGIES:
            if s in row:
                m = row[s]["median_trials_to_95"]
                cells.append(f"{'>' + str(doc['trials']) if m > doc['trials'] else m} "
                             f"({row[s]['runs_reaching']}/{row[s]['runs']})")
            else:
                cells.append("-")
        lines.append(f"| {name} | {row['best_known_gflops']} | " + " | ".join(cells) + " |")
    lines += ["", "Median fraction of the best known throughput reached after all trials:", "",
              "| workload | " + " | ".join(STRATEGIES) + " |", "|---|" + "---|" * len(STRATEGIES)]
    for name, row in doc["summary"].items():
        lines.append(f"| {name} | " + " | ".join(str(row.get(s, {}).get("median_final_fraction", "-"))
                                               for s in STRATEGIES) + " |")
    lines += ["", "Search time per run outside measurement (proposing, featurizing, fitting), median seconds:", "",
              "| workload | " + " | ".join(STRATEGIES) + " |", "|---|" + "---|" * len(STRATEGIES)]
    for name, row in doc["summary"].items():
        lines.append(f"| {name} | " + " | ".join(str(row.get(s, {}).get("median_search_seconds", "-"))
                                               for s in STRATEGIES) + " |")
    lines += ["", "Cost-model ranking quality on a held-out workload (trained on the other workloads' "
              "measurements; tested on every distinct config measured for the held-out one):", "",
              "| held-out workload | train / test points | xgb Spearman | random Spearman | xgb top-10 recall "
              "| random top-10 recall | xgb rank of the best | random rank of the best |",
              "|---|---|---|---|---|---|---|---|"]
    for name, r in doc["ranking"].items():
        lines.append(f"| {name} | {r['train_points']} / {r['test_points']} | {r['xgb_spearman']} | "
                     f"{r['random_spearman']} | {r['xgb_top10_recall']} | {r['random_top10_recall']} | "
                     f"{r['xgb_rank_of_best']} | {r['random_rank_of_best']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="Rerun with the same --work folder to resume a stopped run.")
    parser.add_argument("--trials", type=int, default=40, help="measured trials per run (default: 40)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per strategy (default: 3)")
    parser.add_argument("--threshold", type=float, default=0.95, help="fraction of best known (default: 0.95)")
    parser.add_argument("--only", nargs="*", help="workload names to run (default: all)")
    parser.add_argument("--redo", nargs="*", default=[], choices=STRATEGIES,
                        help="rerun these strategies even where saved runs exist (measurements stay cached)")
    parser.add_argument("--work", default=str(REPO / "benchmarks" / ".search-efficiency"),
                        help="folder for the measurement cache and progress (default: benchmarks/.search-efficiency)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results folder")
    args = parser.parse_args(argv)
    if args.trials < 2 or args.seeds < 1:
        parser.error("--trials must be >= 2 and --seeds >= 1")
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AUTOSCHED_CACHE_DIR", str(work / "kernel-cache"))
    from measure_cache import CachedMeasurer
    from tqdm import tqdm

    from tuner import LocalMeasurer
    ops_by_name = workloads()
    if args.only:
        unknown = set(args.only) - set(ops_by_name)
        if unknown:
            parser.error(f"unknown workloads {sorted(unknown)}; choose from {sorted(ops_by_name)}")
        ops_by_name = {n: o for n, o in ops_by_name.items() if n in args.only}
    date = datetime.date.today().isoformat()
    progress_path = work / "runs.json"
    done = json.loads(progress_path.read_text()) if progress_path.exists() else []
    done = [r for r in done if r["trials"] == args.trials and r["strategy"] not in args.redo]
    measurer = CachedMeasurer(LocalMeasurer(), str(work / "measurements.jsonl"))
    seeds = list(range(args.seeds))
    # Warm starts come last, so they learn from everything the other workloads' runs measured.
    plan = [(s, name, strategy) for strategy in STRATEGIES for s in seeds for name in ops_by_name
            if strategy != "xgb-warm"] + [(s, name, "xgb-warm") for s in seeds for name in ops_by_name]
    bar = tqdm(plan, desc="search efficiency", unit="run", dynamic_ncols=True)
    try:
        for seed, name, strategy in bar:
            if any(r["workload"] == name and r["strategy"] == strategy and r["seed"] == seed for r in done):
                continue
            bar.set_postfix_str(f"{name} {strategy} seed {seed}")
            others = [o for n, o in ops_by_name.items() if n != name]
            row = run_one(ops_by_name[name], others, strategy, seed, args.trials, measurer, work)
            done.append({"workload": name, "strategy": strategy, "seed": seed, "trials": args.trials, **row})
            progress_path.write_text(json.dumps(done))
    finally:
        measurer.close()
    doc = {"date": date, "machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "python": platform.python_version(),
           "command": " ".join(["python", "benchmarks/search_efficiency.py"] + (argv if argv is not None else sys.argv[1:])),
           "trials": args.trials, "seeds": args.seeds, "seed_list": seeds, "threshold": args.threshold,
           "workloads": {n: o.workload_key for n, o in ops_by_name.items()},
           "measurements": {"distinct": len(measurer.table), "replayed_this_session": measurer.hits}, "runs": done}
    doc["summary"] = summarize(doc, ops_by_name, measurer, args.threshold)
    doc["ranking"] = ranking_quality(ops_by_name, measurer, seed=0) if len(ops_by_name) > 1 else {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"search_efficiency-t{args.trials}-{date}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(doc))
    for p in plots(doc, ops_by_name, out, date):
        print(f"wrote {p}")
    print(markdown(doc))
    print(f"wrote {stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
