"""Micro-kernel epilogues in registers against the pass over each finished block, at the tuned
configs of an `autosched bench` run, both built and timed in alternating rounds in one process.

    python benchmarks/tile_epilogue.py benchmarks/results/bench-2026-12-05-znver4-flat-1.json \
        --rounds 7 --out benchmarks/results/tile-epilogue.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
from pathlib import Path

MODES = {"block pass": "0", "in registers": "1"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", help="an `autosched bench` result whose rows name their configs")
    parser.add_argument("--rounds", type=int, default=7, help="alternating timing rounds (default: 7)")
    parser.add_argument("--seconds", type=float, default=0.25, help="timed seconds per variant and round")
    parser.add_argument("--out", default=None, help="JSON file for the results (default: print only)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds must be at least 1 and --seconds above 0")
    try:
        rows = json.loads(Path(args.bench_json).read_text())["rows"]
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"cannot read bench rows from {args.bench_json}: {exc}")

    import numpy as np

    from codegen import build
    from codegen.parallel import thread_count
    from schedules import as_target, ops
    from tuner.timing import median, time_callable

    results = []
    for row in rows:
        config = (row.get("autosched") or {}).get("config") or {}
        if not any(k.endswith(".kernel") and v == "micro" for k, v in config.items()):
            continue
        make = getattr(ops, row["op"])
        plain = make(**row["params"])
        op = plain.with_constants(*[t.name for t in plain.inputs if t.name in ("weight", "bias")])
        inputs = op.random_inputs(0)
        reference = op.reference(*inputs)
        names = [t.name for t in op.inputs]
        kernels = {}
        for mode, flag in MODES.items():
            os.environ["AUTOSCHED_TILE_EPILOGUE"] = flag
            kernel = build(op, "cpu", config)
            bound, rest = kernel.bind_inputs(inputs, op.constants)
            out = np.empty_like(reference)
            bound(*rest, out=out)
            if not np.allclose(out, reference, rtol=1e-3, atol=1e-3):
                raise SystemExit(f"{row['label']}: {mode} does not match the reference")
            kernels[mode] = (bound, rest, out, "_ep" in kernel.source)
        os.environ.pop("AUTOSCHED_TILE_EPILOGUE", None)
        times = {mode: [] for mode in kernels}
        for _ in range(args.rounds):
            for mode, (bound, rest, out, _) in kernels.items():
                costs = time_callable(lambda b=bound, r=rest, o=out: b(*r, out=o), min_seconds=args.seconds)
                times[mode].append(median(costs) * 1e3)
        medians = {mode: statistics.median(v) for mode, v in times.items()}
        result = {"op": row["op"], "params": row["params"], "config": config,
                  "fused": kernels["in registers"][3], "median_ms": medians, "rounds_ms": times,
                  "ratio": medians["in registers"] / medians["block pass"]}
        results.append(result)
        print(f"{row['op']} {row['params']}: {'fused' if result['fused'] else 'not fused (same code)'}; "
              f"block pass {medians['block pass']:.3f} ms, in registers {medians['in registers']:.3f} ms, "
              f"ratio {result['ratio']:.3f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": as_target("cpu").key, "threads": thread_count(), "python": sys.version.split()[0],
            "rounds": args.rounds, "configs_from": args.bench_json, "rows": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
