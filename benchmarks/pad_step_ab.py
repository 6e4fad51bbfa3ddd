"""The float32 pad step written line by line (vector copies, each element written once) against
the elementwise fill-then-copy loops that other dtypes keep, at the tuned configs of an
`autosched bench` run, timed in alternating rounds in one process.

    python benchmarks/pad_step_ab.py benchmarks/results/bench-2026-12-05-znver4-swapped512-1.json \\
        --only 'R=3,S=3;R=7' --rounds 9 --out benchmarks/results
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
    add_bench_row_arguments(parser, rounds=9, only="R=3,S=3;R=7")
    parser.add_argument("--out", default=None, help="folder for the JSON result (default: print only)")
    args = parser.parse_args(argv)
    rows = bench_rows(parser, args)
    import numpy as np

    import schedules.padding as padding
    from codegen import build
    from tuner.timing import median, time_callable

    by_lines = padding._by_lines

    def elementwise(plan, shape, value, source, row_axis, by_rows):
        if by_rows is None or (padding.is_const(by_rows) and not by_rows.value):
            return padding._fill_and_copy(plan, shape, value, source)[-1]
        if padding.is_const(by_rows):
            return padding._rows_of_margin_axis(plan, shape, value, source, row_axis)[-1]
        return padding._rows_or_channels(plan, shape, value, source, row_axis, by_rows)

    results = []
    for row, config, op, inputs in tuned_workloads(rows, args.only):
        reference = op.reference(*inputs)
        kernels = {}
        for mode, writer in (("elementwise", elementwise), ("by lines", by_lines)):
            padding._by_lines = writer
            kernel, rest = build(op, "cpu", config).bind_inputs(inputs, op.constants)
            out = np.empty_like(reference)
            kernel(*rest, out=out)
            if not np.allclose(out, reference, rtol=1e-3, atol=1e-3):
                raise SystemExit(f"{row['label']}: the {mode} pad step does not match the reference")
            kernels[mode] = (kernel, rest, out)
        padding._by_lines = by_lines
        times = {mode: [] for mode in kernels}
        for _ in range(args.rounds):
            for mode, (kernel, rest, out) in kernels.items():
                costs = time_callable(lambda k=kernel, r=rest, o=out: k(*r, out=o), min_seconds=args.seconds)
                times[mode].append(median(costs) * 1e3)
        ratios = [b / a for a, b in zip(times["elementwise"], times["by lines"])]
        entry = {"label": row["label"], "config": config, "rounds_ms": times,
                 "median_ms": {m: statistics.median(v) for m, v in times.items()},
                 "ratio": statistics.median(ratios), "round_ratios": ratios}
        results.append(entry)
        print(f"{row['label']}: elementwise {entry['median_ms']['elementwise']:.3f} ms, by lines "
              f"{entry['median_ms']['by lines']:.3f} ms, ratio {entry['ratio']:.3f} "
              f"(by round {min(ratios):.3f}-{max(ratios):.3f})", flush=True)
    write_rows_result(args, "pad-step-lines", "benchmarks/pad_step_ab.py", argv, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
