"""Median over several `autosched bench` JSON results: one table, with each ratio's spread."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

FRAMEWORKS = ("pytorch", "onnxruntime", "openvino")


def _ratios(row: dict) -> dict:
    """Per-baseline speedups of one run (baseline time over ours), and the best framework's."""
    ours = row["autosched"].get("seconds")
    out = {}
    if not ours:
        return out
    for name, b in row["baselines"].items():
        if b.get("seconds"):
            out[name] = b["seconds"] / ours
    framework = [b["seconds"] for n, b in row["baselines"].items() if n in FRAMEWORKS and b.get("seconds")]
    if framework:
        out["best framework"] = min(framework) / ours
    return out


def combine(runs: list) -> list:
    """Rows in the first run's order: label, median ms of each implementation, median and
    range of each ratio across the runs that measured it."""
    labels = [r["label"] for r in runs[0]["rows"]]
    by_label = [{r["label"]: r for r in run["rows"]} for run in runs]
    table = []
    for label in labels:
        rows = [b[label] for b in by_label if label in b]
        ms = {"autosched": [r["autosched"]["seconds"] * 1e3 for r in rows if r["autosched"].get("seconds")]}
        for r in rows:
            for name, b in r["baselines"].items():
                if b.get("seconds"):
                    ms.setdefault(name, []).append(b["seconds"] * 1e3)
        ratios = {}
        for r in rows:
            for name, v in _ratios(r).items():
                ratios.setdefault(name, []).append(v)
        table.append({"label": label, "runs": len(rows),
                      "ms": {k: statistics.median(v) for k, v in ms.items()},
                      "ratio": {k: (statistics.median(v), min(v), max(v)) for k, v in ratios.items()}})
    return table


def markdown(table: list, baselines: list) -> str:
    cols = ["autosched"] + baselines
    head = ["workload", "runs"] + [f"{c} ms" for c in cols] + [f"vs {b}" for b in baselines] + \
        ["vs best framework", "range vs best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table:
        cells = [row["label"], str(row["runs"])]
        cells += [f"{row['ms'][c]:.3f}" if c in row["ms"] else "-" for c in cols]
        for name in baselines + ["best framework"]:
            if name in row["ratio"]:
                med = row["ratio"][name][0]
                cells.append(f"{med:.2f}x" + (" (lost)" if med < 1 else ""))
            else:
                cells.append("-")
        best = row["ratio"].get("best framework")
        cells.append(f"{best[1]:.2f}-{best[2]:.2f}x" if best else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Combine several `autosched bench` JSON results of the same suite into one "
                    "markdown table of medians: times, and ratios (baseline time over ours, "
                    "computed within each run) with their range across runs.")
    parser.add_argument("results", nargs="+", type=Path, help="bench JSON files (benchmarks/results/bench-*.json)")
    parser.add_argument("--out", type=Path, help="also write the combined table as JSON here")
    args = parser.parse_args(argv)
    runs = []
    for path in args.results:
        try:
            runs.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            print(f"bench_median: cannot read {path}: {e}", file=sys.stderr)
            return 2
        if "rows" not in runs[-1]:
            print(f"bench_median: {path} is not an `autosched bench` result (no 'rows')", file=sys.stderr)
            return 2
    baselines = [b for b in runs[0].get("baselines", []) if isinstance(b, str)] or \
        sorted({n for run in runs for r in run["rows"] for n in r["baselines"]})
    table = combine(runs)
    print(markdown(table, baselines))
    print()
    print(f"{len(runs)} runs; peaks measured: " +
          ", ".join(f"{r.get('peak_gflops', 0):.1f}" for r in runs) + " GFLOPS")
    if args.out:
        args.out.write_text(json.dumps({"sources": [str(p) for p in args.results], "rows": table}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
