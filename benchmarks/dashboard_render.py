"""How long the dashboard takes to read a database and render its pages (median of runs).

    python benchmarks/dashboard_render.py --database benchmarks/.bench/bench.db --runs 3
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time

from tuner.dashboard import load_snapshot, write_site
from tuner.dashboard.serve import LiveSite
from tuner.dashboard.site import page_names


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="records database URL or SQLite path")
    parser.add_argument("--runs", type=int, default=3, help="repetitions; medians are reported (default: 3)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    snap = load_snapshot(args.database)
    names = page_names(snap)
    records = sum(t.record_count for t in snap.targets)
    live = LiveSite(args.database)
    live.snapshot()
    kinds = {k: next(n for n in names if n.startswith(k)) for k in ("index", "target", "workload", "explorer", "costmodel", "compare")}
    results = {"load_snapshot_s": [], "write_site_s": []} | {f"live_{k}_s": [] for k in kinds} | {"live_version_check_s": []}
    for _ in range(args.runs):
        results["load_snapshot_s"].append(_timed(lambda: load_snapshot(args.database)))
        with tempfile.TemporaryDirectory() as out:
            results["write_site_s"].append(_timed(lambda: write_site(args.database, out)))
        for k, name in kinds.items():
            results[f"live_{k}_s"].append(_timed(lambda: live.page(name)))
        results["live_version_check_s"].append(_timed(live.version))
    live.close()
    medians = {k: statistics.median(v) for k, v in results.items()}
    doc = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
           "database": args.database, "records": records, "pages": len(names), "runs": args.runs,
           "median_seconds": medians, "all_seconds": results}
    print(f"{records} records, {len(names)} pages; medians of {args.runs} runs:")
    for k, v in medians.items():
        print(f"  {k:28s} {v * 1e3:9.1f} ms")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
