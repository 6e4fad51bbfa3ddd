"""A swapped micro-kernel tile's epilogue, written column by column in runs of rows (now) against
row by row (before), in whole kernels built by the real generator, timed alternately.

A swapped tile (a conv's pixels as rows, its filters as columns) lands in a (pixels, filters)
scratch; the epilogue then writes NCHW, where one filter's pixels are contiguous. Each variant
is the suite's convolution built with the default schedule and its weights bound (packed once,
as `autosched bench` runs it); only the epilogue's loop order differs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CONVS = [  # the ResNet-50 layers of the default bench suite
    dict(N=1, C=3, H=224, W=224, K=64, R=7, S=7, stride=2, padding=3, bias=True, activation="relu"),
    dict(N=1, C=64, H=56, W=56, K=64, R=3, S=3, padding=1, bias=True, activation="relu"),
    dict(N=1, C=64, H=56, W=56, K=256, R=1, S=1, bias=True),
    dict(N=1, C=128, H=28, W=28, K=128, R=3, S=3, padding=1, bias=True, activation="relu"),
    dict(N=1, C=256, H=14, W=14, K=256, R=3, S=3, padding=1, bias=True, activation="relu"),
    dict(N=1, C=512, H=7, W=7, K=512, R=3, S=3, padding=1, bias=True, activation="relu"),
]


def _kernel(params: dict, run):
    import numpy as np

    from codegen import build
    from schedules import ops, tensorize
    op = ops.conv2d(**params)
    inputs = op.random_inputs(0)
    kept, tensorize.EPILOGUE_RUN = tensorize.EPILOGUE_RUN, run
    try:
        kernel = build(op.with_constants("weight"), "cpu")
    finally:
        tensorize.EPILOGUE_RUN = kept
    kernel, free = kernel.bind_inputs(inputs, ("weight",))
    got = kernel(*free)
    if not np.allclose(got, op.reference(*inputs), rtol=1e-3, atol=1e-3):
        raise SystemExit(f"{op.name} {params} with epilogue run {run}: differs from the reference")
    out = np.empty_like(got)
    return (lambda: kernel(*free, out=out)), kernel.source


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7, help="alternating timings per variant (default: 7)")
    parser.add_argument("--calls", type=int, default=100, help="calls per timing, median kept (default: 100)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results folder, or 'none'")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from report import median_call_seconds, write_result
    rows = []
    for params in CONVS:
        label = ",".join(f"{k}={v}" for k, v in params.items())
        (before, before_source), (now, now_source) = _kernel(params, None), _kernel(params, 8)
        if before_source == now_source:
            print(f"conv2d({label}): its default schedule is not swapped; skipped")
            continue
        variants = {"rows outermost (before)": before, "columns in runs of 8 (now)": now}
        times: dict = {name: [] for name in variants}
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                times[name].append(median_call_seconds(variants[name], args.calls) * 1e3)
        before, now = (statistics.median(times[n]) for n in variants)
        rows.append({"conv2d": label, "before_ms": round(before, 4), "now_ms": round(now, 4),
                     "speedup": round(before / now, 3),
                     "rounds": {n: [round(t, 4) for t in ts] for n, ts in times.items()}})
        print(f"conv2d({label}): before {before:.3f} ms, now {now:.3f} ms, {before / now:.3f}x", flush=True)
    if args.out != "none":
        path = write_result(args.out, "epilogue-order", "benchmarks/epilogue_order.py", argv,
                            {"rows": rows})
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
