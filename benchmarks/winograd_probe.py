"""Whether Winograd F(m x m, 3x3) would beat the direct kernels: a hand-written one timed against
the tuned direct kernel and the frameworks, on the 3x3 stride-1 convolutions of a bench run.

    python benchmarks/winograd_probe.py benchmarks/results/bench-2026-12-05-znver4-rounds-1.json \\
        --rounds 5 --out benchmarks/results

Every implementation is checked against the operator's reference first, then all are timed
in interleaved rounds, as `autosched bench` times them. The Winograd kernel is
benchmarks/winograd_kernel.py, hand-written; autosched's own, from its search space, is timed
by benchmarks/winograd_tiles.py.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FRAMEWORKS = ("onnxruntime", "pytorch", "openvino")


def applies(row: dict) -> bool:
    p = row["params"]
    return (row["op"] == "conv2d" and p.get("R") == 3 and p.get("S") == 3 and p.get("N", 1) == 1
            and p.get("stride", 1) in (1, [1, 1]) and p.get("padding", 0) in (1, [1, 1])
            and p.get("dilation", 1) in (1, [1, 1]) and p.get("activation") in ("relu", None)
            and p.get("bias", False))


def main(argv=None) -> int:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from report import add_bench_row_arguments, bench_rows, tuned_workloads, write_rows_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_row_arguments(parser, rounds=5)
    parser.add_argument("--pause", type=float, default=0.05, help="seconds of rest before each timing")
    parser.add_argument("--baselines", default=",".join(FRAMEWORKS),
                        help=f"comma-separated frameworks to time beside ours (default: {','.join(FRAMEWORKS)}; "
                        "empty for none)")
    parser.add_argument("--tiles", default="2,4",
                        help="comma-separated output tile sizes m of F(m x m, 3x3) to time (2, 4; default: 2,4)")
    parser.add_argument("--split", choices=("auto", "tiles", "planes"), default="auto",
                        help="how the GEMMs and the output transform are split between threads: by "
                        "tiles, by planes, or tiles where V and M outweigh U (default: auto)")
    parser.add_argument("--out", default=None, help="folder for the JSON result (default: print only)")
    args = parser.parse_args(argv)
    rows = [r for r in bench_rows(parser, args) if applies(r)]
    frameworks = [n for n in args.baselines.split(",") if n]
    if set(frameworks) - set(FRAMEWORKS):
        parser.error(f"--baselines: choose from {', '.join(FRAMEWORKS)}")
    try:
        tiles = [int(t) for t in args.tiles.split(",") if t]
    except ValueError:
        tiles = []
    if not tiles or set(tiles) - {2, 4}:
        parser.error("--tiles: a comma-separated list of 2 and 4")
    if not rows:
        parser.error(f"{args.bench_json} has no tuned 3x3, stride-1, pad-1 conv2d rows with a bias")
    import numpy as np
    from winograd_kernel import WinogradConv

    from codegen import build
    from codegen.parallel import thread_count
    from tuner.baselines import BaselineUnavailable, Workload, make_baselines
    from tuner.bench import _timed_in_rounds

    threads = thread_count()
    results = []
    for row, config, op, inputs in tuned_workloads(rows, args.only):
        data, weight, bias = (np.asarray(a) for a in inputs)
        relu = row["params"].get("activation") == "relu"
        _, C, H, W = data.shape
        split = {"auto": None, "tiles": True, "planes": False}[args.split]
        winos = {f"winograd F({m}x{m},3x3)": WinogradConv(weight, bias, H, W, relu=relu, m=m, by_tiles=split)
                 for m in tiles}
        direct, rest = build(op, "cpu", config).bind_inputs(inputs, op.constants)
        runs = [(name, lambda w=w: w(data).reshape(1, -1, H, W), "benchmarks/winograd_kernel.py")
                for name, w in winos.items()]
        runs.append(("autosched direct", lambda: direct(*rest), "the bench run's tuned record"))
        timed = {}
        for impl in make_baselines(frameworks):
            try:
                runs.append((impl.name, impl.prepare(Workload(row["op"], row["params"]), op,
                                                     [np.array(a) for a in inputs], threads), ""))
            except BaselineUnavailable as exc:
                print(f"  {impl.name}: {exc}")
        ref = op.reference(*inputs)
        scale = float(np.max(np.abs(ref)))
        timed = _timed_in_rounds(runs, ref, args.seconds * len(runs), args.pause, args.rounds, timed)
        ms = {name: (t.seconds * 1e3 if t.seconds is not None else None) for name, t in timed.items()}
        framework_ms = [ms[n] for n in frameworks if ms.get(n) is not None]
        best = min(framework_ms) if framework_ms else None
        entry = {"label": row["label"], "median_ms": ms, "details": {n: t.detail for n, t in timed.items()},
                 "winograd": {}}
        for name, w in winos.items():
            steps = {step: statistics.median(_step_times(w, data, k, args.seconds)) * 1e3
                     for k, step in enumerate(("pad", "input transform", "GEMMs", "output transform"))}
            entry["winograd"][name] = {
                "m": w.m, "split": "tiles" if w.by_tiles else "planes",
                "max_error_over_max_output": float(np.max(np.abs(w(data).reshape(ref.shape) - ref))) / scale,
                "over_direct": ms["autosched direct"] / ms[name] if ms.get(name) and ms.get("autosched direct") else None,
                "over_best_framework": best / ms[name] if best and ms.get(name) else None,
                "steps_alone_ms": steps}
        results.append(entry)
        print(f"{row['label']}: " + ", ".join(f"{n} {v:.3f} ms" if v is not None else f"{n} failed"
                                              for n, v in ms.items()), flush=True)
        for name, e in entry["winograd"].items():
            print(f"    {name}: / direct {e['over_direct'] or float('nan'):.2f}x, / best framework "
                  f"{e['over_best_framework'] or float('nan'):.2f}x, error {e['max_error_over_max_output']:.2g}, "
                  f"split by {e['split']}", flush=True)
    write_rows_result(args, "winograd-probe", "benchmarks/winograd_probe.py", argv, results)
    return 0


def _step_times(wino, data, k: int, seconds: float) -> list:
    from tuner.timing import time_callable
    return time_callable(lambda: wino(data, steps=[k]), min_seconds=seconds)


if __name__ == "__main__":
    raise SystemExit(main())
