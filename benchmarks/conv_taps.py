"""How much of each 3x3 conv's work reads padding, and each kernel's GFLOPS counting every tap
and counting only the taps that read the image, against two cores' FMA peak.

The FMA probe runs one core at a time here (times the cores): run with ONNX Runtime's
threads, it would measure their spinning, not the core.

    python benchmarks/conv_taps.py benchmarks/results/bench-2026-12-05-znver4-epilogue-1.json --rounds 5
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def image_tap_share(H, W, R, S, stride, padding, dilation) -> float:
    """The share of (output pixel, tap) pairs whose tap reads the image, not its padding."""
    def axis(n, k):
        out = (n + 2 * padding - dilation * (k - 1) - 1) // stride + 1
        hits = sum(1 for o in range(out) for t in range(k) if 0 <= o * stride + t * dilation - padding < n)
        return hits / (out * k)
    return axis(H, R) * axis(W, S)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", help="an `autosched bench` result whose rows name their configs")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds (default: 5)")
    parser.add_argument("--only", default="R=3,S=3", help="';'-separated parts of the labels to time")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results folder")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        rows = json.loads(Path(args.bench_json).read_text())["rows"]
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"cannot read bench rows from {args.bench_json}: {exc}")
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))
    import numpy as np
    from report import write_result

    from codegen import build
    from codegen.parallel import thread_count
    from codegen.peak import fp32_peak_gflops
    from schedules import ops
    from tuner.baselines import BaselineUnavailable, Workload, make_baselines
    from tuner.timing import median, time_callable

    threads = thread_count()
    peak = fp32_peak_gflops(1) * threads
    try:
        ort = make_baselines(["onnxruntime"])[0]
    except BaselineUnavailable as exc:
        parser.error(str(exc))
    results = []
    for row in rows:
        config = (row.get("autosched") or {}).get("config") or {}
        if row["op"] != "conv2d" or not config or not any(p in row["label"] for p in args.only.split(";") if p):
            continue
        p = row["params"]
        share = image_tap_share(p["H"], p["W"], p["R"], p["S"], p.get("stride", 1), p.get("padding", 0),
                                p.get("dilation", 1))
        plain = ops.conv2d(**p)
        op = plain.with_constants("weight", "bias")
        inputs = op.random_inputs(0)
        ours, rest = build(op, "cpu", config).bind_inputs(inputs, op.constants)
        theirs = ort.prepare(Workload("conv2d", dict(p)), plain, [np.array(a) for a in inputs], threads)
        times = {"autosched": [], "onnxruntime": []}
        for _ in range(args.rounds):
            for name, fn in (("autosched", lambda: ours(*rest)), ("onnxruntime", theirs)):
                time.sleep(0.05)
                times[name].append(median(time_callable(fn, 0.25)))
        entry = {"label": row["label"], "image_tap_share": share, "peak_gflops": peak}
        for name, t in times.items():
            seconds = statistics.median(t)
            entry[name] = {"ms": seconds * 1e3, "gflops_all_taps": row["flops"] / seconds / 1e9,
                           "gflops_image_taps": row["flops"] * share / seconds / 1e9}
        results.append(entry)
        print(f"{row['label']}: image taps {share:.3f}; " + "; ".join(
            f"{n} {e['ms']:.3f} ms, {e['gflops_all_taps']:.0f} GFLOPS counting every tap "
            f"({e['gflops_all_taps'] / peak:.0%} of peak), {e['gflops_image_taps']:.0f} counting image taps "
            f"({e['gflops_image_taps'] / peak:.0%})" for n, e in ((n, entry[n]) for n in times)), flush=True)
    path = write_result(args.out, "conv-taps", "benchmarks/conv_taps.py", argv,
                        {"threads": threads, "peak_gflops": peak, "rounds": args.rounds,
                         "configs_from": args.bench_json, "rows": results})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
