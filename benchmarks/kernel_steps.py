"""Each step of a tuned kernel timed alone, and all of them in a row, at the configs of an
`autosched bench` run: how much of a call the pad step takes, and whether the compute step
runs slower after it than alone (the data it reads was written by the other core).

    python benchmarks/kernel_steps.py benchmarks/results/bench-2026-12-05-znver4-swapped512-1.json \\
        --only 'C=64,H=56,W=56,K=64;C=128,H=28' --out benchmarks/results

Steps that pack bound weights run once, at bind, and are not timed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from report import add_bench_row_arguments, bench_rows, tuned_workloads, write_rows_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_row_arguments(parser, rounds=5)
    parser.add_argument("--out", default=None, help="folder for the JSON result (default: print only)")
    args = parser.parse_args(argv)
    rows = bench_rows(parser, args)
    import numpy as np

    from codegen import build
    from tuner.timing import median, time_callable

    results = []
    for row, config, op, inputs in tuned_workloads(rows, args.only):
        kernel, rest = build(op, "cpu", config).bind_inputs(inputs, op.constants)
        out = np.empty(op.outputs[0].shape, op.outputs[0].dtype)
        temps = [kernel._scratch(b) for b in kernel.loopnest.temps]
        for k, array in kernel.packed:
            temps[k] = array
        buffers = (*op.check_inputs(kernel._with_bound(rest)), out, *temps)
        first = len(kernel.loopnest.prepacked) if kernel.packed else 0
        variants = {"call": lambda: kernel(*rest, out=out), "steps in a row": lambda: kernel._run(buffers, first)}
        for k in range(first, len(kernel.steps)):
            variants[f"step {k} alone"] = lambda k=k: kernel._run(buffers, k, k + 1)
        times = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, fn in variants.items():
                times[name].append(median(time_callable(fn, min_seconds=args.seconds)) * 1e3)
        medians = {name: statistics.median(v) for name, v in times.items()}
        alone = sum(v for name, v in medians.items() if name.endswith("alone"))
        entry = {"label": row["label"], "config": config, "median_ms": medians, "rounds_ms": times,
                 "steps_alone_sum_ms": alone, "in_a_row_over_alone": medians["steps in a row"] / alone}
        results.append(entry)
        print(f"{row['label']}: " + ", ".join(f"{n} {v:.4f} ms" for n, v in medians.items())
              + f"; in a row / sum alone {entry['in_a_row_over_alone']:.3f}", flush=True)
    write_rows_result(args, "kernel-steps", "benchmarks/kernel_steps.py", argv, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
