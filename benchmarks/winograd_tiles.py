"""autosched's Winograd convs at each tile size m, beside the tuned record and ONNX Runtime.

    python benchmarks/winograd_tiles.py benchmarks/results/bench-2026-12-07-znver4-winograd-1.json \\
        --rounds 7 --out benchmarks/results

For each row of a bench run whose tuned record is a Winograd kernel, builds that record and
the same config at every other tile size (`--rows` sets the GEMM tile rows used for them),
checks each against the operator's reference, and times them in interleaved rounds, as
`autosched bench` times implementations. The tuner picks the tile size by its own timings;
this shows how close the others come when the machine's state has moved.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from report import add_bench_row_arguments, bench_rows, tuned_workloads, write_rows_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_row_arguments(parser, rounds=7)
    parser.add_argument("--rows", type=int, default=8, choices=(4, 6, 8),
                        help="GEMM tile rows of the other tile sizes' configs (default: 8)")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds of rest before each timing")
    parser.add_argument("--baselines", default="onnxruntime",
                        help="comma-separated frameworks timed beside ours (default: onnxruntime; empty for none)")
    parser.add_argument("--out", default=None, help="folder for the JSON result (default: print only)")
    args = parser.parse_args(argv)
    rows = [r for r in bench_rows(parser, args) if _winograd_stage(_config(r)) is not None]
    if not rows:
        parser.error(f"{args.bench_json} has no rows whose tuned record is a Winograd kernel")
    import json

    import numpy as np

    from codegen import build
    from codegen.parallel import thread_count
    from schedules.winograd_match import TILE_SIZES
    from tuner.baselines import BaselineUnavailable, Workload, make_baselines
    from tuner.bench import _timed_in_rounds

    results = []
    for row, _, op, inputs in tuned_workloads(rows, args.only):
        tuned = _config(row)
        stage = _winograd_stage(tuned)
        variants = {f"tuned record (F({tuned[f'{stage}.wino_m']}x{tuned[f'{stage}.wino_m']}))": tuned}
        for m in TILE_SIZES:
            if m != tuned[f"{stage}.wino_m"]:
                variants[f"F({m}x{m}), {args.rows}-row tiles"] = {**tuned, f"{stage}.wino_m": m,
                                                                  f"{stage}.wino_rows": args.rows}
        runs = []
        for name, cfg in variants.items():
            kernel, rest = build(op, "cpu", cfg).bind_inputs(inputs, op.constants)
            runs.append((name, lambda k=kernel, r=rest: k(*r), json.dumps(cfg, sort_keys=True)))
        for impl in make_baselines([n for n in args.baselines.split(",") if n]):
            try:
                runs.append((impl.name, impl.prepare(Workload(row["op"], row["params"]), op,
                                                     [np.array(a) for a in inputs], thread_count()), ""))
            except BaselineUnavailable as exc:
                print(f"  {impl.name}: {exc}")
        timed = _timed_in_rounds(runs, op.reference(*inputs), args.seconds * len(runs), args.pause, args.rounds, {})
        ms = {n: (t.seconds * 1e3 if t.seconds is not None else None) for n, t in timed.items()}
        rounds_ms = {n: [c * 1e3 for c in t.costs] for n, t in timed.items()}
        results.append({"label": row["label"], "median_ms": ms, "details": {n: t.detail for n, t in timed.items()},
                        "range_ms": {n: [min(c), max(c)] if c else None for n, c in rounds_ms.items()}})
        print(f"{row['label']}: " + ", ".join(f"{n} {v:.3f} ms" if v is not None else f"{n}: {timed[n].detail}"
                                              for n, v in ms.items()), flush=True)
    write_rows_result(args, "winograd-tiles", "benchmarks/winograd_tiles.py", argv, results)
    return 0


def _config(row: dict) -> dict:
    import json
    config = (row.get("autosched") or {}).get("config") or {}
    return json.loads(config) if isinstance(config, str) else dict(config)


def _winograd_stage(config: dict):
    """The stage whose kernel knob picks Winograd in this config, or None."""
    return next((k[:-len(".kernel")] for k, v in config.items() if k.endswith(".kernel") and v == "winograd"), None)


if __name__ == "__main__":
    raise SystemExit(main())
