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


def cmd_demo(args) -> int:
    import numpy as np

    from codegen import build
    from tuner.timing import median, time_callable
    op = _demo_operator(args.op, args.size)
    print(f"operator   {op.name}  workload {op.workload_key}")
    print("inputs     " + ", ".join(f"{t.name}{t.shape}" for t in op.inputs))
    t0 = time.perf_counter()
    kernel = build(op, "cpu")
    how = {"compiled": "compiled", "disk": "loaded from the disk cache",
           "memory": "reused from memory"}.get(kernel.origin, kernel.origin)
    print(f"built      default schedule in {time.perf_counter() - t0:.2f} s ({how})")
    print(f"config     {kernel.config.to_json()}")
    inputs = op.random_inputs(0)
    ours = kernel(*inputs)
    baseline = _numpy_baseline(args.op, op)
    expected = baseline(*inputs)
    ok = np.allclose(ours, expected, rtol=1e-3, atol=1e-3)
    print(f"check      {'matches' if ok else 'DOES NOT MATCH'} numpy (max abs diff "
          f"{float(np.max(np.abs(ours - expected))):.2e})")
    t_ours = median(time_callable(lambda: kernel(*inputs), args.seconds))
    time.sleep(0.2)  # let OpenBLAS worker threads go idle before the next measurement
    t_numpy = median(time_callable(lambda: baseline(*inputs), args.seconds))
    gflops = op.flops() / t_ours / 1e9
    print(f"autosched  {t_ours * 1e3:9.3f} ms  ({gflops:.1f} GFLOPS)")
    print(f"numpy      {t_numpy * 1e3:9.3f} ms  (op by op)")
    verdict = "faster" if t_numpy > t_ours else "slower"
    print(f"speedup    {t_numpy / t_ours:.2f}x vs numpy ({verdict}; median of repeated runs)")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autosched",
        description="Autotuning schedule-search compiler for fused tensor operators.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="build a fused operator with its default schedule and time it against numpy",
        description="Build a fused operator with the default (heuristic) schedule, check it "
                    "against numpy, and print both times measured in the same run.")
    demo.add_argument("--op", choices=DEMO_OPS, default="dense_gelu", help="operator (default: dense_gelu)")
    demo.add_argument("--size", choices=("small", "medium"), default="medium",
                      help="problem size (default: medium, e.g. a BERT-base dense layer)")
    demo.add_argument("--seconds", type=float, default=0.3,
                      help="minimum measured seconds per timing (default: 0.3)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
