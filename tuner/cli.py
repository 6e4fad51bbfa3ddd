"""The `autosched` command line."""
from __future__ import annotations

import argparse
import sys
import time

DEMO_OPS = ("dense_gelu", "conv2d_relu", "softmax", "layer_norm")


def _demo_operator(name: str, size: str):
    from schedules import ops
    small = size == "small"
    if name == "dense_gelu":
        return ops.dense(64 if small else 128, 256 if small else 768, 256 if small else 768,
                         bias=True, activation="gelu")
    if name == "conv2d_relu":
        return ops.conv2d(1, 16 if small else 64, 28 if small else 56, 28 if small else 56,
                          16 if small else 64, 3, 3, padding=1, bias=True, activation="relu")
    if name == "softmax":
        return ops.softmax(128 if small else 1024, 256 if small else 1024)
    return ops.layer_norm(128 if small else 1024, 256 if small else 768)


def _numpy_baseline(name: str, op):
    import math

    import numpy as np
    erf = _numpy_erf()
    if name == "dense_gelu":
        def run(x, w, b):
            y = x @ w.T + b
            return 0.5 * y * (1.0 + erf(y / np.float32(math.sqrt(2.0))))
        return run
    if name == "conv2d_relu":
        from numpy.lib.stride_tricks import sliding_window_view

        def run(data, weight, bias):
            padded = np.pad(data, ((0, 0), (0, 0), (1, 1), (1, 1)))
            windows = sliding_window_view(padded, (3, 3), axis=(2, 3))  # N C OH OW R S
            out = np.einsum("ncxyrs,kcrs->nkxy", windows, weight, optimize=True)
            return np.maximum(out + bias[None, :, None, None], 0)
        return run
    if name == "softmax":
        def run(x):
            e = np.exp(x - x.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return run

    def run(x, gamma, beta):
        mean = x.mean(axis=1, keepdims=True)
        var = x.var(axis=1, keepdims=True)
        return (x - mean) / np.sqrt(var + np.float32(1e-5)) * gamma + beta
    return run


def _numpy_erf():
    """scipy's erf when installed; numpy has none, so else a 1.5e-7-accurate rational form."""
    try:
        from scipy.special import erf
        return erf
    except ImportError:
        import numpy as np

        def erf(x):  # Abramowitz & Stegun 7.1.26, vectorized numpy
            s = np.sign(x)
            a = np.abs(x)
            t = 1.0 / (1.0 + 0.3275911 * a)
            poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
            return (s * (1.0 - poly * np.exp(-a * a))).astype(x.dtype)
        return erf


def _time_pair(kernel, baseline, inputs, seconds):
    from tuner.timing import median, time_callable
    t_ours = median(time_callable(lambda: kernel(*inputs), seconds))
    time.sleep(0.2)  # let OpenBLAS worker threads go idle before the next measurement
    t_numpy = median(time_callable(lambda: baseline(*inputs), seconds))
    return t_ours, t_numpy


def cmd_demo(args) -> int:
    import numpy as np

    from codegen import build
    from tuner import Database, build_best, tune
    op = _demo_operator(args.op, args.size)
    print(f"operator   {op.name}  workload {op.workload_key}")
    print("inputs     " + ", ".join(f"{t.name}{t.shape}" for t in op.inputs))
    db = Database(args.database)
    print(f"tuning     {args.trials} trials ({args.strategy}) into {db.url}")
    result = tune(op, "cpu", database=db, trials=args.trials, seed=args.seed,
                  strategy=args.strategy, progress=not args.quiet)
    errors = sum(1 for t in result.history if t.error)
    print(f"measured   {len(result.history)} new candidates ({errors} errors), "
          f"{result.total_measured} in total for this workload")
    kernel = build_best(op, "cpu", db)
    default = build(op, "cpu")
    print(f"best       {kernel.config.to_json()}")
    inputs = op.random_inputs(0)
    baseline = _numpy_baseline(args.op, op)
    ours, expected = kernel(*inputs), baseline(*inputs)
    ok = bool(np.allclose(ours, expected, rtol=1e-3, atol=1e-3))
    print(f"check      {'matches' if ok else 'DOES NOT MATCH'} numpy (max abs diff "
          f"{float(np.max(np.abs(ours - expected))):.2e})")
    t_ours, t_numpy = _time_pair(kernel, baseline, inputs, args.seconds)
    t_default = _time_pair(default, baseline, inputs, args.seconds)[0]
    gflops = op.flops() / t_ours / 1e9
    print(f"tuned      {t_ours * 1e3:9.3f} ms  ({gflops:.1f} GFLOPS)")
    print(f"default    {t_default * 1e3:9.3f} ms  (untuned schedule)")
    print(f"numpy      {t_numpy * 1e3:9.3f} ms  (op by op)")
    verdict = "faster" if t_numpy > t_ours else "slower"
    print(f"speedup    {t_numpy / t_ours:.2f}x vs numpy ({verdict}), "
          f"{t_default / t_ours:.2f}x vs the default schedule (medians of repeated runs)")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    from .commands import add_commands
    parser = argparse.ArgumentParser(
        prog="autosched",
        description="Autotuning schedule-search compiler for fused tensor operators.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="tune a small fused operator into a SQLite file, build from it, compare with numpy",
        description="Tune a fused operator into a local SQLite records file, build the best "
                    "kernel from it, check it against numpy and print the times of the tuned "
                    "kernel, the default schedule and numpy, measured in the same run.")
    demo.add_argument("--op", choices=DEMO_OPS, default="dense_gelu", help="operator (default: dense_gelu)")
    demo.add_argument("--size", choices=("small", "medium"), default="small",
                      help="problem size (default: small, 64x256x256 for dense_gelu)")
    demo.add_argument("--trials", type=int, default=16, help="total tuning budget (default: 16)")
    demo.add_argument("--strategy", default="xgb", choices=("xgb", "tpe", "random"),
                      help="search strategy (default: xgb, cost-model guided)")
    demo.add_argument("--seed", type=int, default=0, help="search seed (default: 0)")
    demo.add_argument("--database", default="autosched-demo.db",
                      help="records database URL or SQLite path (default: ./autosched-demo.db)")
    demo.add_argument("--seconds", type=float, default=0.3,
                      help="minimum measured seconds per timing (default: 0.3)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=cmd_demo)
    add_commands(sub)
    from .bench_cli import add_bench_command
    add_bench_command(sub)
    return parser


def main(argv=None) -> int:
    import logging
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from schedules.errors import AutoschedError
    try:
        return args.func(args)
    except (AutoschedError, ValueError, OSError) as exc:
        print(f"autosched: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("autosched: interrupted; measured records are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
