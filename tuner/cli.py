"""The `autosched` command line."""
from __future__ import annotations

import argparse
import sys

DEMO_OPS = ("dense_gelu", "conv2d_relu", "softmax", "layer_norm")


def _demo_workload(name: str, size: str):
    """The demo operator as a library workload, so the bench's numpy baseline can run it."""
    from .baselines import Workload
    small = size == "small"
    if name == "dense_gelu":
        return Workload("dense", dict(M=64 if small else 128, N=256 if small else 768,
                                      K=256 if small else 768, bias=True, activation="gelu"))
    if name == "conv2d_relu":
        c, hw = (16, 28) if small else (64, 56)
        return Workload("conv2d", dict(N=1, C=c, H=hw, W=hw, K=c, R=3, S=3, padding=1, bias=True,
                                       activation="relu"))
    if name == "softmax":
        return Workload("softmax", dict(M=128 if small else 1024, N=256 if small else 1024))
    return Workload("layer_norm", dict(M=128 if small else 1024, N=256 if small else 768))


DEMO_ROUNDS = 5


def _time_interleaved(variants: dict, seconds: float, rounds: int = DEMO_ROUNDS) -> dict:
    """Median seconds of each callable over interleaved, rotated rounds (the median of its
    per-round medians), with a pause after each timing for OpenBLAS's threads to go idle."""
    from tuner.timing import interleaved_rounds, median
    return {name: median(times) for name, times in interleaved_rounds(variants, seconds, rounds, 0.1).items()}


def cmd_demo(args) -> int:
    import numpy as np

    from codegen import build
    from codegen.parallel import thread_count
    from tuner import Database, build_best, tune

    from .baselines import NumpyBaseline
    from .commands import make_operator
    workload = _demo_workload(args.op, args.size)
    op = make_operator(workload.op_name, dict(workload.params))
    print(f"operator   {op.name}  workload {op.workload_key}")
    print("inputs     " + ", ".join(f"{t.name}{t.shape}" for t in op.inputs))
    db = Database(args.database)
    print(f"tuning     {args.trials} trials ({args.strategy}) into {db.url}")
    result = tune(op, "cpu", database=db, trials=args.trials, seed=args.seed,
                  strategy=args.strategy, progress=not args.quiet)
    errors = sum(1 for t in result.history if t.error)
    print(f"measured   {len(result.history)} new candidates ({errors} errors), "
          f"{result.total_measured} in total for this workload")
    if result.confirmed_seconds is not None:
        from .confirm import CONFIRM_ROUNDS
        print(f"re-timed   the {result.confirmed_among} fastest, {CONFIRM_ROUNDS} rounds each: the best's median is "
              f"{result.confirmed_seconds * 1e3:.4f} ms")
    kernel = build_best(op, "cpu", db)
    default = build(op, "cpu")
    print(f"best       {kernel.config.to_json()}")
    inputs = op.random_inputs(0)
    baseline = NumpyBaseline().prepare(workload, op, inputs, thread_count())
    ours, expected = kernel(*inputs), baseline()
    ok = bool(np.allclose(ours, expected, rtol=1e-3, atol=1e-3))
    print(f"check      {'matches' if ok else 'DOES NOT MATCH'} numpy (max abs diff "
          f"{float(np.max(np.abs(ours - expected))):.2e})")
    same = kernel.config == default.config
    variants = {"tuned": lambda: kernel(*inputs), "numpy": baseline}
    if not same:
        variants["default"] = lambda: default(*inputs)
    times = _time_interleaved(variants, args.seconds)
    t_ours, t_numpy = times["tuned"], times["numpy"]
    t_default = times.get("default", t_ours)
    gflops = op.flops() / t_ours / 1e9
    print(f"tuned      {t_ours * 1e3:9.3f} ms  ({gflops:.1f} GFLOPS)")
    if same:
        print("default    the same config as the tuned pick (the default schedule)")
    else:
        print(f"default    {t_default * 1e3:9.3f} ms  (untuned schedule)")
    print(f"numpy      {t_numpy * 1e3:9.3f} ms  (op by op)")
    verdict = "faster" if t_numpy > t_ours else "slower"
    print(f"speedup    {t_numpy / t_ours:.2f}x vs numpy ({verdict}), "
          f"{t_default / t_ours:.2f}x vs the default schedule (medians of {DEMO_ROUNDS} interleaved rounds)")
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
                      help="measured seconds for each of tuned, default and numpy, split over "
                           f"{DEMO_ROUNDS} interleaved rounds (default: 0.3)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=cmd_demo)
    add_commands(sub)
    from .bench_cli import add_bench_command
    add_bench_command(sub)
    from .dashboard_cli import add_dashboard_commands
    add_dashboard_commands(sub)
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
